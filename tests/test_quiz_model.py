"""The quiz writer: the best installed instruction model by default, the operator's model
where they named one, a user's pick when installed, and the fastest exact method that
applies; ``quiz-eval --model`` uses it and reports the writer's speed.

Installed packages are faked with a finder (as in tests/test_model_packages.py), so the
choice is tested with and without `make models` on any machine; no test loads a real
model package (quiz-eval runs on a tiny random model).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from db import get_or_create_user
from selfspec.loading import BUNDLED
from selfspec.model_packages import MODEL_PACKAGES, installed_models
from study.__main__ import main
from study.errors import InvalidSettingError
from study.quiz_model import (
    AUTO,
    QuizWriter,
    best_quiz_model,
    fastest_exact_method,
    quiz_model_choices,
    writer_for,
    writer_for_setting,
)
from study.settings import read_settings, update_settings
from tests.study_helpers import file_db

QWEN15, QWEN05, GEMMA = "qwen2.5-coder-1.5b", "qwen2.5-coder-0.5b", "gemma3-270m"


def finder(*models: str):  # noqa: ANN201 - a PackageFinder
    """A finder that sees every package of ``models`` and nothing else."""
    packages = {p.package for name in models for p in MODEL_PACKAGES[name].parts}
    return lambda package: Path("/site") / package if package in packages else None


@pytest.mark.parametrize(
    ("installed", "best"),
    [
        ((), BUNDLED),  # nothing of `make models`: the bundled model
        ((QWEN05, QWEN15, GEMMA), QWEN15),  # `make models`: the largest instruction model
        ((QWEN05, GEMMA), QWEN05),
        ((GEMMA,), BUNDLED),  # a base model only continues text: never the default
    ],
)
def test_the_default_writer_is_the_largest_installed_instruction_model(installed, best):
    find = finder(*installed)
    assert installed_models(find) == [m for m in MODEL_PACKAGES if m in installed]
    assert best_quiz_model(BUNDLED, find) == best
    assert writer_for_setting(None, BUNDLED, find).model == best
    assert writer_for_setting(AUTO, BUNDLED, find).model == best


def test_a_model_the_operator_named_is_the_default_writer():
    assert best_quiz_model("tiny-llama", finder(QWEN15, QWEN05)) == "tiny-llama"


def test_a_user_picks_an_installed_model_and_falls_back_when_it_is_gone():
    everything = finder(QWEN15, QWEN05, GEMMA)
    assert quiz_model_choices(everything) == [BUNDLED, QWEN05, QWEN15, GEMMA]
    assert writer_for_setting(BUNDLED, BUNDLED, everything) == QuizWriter(BUNDLED, "pld")
    assert writer_for_setting(QWEN05, BUNDLED, everything).model == QWEN05
    gone = writer_for_setting(QWEN05, BUNDLED, finder(QWEN15))
    assert gone.model == QWEN15 and "'qwen2.5-coder-0.5b' is not installed" in gone.notice


def test_the_method_is_the_first_of_the_ranking_that_applies():
    # tiny-llama has no draft model, no skip profile: pld is the first that applies
    assert fastest_exact_method("tiny-llama", ("draft-model", "pld")) == "pld"
    assert fastest_exact_method("tiny-llama", ("draft-model", "skip")) == "vanilla"
    assert writer_for("tiny-llama") == QuizWriter("tiny-llama", "pld")
    if QWEN05 in installed_models():  # the 0.5B drafts for the 1.5B only where installed
        assert fastest_exact_method(QWEN15, ("draft-model", "pld")) == "draft-model"
    assert fastest_exact_method(QWEN15) == "pld"  # measured fastest on quiz prompts


def test_the_setting_is_stored_validated_and_auto_by_default(tmp_path):
    db = file_db(tmp_path)
    user = db.write(lambda s: get_or_create_user(s, "ann").id)
    assert read_settings(db, user).quiz_model == AUTO
    assert update_settings(db, user, quiz_model=BUNDLED).quiz_model == BUNDLED
    assert read_settings(db, user).quiz_model == BUNDLED
    with pytest.raises(InvalidSettingError, match="quiz_model"):
        update_settings(db, user, quiz_model="gpt-9")
    assert read_settings(db, user).quiz_model == BUNDLED  # nothing saved
    assert update_settings(db, user, quiz_model=AUTO).quiz_model == AUTO
    db.dispose()


def test_quiz_eval_model_option_names_the_writer_and_records_its_speed(tmp_path, capsys):
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "a.md").write_text(
        "# Tides\n\nThe Moon's gravity pulls the oceans into two bulges, so most coasts "
        "see two high tides a day.\n",
        encoding="utf-8",
    )
    out = tmp_path / "report.json"
    args = ["quiz-eval", "--notes", str(notes), "--out", str(out), "--max-attempts", "1"]
    threads = torch.get_num_threads()
    try:
        assert main([*args, "--model", "tiny-llama", "--threads", "1"]) == 0
    finally:
        torch.set_num_threads(threads)  # the option sets the process's threads
    report = json.loads(out.read_text(encoding="utf-8"))
    assert (report["model"], report["method"]) == ("tiny-llama", "pld")
    assert report["tokens_per_s"] > 0 and report["model_calls"] == 3
    assert report["settings"]["model_option"] == "tiny-llama"
    assert report["settings"]["threads"] == 1
    assert "quiz writer: tiny-llama with `pld`" in capsys.readouterr().err
