"""Ebbinghaus: each card forgets exponentially, at a rate we can only estimate.

For one card whose rate is known, recall decays exponentially (Ebbinghaus):
R = 0.9 ** (u * t / S), t days since the last review, S the days to 90 % recall and u
the card's true rate relative to our estimate. We never know u exactly; taking it
gamma-distributed with mean 1 and shape ``a`` (the spread of cards around S), the
predicted recall is the average of those exponentials, in closed form:

    R(t) = (1 + F t / S) ** -a,   F = 0.9 ** (-1 / a) - 1,   so that R(S) = 0.9.

A large ``a`` (certain rates) gives back the single exponential 0.9 ** (t / S); a small
one is the heavy tail that real logs show, where cards reviewed long after S are still
often recalled. That mixture is why a power curve fits review logs better than one
exponential, and why this model has one (``log_shape`` = log a, fitted like the rest).

State update (the FSRS-6 form of each law), with defaults translated from FSRS-6's
published population parameters (``priors_from_fsrs6``) and per-user parameters fitted
by maximum a posteriori around them:

* first review: S = S0[rating], the initial stability of that first answer;
* a review within the same day: S is scaled by exp(w_short * (rating - 3) + w_short0)
  (at least 1 for a success), since the curve hardly moves in minutes but the answer
  still says something;
* success after at least a day: S *= 1 + exp(a) * S**-b * (exp(c * (1 - R)) - 1)
  * hard/easy factor * exp(-k * D): the spacing effect (more growth when recall was
  harder, i.e. R lower), saturation for strong memories (b), and a per-card difficulty D;
* lapse: S = min(S, exp(l0) * ((S + 1)**l1 - 1) * exp(l2 * (1 - R))), a fraction of the
  old memory;
* difficulty D (>= 0) starts at 1 after a first Again (else 0), rises by 1 on a lapse a
  day or more after the previous review (a same-day Again is a learning step, as in
  srs-benchmark's lapse count) and relaxes by the factor (1 - d) otherwise.

The laws are written once for numpy and torch, so the same code scores one card in the
scheduler and all cards at once in the fitter (with autograd gradients).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Self

import numpy as np
import torch
from fsrs.scheduler import DEFAULT_PARAMETERS as FSRS6_DEFAULTS
from scipy.optimize import minimize

from study.memory.base import (
    CardHistory,
    MemoryModel,
    MemoryState,
    Rating,
    elapsed_days,
)

__all__ = ["EbbinghausModel", "PARAM_NAMES", "fit_map", "priors_from_fsrs6"]

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
    "log_shape",
)


def priors_from_fsrs6(w: Sequence[float]) -> tuple[float, ...]:
    """Ebbinghaus parameters implied by FSRS-6 parameters ``w`` (its published defaults).

    Why this source: FSRS-6's defaults were fitted on about 10,000 learners' logs, none of
    them ours, and its stability means what ours means (days to 90 % recall), so the
    first-answer stabilities carry over unchanged, and its power curve is our mixture
    with shape a = w20. The growth and lapse laws have the FSRS form, so their exponents
    carry over too; FSRS's difficulty D (1..10) enters
    only through the factor (11 - D), which is folded into the gain at the difficulty of
    a first Good and turned into our per-lapse difficulty weight by the rise one lapse
    causes. No review log of ours is involved.
    """
    d_good = w[4] - math.exp(w[5] * (Rating.GOOD - 1)) + 1.0
    d_lapsed = d_good + (10.0 - d_good) * 2.0 * w[6] / 9.0
    return (
        math.log(w[0]),
        math.log(w[1]),
        math.log(w[2]),
        math.log(w[3]),
        w[8] + math.log(11.0 - d_good),
        w[9],
        w[10],
        math.log(w[15]),
        math.log(w[16]),
        math.log(w[11]) - w[12] * math.log(d_good),
        w[13],
        w[14],
        math.log((11.0 - d_good) / (11.0 - d_lapsed)),
        w[7],
        w[17],
        w[17] * w[18],
        math.log(w[20]),
    )


_DEFAULTS = priors_from_fsrs6(FSRS6_DEFAULTS)
"""FSRS-6's population defaults, translated: no review log of ours is involved."""

_PRIOR_SD = (
    *(1.0, 1.0, 1.0, 1.0, 1.0, 0.2, 0.5, 0.5, 0.5, 1.0, 0.2, 0.5, 0.5, 0.2, 0.5, 0.5),
    0.5,
)
"""Spread of the Gaussian prior around the defaults, in each parameter's own units.

Log-scale parameters may move by a factor of e per standard deviation; exponents and
rates, whose plausible ranges are narrower, less. A log that never presses Easy leaves
``log_s0_easy`` and ``log_easy_factor`` at the prior, not at an arbitrary bound.
"""

_BOUNDS = (
    (math.log(0.01), math.log(100.0)),
    (math.log(0.01), math.log(100.0)),
    (math.log(0.01), math.log(100.0)),
    (math.log(0.01), math.log(100.0)),
    (-3.0, 7.0),
    (0.0, 1.0),
    (0.01, 6.0),
    (-3.0, 0.0),
    (0.0, 3.0),
    (-5.0, 2.0),
    (0.0, 1.0),
    (0.0, 4.0),
    (0.0, 2.0),
    (0.0, 1.0),
    (0.0, 2.0),
    (-3.0, 2.5),
    (math.log(0.05), math.log(100.0)),
)

_LN_09 = math.log(0.9)
_S_MIN, _S_MAX = 0.01, 36_500.0
_SAME_DAY = 1.0
_EPS = 1e-6


def _recall(p: Any, elapsed: Any, stability: Any, xp: Any = np) -> Any:
    """R = (1 + F t / S) ** -a, the gamma mixture of exponentials (``xp``: numpy or torch)."""
    shape = xp.exp(p[16])
    factor = xp.expm1(-_LN_09 / shape)
    return xp.exp(-shape * xp.log1p(factor * elapsed / stability))


def _initial(p: Any, rating: Any, xp: Any = np) -> tuple[Any, Any]:
    """Stability and difficulty after a card's first answer (``xp``: numpy or torch)."""
    log_s0 = p[0:4][rating - 1]
    difficulty = xp.where(rating == Rating.AGAIN, 1.0, 0.0)
    return xp.clip(xp.exp(log_s0), _S_MIN, _S_MAX), difficulty


def _update(
    p: Any, stability: Any, difficulty: Any, elapsed: Any, rating: Any, xp: Any = np
) -> tuple[Any, Any]:
    """The state after a review following an earlier one, vectorised over cards.

    Written once for numpy (the scheduler, one card) and torch (the fitter, whose
    gradients come from autograd), ``xp`` being the module.
    """
    r = _recall(p, elapsed, stability, xp)
    lapse = rating == Rating.AGAIN
    grade_factor = xp.where(rating == Rating.HARD, p[7], xp.where(rating == Rating.EASY, p[8], 0.0))
    growth = (
        xp.exp(p[4] + grade_factor - p[12] * difficulty)
        * stability ** (-p[5])
        * xp.expm1(p[6] * (1.0 - r))
    )
    success_s = stability * (1.0 + growth)
    lapse_s = xp.minimum(
        stability, xp.exp(p[9]) * xp.expm1(p[10] * xp.log1p(stability)) * xp.exp(p[11] * (1.0 - r))
    )
    long_term = xp.where(lapse, lapse_s, success_s)
    short_factor = xp.exp(p[14] * (rating - 3) + p[15])
    short_term = stability * xp.where(lapse, short_factor, xp.clip(short_factor, 1.0, None))
    new_s = xp.where(elapsed < _SAME_DAY, short_term, long_term)
    long_lapse = lapse & (elapsed >= _SAME_DAY)
    new_d = xp.where(long_lapse, difficulty + 1.0, difficulty * (1.0 - p[13]))
    return xp.clip(new_s, _S_MIN, _S_MAX), new_d


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
        elapsed = elapsed_days(state.last_review, at)
        return float(_recall(np.asarray(self.params), elapsed, state.stability))

    def interval_days(self, state: MemoryState, retention: float) -> float:
        shape = math.exp(self.params[16])
        factor = math.expm1(-_LN_09 / shape)
        return state.stability / factor * (retention ** (-1.0 / shape) - 1.0)

    def fit(self, histories: Sequence[CardHistory]) -> Self:
        """Maximum a posteriori parameters (L-BFGS-B within bounds) for these histories.

        The objective is the mean log loss plus a Gaussian prior around the defaults
        (``_PRIOR_SD``), divided by the number of scored reviews: with few reviews the
        prior dominates and the fit stays near the defaults; with many the data decides.
        Without the prior a fit of 16 parameters drifts to its bounds on what a log
        cannot identify. Only reviews a day or more after the previous one are scored;
        the others still move the state. Whether a fit is then used is decided on later
        reviews by ``study.memory.validation.fit_validated``, not here.
        """
        return type(self)(fit_map(histories, self.params, _DEFAULTS, _PRIOR_SD))


def fit_map(
    histories: Sequence[CardHistory],
    start: Sequence[float],
    prior_mean: Sequence[float],
    prior_sd: Sequence[float] | None,
) -> tuple[float, ...]:
    """Parameters minimising mean log loss plus a Gaussian prior (None: no prior, i.e. ML).

    The prior term is divided by the number of scored reviews, so the objective is the
    negative log posterior per review. ``start`` is returned when the optimiser does not
    improve on it.
    """
    batch = _Batch.from_histories(histories)
    if batch.scored == 0:
        return tuple(float(v) for v in start)
    mean = np.asarray(prior_mean)
    precision = (
        np.zeros(len(mean))
        if prior_sd is None
        else 1.0 / (2.0 * np.square(prior_sd) * batch.scored)
    )

    def objective(params: np.ndarray) -> tuple[float, np.ndarray]:
        loss, grad = batch.log_loss(params)
        gap = params - mean
        return loss + float(np.sum(precision * gap**2)), grad + 2.0 * precision * gap

    low, high = zip(*_BOUNDS, strict=True)
    first = np.clip(np.asarray(start, dtype=float), low, high)
    result = minimize(
        objective, first, jac=True, method="L-BFGS-B", bounds=_BOUNDS, options={"maxiter": 500}
    )
    best = result.x if result.fun <= objective(first)[0] else first
    return tuple(float(v) for v in best)


class _Batch:
    """Card histories as arrays (cards x reviews), longest first, for the fitter.

    Cards are sorted by length so that at review j the cards still going are a prefix:
    each step works on that prefix only.
    """

    def __init__(self, elapsed: np.ndarray, rating: np.ndarray, lengths: np.ndarray) -> None:
        self.elapsed = torch.from_numpy(elapsed)
        self.rating = torch.from_numpy(rating)
        self.active = [int(np.sum(lengths > j)) for j in range(elapsed.shape[1])]
        score = (elapsed >= _SAME_DAY) & (np.arange(elapsed.shape[1]) < lengths[:, None])
        score[:, 0] = False
        self.score = torch.from_numpy(score)
        self.recalled = torch.from_numpy(rating > Rating.AGAIN)
        self.scored = int(score.sum())

    @classmethod
    def from_histories(cls, histories: Sequence[CardHistory]) -> _Batch:
        rows = sorted((h for h in histories if len(h) > 0), key=len, reverse=True)
        width = max((len(h) for h in rows), default=1)
        elapsed = np.zeros((len(rows), width))
        rating = np.full((len(rows), width), int(Rating.GOOD), dtype=np.int64)
        for i, history in enumerate(rows):
            for j, event in enumerate(history):
                rating[i, j] = int(event.rating)
                if j:
                    elapsed[i, j] = elapsed_days(history[j - 1].at, event.at)
        return cls(elapsed, rating, np.asarray([len(h) for h in rows]))

    def log_loss(self, params: np.ndarray) -> tuple[float, np.ndarray]:
        """Mean log loss over scored reviews, and its gradient in ``params``."""
        p = torch.tensor(params, dtype=torch.float64, requires_grad=True)
        if self.scored == 0:
            return 0.0, np.zeros(len(params))
        stability, difficulty = _initial(p, self.rating[:, 0], torch)
        total = torch.zeros((), dtype=torch.float64)
        for j in range(1, self.rating.shape[1]):
            n = self.active[j]
            s, d = stability[:n], difficulty[:n]
            elapsed, rating, scored = self.elapsed[:n, j], self.rating[:n, j], self.score[:n, j]
            if bool(scored.any()):
                r = torch.clip(_recall(p, elapsed[scored], s[scored], torch), _EPS, 1 - _EPS)
                y = self.recalled[:n, j][scored]
                total = total - torch.sum(torch.where(y, torch.log(r), torch.log1p(-r)))
            new_s, new_d = _update(p, s, d, elapsed, rating, torch)
            stability = torch.cat([new_s, stability[n:]])
            difficulty = torch.cat([new_d, difficulty[n:]])
        loss = total / self.scored
        loss.backward()
        return float(loss.detach()), p.grad.numpy().copy()
