"""Two classic baselines, for comparison only: SM-2 and half-life regression.

SM-2 (Wozniak 1990) predicts no probability, only the next interval I. As SuperMemo
defines it, a repetition is a review on a later day: the same-day re-drills of items
answered below 4 do not count, so here a review less than a day after the previous one
leaves I, EF and the repetition count unchanged. A lapse (quality below 3) restarts the
repetitions without changing EF. As in the
open-spaced-repetition srs-benchmark, its output is mapped to a recall prediction by
assuming that the interval was chosen for 90 % recall on an exponential curve:
R(t) = 0.9 ** (t / I). Answers map to SM-2 quality 0..5 as Again 0, Hard 3, Good 4,
Easy 5.

Half-life regression (Settles & Meeder 2016, Duolingo): p = 2 ** (-t / h) with
h = 2 ** (w0 * sqrt(1 + successes) + w1 * sqrt(1 + failures) + w2), the square-root
features as in the srs-benchmark; the three weights are fitted by maximum likelihood.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime
from typing import Self

import numpy as np
from scipy.optimize import minimize

from study.memory.base import (
    SECONDS_PER_DAY,
    CardHistory,
    MemoryModel,
    MemoryState,
    Rating,
    elapsed_days,
)

__all__ = ["HLRModel", "SM2Model"]

_LN_09 = math.log(0.9)
_SM2_QUALITY = {Rating.AGAIN: 0, Rating.HARD: 3, Rating.GOOD: 4, Rating.EASY: 5}


class SM2Model(MemoryModel):
    """SM-2 with its interval read as the time to 90 % recall (no fitted parameters).

    State: ``stability`` = current interval I in days, ``difficulty`` = easiness factor EF,
    ``extra`` = (repetition count n,).
    """

    name = "sm2"

    @classmethod
    def default_params(cls) -> tuple[float, ...]:
        return (2.5, 1.3)

    def review(self, state: MemoryState | None, rating: Rating, at: datetime) -> MemoryState:
        start_ef, min_ef = self.params
        interval, ef, n = (
            (0.0, start_ef, 0)
            if state is None
            else (
                state.stability,
                state.difficulty or start_ef,
                int(state.extra[0]),
            )
        )
        quality = _SM2_QUALITY[Rating(rating)]
        if state is not None and elapsed_days(state.last_review, at) < 1.0:
            return MemoryState(stability=interval, difficulty=ef, last_review=at, extra=(n,))
        if quality < 3:
            n, interval = 0, 1.0
        else:
            interval = 1.0 if n == 0 else 6.0 if n == 1 else round(interval * ef)
            n += 1
            ef = max(min_ef, ef + 0.1 - (5 - quality) * (0.08 + (5 - quality) * 0.02))
        return MemoryState(stability=interval, difficulty=ef, last_review=at, extra=(n,))

    def recall(self, state: MemoryState, at: datetime) -> float:
        return math.exp(_LN_09 * elapsed_days(state.last_review, at) / state.stability)

    def interval_days(self, state: MemoryState, retention: float) -> float:
        return state.stability * math.log(retention) / _LN_09


def _half_life(weights: np.ndarray, successes: np.ndarray, failures: np.ndarray) -> np.ndarray:
    exponent = weights[0] * np.sqrt(1 + successes) + weights[1] * np.sqrt(1 + failures) + weights[2]
    return np.exp2(np.clip(exponent, -10.0, 16.0))


class HLRModel(MemoryModel):
    """Half-life regression; ``extra`` = (successes, failures), ``stability`` = half-life."""

    name = "hlr"

    @classmethod
    def default_params(cls) -> tuple[float, ...]:
        return (1.0, -0.5, 0.0)

    def review(self, state: MemoryState | None, rating: Rating, at: datetime) -> MemoryState:
        right, wrong = (0.0, 0.0) if state is None else state.extra
        if Rating(rating).recalled:
            right += 1
        else:
            wrong += 1
        h = float(_half_life(np.asarray(self.params), np.asarray(right), np.asarray(wrong)))
        return MemoryState(stability=h, difficulty=None, last_review=at, extra=(right, wrong))

    def recall(self, state: MemoryState, at: datetime) -> float:
        return 2.0 ** (-elapsed_days(state.last_review, at) / state.stability)

    def interval_days(self, state: MemoryState, retention: float) -> float:
        return -state.stability * math.log2(retention)

    def fit(self, histories: Sequence[CardHistory]) -> Self:
        """Maximum likelihood over reviews at least a day after the previous one."""
        rows: list[tuple[float, float, float, bool]] = []
        for history in histories:
            right = wrong = 0
            for previous, event in zip(history, history[1:], strict=False):
                right += previous.rating.recalled
                wrong += not previous.rating.recalled
                seconds = (event.at - previous.at).total_seconds()
                if seconds >= SECONDS_PER_DAY:
                    rows.append((seconds / SECONDS_PER_DAY, right, wrong, event.rating.recalled))
        if len(rows) < 20:
            return self
        data = np.asarray(rows, dtype=float)
        t, right_a, wrong_a, y = data.T

        def loss(weights: np.ndarray) -> float:
            p = np.clip(np.exp2(-t / _half_life(weights, right_a, wrong_a)), 1e-6, 1 - 1e-6)
            return float(-np.mean(y * np.log(p) + (1 - y) * np.log1p(-p)))

        result = minimize(loss, np.asarray(self.params), method="L-BFGS-B")
        return type(self)(tuple(float(v) for v in result.x))
