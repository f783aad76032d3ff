"""The common interface of the memory models.

A memory model answers two questions about one card: how likely is recall at a given
time (``recall``), and what is the memory state after a review (``review``). Scheduling
(learning steps, maximum interval, fuzz) and evaluation are written once against this
interface, so Ebbinghaus, FSRS-6 and the baselines are scheduled and scored alike.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import IntEnum
from typing import ClassVar, Self

__all__ = [
    "CardHistory",
    "MemoryModel",
    "MemoryState",
    "Rating",
    "ReviewEvent",
    "SECONDS_PER_DAY",
    "elapsed_days",
    "require_utc",
]

SECONDS_PER_DAY = 86_400.0


class Rating(IntEnum):
    """The four answer buttons; anything but Again counts as a successful recall."""

    AGAIN = 1
    HARD = 2
    GOOD = 3
    EASY = 4

    @property
    def recalled(self) -> bool:
        return self is not Rating.AGAIN


@dataclass(frozen=True, slots=True)
class MemoryState:
    """What a model remembers about a card after its last review.

    ``stability`` is in days; what it means exactly (the time to 90 % recall, or to 1/e)
    is the model's business. ``difficulty`` is optional: models without one leave None.
    ``extra`` carries model-specific counters (e.g. successes and failures for HLR).
    """

    stability: float
    difficulty: float | None
    last_review: datetime
    extra: tuple[float, ...] = ()


@dataclass(frozen=True, slots=True)
class ReviewEvent:
    """One past answer: when, and which button."""

    at: datetime
    rating: Rating


CardHistory = Sequence[ReviewEvent]


def require_utc(moment: datetime, what: str = "time") -> datetime:
    """Return ``moment`` if it is time-zone aware; naive times are ambiguous and refused."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(
            f"{what} {moment.isoformat()} has no time zone: pass an aware UTC datetime"
        )
    return moment


def elapsed_days(since: datetime, until: datetime) -> float:
    """Fractional days from ``since`` to ``until`` (never negative)."""
    return max(0.0, (until - since).total_seconds() / SECONDS_PER_DAY)


class MemoryModel(ABC):
    """A forgetting curve plus a state-update law, with parameters fitted per user.

    Implementations are immutable: ``fit`` returns a new model. ``params`` is a plain
    tuple so that it can be stored as JSON in the user's settings.
    """

    name: ClassVar[str]

    def __init__(self, params: Sequence[float] | None = None) -> None:
        self.params: tuple[float, ...] = tuple(
            float(p) for p in (self.default_params() if params is None else params)
        )

    @classmethod
    @abstractmethod
    def default_params(cls) -> tuple[float, ...]:
        """Parameters used before the user has enough reviews to fit their own."""

    @abstractmethod
    def review(self, state: MemoryState | None, rating: Rating, at: datetime) -> MemoryState:
        """The state after answering ``rating`` at ``at``; ``state`` None means a new card."""

    @abstractmethod
    def recall(self, state: MemoryState, at: datetime) -> float:
        """Predicted probability of recall at ``at``."""

    @abstractmethod
    def interval_days(self, state: MemoryState, retention: float) -> float:
        """Days after the last review at which predicted recall falls to ``retention``."""

    def fit(self, histories: Sequence[CardHistory]) -> Self:
        """A copy with parameters fitted to ``histories``; the default keeps the parameters."""
        return self

    def replay(self, history: CardHistory) -> list[float | None]:
        """Predicted recall just before each review of one card (None before the first)."""
        predictions: list[float | None] = []
        state: MemoryState | None = None
        for event in history:
            predictions.append(None if state is None else self.recall(state, event.at))
            state = self.review(state, event.rating, event.at)
        return predictions

    def curve(
        self, state: MemoryState, until: datetime, points: int = 100
    ) -> list[tuple[datetime, float]]:
        """Points of the forgetting curve from the last review to ``until``, for plotting."""
        span = max(until - state.last_review, timedelta(0))
        count = max(points, 2)
        moments = [state.last_review + span * (i / (count - 1)) for i in range(count)]
        return [(moment, self.recall(state, moment)) for moment in moments]

    def __repr__(self) -> str:
        shown = ", ".join(f"{p:.4g}" for p in self.params)
        return f"{type(self).__name__}(({shown}))"
