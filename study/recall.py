"""What the user's memory model says about one card: its schedule, its predicted recall
now or at any time, and the forgetting curve to plot.

Reads only; each opens its own read session and uses the state rules of
``study.card_state`` (a stale state is rebuilt from the reviews, never trusted).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from db import Database, utcnow
from study.card_state import card_history, current_schedule, replay, user_card
from study.errors import InvalidTimestampError
from study.scheduler import CardSchedule
from study.settings import load_settings

__all__ = [
    "CardMemory",
    "ForgettingCurve",
    "card_memory",
    "forgetting_curve",
    "predicted_recall",
    "replayed_schedule",
]


@dataclass(frozen=True)
class CardMemory:
    """A card's current schedule under the user's model (None while the card is new)."""

    card_id: int
    schedule: CardSchedule | None
    model_name: str


@dataclass(frozen=True)
class ForgettingCurve:
    """Predicted recall over time since the last review, and the card's past reviews."""

    card_id: int
    points: list[tuple[datetime, float]]
    reviews: list[tuple[datetime, int]]
    due: datetime | None


def card_memory(db: Database, user_id: int, card_id: int) -> CardMemory:
    """The card's current schedule under the user's model (None for a new card)."""
    with db.read() as session:
        card = user_card(session, user_id, card_id)
        settings = load_settings(session, user_id)
        schedule = current_schedule(session, card, settings)
    return CardMemory(card_id=card_id, schedule=schedule, model_name=settings.model.name)


def replayed_schedule(db: Database, user_id: int, card_id: int) -> CardSchedule | None:
    """The card's schedule rebuilt from its kept reviews alone, ignoring the stored state.

    Equal to the stored schedule whenever every review was applied in turn: the check
    that no concurrent review was lost or overwritten.
    """
    with db.read() as session:
        card = user_card(session, user_id, card_id)
        return replay(session, card, load_settings(session, user_id))


def predicted_recall(
    db: Database, user_id: int, card_id: int, at: datetime | None = None
) -> float | None:
    """Predicted probability of recalling the card at ``at`` (default now); None if new."""
    moment = at or utcnow()
    if moment.tzinfo is None:
        raise InvalidTimestampError(f"time {moment.isoformat()} has no time zone")
    with db.read() as session:
        card = user_card(session, user_id, card_id)
        settings = load_settings(session, user_id)
        schedule = current_schedule(session, card, settings)
    if schedule is None:
        return None
    return settings.model.recall(schedule.memory, moment)


def forgetting_curve(
    db: Database,
    user_id: int,
    card_id: int,
    until: datetime | None = None,
    points: int = 100,
) -> ForgettingCurve:
    """Points of the card's forgetting curve from its last review to ``until``.

    ``until`` defaults to twice the time to the due date, so the plot shows the curve
    crossing the desired retention. The card's past reviews come along for plotting.
    """
    with db.read() as session:
        card = user_card(session, user_id, card_id)
        settings = load_settings(session, user_id)
        schedule = current_schedule(session, card, settings)
        history = card_history(session, card.id)
    reviews = [(event.at, int(event.rating)) for event in history]
    if schedule is None:
        return ForgettingCurve(card_id=card_id, points=[], reviews=reviews, due=None)
    last = schedule.memory.last_review
    end = until or last + max(2 * (schedule.due - last), timedelta(days=1))
    curve = settings.model.curve(schedule.memory, end, points)
    return ForgettingCurve(card_id=card_id, points=curve, reviews=reviews, due=schedule.due)
