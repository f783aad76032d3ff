"""The tabs' chart tables: rows read by ``db.queries``, shaped as DataFrames for Gradio.

No session is opened here; the queries themselves live in ``db``.
"""

from __future__ import annotations

import pandas as pd

from db import Database, decode_runs, predicted_reviews

__all__ = ["decode_history", "review_predictions"]


def decode_history(db: Database, user_id: int, limit: int = 500) -> pd.DataFrame:
    """The user's playground runs, oldest first: time, model, method and the numbers."""
    runs = decode_runs(db, user_id, limit)
    # A series per method, and per model only where the user ran several: the legend
    # then fits beside the plot.
    several = len({run.model for run in runs}) > 1
    return pd.DataFrame(
        [
            {
                "time": run.created_at.replace(tzinfo=None),
                "model": run.model,
                "method": run.method,
                "series": f"{run.method} · {run.model}" if several else run.method,
                "tokens/s": run.tokens_per_s,
                "speed-up": run.speedup,
            }
            for run in runs
        ],
        columns=["time", "model", "method", "series", "tokens/s", "speed-up"],
    )


def review_predictions(db: Database, user_id: int) -> pd.DataFrame:
    """The user's kept reviews with the recall predicted before each (calibration plot)."""
    return pd.DataFrame(
        [(r.reviewed_at, r.rating, r.predicted_recall) for r in predicted_reviews(db, user_id)],
        columns=["time", "rating", "predicted"],
    )
