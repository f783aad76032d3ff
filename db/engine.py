"""Engine, sessions and start-up migration.

Why the SQLite settings: the app writes from Gradio worker threads and a background job
thread at once. WAL lets readers run beside one writer; ``busy_timeout`` makes a writer
wait for the lock instead of failing; and write transactions start with
``BEGIN IMMEDIATE`` so the lock is taken up front. A deferred transaction that reads and
then tries to write can fail with "database is locked" at once, whatever the timeout,
when another writer committed in between; taking the lock first removes that case.
``Database.write`` retries a transaction that still hit a lock, so the error never
reaches the user; on PostgreSQL it retries a deadlock or serialisation failure the same
way.

Start-up checks: several replicas may start together, so the schema upgrade runs under
a cross-process lock (``db.locks.migration_lock``) and happens once; a ``DATABASE_URL``
that is malformed, names a driver that is not installed, or cannot be reached ends with
one message naming the URL (its password hidden), not a stack trace.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from db.locks import migration_lock

__all__ = [
    "DATA_DIR_ENV",
    "DATABASE_URL_ENV",
    "Database",
    "DatabaseUnavailableError",
    "alembic_config",
    "default_url",
    "init_db",
    "make_engine",
    "safe_url",
]

T = TypeVar("T")

DATA_DIR_ENV = "SELFSPEC_DATA_DIR"
DATABASE_URL_ENV = "DATABASE_URL"
MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
BUSY_TIMEOUT_MS = 30_000
_READ_OPTION = "selfspec_read_only"
_RETRY_SQLSTATES = frozenset({"40001", "40P01"})  # serialization_failure, deadlock_detected
CONNECT_TIMEOUT_S = 10
POSTGRES_DRIVER = "postgresql+psycopg"


class DatabaseUnavailableError(RuntimeError):
    """The database URL is malformed, its driver missing, or the server unreachable."""


def default_url() -> str:
    """``DATABASE_URL`` if set, else a SQLite file in ``$SELFSPEC_DATA_DIR`` (default ``./data``)."""
    url = os.environ.get(DATABASE_URL_ENV)
    if url:
        return url
    data_dir = Path(os.environ.get(DATA_DIR_ENV, "data")).expanduser()
    return f"sqlite:///{(data_dir / 'study.db').resolve()}"


def _is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Hand transaction control to the "begin" hook below instead of pysqlite.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        if connection.get_execution_options().get(_READ_OPTION):
            connection.exec_driver_sql("BEGIN")
        else:
            connection.exec_driver_sql("BEGIN IMMEDIATE")


def safe_url(url: str) -> str:
    """``url`` with its password hidden, for messages and logs."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return f"'***@{url.rsplit('@', 1)[1]}'" if "@" in url else repr(url)


def make_engine(url: str | None = None, **kwargs: Any) -> Engine:
    """Create an engine for ``url`` (default: :func:`default_url`), SQLite tuned for threads."""
    url = url or default_url()
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise DatabaseUnavailableError(
            f"DATABASE_URL {safe_url(url)} is not a database URL: use e.g. "
            "sqlite:////data/study.db or postgresql+psycopg://user:password@host/dbname"
        ) from None
    if parsed.drivername in ("postgres", "postgresql"):
        parsed = parsed.set(drivername=POSTGRES_DRIVER)  # the driver we install
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    if parsed.get_backend_name() == "postgresql":
        kwargs.setdefault("pool_pre_ping", True)
        kwargs.setdefault("connect_args", {"connect_timeout": CONNECT_TIMEOUT_S})
    try:
        engine = create_engine(parsed, **kwargs)
    except (NoSuchModuleError, ModuleNotFoundError) as error:
        raise DatabaseUnavailableError(
            f"database {safe_url(url)}: its driver is not installed ({error}); for PostgreSQL "
            "use postgresql+psycopg://... (psycopg is in requirements.txt)"
        ) from None
    if _is_sqlite(engine):
        _configure_sqlite(engine)
    return engine


def alembic_config(engine: Engine) -> Config:
    """Alembic configuration bound to ``engine``; also what you use to add a revision."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", engine.url.render_as_string(hide_password=False))
    config.attributes["engine"] = engine
    return config


def _is_lock_error(error: OperationalError) -> bool:
    if getattr(error.orig, "sqlstate", None) in _RETRY_SQLSTATES:
        return True
    text = str(error.orig).lower()
    return "locked" in text or "busy" in text


@dataclass(frozen=True)
class Database:
    """An engine with its session factories; the object the services receive."""

    engine: Engine
    sessions: sessionmaker[Session]
    read_sessions: sessionmaker[Session]

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A session for queries only; on SQLite it does not take the write lock."""
        with self.read_sessions() as session:
            yield session

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """One write transaction: committed on success, rolled back on any error."""
        with self.sessions.begin() as session:
            yield session

    def write(self, work: Callable[[Session], T], attempts: int = 8) -> T:
        """Run ``work`` in one transaction, retrying the whole of it if the database was locked.

        ``work`` must be safe to rerun: it is called again from the start after a rollback.
        """
        for attempt in range(attempts):
            try:
                with self.transaction() as session:
                    return work(session)
            except OperationalError as error:
                if not _is_lock_error(error) or attempt == attempts - 1:
                    raise
                time.sleep(0.05 * 2**attempt)
        raise AssertionError("unreachable")

    def ping(self) -> bool:
        """Whether the database answers a trivial query now (the health check)."""
        try:
            with self.read() as session:
                session.execute(text("SELECT 1"))
        except Exception:  # any failure means "not healthy"; the caller reports it
            return False
        return True

    def dispose(self) -> None:
        """Close all pooled connections (tests, shutdown)."""
        self.engine.dispose()


def init_db(url: str | None = None, *, upgrade: bool = True, **engine_kwargs: Any) -> Database:
    """Open the database at ``url`` and bring its schema to the newest revision.

    An existing database is upgraded in place by Alembic, never dropped or recreated,
    under a lock so that processes starting together upgrade it once. Raises
    ``DatabaseUnavailableError`` (with the URL, password hidden) when it cannot be opened.
    """
    url = url or default_url()
    engine = make_engine(url, **engine_kwargs)
    try:
        with engine.connect():
            pass
    except OperationalError as error:
        engine.dispose()
        reason = str(error.orig or error).strip().splitlines()[0]
        raise DatabaseUnavailableError(
            f"cannot open the database {safe_url(url)}: {reason}. "
            "Check DATABASE_URL and that the database server is running."
        ) from None
    if upgrade:
        with migration_lock(engine):
            command.upgrade(alembic_config(engine), "head")
    sessions = sessionmaker(engine, expire_on_commit=False)
    read_sessions = sessionmaker(
        engine.execution_options(**{_READ_OPTION: True}), expire_on_commit=False
    )
    return Database(engine=engine, sessions=sessions, read_sessions=read_sessions)
