"""Shared helpers for the study and db tests: a fresh SQLite file database with users and cards."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from db import Card, Database, Note, get_or_create_user, init_db

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def file_db(tmp_path: Path, name: str = "study.db") -> Database:
    return init_db(f"sqlite:///{tmp_path / name}")


def add_user_with_cards(db: Database, name: str, count: int) -> tuple[int, list[int]]:
    """Create user ``name`` with one note and ``count`` basic cards; return their ids."""

    def work(session):  # noqa: ANN001, ANN202 - test helper
        user = get_or_create_user(session, name)
        note = Note(user_id=user.id, title=f"{name}'s note", body="text", tags=["t"])
        session.add(note)
        session.flush()
        cards = [
            Card(user_id=user.id, note_id=note.id, question=f"Q{i}?", answer=f"A{i}")
            for i in range(count)
        ]
        session.add_all(cards)
        session.flush()
        return user.id, [c.id for c in cards]

    return db.write(work)
