"""Revision 0003 upgrades a 0002 database in place: seeding flag and job-run log."""

from __future__ import annotations

from alembic import command
from sqlalchemy import inspect, text

from db import init_db
from db.engine import alembic_config, make_engine
from study.notes import seed_notes
from study.notes_service import ensure_seed_notes, list_notes


def test_upgrade_from_0002_keeps_data_and_seeds_existing_users_once(tmp_path):
    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = make_engine(url)
    command.upgrade(alembic_config(engine), "0002")
    seed_title = seed_notes()[0].title
    with engine.begin() as conn:
        conn.execute(
            text("INSERT INTO users (id, name, created_at) VALUES (3, 'old', '2025-01-01')")
        )
        conn.execute(
            text(
                "INSERT INTO notes (user_id, title, body, tags, created_at, updated_at) "
                "VALUES (3, :title, 'my own copy', '[]', '2025-01-01', '2025-01-01')"
            ),
            {"title": seed_title},
        )
    assert "job_runs" not in inspect(engine).get_table_names()
    engine.dispose()

    db = init_db(url)
    assert "job_runs" in inspect(db.engine).get_table_names()
    assert "seeded_at" in {c["name"] for c in inspect(db.engine).get_columns("users")}
    assert ensure_seed_notes(db, 3) == len(seed_notes()) - 1  # the title it had is skipped
    mine = [n for n in list_notes(db, 3) if n.title == seed_title]
    assert [n.body for n in mine] == ["my own copy"]
    assert ensure_seed_notes(db, 3) == 0
    db.dispose()
