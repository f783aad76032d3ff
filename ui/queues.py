"""Which events wait for which in Gradio's queue: the model one at a time, the database many.

Gradio puts every event in a concurrency group; an event given none gets a group of its
own with the app's default limit (1, set in ``ui.app``), so it runs one request at a
time across all users. That is right for the model, wrong for the database:

* ``MODEL_EVENT``: every event that runs the model shares one group with limit 1. The
  model is one set of weights that uses every core; two generations at once would each
  run at half speed and the Playground's timings would mean nothing.
* ``DB_EVENT``: events that only read or write the database (review, notes, settings,
  stats, drafts) share a group that runs up to ``DB_CONCURRENCY`` at once, so one user's
  rating never waits behind another's, nor behind a generation. This is safe because
  each service call opens its own session (``db.Database.read`` / ``write``), SQLite
  writers take the lock up front (``BEGIN IMMEDIATE``, busy timeout, retry) and
  PostgreSQL locks the reviewed card's row. The limit stays below SQLAlchemy's default
  connection pool (5 + 10 overflow), so a burst waits in the queue, not for a connection.

Events in neither group (model switching, tuning files, the stats model comparison,
which is CPU-bound) keep the default.
"""

from __future__ import annotations

from typing import Any, Final

__all__ = ["DB_CONCURRENCY", "DB_EVENT", "MODEL_EVENT"]

DB_CONCURRENCY: Final = 8
MODEL_EVENT: Final[dict[str, Any]] = {"concurrency_id": "model", "concurrency_limit": 1}
DB_EVENT: Final[dict[str, Any]] = {"concurrency_id": "db", "concurrency_limit": DB_CONCURRENCY}
