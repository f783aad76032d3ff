"""The review service: submit and undo answers, always scoped to one user.

Why each rule:
* every submission carries a client-chosen idempotency key, unique per user; a retried
  submission (double click, network retry) finds its first copy and counts once;
* a submission is one transaction (review row + card state together) run by
  ``Database.write``, which retries on a locked SQLite file, so nothing is lost or half
  written;
* reviews of one card are serialised on every backend: the transaction locks the card's
  row first (``SELECT ... FOR UPDATE``; SQLite's ``BEGIN IMMEDIATE`` already serialises
  all writers), so two tabs rating one card at once are applied one after the other and
  the later never overwrites the earlier with a state computed from a stale read. The
  review time defaults to the moment the lock is held, so the later one is also later;
* each review stores the state before it, so undo restores that state exactly.

How a card's state is read, rebuilt and written is in ``study.card_state``; predicted
recall and forgetting curves in ``study.recall``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from db import CardState, Database, Review, utcnow
from study.card_state import current_schedule, fuzz_rng, state_snapshot, user_card, write_state
from study.errors import InvalidRatingError, InvalidTimestampError, NothingToUndoError, StudyError
from study.memory import Rating
from study.scheduler import Phase, schedule_review
from study.settings import load_settings, model_tag

__all__ = ["ReviewResult", "UndoResult", "submit_review", "undo_last_review"]

FUTURE_TOLERANCE = timedelta(minutes=5)
MAX_DURATION_MS = 24 * 3600 * 1000


@dataclass(frozen=True)
class ReviewResult:
    """What a submission did; ``duplicate`` is True when the key had been seen before."""

    review_id: int
    card_id: int
    duplicate: bool
    predicted_recall: float | None
    due: datetime
    phase: str
    stability: float


@dataclass(frozen=True)
class UndoResult:
    """The review that was undone and the card's due time afterwards (None: new again)."""

    review_id: int
    card_id: int
    due: datetime | None


def _check_rating(rating: Any) -> Rating:
    if isinstance(rating, bool) or not isinstance(rating, int) or not 1 <= rating <= 4:
        raise InvalidRatingError(
            f"rating {rating!r} is invalid: use 1 (Again), 2 (Hard), 3 (Good) or 4 (Easy)"
        )
    return Rating(rating)


def _check_time(at: datetime, now: datetime) -> None:
    if at.tzinfo is None or at.utcoffset() is None:
        raise InvalidTimestampError(
            f"review time {at.isoformat()} has no time zone: pass an aware UTC datetime"
        )
    if at > now + FUTURE_TOLERANCE:
        raise InvalidTimestampError(
            f"review time {at.isoformat()} is in the future (now {now.isoformat()})"
        )


def _duplicate(session: Session, user_id: int, key: str, card_id: int) -> ReviewResult | None:
    existing = session.scalar(
        select(Review).where(Review.user_id == user_id, Review.idempotency_key == key)
    )
    if existing is None:
        return None
    if existing.card_id != card_id:
        raise StudyError(
            f"idempotency key {key!r} was already used for another card: "
            "use a fresh key for each answer"
        )
    state = session.get(CardState, existing.card_id)
    return ReviewResult(
        review_id=existing.id,
        card_id=existing.card_id,
        duplicate=True,
        predicted_recall=existing.predicted_recall,
        due=state.due if state else existing.reviewed_at,
        phase=state.phase if state else Phase.LEARNING.value,
        stability=state.stability if state else 0.0,
    )


def submit_review(
    db: Database,
    user_id: int,
    card_id: int,
    rating: int,
    *,
    idempotency_key: str,
    duration_ms: int = 0,
    at: datetime | None = None,
) -> ReviewResult:
    """Record one answer and reschedule the card, in one transaction, exactly once.

    Raises ``InvalidRatingError`` (rating not 1..4), ``InvalidTimestampError`` (naive,
    future, or earlier than the card's last review), ``CardNotFoundError`` (unknown id or
    another user's card) and ``StudyError`` (bad key or duration). Nothing is written
    when it raises.
    """
    checked_rating = _check_rating(rating)
    if at is not None:
        _check_time(at, utcnow())
    if not isinstance(idempotency_key, str) or not 0 < len(idempotency_key) <= 200:
        raise StudyError("idempotency_key must be a non-empty string of at most 200 characters")
    if isinstance(duration_ms, bool) or not isinstance(duration_ms, int):
        raise StudyError(f"duration_ms {duration_ms!r} must be a whole number of milliseconds")
    if not 0 <= duration_ms <= MAX_DURATION_MS:
        raise StudyError(f"duration_ms {duration_ms} is outside 0..{MAX_DURATION_MS}")

    def work(session: Session) -> ReviewResult:
        card = user_card(session, user_id, card_id, lock=True)
        moment = at or utcnow()  # taken under the card's lock: later than its last review
        duplicate = _duplicate(session, user_id, idempotency_key, card_id)
        if duplicate is not None:
            return duplicate
        settings = load_settings(session, user_id)
        before = state_snapshot(card.state)
        current = current_schedule(session, card, settings)
        if current is not None and moment < current.memory.last_review:
            raise InvalidTimestampError(
                f"review time {moment.isoformat()} is before the card's last review "
                f"{current.memory.last_review.isoformat()}"
            )
        predicted = None if current is None else settings.model.recall(current.memory, moment)
        reps = 0 if current is None else current.reps
        schedule = schedule_review(
            current,
            checked_rating,
            moment,
            settings.model,
            settings.policy,
            fuzz_rng(card.id, reps),
        )
        review = Review(
            user_id=user_id,
            card_id=card.id,
            reviewed_at=moment,
            rating=int(checked_rating),
            duration_ms=duration_ms,
            predicted_recall=predicted,
            memory_model=settings.model.name,
            idempotency_key=idempotency_key,
            state_before=before,
        )
        session.add(review)
        write_state(card, schedule, model_tag(settings.model))
        session.flush()
        return ReviewResult(
            review_id=review.id,
            card_id=card.id,
            duplicate=False,
            predicted_recall=predicted,
            due=schedule.due,
            phase=schedule.phase.value,
            stability=schedule.memory.stability,
        )

    try:
        return db.write(work)
    except IntegrityError:
        # Another connection stored the same key between our check and insert
        # (possible on server databases): the first copy stands.
        with db.read() as session:
            duplicate = _duplicate(session, user_id, idempotency_key, card_id)
        if duplicate is None:
            raise
        return duplicate


def undo_last_review(db: Database, user_id: int) -> UndoResult:
    """Undo the user's most recent kept review and restore the card's state before it."""

    def latest(session: Session) -> Review:
        review = session.scalar(
            select(Review)
            .where(Review.user_id == user_id, Review.undone_at.is_(None))
            .order_by(Review.reviewed_at.desc(), Review.id.desc())
            .limit(1)
            .execution_options(populate_existing=True)
        )
        if review is None:
            raise NothingToUndoError("there is no review to undo")
        return review

    def work(session: Session) -> UndoResult:
        # Lock the card, then check that its review is still the latest: a review or
        # undo of another tab in between would otherwise be overwritten.
        review = latest(session)
        card = user_card(session, user_id, review.card_id, lock=True)
        if latest(session).id != review.id:
            raise StudyError("your reviews changed meanwhile (another tab?): undo again")
        review.undone_at = utcnow()
        before = review.state_before
        if before is None:
            if card.state is not None:
                session.delete(card.state)
            due = None
        else:
            state = card.state or CardState(card_id=card.id)
            for key, value in before.items():
                if key in ("due", "last_review"):
                    value = datetime.fromisoformat(value)
                setattr(state, key, value)
            card.state = state
            due = state.due
        session.flush()
        return UndoResult(review_id=review.id, card_id=card.id, due=due)

    return db.write(work)
