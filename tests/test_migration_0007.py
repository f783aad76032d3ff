"""Revision 0007 adds ``chosen_model``; a user who named a memory model keeps it."""

from __future__ import annotations

from alembic import command
from sqlalchemy import text

from db import init_db
from db.engine import alembic_config, make_engine
from study.settings import read_settings


def test_upgrade_keeps_an_existing_users_named_model(fresh_db_url):
    engine = make_engine(fresh_db_url)
    command.upgrade(alembic_config(engine), "0006")
    with engine.begin() as conn:
        conn.execute(
            text("INSERT INTO users (id, name, created_at) VALUES (4, 'old', '2025-01-01')")
        )
        conn.execute(
            text(
                "INSERT INTO user_settings (user_id, memory_model, desired_retention, "
                "daily_new_limit, maximum_interval_days, daily_job_time, fitted_params, "
                "fitted_review_count) VALUES (4, 'fsrs6', 0.9, 20, 36500, '03:00', '{}', 0)"
            )
        )
    engine.dispose()

    db = init_db(fresh_db_url)
    settings = read_settings(db, 4)
    assert (settings.memory_model, settings.model.name) == ("fsrs6", "fsrs6")
    with db.read() as session:
        assert session.execute(text("SELECT chosen_model FROM user_settings")).scalar() is None
    db.dispose()
