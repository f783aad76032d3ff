"""A card's stored schedule: reading it, rebuilding it from reviews, writing it back.

The review service (``study.reviews``) and the read side (``study.recall``) share these
rules, so a schedule is always the same function of a card's kept reviews:
* a card of another user is reported as not found: users cannot even learn which ids
  exist;
* fuzz is drawn from the card and its review count, so a replay gives the same dates;
* a card state made under another model or other parameters (its tag differs) is
  rebuilt from the card's reviews before it is used.
"""

from __future__ import annotations

import random
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from db import Card, CardState, Review
from study.errors import CardNotFoundError
from study.memory import MemoryState, Rating, ReviewEvent
from study.scheduler import CardSchedule, Phase, schedule_review
from study.settings import StudySettings, model_tag

__all__ = [
    "card_history",
    "current_schedule",
    "fuzz_rng",
    "replay",
    "schedule_from_row",
    "state_snapshot",
    "user_card",
    "write_state",
]


def user_card(session: Session, user_id: int, card_id: int, *, lock: bool = False) -> Card:
    """The card ``card_id`` of ``user_id`` (``lock``: its row locked for this transaction)."""
    query = select(Card).where(Card.id == card_id, Card.user_id == user_id)
    card = session.scalar(query.with_for_update() if lock else query)
    if card is None:
        raise CardNotFoundError(f"card {card_id} not found for this user")
    return card


def state_snapshot(state: CardState | None) -> dict[str, Any] | None:
    """The state as JSON, stored with a review so that undo restores it exactly."""
    if state is None:
        return None
    return {
        "memory_model": state.memory_model,
        "phase": state.phase,
        "step": state.step,
        "stability": state.stability,
        "difficulty": state.difficulty,
        "due": state.due.isoformat(),
        "last_review": state.last_review.isoformat(),
        "reps": state.reps,
        "lapses": state.lapses,
    }


def schedule_from_row(state: CardState) -> CardSchedule:
    """The stored row as the scheduler's value."""
    return CardSchedule(
        memory=MemoryState(state.stability, state.difficulty, state.last_review),
        phase=Phase(state.phase),
        step=state.step,
        due=state.due,
        reps=state.reps,
        lapses=state.lapses,
    )


def card_history(session: Session, card_id: int) -> list[ReviewEvent]:
    """The card's kept (not undone) reviews in time order."""
    rows = session.execute(
        select(Review.reviewed_at, Review.rating)
        .where(Review.card_id == card_id, Review.undone_at.is_(None))
        .order_by(Review.reviewed_at, Review.id)
    ).all()
    return [ReviewEvent(at=at, rating=Rating(rating)) for at, rating in rows]


def fuzz_rng(card_id: int, reps: int) -> random.Random:
    """Fuzz drawn from the card and its review count: replays give the same schedule."""
    return random.Random(card_id * 1_000_003 + reps)


def replay(session: Session, card: Card, settings: StudySettings) -> CardSchedule | None:
    """The card's schedule rebuilt from its kept reviews, in time order, under ``settings``."""
    schedule: CardSchedule | None = None
    for event in card_history(session, card.id):
        reps = 0 if schedule is None else schedule.reps
        schedule = schedule_review(
            schedule,
            event.rating,
            event.at,
            settings.model,
            settings.policy,
            fuzz_rng(card.id, reps),
        )
    return schedule


def current_schedule(session: Session, card: Card, settings: StudySettings) -> CardSchedule | None:
    """The card's schedule under the user's current model, rebuilt from reviews if stale.

    Models with extra state (counts) are rebuilt every time, since the row has no room
    for it; the scheduling models keep all they need in stability and difficulty.
    """
    state = card.state
    if state is None:
        return None
    if state.memory_model == model_tag(settings.model):
        return schedule_from_row(state)
    return replay(session, card, settings)


def write_state(card: Card, schedule: CardSchedule, tag: str) -> None:
    """Store ``schedule`` as the card's state, tagged with the model that made it."""
    state = card.state or CardState(card_id=card.id)
    state.memory_model = tag
    state.phase = schedule.phase.value
    state.step = schedule.step
    state.stability = schedule.memory.stability
    state.difficulty = schedule.memory.difficulty
    state.due = schedule.due
    state.last_review = schedule.memory.last_review
    state.reps = schedule.reps
    state.lapses = schedule.lapses
    card.state = state
