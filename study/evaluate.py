"""Replay a real review log through each memory model and score its predictions.

Protocol (as DESIGN.md section 4 and the srs-benchmark): each card's reviews are
replayed in time order; a prediction is scored for every review that comes at least a
day after the previous review of that card (same-day reviews move the state but are
not predicted). The split is by time: all reviews before the cutoff (the first
``train_fraction`` of the log) fit the parameters, and only predictions for reviews at
or after the cutoff are scored, so no model sees the future it is judged on.

Metrics: log loss; RMSE over bins, where reviews are grouped by interval, review count
and lapse count (each on a log-2 scale), the squared gap between mean prediction and
mean outcome is weighted by the bin's size; and AUC (how well predictions rank
recalled above forgotten reviews).
"""

from __future__ import annotations

import csv
import math
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import rankdata

from study.errors import InvalidReviewLogError
from study.memory import (
    EbbinghausModel,
    FSRS6Model,
    HLRModel,
    MemoryModel,
    Rating,
    ReviewEvent,
    SM2Model,
)
from study.memory.base import SECONDS_PER_DAY, CardHistory

__all__ = [
    "EVALUATED_MODELS",
    "Evaluation",
    "ModelScore",
    "Split",
    "auc",
    "evaluate",
    "load_review_log",
    "log_loss",
    "rmse_bins",
    "time_split",
]

REQUIRED_COLUMNS = ("card_id", "review_rating", "review_time")
EPS = 1e-6


def load_review_log(path: Path | str) -> dict[str, list[ReviewEvent]]:
    """Card histories (sorted by time) from a CSV in the shared review-log format.

    Every row is checked before anything is returned, so a corrupt file fails whole
    with the line number and the reason, never half-read.
    """
    path = Path(path)
    if not path.is_file():
        raise InvalidReviewLogError(f"review log {path} does not exist or is not a file")
    histories: dict[str, list[ReviewEvent]] = defaultdict(list)
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise InvalidReviewLogError(
                    f"{path}: missing column(s) {', '.join(missing)}; expected a header with "
                    f"{', '.join(REQUIRED_COLUMNS)} (review_duration optional)"
                )
            for line, row in enumerate(reader, start=2):
                card_id, event = _parse_row(row, path, line)
                histories[card_id].append(event)
    except UnicodeDecodeError as error:
        raise InvalidReviewLogError(f"{path}: not UTF-8 text ({error})") from error
    except csv.Error as error:
        raise InvalidReviewLogError(f"{path}: malformed CSV ({error})") from error
    if not histories:
        raise InvalidReviewLogError(f"{path}: no reviews in the file")
    for events in histories.values():
        events.sort(key=lambda e: e.at)
    return dict(histories)


def _parse_row(row: dict[str, Any], path: Path, line: int) -> tuple[str, ReviewEvent]:
    where = f"{path}, line {line}"
    card_id = (row.get("card_id") or "").strip()
    if not card_id:
        raise InvalidReviewLogError(f"{where}: empty card_id")
    try:
        rating = Rating(int(row.get("review_rating") or ""))
    except ValueError:
        raise InvalidReviewLogError(
            f"{where}: review_rating {row.get('review_rating')!r} is not 1, 2, 3 or 4"
        ) from None
    raw_time = (row.get("review_time") or "").strip()
    try:
        at = datetime.fromisoformat(raw_time)
    except ValueError:
        raise InvalidReviewLogError(
            f"{where}: review_time {raw_time!r} is not an ISO 8601 time"
        ) from None
    if at.tzinfo is None:
        raise InvalidReviewLogError(f"{where}: review_time {raw_time!r} has no time zone (use UTC)")
    return card_id, ReviewEvent(at=at, rating=rating)


@dataclass(frozen=True)
class Split:
    """A time-ordered split: reviews before ``cutoff`` train, the rest are scored."""

    cutoff: datetime
    train_fraction: float
    train_reviews: int
    test_reviews: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "method": "time-ordered",
            "train_fraction": self.train_fraction,
            "cutoff": self.cutoff.isoformat(),
            "train_reviews": self.train_reviews,
            "test_reviews": self.test_reviews,
        }


def time_split(histories: dict[str, list[ReviewEvent]], train_fraction: float = 0.7) -> Split:
    """Cut the log at the review time that leaves ``train_fraction`` of reviews before it."""
    if not 0.0 < train_fraction < 1.0:
        raise ValueError(f"train_fraction {train_fraction} must lie strictly between 0 and 1")
    times = sorted(e.at for events in histories.values() for e in events)
    cutoff = times[min(int(len(times) * train_fraction), len(times) - 1)]
    train = sum(t < cutoff for t in times)
    return Split(cutoff, train_fraction, train, len(times) - train)


def log_loss(p: np.ndarray, y: np.ndarray) -> float:
    """Mean binary cross-entropy of predictions ``p`` for outcomes ``y`` (1 = recalled)."""
    p = np.clip(p, EPS, 1 - EPS)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log1p(-p)))


def _log2_bucket(values: np.ndarray) -> np.ndarray:
    return np.floor(np.log2(1.0 + np.maximum(values, 0.0))).astype(int)


def rmse_bins(
    p: np.ndarray, y: np.ndarray, interval: np.ndarray, reps: np.ndarray, lapses: np.ndarray
) -> float:
    """RMSE between mean prediction and mean outcome per bin, weighted by bin size."""
    keys = np.stack([_log2_bucket(interval), _log2_bucket(reps), _log2_bucket(lapses)], axis=1)
    _, bin_index = np.unique(keys, axis=0, return_inverse=True)
    bin_index = bin_index.ravel()
    counts = np.bincount(bin_index)
    mean_p = np.bincount(bin_index, weights=p) / counts
    mean_y = np.bincount(bin_index, weights=y) / counts
    return float(math.sqrt(np.sum(counts * (mean_p - mean_y) ** 2) / np.sum(counts)))


def auc(p: np.ndarray, y: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney form; ties count half); NaN with one class."""
    positives = int(np.sum(y == 1))
    negatives = len(y) - positives
    if positives == 0 or negatives == 0:
        return float("nan")
    ranks = rankdata(p)
    return float(
        (np.sum(ranks[y == 1]) - positives * (positives + 1) / 2) / (positives * negatives)
    )


@dataclass(frozen=True)
class ModelScore:
    """One model's metrics on the scored (held-out) reviews."""

    log_loss: float
    rmse_bins: float
    auc: float
    scored: int
    seconds: float
    params: tuple[float, ...] = field(default=())

    def as_dict(self) -> dict[str, Any]:
        return {
            "log_loss": round(self.log_loss, 5),
            "rmse_bins": round(self.rmse_bins, 5),
            "auc": round(self.auc, 5),
            "scored_reviews": self.scored,
            "seconds": round(self.seconds, 2),
            "params": [round(v, 5) for v in self.params],
        }


@dataclass(frozen=True)
class Evaluation:
    """The report of one evaluation run."""

    reviews: int
    cards: int
    split: Split
    models: dict[str, ModelScore]

    def as_dict(self) -> dict[str, Any]:
        return {
            "reviews": self.reviews,
            "cards": self.cards,
            "split": self.split.as_dict(),
            "models": {name: score.as_dict() for name, score in self.models.items()},
        }

    def table(self) -> str:
        lines = [
            f"{self.reviews} reviews of {self.cards} cards; scored {self._scored()} reviews "
            f"from {self.split.cutoff.isoformat()} on (time-ordered split, "
            f"{self.split.train_fraction:.0%} to fit)",
            f"{'model':<15}{'log loss':>10}{'RMSE(bins)':>12}{'AUC':>8}{'seconds':>9}",
        ]
        for name, s in sorted(self.models.items(), key=lambda item: item[1].log_loss):
            lines.append(
                f"{name:<15}{s.log_loss:>10.4f}{s.rmse_bins:>12.4f}{s.auc:>8.4f}{s.seconds:>9.1f}"
            )
        return "\n".join(lines)

    def _scored(self) -> int:
        return max((s.scored for s in self.models.values()), default=0)


ModelFactory = Callable[[Sequence[CardHistory]], MemoryModel]

EVALUATED_MODELS: dict[str, ModelFactory] = {
    "ebbinghaus": lambda train: EbbinghausModel().fit(train),
    "fsrs6": lambda train: FSRS6Model().fit(train),
    "fsrs6-default": lambda train: FSRS6Model(),
    "sm2": lambda train: SM2Model(),
    "hlr": lambda train: HLRModel().fit(train),
}


def _scored_predictions(
    model: MemoryModel, histories: Iterable[CardHistory], cutoff: datetime
) -> np.ndarray:
    """Rows (prediction, outcome, interval days, review count, lapse count) past the cutoff."""
    rows = []
    for history in histories:
        lapses = 0
        for index, (prediction, event) in enumerate(
            zip(model.replay(history), history, strict=True)
        ):
            if index and prediction is not None and event.at >= cutoff:
                seconds = (event.at - history[index - 1].at).total_seconds()
                if seconds >= SECONDS_PER_DAY:
                    rows.append(
                        (
                            prediction,
                            event.rating.recalled,
                            seconds / SECONDS_PER_DAY,
                            index,
                            lapses,
                        )
                    )
            lapses += not event.rating.recalled
    return np.asarray(rows, dtype=float).reshape(-1, 5)


def evaluate(
    histories: dict[str, list[ReviewEvent]],
    models: Sequence[str] | None = None,
    train_fraction: float = 0.7,
    progress: Callable[[str], None] | None = None,
) -> Evaluation:
    """Fit every model on the early part of the log and score it on the later part."""
    names = list(models or EVALUATED_MODELS)
    unknown = [n for n in names if n not in EVALUATED_MODELS]
    if unknown:
        raise ValueError(f"unknown model(s) {unknown}: choose from {sorted(EVALUATED_MODELS)}")
    split = time_split(histories, train_fraction)
    ordered = [histories[card] for card in sorted(histories)]
    train = [[e for e in h if e.at < split.cutoff] for h in ordered]
    train = [h for h in train if h]
    scores: dict[str, ModelScore] = {}
    for name in names:
        started = time.perf_counter()
        model = EVALUATED_MODELS[name](train)
        data = _scored_predictions(model, ordered, split.cutoff)
        if len(data) == 0:
            raise InvalidReviewLogError(
                "no review after the cutoff comes a day or more after the previous one: "
                "the log is too short to evaluate"
            )
        p, y = data[:, 0], data[:, 1]
        scores[name] = ModelScore(
            log_loss=log_loss(p, y),
            rmse_bins=rmse_bins(p, y, data[:, 2], data[:, 3], data[:, 4]),
            auc=auc(p, y),
            scored=len(data),
            seconds=time.perf_counter() - started,
            params=model.params,
        )
        if progress:
            progress(f"{name}: log loss {scores[name].log_loss:.4f}")
    reviews = sum(len(h) for h in ordered)
    return Evaluation(reviews=reviews, cards=len(ordered), split=split, models=scores)
