"""Read-only queries over one user's rows that the app's charts need.

Each returns plain values (never a live session), so a caller outside ``db`` never opens
a session to draw a chart.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from db.engine import Database
from db.models import DecodeRun, Review

__all__ = ["DecodeRunRow", "PredictedReview", "decode_runs", "predicted_reviews"]


@dataclass(frozen=True, slots=True)
class DecodeRunRow:
    """One stored Playground run: when, which model and method, and its speed."""

    created_at: datetime
    model: str
    method: str
    tokens_per_s: float | None
    speedup: float | None


@dataclass(frozen=True, slots=True)
class PredictedReview:
    """One kept review with the recall the scheduler predicted before it (None: new card)."""

    reviewed_at: datetime
    rating: int
    predicted_recall: float | None


def decode_runs(db: Database, user_id: int, limit: int = 500) -> list[DecodeRunRow]:
    """The user's latest ``limit`` decoding runs, oldest first (the order a chart plots)."""
    with db.read() as session:
        rows = session.scalars(
            select(DecodeRun)
            .where(DecodeRun.user_id == user_id)
            .order_by(DecodeRun.created_at.desc(), DecodeRun.id.desc())
            .limit(limit)
        ).all()
        return [
            DecodeRunRow(run.created_at, run.model, run.method, run.tokens_per_s, run.speedup)
            for run in reversed(rows)
        ]


def predicted_reviews(db: Database, user_id: int) -> list[PredictedReview]:
    """The user's reviews that count (not undone), in time order."""
    with db.read() as session:
        rows = session.execute(
            select(Review.reviewed_at, Review.rating, Review.predicted_recall)
            .where(Review.user_id == user_id, Review.undone_at.is_(None))
            .order_by(Review.reviewed_at, Review.id)
        ).all()
    return [PredictedReview(at, rating, predicted) for at, rating, predicted in rows]
