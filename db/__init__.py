"""Persistence for the study companion and the decoding lab (SQLAlchemy 2.x + Alembic).

Start with ``init_db(url)``: it opens the database (SQLite file by default) and upgrades
its schema. Nothing here knows about memory models, language models or the UI.
"""

from db.base import Base
from db.engine import Database, DatabaseUnavailableError, default_url, init_db, make_engine
from db.models import (
    CARD_KINDS,
    Card,
    CardState,
    DecodeRun,
    JobRun,
    Note,
    QuizRun,
    Review,
    User,
    UserSettings,
    utcnow,
)
from db.queries import DecodeRunRow, PredictedReview, decode_runs, predicted_reviews
from db.records import (
    ensure_user,
    get_or_create_user,
    get_settings,
    record_decode_run,
    record_quiz_run,
)

__all__ = [
    "CARD_KINDS",
    "Base",
    "Card",
    "CardState",
    "Database",
    "DatabaseUnavailableError",
    "DecodeRun",
    "DecodeRunRow",
    "JobRun",
    "Note",
    "PredictedReview",
    "QuizRun",
    "Review",
    "User",
    "UserSettings",
    "decode_runs",
    "default_url",
    "ensure_user",
    "get_or_create_user",
    "get_settings",
    "init_db",
    "make_engine",
    "predicted_reviews",
    "record_decode_run",
    "record_quiz_run",
    "utcnow",
]
