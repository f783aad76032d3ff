"""ORM models of the study companion and the decoding lab's run records.

The database layer stores facts and knows nothing of memory models, language models or
the UI: memory-model names and parameters are opaque strings and JSON here, interpreted
by ``study``. Every row that belongs to a person carries ``user_id`` so that every query
can be scoped to one user (users never see each other's data).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from db.base import Base
from db.types import UTCDateTime

__all__ = [
    "CARD_KINDS",
    "Card",
    "CardState",
    "DecodeRun",
    "JobRun",
    "Note",
    "QuizRun",
    "Review",
    "User",
    "UserSettings",
    "utcnow",
]

CARD_KINDS = ("basic", "cloze", "mcq")


def utcnow() -> datetime:
    """Current time as an aware UTC datetime (the only kind of time stored)."""
    return datetime.now(UTC)


class User(Base):
    """A person: locally the single default user, on Spaces one per Hugging Face login."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    seeded_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    """When the seed notes were given to this user; set once, so deleted seeds stay deleted."""

    notes: Mapped[list[Note]] = relationship(back_populates="user", cascade="all, delete-orphan")


class Note(Base):
    """A Markdown note: seed notes on the papers, imported files, or the user's own."""

    __tablename__ = "notes"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    title: Mapped[str] = mapped_column(String(500))
    body: Mapped[str] = mapped_column(Text, default="")
    source: Mapped[str | None] = mapped_column(String(1000))
    tags: Mapped[list[str]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    user: Mapped[User] = relationship(back_populates="notes")
    cards: Mapped[list[Card]] = relationship(back_populates="note", cascade="all, delete-orphan")


class Card(Base):
    """A review question, usually generated from a note by a language model."""

    __tablename__ = "cards"
    __table_args__ = (CheckConstraint("kind IN ('basic', 'cloze', 'mcq')", name="kind"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    note_id: Mapped[int | None] = mapped_column(
        ForeignKey("notes.id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[str] = mapped_column(String(10), default="basic")
    question: Mapped[str] = mapped_column(Text)
    answer: Mapped[str] = mapped_column(Text)
    choices: Mapped[list[str] | None] = mapped_column(JSON)
    gen_model: Mapped[str | None] = mapped_column(String(300))
    gen_method: Mapped[str | None] = mapped_column(String(100))
    gen_tokens_per_s: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    note: Mapped[Note | None] = relationship(back_populates="cards")
    state: Mapped[CardState | None] = relationship(
        back_populates="card", cascade="all, delete-orphan", uselist=False
    )


class CardState(Base):
    """The memory state of one card under one memory model; absent while a card is new.

    ``memory_model`` records which model produced the numbers, so a change of model
    (or of its fitted parameters) can be detected and the card's history replayed.
    """

    __tablename__ = "card_states"
    __table_args__ = (Index("ix_card_states_due", "due"),)

    card_id: Mapped[int] = mapped_column(
        ForeignKey("cards.id", ondelete="CASCADE"), primary_key=True
    )
    memory_model: Mapped[str] = mapped_column(String(50))
    phase: Mapped[str] = mapped_column(String(20))
    step: Mapped[int | None] = mapped_column(Integer)
    stability: Mapped[float] = mapped_column(Float)
    difficulty: Mapped[float | None] = mapped_column(Float)
    due: Mapped[datetime] = mapped_column(UTCDateTime)
    last_review: Mapped[datetime] = mapped_column(UTCDateTime)
    reps: Mapped[int] = mapped_column(Integer, default=0)
    lapses: Mapped[int] = mapped_column(Integer, default=0)

    card: Mapped[Card] = relationship(back_populates="state")


class Review(Base):
    """One answer to one card: the raw fact every memory model learns from.

    ``idempotency_key`` is chosen by the client per submission; the unique constraint
    makes a retried submission count once. ``state_before`` is the card's memory state
    just before this review (JSON, null for a new card) so that undo restores it exactly.
    An undone review is kept with ``undone_at`` set, so its key stays spent.
    """

    __tablename__ = "reviews"
    __table_args__ = (
        UniqueConstraint("user_id", "idempotency_key"),
        CheckConstraint("rating BETWEEN 1 AND 4", name="rating"),
        CheckConstraint("duration_ms >= 0", name="duration"),
        Index("ix_reviews_user_time", "user_id", "reviewed_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    card_id: Mapped[int] = mapped_column(ForeignKey("cards.id", ondelete="CASCADE"), index=True)
    reviewed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    rating: Mapped[int] = mapped_column(Integer)
    duration_ms: Mapped[int] = mapped_column(Integer, default=0)
    predicted_recall: Mapped[float | None] = mapped_column(Float)
    memory_model: Mapped[str | None] = mapped_column(String(50))
    idempotency_key: Mapped[str] = mapped_column(String(200))
    state_before: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    undone_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class UserSettings(Base):
    """Per-user study settings; ``fitted_params`` maps a memory-model name to its parameters."""

    __tablename__ = "user_settings"
    DEFAULT_NEW_LIMIT = 20
    __table_args__ = (
        CheckConstraint("desired_retention >= 0.7 AND desired_retention <= 0.97", name="retention"),
        CheckConstraint("daily_new_limit >= 0", name="new_limit"),
    )

    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    memory_model: Mapped[str] = mapped_column(String(50), default="auto")
    """A scheduling model's name, or ``auto``: the user's reviews choose (``chosen_model``)."""
    desired_retention: Mapped[float] = mapped_column(Float, default=0.9)
    daily_new_limit: Mapped[int] = mapped_column(Integer, default=20)
    maximum_interval_days: Mapped[int] = mapped_column(Integer, default=36500)
    daily_job_time: Mapped[str] = mapped_column(String(5), default="03:00")
    fitted_params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    fitted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    fitted_review_count: Mapped[int] = mapped_column(Integer, default=0)
    fit_reasons: Mapped[dict[str, str] | None] = mapped_column(JSON, default=dict)
    """Per model, why its parameters are the defaults or a fit (the last refit's verdict);
    under ``auto`` the key ``auto`` says why ``chosen_model`` schedules."""
    chosen_model: Mapped[str | None] = mapped_column(String(50))
    """Under ``memory_model = 'auto'``, the model the last refit's evidence chose; NULL:
    no refit has compared the models yet (the default model schedules)."""
    quiz_model: Mapped[str | None] = mapped_column(String(300))
    """The model that writes this user's cards; NULL: the best installed (``study.quiz_model``)."""


class QuizRun(Base):
    """One attempt to generate cards from a note, kept also when it failed (with the reason)."""

    __tablename__ = "quiz_runs"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    note_id: Mapped[int | None] = mapped_column(ForeignKey("notes.id", ondelete="SET NULL"))
    status: Mapped[str] = mapped_column(String(20))
    reason: Mapped[str | None] = mapped_column(Text)
    model: Mapped[str | None] = mapped_column(String(300))
    method: Mapped[str | None] = mapped_column(String(100))
    tokens_per_s: Mapped[float | None] = mapped_column(Float)
    attempts: Mapped[int] = mapped_column(Integer, default=1)
    cards_created: Mapped[int] = mapped_column(Integer, default=0)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    extra: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class DecodeRun(Base):
    """One measured decoding run of the lab (one method on one prompt set)."""

    __tablename__ = "decode_runs"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    method: Mapped[str] = mapped_column(String(100))
    model: Mapped[str] = mapped_column(String(300))
    tokens_per_s: Mapped[float | None] = mapped_column(Float)
    speedup: Mapped[float | None] = mapped_column(Float)
    mean_accepted: Mapped[float | None] = mapped_column(Float)
    acceptance_rate: Mapped[float | None] = mapped_column(Float)
    lossless: Mapped[bool | None] = mapped_column(Boolean)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    extra: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class JobRun(Base):
    """One run of a background job (scheduled or on demand), recorded when it starts.

    A run is a claim: it is inserted as ``running`` with a lease (``owner``,
    ``lease_until``) that its process renews while it works, then closed as ``ok`` or
    ``failed`` (with the error). ``instance`` names what never runs twice at once (a job,
    or a job for one user); ``trigger_at`` is the scheduled time it answers, unique per
    instance, so processes firing the same trigger store one run. A ``running`` row whose
    lease expired belongs to a process that died; it is marked ``died`` when seen.
    """

    __tablename__ = "job_runs"
    __table_args__ = (
        UniqueConstraint("instance", "trigger_at"),
        Index("ix_job_runs_instance_status", "instance", "status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    job: Mapped[str] = mapped_column(String(100), index=True)
    instance: Mapped[str] = mapped_column(String(150))
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(20))
    error: Mapped[str | None] = mapped_column(Text)
    trigger_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    owner: Mapped[str | None] = mapped_column(String(200))
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
