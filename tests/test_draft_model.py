"""Draft-model speculative decoding: a second model drafts, ours verifies, exactly.

Tiny random models share the byte tokenizer, so any of them can draft for any other: a
different model (low acceptance: most drafts are rejected and rolled back) and the target
itself (every draft accepted: the draft cache must catch up on the last accepted token).
"""

from __future__ import annotations

import dataclasses
from functools import partial

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from selfspec.decoding import generate, run_to_end, vanilla
from selfspec.drafters.chain import draft_chain
from selfspec.drafters.draft_model import DraftModelDrafter, check_same_tokenizer
from selfspec.errors import BadInputError
from selfspec.methods import get_method
from selfspec.sampling import SamplingConfig
from selfspec.speculative import DraftContext, speculative
from tests.model_helpers import tiny


def tokens_of(lm, prompt, method, cfg):
    return run_to_end(generate(lm, prompt, method, cfg)).tokens


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    target=st.sampled_from(["tiny-llama", "tiny-gemma3"]),
    draft=st.sampled_from(["tiny-llama", "tiny-qwen2", "tiny-gemma3"]),
    dtype=st.sampled_from(["float32", "float64"]),
    prompt=st.text(alphabet="abc de.,\n", min_size=1, max_size=30).filter(str.strip),
    max_draft=st.integers(1, 8),
    cost_aware=st.booleans(),
    head_tokens=st.sampled_from([None, 64, 200]),  # a restricted draft vocabulary
)
def test_greedy_draft_model_decoding_equals_plain_decoding(
    target, draft, dtype, prompt, max_draft, cost_aware, head_tokens
):
    lm, small = tiny(target, dtype), tiny(draft, dtype)
    method = partial(
        speculative,
        drafter=lambda _: DraftModelDrafter(small, max_draft, head_tokens=head_tokens),
        cost_aware=cost_aware,
    )
    cfg = SamplingConfig(max_new_tokens=24)
    assert tokens_of(lm, prompt, method, cfg) == tokens_of(lm, prompt, vanilla, cfg)


@pytest.mark.parametrize("self_draft", [False, True])
def test_the_draft_cache_is_rolled_back_to_the_committed_text(self_draft):
    """After a run, the draft cache's entries equal a fresh pass over the tokens it claims
    to hold, bit for bit: with another model, rejected drafts overwritten and accepted ones
    kept; drafting for itself, every draft accepted, so each draft's last token reaches
    the cache with the next draft's first pass."""
    lm, small = tiny("tiny-llama", "float32"), tiny("tiny-qwen2", "float32")
    if self_draft:
        small = lm
    drafter = DraftModelDrafter(small, 4)
    # no timing-based draft-length policy: the same drafts on every run
    method = partial(speculative, drafter=lambda _: drafter, cost_aware=False)
    result = run_to_end(generate(lm, "abc abc abc", method, SamplingConfig(max_new_tokens=30)))
    drafted = [s for s in result.steps if s.drafted]
    if self_draft:
        assert len(drafted) > 3 and all(s.accepted == s.drafted for s in drafted)
    else:
        assert any(s.accepted < s.drafted for s in drafted)  # some drafts were rejected
    fed = drafter._fed
    with torch.inference_mode():
        fresh = small.engine.new_cache(len(fed))
        x = torch.tensor([fed])
        small.engine.run_layers(small.engine.embed(x), fresh, 0)
    for i in range(small.engine.cfg.n_layers):
        assert torch.equal(drafter._cache.k[i][:, :, : len(fed)], fresh.k[i])
        assert torch.equal(drafter._cache.v[i][:, :, : len(fed)], fresh.v[i])


def test_a_draft_model_with_another_tokenizer_is_refused():
    lm = tiny("tiny-llama")

    class OtherTokenizer:
        def get_vocab(self):
            return {"a": 0}

    other = dataclasses.replace(tiny("tiny-qwen2"), tokenizer=OtherTokenizer())
    with pytest.raises(BadInputError, match="does not share .* tokenizer"):
        check_same_tokenizer(lm, other)


def test_a_target_without_a_draft_model_is_told_how_to_get_one(monkeypatch):
    monkeypatch.delenv("SELFSPEC_DRAFT_MODEL", raising=False)
    lm = tiny("tiny-llama")
    with pytest.raises(
        BadInputError, match="No draft model for 'tiny-llama'.*SELFSPEC_DRAFT_MODEL"
    ):
        tokens_of(lm, "ab", get_method("draft-model").run, SamplingConfig(max_new_tokens=4))


def test_the_registered_method_and_its_hf_peer_use_the_named_draft_model(monkeypatch):
    monkeypatch.setenv("SELFSPEC_DRAFT_MODEL", "tiny-qwen2")
    lm = tiny("tiny-llama")
    cfg = SamplingConfig(max_new_tokens=12)
    want = tokens_of(lm, "abc", vanilla, cfg)
    for name in ("draft-model", "hf-assist"):
        assert tokens_of(lm, "abc", get_method(name).run, cfg) == want, name


def test_a_restricted_draft_vocabulary_proposes_only_its_tokens():
    """The draft scores the first ids and the end tokens only; its q is zero elsewhere,
    which the rejection rule handles like any other draft distribution."""
    lm, small = tiny("tiny-llama", "float32"), tiny("tiny-qwen2", "float32")
    drafter = DraftModelDrafter(small, 4, head_tokens=64)
    allowed = set(range(64)) | set(small.eos_ids)
    assert set(drafter.head_ids.tolist()) == allowed
    seen = []
    real = drafter.draft

    def draft(ctx, probe=None):
        d = real(ctx, probe)
        seen.extend(d.tokens)
        if d.q is not None:
            outside = torch.ones(d.q.shape[-1], dtype=torch.bool)
            outside[drafter.head_ids] = False
            assert float(d.q[:, outside].sum()) == 0.0
        return d

    drafter.draft = draft
    cfg = SamplingConfig(max_new_tokens=24, temperature=1.0, seed=3)
    run_to_end(generate(lm, "abc", partial(speculative, drafter=lambda _: drafter), cfg))
    assert seen and set(seen) <= allowed


def first_chunks(chunks, n=40):
    """The chunks of a method's stream up to n tokens (the stream itself never stops)."""
    out, count = [], 0
    for chunk in chunks:
        out.append(chunk)
        count += len(chunk.tokens)
        if count >= n:
            return out
    return out


def test_each_step_s_last_token_says_whether_it_is_a_bonus_or_a_correction():
    """A fully accepted draft ends with the full model's bonus token; a rejected one with
    its correction; a step without a draft with a plain token. The result also times the
    first token (prefill) apart from decoding."""
    from selfspec.decoding import Origin

    lm, small = tiny("tiny-llama", "float32"), tiny("tiny-qwen2", "float32")
    method = partial(speculative, drafter=lambda _: DraftModelDrafter(small, 3))
    chunks = first_chunks(method(lm, lm.encode("abc abc"), SamplingConfig(max_new_tokens=40)))
    kinds = set()
    for chunk in chunks[1:]:
        step, last = chunk.step, chunk.origins[-1]
        if step.drafted == 0:
            assert last == Origin.TARGET
        elif step.accepted == step.drafted:
            assert last == Origin.BONUS
        else:
            assert last == Origin.CORRECTED
        kinds.add(last)
    assert Origin.CORRECTED in kinds
    same = partial(speculative, drafter=lambda _: DraftModelDrafter(lm, 3))  # itself: all kept
    chunks = first_chunks(same(lm, lm.encode("abc abc"), SamplingConfig(max_new_tokens=40)))
    assert Origin.BONUS in {c.origins[-1] for c in chunks[1:]}
    result = run_to_end(generate(lm, "abc", method, SamplingConfig(max_new_tokens=8)))
    assert 0 < result.first_token_s < result.seconds and result.decode_tokens_per_s > 0


@pytest.mark.parametrize("temperature", [0.0, 1.3])
def test_drafting_over_some_token_ids_is_drafting_over_all_with_the_rest_at_minus_inf(
    temperature,
):
    """draft_chain on logits over `vocab_ids` gives the greedy tokens, and the sampling
    distributions q over the whole vocabulary, that the same logits padded with -inf
    would give (a seeded sample is drawn from the shorter vector, so it may differ)."""
    torch.manual_seed(0)
    vocab, ids = 50, torch.tensor([1, 4, 5, 9, 17, 30, 44])
    logits = [torch.randn(len(ids), dtype=torch.float64) * 3 for _ in range(4)]

    def padded(i: int) -> torch.Tensor:
        full = torch.full((vocab,), float("-inf"), dtype=torch.float64)
        return full.index_copy_(0, ids, logits[i])

    cfg = SamplingConfig(max_new_tokens=8, temperature=temperature, top_k=5, seed=3)
    drafts = []
    for restricted in (True, False):
        ctx = DraftContext(None, None, 0, 7, [7], cfg, cfg.generator("cpu"), 4)
        at = (lambda tok, i: logits[i]) if restricted else (lambda tok, i: padded(i))
        extra = (ids, vocab) if restricted else ()
        drafts.append(draft_chain(ctx, 4, 0.0, at, *extra))
    assert set(drafts[0].tokens) <= set(ids.tolist())
    if temperature:
        assert len(drafts[0].tokens) == len(drafts[1].tokens) == 4  # g = 0: never stops
        torch.testing.assert_close(drafts[0].q, drafts[1].q)
    else:
        assert drafts[0].tokens == drafts[1].tokens
