"""FSRS-6 through the ``fsrs`` package (py-fsrs 6.x), behind the common interface.

Why a wrapper rather than a re-implementation: the package is the reference; calling it
guarantees our numbers equal its numbers. Only the memory state (stability, difficulty)
is taken from it. Learning steps, maximum interval and fuzz belong to our scheduler, so
the package scheduler runs with no steps and no fuzz; its stability and difficulty
updates do not depend on those settings (same-day reviews use its short-term formula in
every state), so the states match a package scheduler with any steps.

Curve: R(t, S) = (1 + F t / S) ** -w20 with F = 0.9 ** (-1 / w20) - 1 (so R = 0.9 at
t = S). ``recall`` uses whole elapsed days, exactly as the package does.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Self

from fsrs import Card, ReviewLog, Scheduler, State
from fsrs import Rating as FsrsRating
from fsrs.scheduler import DEFAULT_PARAMETERS

from study.memory.base import (
    CardHistory,
    MemoryModel,
    MemoryState,
    Rating,
    elapsed_days,
)

__all__ = ["FSRS6Model", "to_fsrs_review_logs"]

_CARD_ID = 1


def to_fsrs_review_logs(histories: Sequence[CardHistory]) -> list[ReviewLog]:
    """The package's ``ReviewLog`` objects for these histories (card ids are 1, 2, ...)."""
    return [
        ReviewLog(
            card_id=index,
            rating=FsrsRating(int(event.rating)),
            review_datetime=event.at,
            review_duration=None,
        )
        for index, history in enumerate(histories, start=1)
        for event in history
    ]


class FSRS6Model(MemoryModel):
    """FSRS-6 (21 parameters, power forgetting curve) computed by the ``fsrs`` package."""

    name = "fsrs6"

    def __init__(self, params: Sequence[float] | None = None) -> None:
        super().__init__(params)
        self._scheduler = Scheduler(
            parameters=self.params,
            learning_steps=(),
            relearning_steps=(),
            maximum_interval=36_500,
            enable_fuzzing=False,
        )

    @classmethod
    def default_params(cls) -> tuple[float, ...]:
        return tuple(DEFAULT_PARAMETERS)

    @property
    def decay(self) -> float:
        return self.params[20]

    def _card(self, state: MemoryState | None) -> Card:
        if state is None:
            return Card(card_id=_CARD_ID, state=State.Learning, step=0)
        return Card(
            card_id=_CARD_ID,
            state=State.Review,
            stability=state.stability,
            difficulty=state.difficulty,
            due=state.last_review,
            last_review=state.last_review,
        )

    def review(self, state: MemoryState | None, rating: Rating, at: datetime) -> MemoryState:
        # The package insists on tzinfo == timezone.utc, not merely an aware time.
        card, _ = self._scheduler.review_card(
            self._card(state), FsrsRating(int(rating)), review_datetime=at.astimezone(UTC)
        )
        return MemoryState(
            stability=float(card.stability),
            difficulty=float(card.difficulty),
            last_review=at,
        )

    def recall(self, state: MemoryState, at: datetime) -> float:
        return float(
            self._scheduler.get_card_retrievability(
                self._card(state), current_datetime=at.astimezone(UTC)
            )
        )

    def interval_days(self, state: MemoryState, retention: float) -> float:
        factor = 0.9 ** (-1.0 / self.decay) - 1.0
        return state.stability / factor * (retention ** (-1.0 / self.decay) - 1.0)

    def curve(
        self, state: MemoryState, until: datetime, points: int = 100
    ) -> list[tuple[datetime, float]]:
        """Smooth curve for plotting (fractional days); ``recall`` itself steps per whole day."""
        factor = 0.9 ** (-1.0 / self.decay) - 1.0
        span = max(until - state.last_review, timedelta(0))
        count = max(points, 2)
        out = []
        for i in range(count):
            moment = state.last_review + span * (i / (count - 1))
            t = elapsed_days(state.last_review, moment)
            out.append((moment, (1.0 + factor * t / state.stability) ** -self.decay))
        return out

    def fit(self, histories: Sequence[CardHistory]) -> Self:
        """Parameters from the package's ``Optimizer.compute_optimal_parameters``.

        It is the only optimiser fsrs 6.3.2 offers (Adam on mini-batches of 512 reviews,
        5 epochs with a cosine learning rate, the first 64 reviews of each card, keeping
        the best epoch), so it is also the strongest; it returns the defaults below 512
        reviews. Whether its result is used is decided on later reviews by
        ``study.memory.validation.fit_validated``.
        """
        from fsrs import Optimizer

        logs = to_fsrs_review_logs(histories)
        if not logs:
            return self
        params = Optimizer(logs).compute_optimal_parameters()
        if any(not math.isfinite(p) for p in params):
            return self
        return type(self)(params)
