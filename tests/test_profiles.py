"""Switching the active skip profile: validated, copied, and never losing the one replaced."""

from __future__ import annotations

from dataclasses import replace

import pytest

from selfspec.errors import BadInputError
from selfspec.profiles import (
    SkipProfile,
    install_if_better,
    load_profile,
    profile_path,
    restore_shipped_profile,
    save_profile,
    use_profile,
    user_profile_dir,
)
from tests.model_helpers import tiny


@pytest.fixture
def lm(tmp_path, monkeypatch):
    monkeypatch.setenv("SELFSPEC_DATA_DIR", str(tmp_path))
    return tiny("tiny-llama")


def profile(score: float, objective: str = "proxy") -> SkipProfile:
    return SkipProfile("tiny-llama", 4, [1], [], objective=objective, score=score)


def test_a_better_score_installs_and_the_replaced_profile_is_kept(lm):
    folder = user_profile_dir()
    first = save_profile(profile(1.1), folder / "a.skip.json")
    assert install_if_better(lm, first).installed  # nothing to beat
    worse = save_profile(profile(1.0), folder / "b.skip.json")
    done = install_if_better(lm, worse)
    assert not done.installed and done.comparable and done.old.score == 1.1
    other = save_profile(profile(2.0, "speed"), folder / "c.skip.json")
    assert not install_if_better(lm, other).comparable  # objectives differ: no comparison
    better = save_profile(replace(profile(1.5), note="best"), folder / "d.skip.json")
    assert install_if_better(lm, better).installed
    assert load_profile(lm).note == "best"
    assert len(list(folder.glob("tiny-llama.*.replaced.skip.json"))) == 1


def test_use_profile_refuses_other_models_and_says_when_nothing_changes(lm):
    folder = user_profile_dir()
    save_profile(replace(profile(1.0), model="other"), folder / "x.skip.json")
    with pytest.raises(BadInputError, match="made for 'other'"):
        use_profile(lm, "x.skip.json")
    save_profile(profile(1.0), folder / "y.skip.json")
    first = use_profile(lm, "y.skip.json")
    assert first.changed and first.kept is None  # there was no active profile to keep
    assert not use_profile(lm, profile_path(lm).name).changed  # already the active file
    again = use_profile(lm, "y.skip.json")
    assert again.changed and again.kept is not None and again.kept.is_file()


def test_restoring_the_shipped_profile_needs_one(lm):
    with pytest.raises(BadInputError, match="No profile ships"):
        restore_shipped_profile(lm)
