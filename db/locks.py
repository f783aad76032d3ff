"""Locks that hold across processes: for migrations at start-up and for claiming job runs.

Why: several app replicas and a worker may share one database. Row locks serialise
writes to one row, but some decisions read first and write later ("is this job already
running?", "is the schema already at head?"), and two processes must not both decide
yes. On PostgreSQL an advisory lock named by a 64-bit key does that without a table. On
SQLite every write transaction already holds the database's single write lock
(``BEGIN IMMEDIATE``, see ``db.engine``), so a transaction lock is free there; a
migration, which Alembic runs outside such a transaction on SQLite, takes an exclusive
``flock`` on a file beside the database instead.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

__all__ = ["lock_key", "migration_lock", "transaction_lock"]

MIGRATION_LOCK = "selfspec:migrations"


def lock_key(name: str) -> int:
    """A stable signed 64-bit key for ``name`` (PostgreSQL advisory locks take a bigint)."""
    return int.from_bytes(
        hashlib.blake2b(name.encode(), digest_size=8).digest(), "big", signed=True
    )


def transaction_lock(session: Session, name: str) -> None:
    """Hold the lock ``name`` until the session's transaction ends (commit or rollback)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": lock_key(name)})


@contextlib.contextmanager
def migration_lock(engine: Engine) -> Iterator[None]:
    """Exclusive across processes while the schema is upgraded; the second waits, then
    finds the schema at head and has nothing to do."""
    dialect = engine.dialect.name
    if dialect == "postgresql":
        with engine.connect() as connection:
            key = {"key": lock_key(MIGRATION_LOCK)}
            connection.execute(text("SELECT pg_advisory_lock(:key)"), key)
            connection.commit()
            try:
                yield
            finally:
                connection.execute(text("SELECT pg_advisory_unlock(:key)"), key)
                connection.commit()
        return
    database = make_url(engine.url).database if dialect == "sqlite" else None
    if not database or database == ":memory:":
        yield  # a private in-memory database (or another backend): nothing to share
        return
    lock_file = Path(database).expanduser().with_name(Path(database).name + ".migrate-lock")
    with lock_file.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
