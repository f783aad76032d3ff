"""Evaluation: metrics, review-log parsing, the CLI, and the real Anki log when present."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from study.__main__ import main
from study.errors import InvalidReviewLogError
from study.evaluate import evaluate, time_folds
from study.memory import Rating, ReviewEvent
from study.metrics import auc, log_loss, rmse_bins
from study.review_log import ReviewLog, load_review_log

REAL_LOGS = Path(__file__).resolve().parents[2] / "shared/data/review_logs"
REAL_CSV = REAL_LOGS / "anki_reviews_2024.csv"
HEADER = "card_id,review_rating,review_time,review_duration\n"


def test_log_loss_and_auc_on_known_values():
    y = np.array([1, 0, 1, 0])
    assert log_loss(np.array([0.8, 0.2, 0.8, 0.2]), y) == pytest.approx(-math.log(0.8))
    assert auc(np.array([0.9, 0.1, 0.8, 0.2]), y) == 1.0
    assert auc(np.array([0.1, 0.9, 0.2, 0.8]), y) == 0.0
    assert auc(np.array([0.5, 0.5, 0.5, 0.5]), y) == 0.5
    assert math.isnan(auc(np.array([0.5, 0.6]), np.array([1, 1])))


def test_rmse_bins_is_zero_when_each_bin_is_calibrated_and_weights_by_size():
    y = np.array([1, 0, 1, 1, 1, 1, 1, 1, 1, 1])
    p = np.array([0.5, 0.5, 1, 1, 1, 1, 1, 1, 1, 1])
    interval = np.array([1, 1, 100, 100, 100, 100, 100, 100, 100, 100])
    reps = np.full(10, 2)
    zeros = np.zeros(10)
    assert rmse_bins(p, y, interval, reps, zeros) == pytest.approx(0.0)
    off = np.array([0.9, 0.9, 1, 1, 1, 1, 1, 1, 1, 1])
    assert rmse_bins(off, y, interval, reps, zeros) == pytest.approx(math.sqrt(2 * 0.16 / 10))


def test_rmse_bins_uses_srs_benchmark_bin_edges():
    """Whole days 1-3 share the bin 2.48 * 3.62**0 and day 4 starts the next; review
    numbers 2 and 3 share 1.99 * 1.89**1 and 4 does not; one lapse is a bin apart from 0."""
    y = np.array([1.0, 0.0])
    p = np.array([0.5, 0.5])
    same = rmse_bins(p, y, np.array([1.0, 3.9]), np.array([2.0, 3.0]), np.array([0.0, 0.0]))
    assert same == pytest.approx(0.0)
    for elapsed, reps, lapses in (
        ([3.0, 4.0], [2.0, 2.0], [0.0, 0.0]),
        ([3.0, 3.0], [3.0, 4.0], [0.0, 0.0]),
        ([3.0, 3.0], [2.0, 2.0], [0.0, 1.0]),
    ):
        split = rmse_bins(p, y, np.array(elapsed), np.array(reps), np.array(lapses))
        assert split == pytest.approx(0.5), (elapsed, reps, lapses)


def _write(tmp_path: Path, body: str, name: str = "log.csv") -> Path:
    path = tmp_path / name
    path.write_text(body, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("card_id,review_time\n1,2024-01-01T00:00:00+00:00\n", "missing column"),
        (HEADER + "1,5,2024-01-01T00:00:00+00:00,10\n", "line 2: review_rating"),
        (HEADER + "1,3,2024-01-01T00:00:00+00:00,10\n1,x,2024-01-02T00:00:00+00:00,1\n", "line 3"),
        (HEADER + "1,3,2024-01-01T00:00:00,10\n", "no time zone"),
        (HEADER + "1,3,yesterday,10\n", "ISO 8601"),
        (HEADER + ",3,2024-01-01T00:00:00+00:00,10\n", "empty card_id"),
        (HEADER, "no reviews"),
        (HEADER + "1,0,2024-01-01T00:00:00+00:00,10\n", "line 2: review_rating '0'"),
    ],
)
def test_corrupt_review_logs_fail_with_a_clear_message(tmp_path, body, message):
    with pytest.raises(InvalidReviewLogError, match=message):
        load_review_log(_write(tmp_path, body))


def test_missing_or_binary_file(tmp_path):
    with pytest.raises(InvalidReviewLogError, match="does not exist"):
        load_review_log(tmp_path / "nope.csv")
    path = tmp_path / "bin.csv"
    path.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(InvalidReviewLogError):
        load_review_log(path)


def _synthetic_csv(tmp_path: Path, name: str = "log.csv", seed: int = 0) -> Path:
    """Forty cards over three months, reviewed every few days, some forgotten."""
    rng = np.random.default_rng(seed)
    start = datetime(2024, 1, 1, tzinfo=UTC)
    lines = [HEADER.strip()]
    for card in range(40):
        at = start + timedelta(days=float(rng.uniform(0, 10)))
        for _ in range(8):
            rating = 1 if rng.random() < 0.2 else 3
            lines.append(f"{1000 + card},{rating},{at.isoformat()},5000")
            at += timedelta(days=float(rng.uniform(1.0, 8.0)))
    return _write(tmp_path, "\n".join(lines) + "\n", name)


def test_duplicates_are_skipped_and_disorder_counted_never_silent(tmp_path):
    body = HEADER + (
        "1,3,2024-01-05T00:00:00+00:00,10\n"
        "1,3,2024-01-01T00:00:00+00:00,10\n"
        "1,1,2024-01-01T00:00:00+00:00,10\n"
        "2,3,2024-01-02T00:00:00+00:00,10\n"
    )
    log = load_review_log(_write(tmp_path, body))
    assert [e.at.day for e in log.histories["1"]] == [1, 5]
    assert log.skipped == {"duplicate reviews (same card, same time) skipped": 1}
    assert log.notes["rows out of time order (sorted)"] == 1
    assert log.notes["cards with one review (nothing to predict)"] == 1
    assert "1 duplicate reviews" in log.summary() and "1 rows out of time order" in log.summary()


def test_folds_are_time_ordered_chunks_and_only_the_first_only_trains(tmp_path):
    log = load_review_log(_synthetic_csv(tmp_path))
    folds = time_folds(list(log.histories.values()), 5)
    assert len(folds) == 5
    assert folds[0].train_reviews == pytest.approx(320 / 6, abs=2)
    assert sum(f.test_reviews for f in folds) + folds[0].train_reviews == 320
    for earlier, later in zip(folds, folds[1:], strict=False):
        assert earlier.end == later.start and earlier.start < later.start
        assert later.train_reviews == earlier.train_reviews + earlier.test_reviews
    assert folds[-1].end is None
    with pytest.raises(ValueError):
        time_folds(list(log.histories.values()), 0)


def _changed_after(log: ReviewLog, cutoff: datetime) -> ReviewLog:
    """The log with every answer at or after ``cutoff`` flipped (Again <-> Good)."""
    flip = {Rating.AGAIN: Rating.GOOD, Rating.HARD: Rating.AGAIN, Rating.GOOD: Rating.AGAIN}
    flip[Rating.EASY] = Rating.AGAIN
    return ReviewLog(
        name=log.name,
        histories={
            card: [ReviewEvent(e.at, flip[e.rating]) if e.at >= cutoff else e for e in history]
            for card, history in log.histories.items()
        },
    )


def test_no_leakage_a_fold_fit_ignores_every_review_after_its_cutoff(tmp_path):
    """Changing reviews from fold 2's start on leaves folds 0-2 fitted as before."""
    log = load_review_log(_synthetic_csv(tmp_path))
    before = evaluate(log, models=["hlr"], bootstrap=0)
    cutoff = before.folds[2].start
    after = evaluate(_changed_after(log, cutoff), models=["hlr"], bootstrap=0)
    fitted_before = before.models["hlr"].fold_params
    fitted_after = after.models["hlr"].fold_params
    assert fitted_after[:3] == fitted_before[:3]
    assert fitted_after[3] != fitted_before[3]  # the change is visible to later folds
    assert len(set(fitted_before)) == 5  # each fold fits on its own past


def test_bootstrap_intervals_bracket_the_point_and_pair_with_the_control(tmp_path):
    log = load_review_log(_synthetic_csv(tmp_path))
    report = evaluate(log, models=["sm2", "fsrs6-default"], bootstrap=200)
    for score in report.models.values():
        for metric in ("log_loss", "rmse_bins", "auc"):
            low, high = score.intervals[metric]
            assert low <= getattr(score, metric) <= high, metric
    assert report.models["fsrs6-default"].delta_log_loss == (0.0, 0.0, 0.0)
    point, low, high = report.models["sm2"].delta_log_loss
    assert low <= point <= high
    assert point == pytest.approx(
        report.models["sm2"].log_loss - report.models["fsrs6-default"].log_loss
    )


def test_cli_takes_several_logs_and_reports_each_learner_and_the_mean(tmp_path, capsys):
    out = tmp_path / "report.json"
    first = _synthetic_csv(tmp_path, name="a.csv")
    second = _synthetic_csv(tmp_path, name="b.csv", seed=1)
    code = main(
        ["evaluate", "--reviews", str(first), str(second), "--out", str(out)]
        + ["--models", "sm2,hlr,fsrs6-default", "--bootstrap", "50"]
    )
    assert code == 0
    report = json.loads(out.read_text())
    assert [learner["learner"] for learner in report["learners"]] == ["a", "b"]
    for learner in report["learners"]:
        assert learner["reviews"] == 320 and len(learner["folds"]) == 5
        assert set(learner["models"]) == {"sm2", "hlr", "fsrs6-default"}
        for metrics in learner["models"].values():
            assert {"log_loss", "rmse_bins", "auc", "ci95"} <= set(metrics)
    mean = report["mean_across_learners"]["sm2"]["log_loss"]
    each = [learner["models"]["sm2"]["log_loss"] for learner in report["learners"]]
    assert mean == pytest.approx(sum(each) / 2, abs=1e-4)
    printed = capsys.readouterr().out
    assert "mean across 2 learners" in printed and "fsrs6-default" in printed


def test_cli_reports_a_corrupt_file_without_a_traceback(tmp_path, capsys):
    code = main(["evaluate", "--reviews", str(_write(tmp_path, HEADER + "1,9,bad,1\n"))])
    assert code == 2
    assert "review_rating" in capsys.readouterr().err


@pytest.mark.skipif(not REAL_CSV.exists(), reason=f"real review log not found at {REAL_CSV}")
def test_on_real_reviews_the_defaults_beat_the_classic_baselines():
    log = load_review_log(REAL_CSV)
    report = evaluate(log, models=["ebbinghaus-default", "sm2", "hlr"], bootstrap=0)
    assert report.reviews == 12_580
    scores = report.models
    assert scores["ebbinghaus-default"].log_loss < scores["hlr"].log_loss
    assert scores["ebbinghaus-default"].log_loss < scores["sm2"].log_loss
