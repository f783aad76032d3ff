"""When a card comes back: learning steps, review intervals, and the due-card query.

The rule: a card in review is due when its predicted recall falls to the desired
retention; the memory model says when that is (``interval_days``). Around it sit the
parts every practical scheduler needs: same-day learning steps for new cards and
relearning steps after a lapse (a memory of minutes cannot be scheduled in days), a
maximum interval, and fuzz, a small random spread of intervals so that cards learned
together do not stay clumped on the same days. Fuzz takes an ``random.Random`` so runs
can be reproduced.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy import func, select

from db import Card, CardState, Database, Review, UserSettings, utcnow
from study.errors import InvalidSettingError
from study.memory import MemoryModel, MemoryState, Rating, require_utc

__all__ = [
    "CardSchedule",
    "DueCard",
    "Phase",
    "SchedulingPolicy",
    "due_cards",
    "fuzz_interval",
    "nothing_due_reason",
    "review_interval_days",
    "schedule_review",
]

RETENTION_RANGE = (0.7, 0.97)


class Phase(StrEnum):
    """Where a card stands; a card that was never reviewed has no schedule at all (new)."""

    LEARNING = "learning"
    REVIEW = "review"
    RELEARNING = "relearning"


@dataclass(frozen=True)
class SchedulingPolicy:
    """The user's scheduling settings, independent of the memory model."""

    desired_retention: float = 0.9
    learning_steps: tuple[timedelta, ...] = (timedelta(minutes=1), timedelta(minutes=10))
    relearning_steps: tuple[timedelta, ...] = (timedelta(minutes=10),)
    maximum_interval_days: int = 36_500
    fuzz: bool = True

    def __post_init__(self) -> None:
        low, high = RETENTION_RANGE
        if not low <= self.desired_retention <= high:
            raise InvalidSettingError(
                f"desired retention {self.desired_retention} is outside {low}..{high}"
            )
        if self.maximum_interval_days < 1:
            raise InvalidSettingError("maximum interval must be at least 1 day")
        if any(step <= timedelta(0) for step in self.learning_steps + self.relearning_steps):
            raise InvalidSettingError("learning and relearning steps must be positive durations")


@dataclass(frozen=True)
class CardSchedule:
    """A card's memory state plus where it stands in the schedule."""

    memory: MemoryState
    phase: Phase
    step: int | None
    due: datetime
    reps: int
    lapses: int


def fuzz_interval(days: int, maximum: int, rng: random.Random) -> int:
    """A whole number of days near ``days``: +-(1 + 5 %) for intervals of 3 days or more."""
    if days < 3:
        return days
    spread = 1 + round(days * 0.05)
    low, high = max(2, days - spread), min(maximum, days + spread)
    return rng.randint(min(low, high), high)


def review_interval_days(
    model: MemoryModel,
    memory: MemoryState,
    policy: SchedulingPolicy,
    rng: random.Random | None = None,
) -> int:
    """Whole days until recall reaches the desired retention, within [1, maximum], fuzzed."""
    raw = model.interval_days(memory, policy.desired_retention)
    days = 1 if not math.isfinite(raw) else round(raw)
    days = min(max(days, 1), policy.maximum_interval_days)
    if policy.fuzz:
        days = fuzz_interval(days, policy.maximum_interval_days, rng or random.Random())
    return days


def _step_delay(steps: tuple[timedelta, ...], step: int, rating: Rating) -> timedelta:
    """Delay within the day for a card that stays in (re)learning at ``step``."""
    if rating is Rating.HARD and step == 0:
        # Hard on the first step: between the first two steps (or half as long again).
        return (steps[0] + steps[1]) / 2 if len(steps) > 1 else steps[0] * 1.5
    return steps[step]


def schedule_review(
    current: CardSchedule | None,
    rating: Rating | int,
    at: datetime,
    model: MemoryModel,
    policy: SchedulingPolicy,
    rng: random.Random | None = None,
) -> CardSchedule:
    """The schedule after answering ``rating`` at ``at``; ``current`` None is a new card."""
    rating = Rating(rating)
    require_utc(at, "review time")
    memory = model.review(None if current is None else current.memory, rating, at)
    reps = 1 if current is None else current.reps + 1
    lapses = 0 if current is None else current.lapses
    phase = Phase.LEARNING if current is None else current.phase
    step = 0 if current is None else current.step

    if phase is Phase.REVIEW:
        if rating is Rating.AGAIN:
            lapses += 1
            if policy.relearning_steps:
                phase, step = Phase.RELEARNING, 0
                delay = policy.relearning_steps[0]
                return CardSchedule(memory, phase, step, at + delay, reps, lapses)
        days = review_interval_days(model, memory, policy, rng)
        return CardSchedule(memory, Phase.REVIEW, None, at + timedelta(days=days), reps, lapses)

    steps = policy.learning_steps if phase is Phase.LEARNING else policy.relearning_steps
    step = step or 0
    if rating is Rating.AGAIN and steps:
        step = 0
    elif rating is Rating.GOOD and steps:
        step += 1
    graduates = not steps or rating is Rating.EASY or step >= len(steps)
    if graduates:
        days = review_interval_days(model, memory, policy, rng)
        return CardSchedule(memory, Phase.REVIEW, None, at + timedelta(days=days), reps, lapses)
    return CardSchedule(memory, phase, step, at + _step_delay(steps, step, rating), reps, lapses)


@dataclass(frozen=True)
class DueCard:
    """A card to show now: review cards first (most overdue first), then new cards."""

    card_id: int
    kind: str
    question: str
    answer: str
    choices: list[str] | None
    is_new: bool
    due: datetime | None


def _day_start(moment: datetime) -> datetime:
    return moment.replace(hour=0, minute=0, second=0, microsecond=0)


def due_cards(
    db: Database, user_id: int, now: datetime | None = None, limit: int | None = None
) -> list[DueCard]:
    """Cards of ``user_id`` due at ``now``, plus new cards up to today's new-card allowance.

    The allowance is the user's daily new-card limit minus the cards first reviewed
    since 00:00 UTC today (undone reviews do not count).
    """
    now = require_utc(now or utcnow(), "now")
    with db.read() as session:
        settings = session.get(UserSettings, user_id)
        daily_limit = settings.daily_new_limit if settings else UserSettings.DEFAULT_NEW_LIMIT
        due_rows = session.execute(
            select(Card, CardState.due)
            .join(CardState, CardState.card_id == Card.id)
            .where(Card.user_id == user_id, CardState.due <= now)
            .order_by(CardState.due, Card.id)
        ).all()
        first_reviews = (
            select(Review.card_id, func.min(Review.reviewed_at).label("first"))
            .where(Review.user_id == user_id, Review.undone_at.is_(None))
            .group_by(Review.card_id)
            .subquery()
        )
        introduced_today = session.scalar(
            select(func.count())
            .select_from(first_reviews)
            .where(first_reviews.c.first >= _day_start(now))
        )
        allowance = max(0, daily_limit - int(introduced_today or 0))
        new_rows = session.scalars(
            select(Card)
            .outerjoin(CardState, CardState.card_id == Card.id)
            .where(Card.user_id == user_id, CardState.card_id.is_(None))
            .order_by(Card.id)
            .limit(allowance)
        ).all()
    result = [_due_card(card, due, False) for card, due in due_rows]
    result += [_due_card(card, None, True) for card in new_rows]
    return result if limit is None else result[:limit]


def _due_card(card: Card, due: datetime | None, is_new: bool) -> DueCard:
    return DueCard(
        card_id=card.id,
        kind=card.kind,
        question=card.question,
        answer=card.answer,
        choices=card.choices,
        is_new=is_new,
        due=due,
    )


def nothing_due_reason(db: Database, user_id: int, now: datetime | None = None) -> str:
    """Why the Review queue is empty, and what to do about it, in words for the user.

    A first visit must not meet a blank page: with no cards at all it points to Notes
    (generate questions, or import notes); otherwise it says when the next card is due
    or that today's allowance of new cards is used up.
    """
    now = require_utc(now or utcnow(), "now")
    with db.read() as session:
        total = int(session.scalar(select(func.count()).where(Card.user_id == user_id)) or 0)
        next_due = session.scalar(
            select(func.min(CardState.due))
            .join(Card, Card.id == CardState.card_id)
            .where(Card.user_id == user_id, CardState.due > now)
        )
        unseen = int(
            session.scalar(
                select(func.count())
                .select_from(Card)
                .outerjoin(CardState, CardState.card_id == Card.id)
                .where(Card.user_id == user_id, CardState.card_id.is_(None))
            )
            or 0
        )
    if total == 0:
        return (
            "You have no cards yet. Open **Notes**, pick a note and press **Generate "
            "questions for this note** (or import your own Markdown notes first); the "
            "cards it stores come here."
        )
    parts = ["Nothing is due right now."]
    if unseen:
        parts.append(f"{unseen} new card(s) wait for tomorrow: today's new-card limit is used.")
    if next_due is not None:
        parts.append(f"The next review is due {require_utc(next_due):%Y-%m-%d %H:%M} UTC.")
    return " ".join(parts)
