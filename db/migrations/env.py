"""Alembic environment: runs migrations on the engine handed over by ``db.engine``.

``render_as_batch`` lets future revisions alter SQLite tables (SQLite has little
``ALTER TABLE``; batch mode copies the table). ``compare_type`` makes autogenerate notice
column type changes.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from db import models  # noqa: F401  (registers the tables on Base.metadata)
from db.base import Base

APSCHEDULER_TABLES = frozenset({"apscheduler_jobs"})
"""Tables the background scheduler owns in the same database; Alembic leaves them alone."""

config = context.config
engine = config.attributes.get("engine") or create_engine(config.get_main_option("sqlalchemy.url"))

with engine.connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=True,
        compare_type=True,
        include_name=lambda name, kind, _parents: (
            not (kind == "table" and name in APSCHEDULER_TABLES)
        ),
    )
    with context.begin_transaction():
        context.run_migrations()
