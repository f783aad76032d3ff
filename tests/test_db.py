"""The database layer: migrations, SQLite settings, UTC times, constraints, run records.

Every test that is not about SQLite itself runs on both backends (``db_url``, ``db``)."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, select, text
from sqlalchemy.exc import IntegrityError, StatementError

from db import (
    Base,
    Card,
    DatabaseUnavailableError,
    DecodeRun,
    QuizRun,
    Review,
    User,
    UserSettings,
    decode_runs,
    default_url,
    ensure_user,
    init_db,
    predicted_reviews,
)
from db.engine import alembic_config, make_engine
from db.records import get_or_create_user, record_decode_run, record_quiz_run
from tests.study_helpers import add_user_with_cards, file_db


def _head() -> str:
    engine = make_engine("sqlite://")
    return ScriptDirectory.from_config(alembic_config(engine)).get_current_head()


def _version(db) -> str:  # noqa: ANN001
    with db.engine.connect() as conn:
        return conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one()


def test_init_from_empty_creates_schema_at_head(fresh_db_url):
    db = init_db(fresh_db_url)
    tables = set(inspect(db.engine).get_table_names())
    assert {
        "users",
        "notes",
        "cards",
        "card_states",
        "reviews",
        "quiz_runs",
        "decode_runs",
    } <= tables
    assert _version(db) == _head()
    db.dispose()


def test_sqlite_runs_with_wal_foreign_keys_and_a_busy_timeout(tmp_path):
    db = file_db(tmp_path)
    with db.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 5000


def test_migrations_match_the_models(db):
    with db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []


def test_older_schema_is_upgraded_in_place_keeping_data(fresh_db_url):
    url = fresh_db_url
    engine = make_engine(url)
    command.upgrade(alembic_config(engine), "0001")
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO users (id, name, created_at) VALUES (7, 'old', '2025-01-01 00:00:00')"
            )
        )
    assert "user_settings" not in inspect(engine).get_table_names()
    engine.dispose()

    db = init_db(url)
    assert _version(db) == _head()
    with db.read() as session:
        user = session.get(User, 7)
        assert user.name == "old"
        assert user.created_at == datetime(2025, 1, 1, tzinfo=UTC)
    assert "user_settings" in inspect(db.engine).get_table_names()
    init_db(url)  # a second start finds nothing to do and loses nothing
    with db.read() as session:
        assert session.scalar(select(User.name).where(User.id == 7)) == "old"
    db.dispose()


def test_init_db_never_recreates_existing_data(db_url):
    db = init_db(db_url)
    user_id, cards = add_user_with_cards(db, "ann", 3)
    db.dispose()
    again = init_db(db_url)
    with again.read() as session:
        assert session.scalar(select(Card.id).where(Card.user_id == user_id).limit(1)) == cards[0]
    again.dispose()


def test_times_are_utc_aware_and_naive_times_are_refused(db):
    moment = datetime(2026, 3, 1, 12, 30, tzinfo=UTC)
    db.write(lambda s: record_decode_run(s, method="vanilla", model="m", created_at=moment))
    with db.read() as session:
        stored = session.scalar(select(DecodeRun.created_at))
    assert stored == moment and stored.tzinfo is not None
    with pytest.raises(StatementError, match="naive datetime"):
        db.write(
            lambda s: record_decode_run(s, method="v", model="m", created_at=datetime(2026, 1, 1))
        )


def test_foreign_keys_and_checks_are_enforced(db):
    with pytest.raises(IntegrityError):
        db.write(lambda s: s.add(Card(user_id=999, question="q", answer="a")) or s.flush())
    user_id, _ = add_user_with_cards(db, "bob", 0)
    with pytest.raises(IntegrityError):
        db.write(
            lambda s: (
                s.add(Card(user_id=user_id, kind="essay", question="q", answer="a")) or s.flush()
            )
        )
    with pytest.raises(IntegrityError):
        db.write(
            lambda s: setattr(s.get(UserSettings, user_id), "desired_retention", 0.5) or s.flush()
        )


def test_user_creation_gives_default_settings(db):
    user_id = db.write(lambda s: get_or_create_user(s, "carol").id)
    assert db.write(lambda s: get_or_create_user(s, "carol").id) == user_id
    with db.read() as session:
        settings = session.get(UserSettings, user_id)
        assert (settings.memory_model, settings.desired_retention) == ("auto", 0.9)
    with pytest.raises(ValueError, match="empty"):
        db.write(lambda s: get_or_create_user(s, "  "))


def test_run_records(db):
    user_id, _ = add_user_with_cards(db, "dan", 0)
    db.write(
        lambda s: record_decode_run(
            s,
            method="kangaroo",
            model="smollm2",
            tokens_per_s=41.5,
            speedup=1.3,
            mean_accepted=2.1,
            acceptance_rate=0.6,
            lossless=True,
            extra={"k": 4},
        )
    )
    db.write(
        lambda s: record_quiz_run(s, user_id=user_id, status="failed", reason="no valid question")
    )
    with pytest.raises(ValueError, match="reason"):
        db.write(lambda s: record_quiz_run(s, user_id=user_id, status="failed"))
    with db.read() as session:
        run = session.scalar(select(DecodeRun))
        assert (run.lossless, run.extra) == (True, {"k": 4})
        assert session.scalar(select(QuizRun.reason)) == "no valid question"


def test_default_url_uses_data_dir_and_database_url(monkeypatch, tmp_path):
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setenv("SELFSPEC_DATA_DIR", str(tmp_path / "data"))
    assert default_url() == f"sqlite:///{tmp_path / 'data' / 'study.db'}"
    db = init_db()
    assert (tmp_path / "data" / "study.db").exists()
    db.dispose()
    monkeypatch.setenv("DATABASE_URL", "sqlite:///elsewhere.db")
    assert default_url() == "sqlite:///elsewhere.db"


def test_sqlite_file_is_readable_by_plain_sqlite(tmp_path):
    db = file_db(tmp_path)
    add_user_with_cards(db, "eve", 2)
    db.dispose()
    with sqlite3.connect(tmp_path / "study.db") as conn:
        assert conn.execute("SELECT count(*) FROM cards").fetchone()[0] == 2


def test_postgresql_is_really_tested(db, backend):
    """The PostgreSQL half of every parametrised test talks to a real server."""
    query = "SELECT sqlite_version()" if backend == "sqlite" else "SELECT version()"
    with db.read() as session:
        version = session.execute(text(query)).scalar_one()
    assert version.startswith("PostgreSQL") == (backend == "postgresql")


def test_an_unreachable_or_malformed_url_says_which_without_the_password():
    with pytest.raises(DatabaseUnavailableError, match=r"bob:\*\*\*@127\.0\.0\.1:1/x") as error:
        init_db("postgresql+psycopg://bob:hunter2@127.0.0.1:1/x")
    assert "hunter2" not in str(error.value) and "DATABASE_URL" in str(error.value)
    with pytest.raises(DatabaseUnavailableError, match="not a database URL"):
        init_db("localhost:5432")


_START_TOGETHER = """
import sys, time
from db import init_db
time.sleep(max(0.0, float(sys.argv[2]) - time.time()))
init_db(sys.argv[1]).dispose()
"""


def test_processes_starting_together_migrate_once(fresh_db_url, tmp_path):
    """Three replicas start on an empty database at the same instant: the migration lock
    lets one upgrade while the others wait, then they find the schema at head."""
    start_at = time.time() + 3
    runs = [
        subprocess.Popen(
            [sys.executable, "-c", _START_TOGETHER, fresh_db_url, str(start_at)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(3)
    ]
    outputs = [run.communicate(timeout=120)[0] for run in runs]
    assert [run.returncode for run in runs] == [0, 0, 0], "\n".join(outputs)
    db = init_db(fresh_db_url, upgrade=False)
    assert _version(db) == _head()
    db.dispose()


def test_chart_queries_are_scoped_ordered_and_skip_undone_reviews(db):
    erin, (card,) = add_user_with_cards(db, "erin", 1)
    other = ensure_user(db, "fay")
    assert ensure_user(db, "erin") == erin
    start = datetime(2026, 1, 1, tzinfo=UTC)
    for i, (who, method) in enumerate([(erin, "a"), (other, "b"), (erin, "c"), (erin, "d")]):
        db.write(
            lambda s, who=who, method=method, i=i: record_decode_run(
                s, method=method, model="m", user_id=who, created_at=start + timedelta(hours=i)
            )
        )
    assert [r.method for r in decode_runs(db, erin)] == ["a", "c", "d"]  # oldest first
    assert [r.method for r in decode_runs(db, erin, limit=2)] == ["c", "d"]  # the latest two

    def reviews(session):  # noqa: ANN001, ANN202 - test helper
        for i, undone in enumerate([None, start]):
            session.add(Review(card_id=card, user_id=erin, rating=3 - i, idempotency_key=f"k{i}",
                               reviewed_at=start + timedelta(days=i), predicted_recall=0.8,
                               undone_at=undone))  # fmt: skip

    db.write(reviews)
    assert [(r.rating, r.predicted_recall) for r in predicted_reviews(db, erin)] == [(3, 0.8)]
    assert predicted_reviews(db, other) == []
    assert db.ping()
