"""Scoring a model on later reviews, and adopting a fit only when later reviews agree.

Why this file: a fit that lowers the loss on the reviews it was fitted on proves nothing
(more parameters always do). The one question that matters for scheduling is whether
the fitted parameters predict reviews they have not seen better than the parameters in
use. ``fit_validated`` answers it on the user's own log: fit on the earlier reviews,
compare both on the later ones, and only then refit on everything. The evaluation
(``study.evaluate``) scores with the same ``scored_reviews``, so what the benchmark
measures and what the scheduler decides are one definition.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np

from study.memory.base import SECONDS_PER_DAY, CardHistory, MemoryModel

__all__ = [
    "HOLDOUT_FRACTION",
    "MIN_HELD_OUT",
    "FitDecision",
    "fit_validated",
    "mean_log_loss",
    "scored_reviews",
    "time_cutoff",
    "truncate",
]

HOLDOUT_FRACTION = 0.2
"""Share of the user's latest reviews kept out of the fit to check it."""

MIN_HELD_OUT = 100
"""Scored later reviews needed before a fit is tried at all.

Why 100: one lapse predicted at 0.9 costs about 2.2 nats more than a recall; over 100
reviews that moves the mean log loss by 0.02, the size of the gaps between the models
on real logs. With fewer held-out reviews the comparison is decided by a lapse or two.
"""

_EPS = 1e-6


def scored_reviews(
    model: MemoryModel,
    histories: Sequence[CardHistory],
    start: datetime | None = None,
    end: datetime | None = None,
) -> np.ndarray:
    """Rows (prediction, recalled, elapsed days, review number, lapses, card) to score.

    A review is scored when it comes a day or more after the previous review of its card
    and lies in [start, end); every review before it, scored or not, moves the state.
    ``review number`` is its 1-based position in the card's history; ``lapses`` counts
    earlier Again answers that came a day or more after their previous review (same-day
    lapses are learning steps, as in srs-benchmark).
    """
    rows: list[tuple[float, float, float, float, float, float]] = []
    for card, full in enumerate(histories):
        history = [event for event in full if end is None or event.at < end]
        if not history or (start is not None and history[-1].at < start):
            continue  # nothing of this card to score: skip its replay
        lapses = 0
        for index, (prediction, event) in enumerate(
            zip(model.replay(history), history, strict=True)
        ):
            long_gap = bool(index) and (
                (event.at - history[index - 1].at).total_seconds() >= SECONDS_PER_DAY
            )
            in_window = (start is None or event.at >= start) and (end is None or event.at < end)
            if long_gap and in_window and prediction is not None:
                days = (event.at - history[index - 1].at).total_seconds() / SECONDS_PER_DAY
                rows.append((prediction, event.rating.recalled, days, index + 1, lapses, card))
            lapses += long_gap and not event.rating.recalled
    return np.asarray(rows, dtype=float).reshape(-1, 6)


def mean_log_loss(rows: np.ndarray) -> float:
    """Mean binary cross-entropy of ``scored_reviews`` rows."""
    p = np.clip(rows[:, 0], _EPS, 1 - _EPS)
    y = rows[:, 1]
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log1p(-p)))


def time_cutoff(histories: Sequence[CardHistory], fraction: float) -> datetime:
    """The review time that leaves ``fraction`` of all reviews before it."""
    times = sorted(event.at for history in histories for event in history)
    if not times:
        raise ValueError("no reviews")
    return times[min(int(len(times) * fraction), len(times) - 1)]


def truncate(histories: Sequence[CardHistory], cutoff: datetime) -> list[list]:
    """Each card's reviews strictly before ``cutoff`` (cards with none left out)."""
    kept = [[event for event in history if event.at < cutoff] for history in histories]
    return [history for history in kept if history]


@dataclass(frozen=True)
class FitDecision:
    """The model to schedule with, whether a fit was adopted, and why, in words."""

    model: MemoryModel
    adopted: bool
    reason: str
    held_out: int
    loss_current: float | None = None
    loss_fitted: float | None = None


def fit_validated(
    current: MemoryModel,
    histories: Sequence[CardHistory],
    holdout_fraction: float = HOLDOUT_FRACTION,
    min_held_out: int = MIN_HELD_OUT,
) -> FitDecision:
    """Fit on the earlier reviews; adopt (refit on all) only if the later ones agree.

    ``current`` is what schedules now (the defaults for a new user). The candidate is
    ``current.fit`` on the reviews before the cutoff; both predict the reviews after it.
    Only a strictly lower held-out log loss adopts the fit, and the adopted parameters
    are then refitted on the whole log, so no review is wasted once the procedure has
    earned its place.
    """
    if not any(histories):
        return FitDecision(current, False, "no reviews yet: the defaults schedule", 0)
    cutoff = time_cutoff(histories, 1.0 - holdout_fraction)
    held_current = scored_reviews(current, histories, start=cutoff)
    held_out = len(held_current)
    if held_out < min_held_out:
        return FitDecision(
            current,
            False,
            f"{held_out} of your latest reviews can check a fit; {min_held_out} are needed "
            "before one is tried",
            held_out,
        )
    candidate = current.fit(truncate(histories, cutoff))
    loss_current = mean_log_loss(held_current)
    loss_fitted = mean_log_loss(scored_reviews(candidate, histories, start=cutoff))
    if not math.isfinite(loss_fitted) or loss_fitted >= loss_current:
        return FitDecision(
            current,
            False,
            f"a fit on your earlier reviews predicted your {held_out} latest ones no better "
            f"(log loss {loss_fitted:.4f} against {loss_current:.4f}), so it was not adopted",
            held_out,
            loss_current,
            loss_fitted,
        )
    return FitDecision(
        current.fit(histories),
        True,
        f"a fit on your earlier reviews predicted your {held_out} latest ones better "
        f"(log loss {loss_fitted:.4f} against {loss_current:.4f}); refitted on all reviews",
        held_out,
        loss_current,
        loss_fitted,
    )
