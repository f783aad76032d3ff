"""The speculative loop: lossless greedy decoding, exact sampling, cache rollback, drafters."""

from __future__ import annotations

import json
import time
from contextlib import contextmanager
from functools import partial

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.stats import chisquare

from selfspec.decoding import generate, run_to_end, vanilla
from selfspec.drafters.draft_model import DraftModelDrafter
from selfspec.drafters.kangaroo import KangarooDrafter
from selfspec.drafters.lookup import PromptLookupDrafter, lookup
from selfspec.drafters.skip import AdaptiveThreshold, SkipLayerDrafter
from selfspec.errors import BadInputError
from selfspec.model import SkipSet
from selfspec.profiles import SkipProfile, load_profile, save_profile
from selfspec.sampling import SamplingConfig, probabilities
from selfspec.speculative import Draft, Drafter, Probe, speculative, verify
from tests.model_helpers import ARCHS, tiny
from tests.test_kangaroo import make_adapter

N_LAYERS = 4  # the tiny models


def tokens_of(lm, prompt, method, cfg):
    return run_to_end(generate(lm, prompt, method, cfg)).tokens


def skip_method(skip, max_draft, g, gate=None):
    return partial(
        speculative,
        drafter=lambda lm: SkipLayerDrafter(
            skip, N_LAYERS, max_draft, AdaptiveThreshold(g=g, alpha=0.85)
        ),
        gate=gate,
        cost_aware=False,  # draft as the drafter likes: every step tests the mechanism
    )


layer = st.integers(0, N_LAYERS - 1)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    arch=st.sampled_from(ARCHS),
    prompt=st.text(alphabet="abc de.,\n", min_size=1, max_size=40).filter(str.strip),
    attn=st.sets(layer, max_size=3),
    mlp=st.sets(layer, max_size=3),
    max_draft=st.integers(1, 10),
    g=st.floats(0.01, 0.99),
    gate=st.one_of(st.none(), st.floats(0.01, 0.99)),
)
def test_greedy_skip_drafting_is_lossless(arch, prompt, attn, mlp, max_draft, g, gate):
    lm = tiny(arch)  # float64: rounding cannot flip a token
    cfg = SamplingConfig(max_new_tokens=24)
    method = skip_method(SkipSet.of(attn, mlp), max_draft, g, gate)
    assert tokens_of(lm, prompt, method, cfg) == tokens_of(lm, prompt, vanilla, cfg)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    arch=st.sampled_from(ARCHS),
    prompt=st.text(alphabet="ab ab.", min_size=2, max_size=60).filter(str.strip),
    ngram=st.integers(1, 4),
    k=st.integers(1, 10),
    gate=st.one_of(st.none(), st.floats(0.01, 0.99)),
    cost_aware=st.booleans(),
)
def test_greedy_prompt_lookup_is_lossless(arch, prompt, ngram, k, gate, cost_aware):
    lm = tiny(arch)
    cfg = SamplingConfig(max_new_tokens=24)
    method = partial(
        speculative,
        drafter=lambda lm: PromptLookupDrafter(ngram, k),
        gate=gate,
        cost_aware=cost_aware,
    )
    assert tokens_of(lm, prompt, method, cfg) == tokens_of(lm, prompt, vanilla, cfg)


def test_lossless_with_real_acceptances():
    """A draft that agrees often (a tiny skip) exercises long accepted runs too."""
    lm = tiny("tiny-llama")
    cfg = SamplingConfig(max_new_tokens=80)
    result = run_to_end(generate(lm, "hello hello", skip_method(SkipSet.of([2]), 8, 0.3), cfg))
    assert result.tokens == tokens_of(lm, "hello hello", vanilla, cfg)
    assert result.acceptance_rate and result.acceptance_rate > 0.3
    assert max(result.accepted_histogram()) >= 2


def test_kv_cache_after_rollback_equals_plain_prefill():
    lm = tiny("tiny-mistral")
    seen = {}

    class Recording(SkipLayerDrafter):
        def draft(self, ctx, probe=None):
            seen.update(cache=ctx.cache, pos=ctx.pos, tokens=list(ctx.tokens))
            return super().draft(ctx, probe)

    method = partial(
        speculative,
        drafter=lambda lm: Recording(SkipSet.of([1, 2], [1]), N_LAYERS, 6),
        cost_aware=False,
    )
    result = run_to_end(generate(lm, "roll back", method, SamplingConfig(max_new_tokens=40)))
    assert result.acceptance_rate is not None and result.acceptance_rate < 1.0  # rejections
    pos, cache = seen["pos"], seen["cache"]
    fresh = lm.engine.new_cache(pos + 1)
    with torch.inference_mode():
        lm.engine.forward(torch.tensor([seen["tokens"][:pos]]), fresh, 0)
    for i in range(N_LAYERS):
        assert torch.allclose(cache.k[i][:, :, :pos], fresh.k[i][:, :, :pos], atol=1e-12)
        assert torch.allclose(cache.v[i][:, :, :pos], fresh.v[i][:, :, :pos], atol=1e-12)


# ---------------------------------------------------------------- the engine's device
@contextmanager
def default_device(device: str):
    """Torch's default device for new tensors, restored afterwards (a GPU run's too)."""
    before = torch.get_default_device()
    torch.set_default_device(device)
    try:
        yield
    finally:
        torch.set_default_device(before)


@pytest.mark.parametrize("name", ["skip", "pld", "kangaroo"])
@pytest.mark.parametrize("greedy", [True, False])
def test_the_loop_and_drafters_build_tensors_on_the_engine_s_device(name, greedy):
    lm = tiny("tiny-llama")
    adapter = make_adapter(lm, exit_layer=2)  # built before the default device changes
    drafters = {
        "skip": lambda lm: SkipLayerDrafter(SkipSet.of([2], [1, 2]), N_LAYERS, 6),
        "pld": lambda lm: PromptLookupDrafter(),
        "kangaroo": lambda lm: KangarooDrafter(adapter, 2, eta=0.3),
    }
    # Sampling is compared with the same method run normally: the draft lengths (and so the
    # random draws) must not depend on timing, hence no cost-aware policy there.
    method = partial(speculative, drafter=drafters[name], cost_aware=greedy)
    cfg = SamplingConfig(max_new_tokens=24) if greedy else SamplingConfig(24, 1.0, seed=3)
    prompt = "ab cd ab cd ab"
    reference = tokens_of(lm, prompt, vanilla if greedy else method, cfg)
    # On meta, a tensor built without the engine's device breaks the run or its output,
    # as one left on the CPU would on CUDA, which no CPU-only run would otherwise notice.
    with default_device("meta"):
        assert tokens_of(lm, prompt, method, cfg) == reference


# ---------------------------------------------------------------- sampling is exact
def _first_token_freqs(rule, p, q, n, seed):
    gen = torch.Generator(device="cpu").manual_seed(seed)
    counts = torch.zeros(len(p), device="cpu")
    cfg = SamplingConfig(temperature=1.0)
    logits_p = torch.log(p).repeat(2, 1)
    for _ in range(n):
        x = int(torch.multinomial(q, 1, generator=gen))
        accepted, bonus = rule(logits_p, Draft([x], q[None]), cfg, gen)
        counts[x if accepted else bonus] += 1
    return counts


def _wrong_residual(logits, draft, cfg, gen):
    """A plausible bug: on rejection, resample from p instead of max(p - q, 0)."""
    p = probabilities(logits, cfg)
    x = draft.tokens[0]
    if torch.rand((), generator=gen).item() < min(1.0, float(p[0, x] / draft.q[0, x])):
        return 1, int(torch.multinomial(p[1], 1, generator=gen))
    return 0, int(torch.multinomial(p[0], 1, generator=gen))


P = torch.tensor([0.5, 0.25, 0.15, 0.1], dtype=torch.float64, device="cpu")
Q = torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=torch.float64, device="cpu")


def test_rejection_sampling_reproduces_target_distribution():
    n = 6000
    counts = _first_token_freqs(verify, P, Q, n, seed=1)
    assert chisquare(counts.numpy(), (P * n).numpy()).pvalue > 1e-3


def test_the_statistical_check_catches_a_wrong_residual():
    n = 6000
    counts = _first_token_freqs(_wrong_residual, P, Q, n, seed=1)
    assert chisquare(counts.numpy(), (P * n).numpy()).pvalue < 1e-6


# A model whose next-token distribution depends only on the position: p_t for the full
# model, q_t for the draft. Under the rejection rule every output position must then be
# distributed as p_t, independently of the others, whatever was drafted and accepted.
PS = torch.tensor(
    [
        [0.4, 0.3, 0.2, 0.1],
        [0.1, 0.2, 0.3, 0.4],
        [0.25, 0.25, 0.3, 0.2],
        [0.6, 0.15, 0.15, 0.1],
        [0.2, 0.5, 0.2, 0.1],
    ],
    dtype=torch.float64,
)
QS = torch.tensor(
    [
        [0.1, 0.2, 0.3, 0.4],
        [0.4, 0.3, 0.2, 0.1],
        [0.7, 0.1, 0.1, 0.1],
        [0.25, 0.25, 0.25, 0.25],
        [0.1, 0.1, 0.1, 0.7],
    ],
    dtype=torch.float64,
)
DETERMINISTIC = [1, 0, 2, 0, 3]  # what a lookup drafter would copy at each position


def _sequences(n: int, max_draft: int, deterministic: bool, seed: int = 0):
    """`n` outputs of the speculative loop over the position-only model, drafting up to
    `max_draft` tokens a step (sampled from q_t, or the fixed DETERMINISTIC tokens), and
    the (drafted, accepted) of every verification."""
    gen = torch.Generator(device="cpu").manual_seed(seed)
    cfg = SamplingConfig(temperature=1.0)
    length = len(PS)
    outputs, steps = torch.zeros(n, length, dtype=torch.long), []
    for row in range(n):
        out: list[int] = []
        while len(out) < length:
            t = len(out)
            k = min(max_draft, length - t - 1)  # room for the bonus, as the loop's budget
            if deterministic:
                draft = Draft(DETERMINISTIC[t : t + k])
            else:
                x = [int(torch.multinomial(QS[t + i], 1, generator=gen)) for i in range(k)]
                draft = Draft(x, QS[t : t + k])
            accepted, bonus = verify(torch.log(PS[t : t + k + 1]), draft, cfg, gen)
            steps.append((k, accepted))
            out += [*draft.tokens[:accepted], bonus]
        outputs[row] = torch.tensor(out)
    return outputs, steps


@pytest.mark.parametrize("deterministic", [False, True], ids=["sampled-draft", "lookup-draft"])
def test_every_branch_of_the_rejection_rule_keeps_the_target_distribution(deterministic):
    """Drafts of up to 3 tokens over 5 positions reach every branch of the rule: rejection
    at draft position 0 and at positions 1 and 2, and the bonus after 1, 2 and 3 accepted
    drafts; with lookup's deterministic drafts, its one-hot residual too. Each position's
    token must follow p_t, and positions 1-3 jointly the product of theirs."""
    n = 6000
    outputs, steps = _sequences(n, 3, deterministic)
    rejected_at = {a for k, a in steps if a < k}
    all_accepted = {a for k, a in steps if a == k and k}
    assert rejected_at >= {0, 1, 2} and all_accepted >= {1, 2, 3}
    for where in (0, 1, 2):  # each branch is sampled often, not once by luck
        assert sum(1 for k, a in steps if a == where < k) > 200, where
    assert sum(1 for k, a in steps if a == k >= 2) > 200
    for t in range(len(PS)):
        counts = torch.bincount(outputs[:, t], minlength=4).double()
        assert chisquare(counts.numpy(), (PS[t] * n).numpy()).pvalue > 1e-3, t
    joint = outputs[:, 1] * 16 + outputs[:, 2] * 4 + outputs[:, 3]
    expected = torch.einsum("a,b,c->abc", PS[1], PS[2], PS[3]).flatten() * n
    counts = torch.bincount(joint, minlength=64).double()
    assert chisquare(counts.numpy(), expected.numpy()).pvalue > 1e-3


@pytest.mark.parametrize("drafting", ["skip", "kangaroo", "draft-model", "draft-model-232"])
def test_speculative_sampling_matches_model_probabilities_end_to_end(drafting):
    """First and second tokens of seeded drafted runs follow the model's own p (Kangaroo:
    with the draft-length policy, so the sampled probe token is the first draft or is
    dropped when the policy drafts nothing). This holds the real drafters and loop to the
    rule at the first draft position; every other branch of the rule is sampled by
    `test_every_branch_of_the_rejection_rule_keeps_the_target_distribution`."""
    lm = tiny("tiny-qwen2")
    cfg_base = dict(max_new_tokens=2, temperature=1.5, top_k=3)
    prompt = "ab"
    ids = lm.encode(prompt)
    with torch.inference_mode():
        cache = lm.engine.new_cache(len(ids) + 4)
        logits = lm.engine.forward(torch.tensor([ids]), cache, 0)[0, -1]
    p1 = probabilities(logits, SamplingConfig(**cfg_base)).cpu()
    support = p1.nonzero().flatten().tolist()
    method = skip_method(SkipSet.of([1, 2], [2]), 4, 0.05)
    if drafting == "kangaroo":
        adapter = make_adapter(lm, 2, "random")
        method = partial(speculative, drafter=lambda lm: KangarooDrafter(adapter, 2, eta=0.05))
    if drafting == "draft-model":  # another random model of the same vocabulary
        draft = tiny("tiny-llama")
        method = partial(speculative, drafter=lambda lm: DraftModelDrafter(draft, 4))
    if drafting == "draft-model-232":
        # the model drafts for itself, scoring only ids below 232 (the support here is
        # 194, 207, 231): its proposals land on p's support, so a q placed on the wrong
        # ids would bias the accepted tokens
        method = partial(speculative, drafter=lambda lm: DraftModelDrafter(lm, 4, head_tokens=232))
    n = 900
    firsts, pairs = torch.zeros(len(p1), device="cpu"), {}
    for seed in range(n):
        toks = tokens_of(lm, prompt, method, SamplingConfig(**cfg_base, seed=seed))
        firsts[toks[0]] += 1
        pairs.setdefault(toks[0], []).append(toks[1])
    assert chisquare(firsts[support].numpy(), (p1[support] * n).numpy()).pvalue > 1e-3
    top = max(pairs, key=lambda t: len(pairs[t]))  # the most frequent first token
    with torch.inference_mode():
        cache = lm.engine.new_cache(len(ids) + 4)
        logits2 = lm.engine.forward(torch.tensor([[*ids, top]]), cache, 0)[0, -1]
    p2 = probabilities(logits2, SamplingConfig(**cfg_base)).cpu()
    support2 = p2.nonzero().flatten().tolist()
    seconds = torch.bincount(torch.tensor(pairs[top], device="cpu"), minlength=len(p2)).double()
    m = len(pairs[top])
    assert chisquare(seconds[support2].numpy(), (p2[support2] * m).numpy()).pvalue > 1e-3


# ---------------------------------------------------------------- drafters and settings
def test_adaptive_threshold_follows_the_update_rule():
    th = AdaptiveThreshold(g=0.7, alpha=0.85)
    script = [(4, 4, False), (4, 1, False), (10, 10, True), (5, 5, False)]
    g, ar = 0.7, 1.0
    seen = set()
    for drafted, accepted, hit_max in script:
        th.update(drafted, accepted, hit_max)
        ar = 0.5 * ar + 0.5 * accepted / drafted
        target = g + 0.01 if ar < 0.85 else (g if hit_max else g - 0.01)
        g = 0.9 * g + 0.1 * target
        assert th.g == pytest.approx(g) and th.ar == pytest.approx(ar)
        seen.add(round(th.g, 6))
    assert len(seen) >= 2  # the threshold moved both ways


def test_prompt_lookup_prefers_longest_most_recent_match():
    assert lookup([1, 2, 3, 9, 1, 2, 3, 7, 8, 1, 2, 3], 3, 2) == (3, [7, 8])
    assert lookup([5, 6, 1, 7, 1], 3, 3) == (1, [7, 1])  # falls back to a 1-gram
    assert lookup([1, 2, 3], 3, 4) == (0, [])


def naive_lookup(tokens: list[int], max_ngram: int, k: int) -> tuple[int, list[int]]:
    """The definition, spelled out: for n = max_ngram down to 1, the last window of the
    earlier tokens equal to the final n tokens."""
    for n in range(min(max_ngram, len(tokens) - 1), 0, -1):
        tail = tokens[-n:]
        for s in range(len(tokens) - 1 - n, -1, -1):
            if tokens[s : s + n] == tail:
                return n, tokens[s + n : s + n + k]
    return 0, []


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.integers(0, 3), max_size=40),
    st.integers(1, 4),
    st.integers(1, 6),
)
def test_prompt_lookup_matches_its_definition(tokens, max_ngram, k):
    assert lookup(tokens, max_ngram, k) == naive_lookup(tokens, max_ngram, k)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: PromptLookupDrafter(k=0), "at least 1"),
        (lambda: SkipLayerDrafter(SkipSet.of([9]), N_LAYERS), "layers"),
        (lambda: SkipLayerDrafter(SkipSet(), N_LAYERS, max_draft=0), "at least 1"),
        (lambda: AdaptiveThreshold(g=1.5), "between 0 and 1"),
        (lambda: AdaptiveThreshold(alpha=0.0), "between 0 and 1"),
    ],
)
def test_bad_drafter_settings_are_refused(make, message):
    with pytest.raises(BadInputError, match=message):
        make()


def test_confidence_gate_outside_unit_interval_is_refused():
    lm = tiny("tiny-llama")
    method = partial(speculative, drafter=lambda lm: PromptLookupDrafter(), gate=1.2)
    with pytest.raises(BadInputError, match="gate"):
        tokens_of(lm, "x", method, SamplingConfig(max_new_tokens=2))


def test_profile_for_another_model_is_refused(tmp_path):
    lm = tiny("tiny-llama")
    path = save_profile(SkipProfile("tiny-gemma2", 4, [1], []), tmp_path / "p.json")
    with pytest.raises(BadInputError, match="made for 'tiny-gemma2'"):
        load_profile(lm, path)
    path.write_text(json.dumps({"model": "tiny-llama"}))
    with pytest.raises(BadInputError, match="malformed"):
        load_profile(lm, path)


def test_one_off_preparation_is_recorded_but_not_priced_per_drafted_token(monkeypatch):
    """Kangaroo's first draft runs its adapter over the whole prompt. That time belongs in
    the records, but if the draft-length policy priced it per drafted token it would find
    drafting too dear and never draft again."""
    from selfspec.draft_length import DraftLengthPolicy

    priced = []
    real = DraftLengthPolicy.observe

    def observe(self, drafted, accepted, draft_s, verify_s, label=None):
        priced.append((drafted, draft_s))
        real(self, drafted, accepted, draft_s, verify_s, label)

    monkeypatch.setattr(DraftLengthPolicy, "observe", observe)

    class SlowStart(Drafter):
        started = False

        def prepare(self, ctx):
            if not self.started:
                time.sleep(0.3)
                self.started = True

        def draft(self, ctx, probe):
            return Draft([0])

        def probe(self, ctx):
            return Probe(prior=0.99)  # confident enough that the policy drafts at once

    method = partial(speculative, drafter=lambda lm: SlowStart())
    result = run_to_end(
        generate(tiny("tiny-llama"), "hi", method, SamplingConfig(max_new_tokens=4))
    )
    first_draft = next(s for s in result.steps if s.drafted)
    assert first_draft.draft_s >= 0.3  # recorded
    assert all(s < 0.3 for d, s in priced if d)  # not priced
