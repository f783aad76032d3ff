"""Replay real review logs through each memory model and score them as srs-benchmark does.

Protocol (the open-spaced-repetition srs-benchmark's, so that anyone can rerun it on
their own log and compare): per learner, all reviews are ordered by time and cut into
``folds + 1`` equal chunks; fold k fits every model on the reviews before chunk k and
scores its predictions for the reviews in chunk k (scikit-learn's ``TimeSeriesSplit``).
Each card is replayed in time order, so a prediction uses the card's earlier reviews
but never an outcome at or after the fold's cutoff for fitting. A review is scored when
it comes a day or more after the previous review of its card (same-day reviews move
the state but are not predicted). The predictions of all folds are pooled per learner.

Metrics (``study.metrics``), on the pooled predictions: log loss; srs-benchmark's RMSE(bins), where each
review is binned by elapsed days (2.48 * 3.62**k), review number (1.99 * 1.89**k) and
lapse count (1.65 * 1.73**k, same-day lapses not counted) and the gap between mean
prediction and mean outcome is weighted by bin size; and AUC. Each comes with a 95 %
bootstrap interval over cards (a card's reviews are resampled together, because they
are not independent), and each model's log loss is compared with ``fsrs6-default`` on
the same resamples. Several logs give one row per learner and the mean across learners.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np

from study.errors import InvalidReviewLogError
from study.memory import (
    EbbinghausModel,
    FSRS6Model,
    HLRModel,
    MemoryModel,
    ReviewEvent,
    SM2Model,
)
from study.memory.base import CardHistory
from study.memory.validation import fit_validated, scored_reviews, truncate
from study.metrics import METRICS, log_loss
from study.review_log import ReviewLog

__all__ = [
    "BASELINE",
    "EVALUATED_MODELS",
    "Evaluation",
    "Fold",
    "ModelScore",
    "MultiEvaluation",
    "evaluate",
    "evaluate_logs",
    "time_folds",
]

BASELINE = "fsrs6-default"
"""The control every model's log loss is compared with, resample by resample."""


@dataclass(frozen=True)
class Fold:
    """Fold k: fit on reviews before ``start``, score reviews in [start, end)."""

    index: int
    start: datetime
    end: datetime | None
    train_reviews: int
    test_reviews: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "fold": self.index,
            "start": self.start.isoformat(),
            "end": self.end.isoformat() if self.end else None,
            "train_reviews": self.train_reviews,
            "test_reviews": self.test_reviews,
        }


def time_folds(histories: Sequence[CardHistory], folds: int = 5) -> list[Fold]:
    """srs-benchmark's time-series folds: ``folds + 1`` equal chunks, the first only trains."""
    if folds < 1:
        raise ValueError(f"folds must be at least 1, not {folds}")
    times = sorted(event.at for history in histories for event in history)
    if len(times) < 2 * (folds + 1):
        raise InvalidReviewLogError(
            f"{len(times)} reviews are too few for {folds} time-ordered folds"
        )
    chunk = len(times) / (folds + 1)
    starts = [times[int(round(chunk * k))] for k in range(1, folds + 1)]
    result = []
    for k, start in enumerate(starts):
        end = starts[k + 1] if k + 1 < len(starts) else None
        train = sum(t < start for t in times)
        test = sum(t >= start and (end is None or t < end) for t in times)
        result.append(Fold(k, start, end, train, test))
    return result


Interval = tuple[float, float]


@dataclass(frozen=True)
class ModelScore:
    """One model's metrics on one learner's pooled held-out predictions."""

    log_loss: float
    rmse_bins: float
    auc: float
    scored: int
    seconds: float
    intervals: dict[str, Interval] = field(default_factory=dict)
    delta_log_loss: tuple[float, float, float] | None = None
    fold_params: tuple[tuple[float, ...], ...] = ()
    fold_adopted: tuple[bool, ...] = ()

    @property
    def params(self) -> tuple[float, ...]:
        """The parameters of the last fold (fitted on all but the last chunk)."""
        return self.fold_params[-1] if self.fold_params else ()

    def as_dict(self) -> dict[str, Any]:
        return {
            "log_loss": round(self.log_loss, 5),
            "rmse_bins": round(self.rmse_bins, 5),
            "auc": round(self.auc, 5),
            "ci95": {k: [round(lo, 5), round(hi, 5)] for k, (lo, hi) in self.intervals.items()},
            f"log_loss_minus_{BASELINE}": (
                [round(v, 5) for v in self.delta_log_loss] if self.delta_log_loss else None
            ),
            "scored_reviews": self.scored,
            "seconds": round(self.seconds, 2),
            "fit_adopted_per_fold": list(self.fold_adopted),
            "params_per_fold": [[round(v, 5) for v in p] for p in self.fold_params],
        }


def _ci(text: str, interval: Interval | None) -> str:
    return text if interval is None else f"{text} [{interval[0]:.4f}, {interval[1]:.4f}]"


@dataclass(frozen=True)
class Evaluation:
    """One learner's report: folds, and every model's score."""

    name: str
    reviews: int
    cards: int
    folds: list[Fold]
    models: dict[str, ModelScore]
    log_summary: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "learner": self.name,
            "reviews": self.reviews,
            "cards": self.cards,
            "log": self.log_summary,
            "protocol": "time-ordered folds (srs-benchmark); bootstrap over cards",
            "folds": [fold.as_dict() for fold in self.folds],
            "models": {name: score.as_dict() for name, score in self.models.items()},
        }

    def table(self) -> str:
        scored = max((s.scored for s in self.models.values()), default=0)
        lines = [
            f"{self.log_summary or self.name}; scored {scored} reviews over "
            f"{len(self.folds)} time-ordered folds (95 % bootstrap intervals over cards)",
            f"{'model':<19}{'log loss':<27}{'RMSE(bins)':<27}{'AUC':<27}{'vs ' + BASELINE:<28}",
        ]
        for name, s in sorted(self.models.items(), key=lambda item: item[1].log_loss):
            delta = (
                f"{s.delta_log_loss[0]:+.4f} [{s.delta_log_loss[1]:+.4f}, {s.delta_log_loss[2]:+.4f}]"
                if s.delta_log_loss and name != BASELINE
                else ""
            )
            lines.append(
                f"{name:<19}"
                + "".join(f"{_ci(f'{getattr(s, m):.4f}', s.intervals.get(m)):<27}" for m in METRICS)
                + delta
            )
        return "\n".join(lines)


@dataclass(frozen=True)
class MultiEvaluation:
    """Several learners: one ``Evaluation`` each, and each metric's mean across them."""

    learners: list[Evaluation]

    def means(self) -> dict[str, dict[str, float]]:
        names = [n for n in self.learners[0].models if all(n in e.models for e in self.learners)]
        return {
            name: {
                metric: float(np.mean([getattr(e.models[name], metric) for e in self.learners]))
                for metric in METRICS
            }
            for name in names
        }

    def as_dict(self) -> dict[str, Any]:
        return {
            "learners": [e.as_dict() for e in self.learners],
            "mean_across_learners": {
                name: {k: round(v, 5) for k, v in metrics.items()}
                for name, metrics in self.means().items()
            },
        }

    def table(self) -> str:
        blocks = [e.table() for e in self.learners]
        if len(self.learners) > 1:
            lines = [
                f"mean across {len(self.learners)} learners (unweighted)",
                f"{'model':<19}{'log loss':>10}{'RMSE(bins)':>12}{'AUC':>8}",
            ]
            for name, m in sorted(self.means().items(), key=lambda item: item[1]["log_loss"]):
                lines.append(
                    f"{name:<19}{m['log_loss']:>10.4f}{m['rmse_bins']:>12.4f}{m['auc']:>8.4f}"
                )
            blocks.append("\n".join(lines))
        return "\n\n".join(blocks)


ModelFactory = Callable[[Sequence[CardHistory]], tuple[MemoryModel, bool | None]]


def _validated(model: MemoryModel) -> ModelFactory:
    """The scheduler's own rule: a fit is used only if the learner's later reviews agree."""

    def factory(train: Sequence[CardHistory]) -> tuple[MemoryModel, bool | None]:
        decision = fit_validated(model, train)
        return decision.model, decision.adopted

    return factory


EVALUATED_MODELS: dict[str, ModelFactory] = {
    "ebbinghaus": _validated(EbbinghausModel()),
    "ebbinghaus-default": lambda train: (EbbinghausModel(), None),
    "fsrs6": _validated(FSRS6Model()),
    BASELINE: lambda train: (FSRS6Model(), None),
    "hlr": lambda train: (HLRModel().fit(train), None),
    "sm2": lambda train: (SM2Model(), None),
}
"""``ebbinghaus`` and ``fsrs6`` are fitted as the scheduler fits them (``fit_validated``);
the ``-default`` entries are the untouched population defaults, the controls."""


def _bootstrap(
    rows: dict[str, np.ndarray], samples: int, seed: int
) -> tuple[dict[str, dict[str, Interval]], dict[str, tuple[float, float, float]]]:
    """95 % intervals per model and metric, and each log loss minus the baseline's.

    Cards are resampled with replacement and all their scored reviews come along; every
    model sees the same resamples, so the differences are paired.
    """
    first = next(iter(rows.values()))
    card = first[:, 5].astype(int)
    cards = np.unique(card)
    position = np.searchsorted(cards, card)
    rng = np.random.default_rng(seed)
    draws: dict[str, dict[str, list[float]]] = {n: {m: [] for m in METRICS} for n in rows}
    deltas: dict[str, list[float]] = {n: [] for n in rows}
    for _ in range(samples):
        counts = np.bincount(rng.integers(0, len(cards), len(cards)), minlength=len(cards))
        index = np.repeat(np.arange(len(card)), counts[position])
        baseline = log_loss(rows[BASELINE][index, 0], first[index, 1]) if BASELINE in rows else 0
        for name, data in rows.items():
            sample = data[index]
            for metric, compute in METRICS.items():
                draws[name][metric].append(compute(sample))
            deltas[name].append(draws[name]["log_loss"][-1] - baseline)
    intervals = {
        name: {m: _percentiles(values) for m, values in per_metric.items()}
        for name, per_metric in draws.items()
    }
    paired = {}
    if BASELINE in rows:
        for name, values in deltas.items():
            point = log_loss(rows[name][:, 0], first[:, 1]) - log_loss(
                rows[BASELINE][:, 0], first[:, 1]
            )
            paired[name] = (point, *_percentiles(values))
    return intervals, paired


def _percentiles(values: list[float]) -> Interval:
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return (float("nan"), float("nan"))
    low, high = np.percentile(finite, [2.5, 97.5])
    return float(low), float(high)


def evaluate(
    log: ReviewLog | dict[str, list[ReviewEvent]],
    models: Sequence[str] | None = None,
    folds: int = 5,
    bootstrap: int = 200,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
) -> Evaluation:
    """Fit and score every model on one learner's log over time-ordered folds."""
    if not isinstance(log, ReviewLog):
        log = ReviewLog(name="reviews", histories=dict(log))
    names = list(models or EVALUATED_MODELS)
    unknown = [n for n in names if n not in EVALUATED_MODELS]
    if unknown:
        raise ValueError(f"unknown model(s) {unknown}: choose from {sorted(EVALUATED_MODELS)}")
    ordered = [log.histories[card] for card in sorted(log.histories)]
    fold_list = time_folds(ordered, folds)
    rows: dict[str, np.ndarray] = {}
    timing: dict[str, float] = {}
    fitted: dict[str, list[tuple[MemoryModel, bool | None]]] = {}
    for name in names:
        started = time.perf_counter()
        parts = []
        fitted[name] = []
        for fold in fold_list:
            model, adopted = EVALUATED_MODELS[name](truncate(ordered, fold.start))
            fitted[name].append((model, adopted))
            parts.append(scored_reviews(model, ordered, fold.start, fold.end))
        rows[name] = np.concatenate(parts)
        timing[name] = time.perf_counter() - started
        if len(rows[name]) == 0:
            raise InvalidReviewLogError(
                f"{log.name}: no review in any test fold comes a day or more after the "
                "previous review of its card: the log is too short to evaluate"
            )
        if progress:
            progress(
                f"{log.name} {name}: log loss {log_loss(rows[name][:, 0], rows[name][:, 1]):.4f}"
            )
    intervals, deltas = _bootstrap(rows, bootstrap, seed) if bootstrap else ({}, {})
    scores = {
        name: ModelScore(
            log_loss=METRICS["log_loss"](data),
            rmse_bins=METRICS["rmse_bins"](data),
            auc=METRICS["auc"](data),
            scored=len(data),
            seconds=timing[name],
            intervals=intervals.get(name, {}),
            delta_log_loss=deltas.get(name),
            fold_params=tuple(model.params for model, _ in fitted[name]),
            fold_adopted=tuple(a for _, a in fitted[name] if a is not None),
        )
        for name, data in rows.items()
    }
    return Evaluation(
        name=log.name,
        reviews=log.reviews,
        cards=len(ordered),
        folds=fold_list,
        models=scores,
        log_summary=log.summary(),
    )


def evaluate_logs(
    logs: Sequence[ReviewLog],
    models: Sequence[str] | None = None,
    folds: int = 5,
    bootstrap: int = 200,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
) -> MultiEvaluation:
    """``evaluate`` on each learner's log, and the mean across learners."""
    if not logs:
        raise ValueError("no review logs to evaluate")
    return MultiEvaluation(
        [evaluate(log, models, folds, bootstrap, seed, progress) for log in logs]
    )
