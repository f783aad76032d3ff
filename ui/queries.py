"""Read-only queries the tabs need that the ``db`` package does not offer yet.

Kept in one place, each scoped to one user, so they can move into ``db``/``study``
unchanged once those packages grow the same functions.
"""

from __future__ import annotations

import pandas as pd
from sqlalchemy import select

from db import Database, DecodeRun, Review

__all__ = ["decode_history", "review_predictions"]


def decode_history(db: Database, user_id: int, limit: int = 500) -> pd.DataFrame:
    """The user's playground runs, oldest first: time, model, method and the numbers."""
    with db.read() as session:
        rows = session.scalars(
            select(DecodeRun)
            .where(DecodeRun.user_id == user_id)
            .order_by(DecodeRun.created_at.desc(), DecodeRun.id.desc())
            .limit(limit)
        ).all()
    # A series per method, and per model only where the user ran several: the legend
    # then fits beside the plot.
    several = len({run.model for run in rows}) > 1
    frame = pd.DataFrame(
        [
            {
                "time": run.created_at.replace(tzinfo=None),
                "model": run.model,
                "method": run.method,
                "series": f"{run.method} · {run.model}" if several else run.method,
                "tokens/s": run.tokens_per_s,
                "speed-up": run.speedup,
            }
            for run in reversed(rows)
        ],
        columns=["time", "model", "method", "series", "tokens/s", "speed-up"],
    )
    return frame


def review_predictions(db: Database, user_id: int) -> pd.DataFrame:
    """The user's kept reviews with the recall predicted before each (calibration plot)."""
    with db.read() as session:
        rows = session.execute(
            select(Review.reviewed_at, Review.rating, Review.predicted_recall).where(
                Review.user_id == user_id, Review.undone_at.is_(None)
            )
        ).all()
    return pd.DataFrame(
        [(at, rating, predicted) for at, rating, predicted in rows],
        columns=["time", "rating", "predicted"],
    )
