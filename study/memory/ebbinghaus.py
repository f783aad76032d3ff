"""Ebbinghaus: exponential forgetting with a stability that learns from each review.

Curve, in the scaled form: R(t) = 0.9 ** (t / S), t days since the last review, so that
S is the time at which recall has fallen to 90 % (the default desired retention). This
is the exponential curve of Ebbinghaus; only the unit of S differs from exp(-t/S).

State update, fitted per user by maximum likelihood:

* first review: S = S0[rating], the initial stability of that first answer;
* a review within the same day: S is scaled by exp(w_short * (rating - 3) + w_short0),
  since the curve hardly moves in minutes but the answer still says something;
* success after at least a day: S *= 1 + exp(a) * S**-b * (exp(c * (1 - R)) - 1)
  * hard/easy factor * exp(-k * D): the spacing effect (more growth when recall was
  harder, i.e. R lower), saturation for strong memories (b), and a per-card difficulty D;
* lapse: S = min(S, exp(l0) * S**l1 * exp(l2 * (1 - R))), a fraction of the old memory;
* difficulty D (>= 0) rises by 1 on a lapse and relaxes by the factor (1 - d) otherwise.

The law is written once over numpy arrays, so the same code scores one card in the
scheduler and all cards at once in the fitter.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime
from typing import Self

import numpy as np
from scipy.optimize import minimize

from study.memory.base import (
    CardHistory,
    MemoryModel,
    MemoryState,
    Rating,
    elapsed_days,
)

__all__ = ["EbbinghausModel", "PARAM_NAMES", "recall_probability"]

PARAM_NAMES = (
    "log_s0_again",
    "log_s0_hard",
    "log_s0_good",
    "log_s0_easy",
    "log_gain",
    "saturation",
    "spacing",
    "log_hard_factor",
    "log_easy_factor",
    "log_lapse_scale",
    "lapse_exponent",
    "lapse_spacing",
    "difficulty_weight",
    "difficulty_decay",
    "short_term_slope",
    "short_term_offset",
)

# Defaults: the maximum-likelihood fit to the earlier 70 % of the shared Anki log
# (12,580 real reviews, see study.evaluate), rounded; a user's own fit replaces them.
_DEFAULTS = (
    -2.478,
    0.182,
    0.684,
    2.079,
    1.812,
    0.061,
    1.323,
    -0.574,
    0.405,
    -1.352,
    0.471,
    0.843,
    0.040,
    0.0,
    0.742,
    1.0,
)

_BOUNDS = (
    (math.log(0.01), math.log(100.0)),
    (math.log(0.01), math.log(100.0)),
    (math.log(0.01), math.log(100.0)),
    (math.log(0.01), math.log(100.0)),
    (-3.0, 4.0),
    (0.0, 1.0),
    (0.01, 6.0),
    (-3.0, 0.0),
    (0.0, 3.0),
    (-5.0, 1.0),
    (0.0, 1.0),
    (0.0, 4.0),
    (0.0, 2.0),
    (0.0, 1.0),
    (0.0, 2.0),
    (-1.0, 2.5),
)

_LN_09 = math.log(0.9)
_S_MIN, _S_MAX = 0.01, 36_500.0
_SAME_DAY = 1.0
_EPS = 1e-6


def recall_probability(elapsed: np.ndarray | float, stability: np.ndarray | float) -> np.ndarray:
    """R = 0.9 ** (t / S): 0.9 at t = S, 1 at t = 0, decaying exponentially."""
    return np.exp(_LN_09 * np.asarray(elapsed) / np.asarray(stability))


def _initial(p: np.ndarray, rating: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    log_s0 = np.asarray(p[0:4])[np.asarray(rating) - 1]
    difficulty = np.where(np.asarray(rating) == Rating.AGAIN, 1.0, 0.0)
    return np.clip(np.exp(log_s0), _S_MIN, _S_MAX), difficulty


def _update(
    p: np.ndarray,
    stability: np.ndarray,
    difficulty: np.ndarray,
    elapsed: np.ndarray,
    rating: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """The state after a review following an earlier one (vectorised over cards)."""
    r = recall_probability(elapsed, stability)
    lapse = rating == Rating.AGAIN
    grade_factor = np.where(rating == Rating.HARD, p[7], np.where(rating == Rating.EASY, p[8], 0.0))
    growth = (
        np.exp(p[4] + grade_factor - p[12] * difficulty)
        * stability ** (-p[5])
        * np.expm1(p[6] * (1.0 - r))
    )
    success_s = stability * (1.0 + growth)
    lapse_s = np.minimum(stability, np.exp(p[9]) * stability ** p[10] * np.exp(p[11] * (1.0 - r)))
    long_term = np.where(lapse, lapse_s, success_s)
    short_term = stability * np.exp(p[14] * (rating - 3) + p[15])
    new_s = np.where(elapsed < _SAME_DAY, short_term, long_term)
    new_d = np.where(lapse, difficulty + 1.0, difficulty * (1.0 - p[13]))
    return np.clip(new_s, _S_MIN, _S_MAX), new_d


class EbbinghausModel(MemoryModel):
    """Exponential forgetting curve with a fitted stability-growth law (the default model)."""

    name = "ebbinghaus"

    @classmethod
    def default_params(cls) -> tuple[float, ...]:
        return _DEFAULTS

    def review(self, state: MemoryState | None, rating: Rating, at: datetime) -> MemoryState:
        rating = Rating(rating)
        p = np.asarray(self.params)
        if state is None:
            s, d = _initial(p, np.asarray(int(rating)))
        else:
            s, d = _update(
                p,
                np.asarray(state.stability),
                np.asarray(state.difficulty or 0.0),
                np.asarray(elapsed_days(state.last_review, at)),
                np.asarray(int(rating)),
            )
        return MemoryState(stability=float(s), difficulty=float(d), last_review=at)

    def recall(self, state: MemoryState, at: datetime) -> float:
        return float(recall_probability(elapsed_days(state.last_review, at), state.stability))

    def interval_days(self, state: MemoryState, retention: float) -> float:
        return state.stability * math.log(retention) / _LN_09

    def fit(self, histories: Sequence[CardHistory]) -> Self:
        """Maximum-likelihood parameters (L-BFGS-B within bounds) for these card histories.

        Only reviews at least a day after the previous one are scored, as in evaluation;
        the others still move the state. With fewer than 20 scored reviews the current
        parameters are kept: too little data would only overfit.
        """
        batch = _Batch.from_histories(histories)
        if batch.scored < 20:
            return self
        start = np.clip(np.asarray(self.params), [b[0] for b in _BOUNDS], [b[1] for b in _BOUNDS])
        result = minimize(
            batch.log_loss,
            start,
            method="L-BFGS-B",
            bounds=_BOUNDS,
            options={"maxiter": 300},
        )
        best = result.x if result.fun <= batch.log_loss(start) else start
        return type(self)(tuple(float(v) for v in best))


class _Batch:
    """Card histories padded into arrays (cards x reviews) for a vectorised likelihood."""

    def __init__(self, elapsed: np.ndarray, rating: np.ndarray, present: np.ndarray) -> None:
        self.elapsed = elapsed
        self.rating = rating
        self.present = present
        self.score = present & (elapsed >= _SAME_DAY)
        self.score[:, 0] = False
        self.recalled = rating > Rating.AGAIN
        self.scored = int(self.score.sum())

    @classmethod
    def from_histories(cls, histories: Sequence[CardHistory]) -> _Batch:
        rows = [h for h in histories if len(h) > 0]
        width = max((len(h) for h in rows), default=1)
        elapsed = np.zeros((len(rows), width))
        rating = np.full((len(rows), width), int(Rating.GOOD))
        present = np.zeros((len(rows), width), dtype=bool)
        for i, history in enumerate(rows):
            for j, event in enumerate(history):
                rating[i, j] = int(event.rating)
                present[i, j] = True
                if j:
                    elapsed[i, j] = elapsed_days(history[j - 1].at, event.at)
        return cls(elapsed, rating, present)

    def log_loss(self, params: np.ndarray) -> float:
        if self.rating.shape[0] == 0:
            return 0.0
        stability, difficulty = _initial(params, self.rating[:, 0])
        total = 0.0
        for j in range(1, self.rating.shape[1]):
            scored = self.score[:, j]
            if scored.any():
                r = np.clip(
                    recall_probability(self.elapsed[scored, j], stability[scored]), _EPS, 1 - _EPS
                )
                y = self.recalled[scored, j]
                total -= float(np.sum(np.where(y, np.log(r), np.log1p(-r))))
            present = self.present[:, j]
            new_s, new_d = _update(
                params, stability, difficulty, self.elapsed[:, j], self.rating[:, j]
            )
            stability = np.where(present, new_s, stability)
            difficulty = np.where(present, new_d, difficulty)
        return total / max(self.scored, 1)
