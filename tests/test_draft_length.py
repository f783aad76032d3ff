"""The draft-length policy: expected tokens per second decide the draft cap."""

from __future__ import annotations

import pytest

from selfspec.draft_length import AcceptanceRate, DraftLengthPolicy, VerifyCosts, verify_costs
from tests.model_helpers import tiny

FLAT = {m: 0.1 for m in range(1, 10)}  # a GPU: verifying 9 tokens costs what 1 does
STEEP = {m: 0.1 * m for m in range(1, 10)}  # every extra token costs a full step


def policy(seconds: dict[int, float], rate: float) -> DraftLengthPolicy:
    p = DraftLengthPolicy(VerifyCosts(dict(seconds)), max_draft=8)
    p.acceptance[None] = AcceptanceRate(prior=rate, strength=1e9)  # pin the rate
    return p


def test_flat_costs_draft_to_the_maximum_and_the_budget():
    assert policy(FLAT, 0.5).choose(budget=20) == 8
    assert policy(FLAT, 0.5).choose(budget=3) == 3


def test_costs_that_grow_as_fast_as_the_tokens_mean_no_drafting():
    assert policy(STEEP, 0.95).choose(budget=20) == 0


def test_a_cpu_like_curve_drafts_short_and_only_when_acceptance_is_high():
    cpu = {1: 1.0, 2: 1.6, 3: 1.8, 4: 1.8, 5: 2.1, 6: 2.3, 7: 2.5, 8: 2.7, 9: 3.2}
    assert policy(cpu, 0.3).choose(20) == 0
    high = policy(cpu, 0.98).choose(20)
    mid = policy(cpu, 0.8).choose(20)
    assert high > mid > 0


def test_draft_time_counts_against_long_drafts():
    p = policy(FLAT, 0.7)
    free = p.choose(20)
    p.draft_s = 0.05  # each drafted token costs half a verification
    assert p.choose(20) < free


def test_acceptance_counts_only_tested_tokens_and_recovers_towards_the_prior():
    r = AcceptanceRate(prior=0.6, strength=2.0, decay=0.9)
    r.update(drafted=5, accepted=2)  # 2 accepted, the third rejected, 2 never judged
    assert r.tested == 3 and r.accepted == 2
    low = AcceptanceRate(prior=0.6)
    for _ in range(5):
        low.update(4, 0)
    before = low.rate
    for _ in range(30):
        low.update(0, 0)  # plain steps: no evidence, counts decay
    assert before < low.rate < 0.6 + 1e-9


def test_each_acceptance_class_learns_separately():
    p = DraftLengthPolicy(VerifyCosts({1: 1.0, 2: 1.6, 3: 1.8}), max_draft=2)
    for _ in range(10):
        p.choose(10, "good")
        p.observe(2, 2, 0.0, 1.8, "good")
        p.choose(10, "bad")
        p.observe(2, 0, 0.0, 1.6, "bad")
    assert p.acceptance["good"].rate > 0.9 > 0.2 > p.acceptance["bad"].rate
    assert p.choose(10, "good") == 2 and p.choose(10, "bad") == 0


def test_unmeasured_lengths_cost_what_the_nearest_measured_one_does():
    costs = VerifyCosts({1: 2.0, 4: 6.0})
    assert costs.relative(1) == 1.0 and costs.relative(2) == 1.0
    assert costs.relative(3) == 3.0 and costs.relative(9) == 3.0


def test_draft_time_is_taken_relative_to_the_loops_own_plain_steps():
    """A machine that slows down as a whole (both timings double) keeps the same choice."""
    cpu = {1: 1.0, 2: 1.6, 3: 1.8, 4: 1.8, 5: 2.1, 6: 2.3, 7: 2.5, 8: 2.7, 9: 3.2}
    quiet, loaded = policy(cpu, 0.95), policy(cpu, 0.95)
    for p, scale in ((quiet, 1.0), (loaded, 2.0)):
        p.observe(0, 0, 0.0, 1.0 * scale)  # a plain step
        p.observe(3, 3, 0.3 * scale, 2.0 * scale)  # three drafts at 0.1 s each
    assert quiet.draft_s == pytest.approx(0.1) and loaded.step_s == pytest.approx(2.0)
    assert quiet.choose(20) == loaded.choose(20) > 0


def test_calibration_is_measured_once_per_model():
    from selfspec.loading import load_model

    lm = load_model("tiny-llama", dtype="float64")  # not the shared one other tests calibrated
    table = verify_costs(lm.engine, 5)
    assert sorted(table.seconds) == [1, 2, 3, 4, 5]
    assert all(s > 0 for s in table.seconds.values())
    assert verify_costs(lm.engine, 5) is table and verify_costs(lm.engine, 3) is table
    assert sorted(verify_costs(lm.engine, 7).seconds) == list(range(1, 8))  # extended


@pytest.mark.parametrize("max_draft", [0, 16])
def test_a_maximum_draft_length_outside_the_cache_headroom_is_refused(max_draft):
    from functools import partial

    from selfspec.decoding import generate, run_to_end
    from selfspec.drafters.lookup import PromptLookupDrafter
    from selfspec.errors import BadInputError
    from selfspec.sampling import SamplingConfig
    from selfspec.speculative import speculative

    method = partial(speculative, drafter=lambda lm: PromptLookupDrafter(), max_draft=max_draft)
    with pytest.raises(BadInputError, match="maximum draft length"):
        run_to_end(generate(tiny("tiny-llama"), "hi", method, SamplingConfig(max_new_tokens=4)))
