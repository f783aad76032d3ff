"""Small write helpers other parts call: users, settings rows and run records.

They take an open ``Session`` and do not commit, so the caller decides the transaction
(usually ``Database.write``); ``ensure_user`` is the one that runs its own, for callers
that hold no session.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from db.engine import Database
from db.models import DecodeRun, QuizRun, User, UserSettings, utcnow

__all__ = [
    "ensure_user",
    "get_or_create_user",
    "get_settings",
    "record_decode_run",
    "record_quiz_run",
]


def get_or_create_user(session: Session, name: str) -> User:
    """The user called ``name``, created (with default settings) on first use."""
    name = name.strip()
    if not name:
        raise ValueError("user name is empty: pass the login name or 'local'")
    user = session.scalar(select(User).where(User.name == name))
    if user is None:
        user = User(name=name)
        session.add(user)
        session.flush()
        session.add(UserSettings(user_id=user.id))
        session.flush()
    return user


def ensure_user(db: Database, name: str) -> int:
    """The id of the user called ``name``, created in its own transaction on first use.

    Two first requests of one user can run at once (app events run side by side, and
    replicas share the database): the one whose insert loses on the unique name runs
    again and finds the row the other committed.
    """

    def work(session: Session) -> int:
        return get_or_create_user(session, name).id

    try:
        return db.write(work)
    except IntegrityError:
        return db.write(work)


def get_settings(session: Session, user_id: int) -> UserSettings:
    """The settings row of ``user_id``, created with defaults if missing."""
    settings = session.get(UserSettings, user_id)
    if settings is None:
        settings = UserSettings(user_id=user_id)
        session.add(settings)
        session.flush()
    return settings


def record_decode_run(
    session: Session,
    *,
    method: str,
    model: str,
    tokens_per_s: float | None = None,
    speedup: float | None = None,
    mean_accepted: float | None = None,
    acceptance_rate: float | None = None,
    lossless: bool | None = None,
    user_id: int | None = None,
    extra: dict[str, Any] | None = None,
    created_at: datetime | None = None,
) -> DecodeRun:
    """Store one decoding measurement; ``extra`` holds settings and environment as JSON."""
    run = DecodeRun(
        method=method,
        model=model,
        tokens_per_s=tokens_per_s,
        speedup=speedup,
        mean_accepted=mean_accepted,
        acceptance_rate=acceptance_rate,
        lossless=lossless,
        user_id=user_id,
        extra=extra or {},
        created_at=created_at or utcnow(),
    )
    session.add(run)
    session.flush()
    return run


def record_quiz_run(
    session: Session,
    *,
    user_id: int,
    status: str,
    note_id: int | None = None,
    reason: str | None = None,
    model: str | None = None,
    method: str | None = None,
    tokens_per_s: float | None = None,
    attempts: int = 1,
    cards_created: int = 0,
    started_at: datetime | None = None,
    finished_at: datetime | None = None,
    extra: dict[str, Any] | None = None,
) -> QuizRun:
    """Store one quiz-generation run; a failed run keeps its ``reason`` for the UI to show."""
    if status not in ("ok", "failed"):
        raise ValueError(f"quiz run status {status!r}: use 'ok' or 'failed'")
    if status == "failed" and not reason:
        raise ValueError("a failed quiz run needs a reason")
    run = QuizRun(
        user_id=user_id,
        note_id=note_id,
        status=status,
        reason=reason,
        model=model,
        method=method,
        tokens_per_s=tokens_per_s,
        attempts=attempts,
        cards_created=cards_created,
        started_at=started_at or utcnow(),
        finished_at=finished_at or utcnow(),
        extra=extra or {},
    )
    session.add(run)
    session.flush()
    return run
