"""The draft-model replay (scripts/draft_model_ceiling.py): it counts right, and the
oracle bounds the policy."""

from __future__ import annotations

import pytest

from tests.script_helpers import load_script

ceiling = load_script("draft_model_ceiling")

CURVE = {1: 1.0, 2: 1.2, 3: 1.57, 4: 1.93, 5: 2.58, 6: 3.13, 7: 3.46, 8: 3.78, 9: 4.54}
OUT = list(range(500, 540))
MODES = ("policy", "oracle", "oracle_flat")


def test_a_draft_model_that_is_never_right_costs_the_oracle_nothing():
    wrong = [1] * len(OUT)
    sure = [0.99] * len(OUT)
    for mode in ("oracle", "oracle_flat"):
        assert ceiling.replay(wrong, sure, OUT, CURVE, 0.4, mode) == pytest.approx(len(OUT) - 1)
    # The policy pays for the drafts it tries before it learns they fail.
    assert ceiling.replay(wrong, sure, OUT, CURVE, 0.4, "policy") > len(OUT) - 1


def test_a_draft_model_that_is_always_right_drafts_long_only_where_verification_is_free():
    right = OUT[1:] + [0]  # at t it proposes out[t + 1]
    sure = [0.99] * len(OUT)
    # Flat verification, free drafts: each step drafts the cap (8) and gains 9 tokens.
    assert ceiling.replay(right, sure, OUT, CURVE, 0.0, "oracle_flat") == 5  # ceil(39 / 9)
    oracle = ceiling.replay(right, sure, OUT, CURVE, 0.4, "oracle")
    policy = ceiling.replay(right, sure, OUT, CURVE, 0.4, "policy")
    assert oracle <= policy < len(OUT) - 1


def schedule_cost(ks: list[int], choices, out, curve, d) -> float | None:
    """A schedule's cost by the replay's rules, written out step by step (None: a schedule
    that drafts a token the draft model gets wrong, or runs past the reply)."""
    t, cost, behind = 0, 0.0, 0
    for k in ks:
        if k == 0:
            cost, t, behind = cost + 1, t + 1, behind + 1
            continue
        if t + k > len(out) - 1 or k > ceiling.MAX_DRAFT:
            return None
        if any(choices[t + i] != out[t + i + 1] for i in range(k)):
            return None
        if behind == 1:  # the last draft token, fed with the first of this draft
            cost += d * (curve[2] - 1)
        elif behind > 1:  # plain steps the draft model missed, read in one pass
            cost += d * curve[min(behind, 9)]
        cost += k * d + curve[k + 1]
        t, behind = t + k + 1, 1
    return cost if t >= len(out) - 1 else None


def test_the_oracle_is_the_cheapest_of_all_schedules():
    import itertools

    out = list(range(600, 609))  # 8 tokens after the first
    choices = [601, 602, 603, 0, 605, 606, 607, 608, 0]  # right except at position 3
    costs = [
        schedule_cost(list(ks), choices, out, CURVE, 0.3)
        for n in range(1, 9)
        for ks in itertools.product(range(4), repeat=n)
    ]
    best = min(c for c in costs if c is not None)
    oracle = ceiling.replay(choices, [0.9] * 9, out, CURVE, 0.3, "oracle")
    assert oracle == pytest.approx(best)


def test_the_policy_replay_prices_each_draft_and_catch_up(monkeypatch):
    """Drafts of two forced on the policy (its choice is the loop's; the pricing is the
    replay's): a draft rejected at its second token, the rest accepted in full."""
    monkeypatch.setattr(ceiling.DraftLengthPolicy, "choose", lambda self, budget: min(2, budget))
    out = list(range(600, 611))  # 10 tokens after the first
    choices = out[1:] + [0]
    choices[4] = 0  # wrong at position 4: the second draft is rejected at its second token
    d = 0.3
    # Four drafts of two (t = 0, 3, 5, 8), each 2d + v(3); after the two accepted in full
    # (t = 0 and 5) the next draft feeds the unfed last draft token along: d (v(2) - 1).
    expected = 4 * (2 * d + CURVE[3]) + 2 * d * (CURVE[2] - 1)
    assert ceiling.replay(choices, [0.99] * 11, out, CURVE, d, "policy") == pytest.approx(expected)
