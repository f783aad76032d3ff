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
from study.evaluate import auc, evaluate, load_review_log, log_loss, rmse_bins, time_split

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
    zeros = np.zeros(10)
    assert rmse_bins(p, y, interval, zeros, zeros) == pytest.approx(0.0)
    off = np.array([0.9, 0.9, 1, 1, 1, 1, 1, 1, 1, 1])
    assert rmse_bins(off, y, interval, zeros, zeros) == pytest.approx(math.sqrt(2 * 0.16 / 10))


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


def _synthetic_csv(tmp_path: Path) -> Path:
    """Forty cards over three months, reviewed every few days, some forgotten."""
    rng = np.random.default_rng(0)
    start = datetime(2024, 1, 1, tzinfo=UTC)
    lines = [HEADER.strip()]
    for card in range(40):
        at = start + timedelta(days=float(rng.uniform(0, 10)))
        for _ in range(8):
            rating = 1 if rng.random() < 0.2 else 3
            lines.append(f"{1000 + card},{rating},{at.isoformat()},5000")
            at += timedelta(days=float(rng.uniform(1.0, 8.0)))
    return _write(tmp_path, "\n".join(lines) + "\n")


def test_time_split_puts_earlier_reviews_in_training(tmp_path):
    histories = load_review_log(_synthetic_csv(tmp_path))
    split = time_split(histories, 0.7)
    assert split.train_reviews + split.test_reviews == 320
    assert split.train_reviews == pytest.approx(224, abs=2)
    with pytest.raises(ValueError):
        time_split(histories, 1.0)


def test_cli_writes_the_json_report(tmp_path, capsys):
    out = tmp_path / "report.json"
    code = main(
        [
            "evaluate",
            "--reviews",
            str(_synthetic_csv(tmp_path)),
            "--out",
            str(out),
            "--models",
            "sm2,hlr,fsrs6-default",
        ]
    )
    assert code == 0
    report = json.loads(out.read_text())
    assert report["reviews"] == 320 and report["split"]["method"] == "time-ordered"
    assert set(report["models"]) == {"sm2", "hlr", "fsrs6-default"}
    for metrics in report["models"].values():
        assert {"log_loss", "rmse_bins", "auc"} <= set(metrics)
        assert metrics["log_loss"] > 0
    assert "fsrs6-default" in capsys.readouterr().out


def test_cli_reports_a_corrupt_file_without_a_traceback(tmp_path, capsys):
    code = main(["evaluate", "--reviews", str(_write(tmp_path, HEADER + "1,9,bad,1\n"))])
    assert code == 2
    assert "review_rating" in capsys.readouterr().err


@pytest.mark.skipif(not REAL_CSV.exists(), reason=f"real review log not found at {REAL_CSV}")
def test_fitted_ebbinghaus_beats_the_classic_baselines_on_real_reviews():
    histories = load_review_log(REAL_CSV)
    report = evaluate(histories, models=["ebbinghaus", "sm2", "hlr", "fsrs6-default"])
    assert report.reviews == 12_580
    scores = report.models
    assert scores["ebbinghaus"].log_loss < scores["hlr"].log_loss < scores["sm2"].log_loss
    assert scores["ebbinghaus"].auc > 0.55
    assert scores["ebbinghaus"].rmse_bins < scores["sm2"].rmse_bins
