"""The prompt-lookup replay (scripts/pld_ceiling.py): oracle <= policy, and it counts right."""

from __future__ import annotations

import pytest

from tests.script_helpers import load_script

pld_ceiling = load_script("pld_ceiling")

CURVE = {1: 1.0, 2: 1.16, 3: 1.12, 4: 1.30, 5: 1.33, 6: 1.53, 7: 1.72, 8: 1.71, 9: 1.81}
PROMPT = list(range(100, 140))


def test_text_with_nothing_to_look_up_costs_one_plain_step_per_token():
    out = list(range(500, 530))  # no token ever repeats
    for mode in ("policy", "oracle", "oracle_flat"):
        assert pld_ceiling.replay(PROMPT, out, CURVE, mode) == pytest.approx(len(out) - 1)


def test_copying_the_prompt_is_cheap_and_the_oracle_bounds_the_policy():
    out = [7, *PROMPT[:30], 8, 9, *PROMPT[5:25]]  # long copies, a break, another copy
    policy = pld_ceiling.replay(PROMPT, out, CURVE, "policy")
    oracle = pld_ceiling.replay(PROMPT, out, CURVE, "oracle")
    flat = pld_ceiling.replay(PROMPT, out, CURVE, "oracle_flat")
    assert flat <= oracle <= policy < (len(out) - 1) / 2
    # The oracle never drafts a rejected token, so with free verification every step
    # emits its accepted run plus the bonus: the step count is the replay's cost.
    assert flat == int(flat)
