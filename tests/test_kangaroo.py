"""Kangaroo: lossless drafting, shared shallow layers, adapter cache, training, save/load."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from selfspec.adapter import AdapterSettings, KangarooAdapter, load_adapter, save_adapter
from selfspec.adapter_corpus import Sequence, add_states, build_corpus, corpus_prompts, read_notes
from selfspec.adapter_objective import (
    batch_logits,
    distill_loss,
    evaluate,
    expected_acceptance,
    learn_positions,
)
from selfspec.decoding import generate, run_to_end, vanilla
from selfspec.drafters.kangaroo import BANDS, KangarooDrafter, kangaroo_drafter
from selfspec.errors import BadInputError
from selfspec.profiles import model_key
from selfspec.sampling import SamplingConfig
from selfspec.speculative import Draft, DraftContext, speculative
from selfspec.train_adapter import TrainSettings, frequent_tokens, split, train_adapter
from tests.model_helpers import ARCHS, random_ids, tiny

N_LAYERS = 4  # the tiny models


def make_adapter(lm, exit_layer: int, init: str = "layer", seed: int = 0) -> KangarooAdapter:
    meta = AdapterSettings(model_key(lm), N_LAYERS, exit_layer, lm.engine.cfg.dim, init=init)
    return KangarooAdapter(lm.engine, meta, seed=seed).requires_grad_(False)


def tokens_of(lm, prompt, method, cfg):
    return run_to_end(generate(lm, prompt, method, cfg)).tokens


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    arch=st.sampled_from(ARCHS),
    prompt=st.text(alphabet="abc de.,\n", min_size=1, max_size=40).filter(str.strip),
    exit_layer=st.integers(1, N_LAYERS - 1),
    eta=st.floats(0.01, 0.99),
    max_draft=st.integers(1, 8),
    init=st.sampled_from(["layer", "random"]),
    head=st.sampled_from([0, 64]),
    gate=st.one_of(st.none(), st.floats(0.01, 0.99)),
    cost_aware=st.booleans(),
)
def test_greedy_kangaroo_is_lossless(
    arch, prompt, exit_layer, eta, max_draft, init, head, gate, cost_aware
):
    lm = tiny(arch)  # float64: rounding cannot flip a token
    adapter = make_adapter(lm, exit_layer, init)
    head_tokens = torch.arange(head, device=lm.device) * 5 if head else None
    method = partial(
        speculative,
        drafter=lambda lm: KangarooDrafter(adapter, exit_layer, eta, max_draft, head_tokens),
        gate=gate,
        cost_aware=cost_aware,  # with the policy, probes it does not draft from are reused
    )
    cfg = SamplingConfig(max_new_tokens=24)
    assert tokens_of(lm, prompt, method, cfg) == tokens_of(lm, prompt, vanilla, cfg)


def draft_once(lm, drafter, prompt_ids, cfg):
    """Prefill a cache with the full model, then one Kangaroo draft from there."""
    engine = lm.engine
    cache = engine.new_cache(len(prompt_ids) + 32)
    pos = len(prompt_ids) - 1
    engine.forward(torch.tensor([prompt_ids[:pos]], device=lm.device), cache, 0)
    ctx = DraftContext(lm, cache, pos, prompt_ids[-1], list(prompt_ids), cfg, None, 16)
    return ctx, drafter.draft(ctx)


@pytest.mark.parametrize("arch", ARCHS)
def test_shared_shallow_layer_verification_equals_full_forward(arch):
    lm = tiny(arch)
    cfg = SamplingConfig(max_new_tokens=16)
    drafter = KangarooDrafter(make_adapter(lm, 2), 2, eta=0.01, max_draft=5)
    ids = random_ids(30, seed=1)
    with torch.inference_mode():
        ctx, draft = draft_once(lm, drafter, ids, cfg)
        block = torch.tensor([[ctx.last, *draft.tokens]], device=lm.device)
        shared = drafter.verify_logits(ctx, block, draft, None)
        full_cache = lm.engine.new_cache(ctx.cache.max_len)
        full = lm.engine.forward(
            torch.tensor([ids + draft.tokens], device=lm.device), full_cache, 0
        )
    assert len(draft.tokens) == 5
    torch.testing.assert_close(shared, full[0, ctx.pos :], rtol=1e-9, atol=1e-9)
    # The shared cache now holds what a full forward writes, in every layer.
    n = ctx.pos + len(block[0])
    for i in range(N_LAYERS):
        torch.testing.assert_close(ctx.cache.k[i][:, :, :n], full_cache.k[i][:, :, :n])
        torch.testing.assert_close(ctx.cache.v[i][:, :, :n], full_cache.v[i][:, :, :n])


def test_a_probe_without_a_draft_serves_the_plain_step():
    """The policy looks at the first draft's confidence (a probe through layers 0..l-1);
    when it then drafts nothing, verification runs only the deep layers on the probe's
    state, and the logits and cache are those of a full forward. A probe handed to another
    generation's step is refused, not used."""
    lm = tiny("tiny-qwen2")
    drafter = KangarooDrafter(make_adapter(lm, 2, "random"), 2, eta=0.5, max_draft=4)
    ids = random_ids(20, seed=4)
    engine = lm.engine
    cfg = SamplingConfig(max_new_tokens=8)
    with torch.inference_mode():
        cache = engine.new_cache(40)
        pos = len(ids) - 1
        engine.forward(torch.tensor([ids[:pos]], device=lm.device), cache, 0)
        ctx = DraftContext(lm, cache, pos, ids[-1], list(ids), cfg, None, 8)
        probe = drafter.probe(ctx)
        other = DraftContext(lm, engine.new_cache(40), pos, ids[-1], list(ids), cfg, None, 8)
        block = torch.tensor([[ids[-1]]], device=lm.device)
        with pytest.raises(ValueError, match="another step or generation"):
            drafter.verify_logits(other, block, Draft([]), probe)
        shared = drafter.verify_logits(ctx, block, Draft([]), probe)
        full_cache = engine.new_cache(40)
        full = engine.forward(torch.tensor([ids], device=lm.device), full_cache, 0)
    assert probe.label in range(4) and 0 < probe.prior < 1
    torch.testing.assert_close(shared, full[0, pos:], rtol=1e-9, atol=1e-9)
    for i in range(N_LAYERS):
        torch.testing.assert_close(cache.k[i][:, :, : pos + 1], full_cache.k[i][:, :, : pos + 1])


def test_the_first_draft_s_confidence_names_its_band():
    lm = tiny("tiny-llama")
    drafter = KangarooDrafter(make_adapter(lm, 2, "random"), 2, eta=0.5, max_draft=4)
    ids = random_ids(12, seed=6)
    cfg = SamplingConfig(max_new_tokens=8)
    with torch.inference_mode():
        cache = lm.engine.new_cache(30)
        pos = len(ids) - 1
        lm.engine.forward(torch.tensor([ids[:pos]], device=lm.device), cache, 0)
        ctx = DraftContext(lm, cache, pos, ids[-1], list(ids), cfg, None, 8)
        probe = drafter.probe(ctx)
        tok, conf, _ = probe.state.first
        draft = drafter.draft(ctx, probe)
    assert draft.tokens[0] == tok  # drafting starts from the probed token, not a new one
    assert probe.label == next(i for i, edge in enumerate(BANDS) if conf >= edge)


def test_adapter_cache_stays_valid_after_rejections():
    """Entries at committed positions equal a fresh adapter pass over the exact
    exit-layer states of the final text, though many drafts were rejected on the way."""
    lm = tiny("tiny-llama")
    drafter = KangarooDrafter(make_adapter(lm, 2, "random"), 2, eta=0.9, max_draft=6)
    result = run_to_end(
        generate(
            lm,
            "hello there",
            partial(speculative, drafter=lambda lm: drafter, cost_aware=False),
            SamplingConfig(max_new_tokens=48),
        )
    )
    assert sum(s.drafted - s.accepted for s in result.steps) > 0  # rejections happened
    ids = lm.encode("hello there") + result.tokens
    n = min(drafter._filled, len(ids))
    assert n > len(ids) // 2
    engine = lm.engine
    with torch.inference_mode():
        h = engine.run_layers(
            engine.embed(torch.tensor([ids[:n]], device=lm.device)), engine.new_cache(n), 0, stop=2
        )
        fresh = drafter.adapter.new_cache(engine, n)
        drafter.adapter(engine, h, fresh, 0)
    torch.testing.assert_close(drafter.cache.k[0][:, :, :n], fresh.k[0])
    torch.testing.assert_close(drafter.cache.v[0][:, :, :n], fresh.v[0])


def test_restricted_head_drafts_only_its_tokens():
    lm = tiny("tiny-qwen2")
    allowed = torch.tensor([3, 50, 97, 101, 120], device=lm.device)
    drafter = KangarooDrafter(make_adapter(lm, 1), 1, eta=0.01, max_draft=6, head_tokens=allowed)
    for cfg in (
        SamplingConfig(max_new_tokens=16),
        SamplingConfig(max_new_tokens=16, temperature=1.0, seed=0),
    ):
        with torch.inference_mode():
            _, draft = draft_once(lm, drafter, random_ids(12, seed=2), cfg)
        assert draft.tokens and set(draft.tokens) <= set(allowed.tolist())
        if draft.q is not None:
            outside = torch.ones(draft.q.shape[-1], dtype=torch.bool, device=lm.device)
            outside[allowed] = False
            assert float(draft.q[:, outside].abs().sum()) == 0.0


# ----------------------------------------------------------------------------- training
@pytest.fixture(scope="module")
def corpus():
    """Greedy continuations of random prompts by tiny-llama (float32, like real training)."""
    lm = tiny("tiny-llama", "float32")
    cfg = SamplingConfig(max_new_tokens=24)
    seqs = []
    for seed in range(14):
        text = "".join(chr(97 + i) for i in random_ids(10, seed, vocab=26))
        ids = lm.encode(text)
        seqs.append(Sequence(ids + tokens_of(lm, text, vanilla, cfg), len(ids)))
    return lm, seqs


def test_corpus_can_leave_out_the_benchmark_prompts():
    from selfspec.prompts import load_prompts

    builtin = {p.prompt for p in load_prompts()}
    notes = ["## One\nfirst section\n## Two\nsecond"]
    full, clean = corpus_prompts(notes), corpus_prompts(notes, builtin=False)
    assert builtin <= set(full) and not builtin & set(clean)
    assert set(clean) == set(full) - builtin  # the notes stay
    assert clean == [
        "Summarize: ## One\nfirst section",
        "Write a question about: ## One\nfirst section",
        "Summarize: ## Two\nsecond",
        "Write a question about: ## Two\nsecond",
    ]


def test_a_notes_folder_gives_the_corpus_the_app_s_seed_notes_give():
    """`--notes study/notes/seed` on the CLI writes the corpus the app writes from the seed
    notes it parses (front matter left out), so both reuse one corpus cache."""
    from study.notes import seed_notes

    seed = Path(__file__).parent.parent / "study" / "notes" / "seed"
    parsed = [note.body for note in seed_notes()]
    assert corpus_prompts(read_notes(seed)) == corpus_prompts(parsed)


def test_notes_are_read_without_front_matter(tmp_path):
    (tmp_path / "a.md").write_text("---\ntitle: A\n---\n## Part\ntext\n")
    (tmp_path / "b.txt").write_text("plain words")
    (tmp_path / "cards.json").write_text("{}")
    assert read_notes(tmp_path) == ["## Part\ntext", "plain words"]
    with pytest.raises(BadInputError, match="No notes folder"):
        read_notes(tmp_path / "missing")


def test_corpus_is_the_models_greedy_text_and_is_reused(tmp_path, monkeypatch):
    import selfspec.decoding

    lm = tiny("tiny-llama")
    prompts = ["abc abc abc", "the cat sat", "xyz"]
    cache = tmp_path / "c.corpus.json"
    seqs = build_corpus(lm, prompts, 16, cache)
    cfg = SamplingConfig(max_new_tokens=16)
    for prompt, seq in zip(prompts, seqs, strict=True):
        assert seq.ids[seq.n_prompt :] == tokens_of(lm, prompt, vanilla, cfg)
    monkeypatch.setattr(selfspec.decoding, "generate", None)  # a second run must not decode
    again = build_corpus(lm, prompts, 16, cache)
    assert [(s.ids, s.n_prompt) for s in again] == [(s.ids, s.n_prompt) for s in seqs]


@pytest.mark.parametrize("head_tokens", [0, 40])
def test_training_lowers_loss_and_raises_acceptance(corpus, tmp_path, head_tokens):
    lm, seqs = corpus
    s = TrainSettings(
        exit_layer=2, steps=40, lr=3e-3, batch=4, warmup=5, eval_every=40, head_tokens=head_tokens
    )
    add_states(lm, seqs, 2)
    train, held_out = split(seqs, s.held_out, s.seed)  # the split train_adapter makes
    untrained = make_adapter(lm, 2)
    if head_tokens:  # the same restricted head as training picks
        untrained.head_tokens = frequent_tokens(
            train, head_tokens, lm.engine.cfg.vocab_size, lm.device
        )
    start = evaluate(untrained, lm, held_out, "ce", 8)
    adapter = train_adapter(lm, s, tmp_path / "a.safetensors", progress=False, sequences=seqs)
    assert adapter.head_tokens.numel() == head_tokens
    end = evaluate(adapter, lm, held_out, "ce", 8)
    assert end[0] < start[0] and end[1] > start[1]
    assert adapter.settings.expected_acceptance == pytest.approx(end[1])
    assert (tmp_path / "a.json").is_file() and (tmp_path / "a.ckpt.pt").is_file()
    # Resuming the finished run changes nothing and keeps the result.
    again = train_adapter(
        lm, s, tmp_path / "a.safetensors", resume=True, progress=False, sequences=seqs
    )
    torch.testing.assert_close(again.wqkv, adapter.wqkv)


def test_expected_acceptance_counts_target_mass_outside_a_restricted_head_as_rejected():
    p = torch.tensor([[0.5, 0.3, 0.2]]).log()
    ids = torch.tensor([0, 1])
    same_over_ids = torch.tensor([[0.5, 0.3]]).log()  # renormalised: 0.625, 0.375
    assert expected_acceptance(same_over_ids, p, ids) == pytest.approx(0.8)
    assert expected_acceptance(p, p) == pytest.approx(1.0)


def test_training_also_learns_at_prompt_positions_after_the_shared_prefix(corpus):
    lm, seqs = corpus
    seqs = [Sequence([7, 7, 7, *s.ids], s.n_prompt + 3) for s in seqs]  # a shared prefix
    add_states(lm, seqs, 2)
    learn_positions(seqs)
    first = seqs[0].first  # the shared prefix ([7, 7, 7] and whatever follows) is left out
    assert first >= 3 and all(s.first == first for s in seqs)
    assert all(s.ids[:first] == seqs[0].ids[:first] for s in seqs)
    assert len({s.ids[first] for s in seqs}) > 1
    adapter = make_adapter(lm, 2)
    q_gen, _ = batch_logits(adapter, lm, seqs[:3])
    q_all, p_all = batch_logits(adapter, lm, seqs[:3], generated_only=False)
    assert q_gen.shape[0] == sum(s.n_gen for s in seqs[:3])
    assert q_all.shape[0] == p_all.shape[0] == sum(len(s.ids) - 1 - first for s in seqs[:3])
    # The positions it adds are the prompt's, with the targets of those positions.
    s = seqs[0]
    want = lm.engine.logits(s.h_last[None, first:])[0]
    torch.testing.assert_close(p_all[: len(s.ids) - 1 - first], want)


def test_ce_and_kl_give_the_same_gradients(corpus):
    lm, seqs = corpus
    add_states(lm, seqs, 1)
    grads = {}
    for kind in ("ce", "kl"):
        adapter = make_adapter(lm, 1).requires_grad_(True)
        q, p = batch_logits(adapter, lm, seqs[:4])
        distill_loss(q, p, kind).backward()
        grads[kind] = [x.grad for x in adapter.parameters()]
    for a, b in zip(grads["ce"], grads["kl"], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


# ----------------------------------------------------------------------------- save/load
def test_save_load_round_trip(tmp_path, monkeypatch):
    lm = tiny("tiny-gemma2")
    adapter = make_adapter(lm, 3, "random", seed=4)
    adapter.head_tokens = torch.tensor([1, 2, 3], device=lm.device)
    path = save_adapter(adapter, tmp_path / "adapters" / f"{model_key(lm)}.kangaroo.safetensors")
    loaded = load_adapter(lm, path, exit_layer=3)
    for (name, a), (_, b) in zip(
        adapter.state_dict().items(), loaded.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), name
    assert loaded.settings == adapter.settings
    monkeypatch.setenv("SELFSPEC_DATA_DIR", str(tmp_path))
    drafter = kangaroo_drafter(lm)
    assert drafter.exit_layer == 3 and drafter.head_tokens.tolist() == [1, 2, 3]


def test_loading_for_another_model_or_exit_layer_is_refused(tmp_path, monkeypatch):
    path = save_adapter(make_adapter(tiny("tiny-llama"), 2), tmp_path / "a.safetensors")
    with pytest.raises(BadInputError, match="trained for 'tiny-llama'"):
        load_adapter(tiny("tiny-qwen2"), path)
    with pytest.raises(BadInputError, match="exit layer 2, not 1"):
        load_adapter(tiny("tiny-llama"), path, exit_layer=1)
    settings = json.loads((tmp_path / "a.json").read_text())
    (tmp_path / "a.json").write_text(json.dumps(settings | {"n_layers": 30}))
    with pytest.raises(BadInputError, match="30 layers"):
        load_adapter(tiny("tiny-llama"), path)
    monkeypatch.setenv("SELFSPEC_DATA_DIR", str(tmp_path / "empty"))
    with pytest.raises(BadInputError, match="train-adapter --model tiny-mistral"):
        kangaroo_drafter(tiny("tiny-mistral"))


def test_registered_methods(tmp_path, monkeypatch):
    from selfspec.methods import get_method

    lm = tiny("tiny-llama")
    save_adapter(make_adapter(lm, 2), tmp_path / "adapters" / "tiny-llama.kangaroo.safetensors")
    monkeypatch.setenv("SELFSPEC_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("SELFSPEC_DRAFT_MODEL", "tiny-llama")
    cfg = SamplingConfig(max_new_tokens=12)
    want = tokens_of(lm, "abc", vanilla, cfg)
    for name in ("kangaroo", "hf-assist"):
        assert tokens_of(lm, "abc", get_method(name).run, cfg) == want, name


@pytest.mark.parametrize("arch", ["tiny-llama", "tiny-qwen2", "tiny-mistral"])
def test_the_hf_wrapped_draft_computes_our_draft(arch):
    """Hugging Face's view of the Kangaroo draft gives the logits our drafter uses."""
    from selfspec.hf_draft import kangaroo_as_hf

    lm = tiny(arch)
    adapter = make_adapter(lm, 2, "random", seed=3)
    draft = kangaroo_as_hf(lm, adapter)
    ids = random_ids(9, seed=5)
    engine = lm.engine
    with torch.inference_mode():
        x = torch.tensor([ids], device=lm.device)
        h = engine.run_layers(engine.embed(x), engine.new_cache(len(ids)), 0, stop=2)
        ours = engine.logits(adapter(engine, h))[0]  # [T, V]
        theirs = draft(x).logits[0]
    torch.testing.assert_close(theirs, ours, rtol=1e-9, atol=1e-9)
    shared = draft.model.layers[1].self_attn.q_proj.weight
    assert shared is lm.hf_model.model.layers[1].self_attn.q_proj.weight  # no copy


def test_hf_assist_drafts_with_our_kangaroo_adapter_by_default(tmp_path, monkeypatch):
    from selfspec.methods import get_method

    lm = tiny("tiny-qwen2")
    save_adapter(make_adapter(lm, 2), tmp_path / "adapters" / "tiny-qwen2.kangaroo.safetensors")
    monkeypatch.setenv("SELFSPEC_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("SELFSPEC_DRAFT_MODEL", raising=False)
    cfg = SamplingConfig(max_new_tokens=16)
    assert tokens_of(lm, "abc", get_method("hf-assist").run, cfg) == tokens_of(
        lm, "abc", vanilla, cfg
    )
