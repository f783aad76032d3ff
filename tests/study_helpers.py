"""Shared helpers for the study and db tests: a fresh SQLite file database with users and cards."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

from db import Card, Database, Note, Review, get_or_create_user, init_db
from study.memory import MemoryModel, Rating, ReviewEvent

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


def simulate_reviews(
    model: MemoryModel,
    cards: int,
    seed: int,
    *,
    start: datetime = T0,
    gap_days: tuple[float, float] | None = None,
) -> list[list[ReviewEvent]]:
    """Review histories drawn from ``model``: recall happens with the predicted probability.

    Each card is first answered within 500 hours of ``start``, then reviewed 4 to 10
    times; the gap is the card's stability times 0.3 to 3 (a day at least) or, with
    ``gap_days``, drawn uniformly from that range whatever the stability.
    """
    rng = random.Random(seed)
    histories = []
    for _ in range(cards):
        at = start + timedelta(hours=rng.uniform(0, 500))
        first = Rating.AGAIN if rng.random() < 0.3 else Rating.GOOD
        events = [ReviewEvent(at, first)]
        state = model.review(None, first, at)
        for _ in range(rng.randint(4, 10)):
            days = (
                rng.uniform(*gap_days)
                if gap_days
                else max(1.0, state.stability * rng.uniform(0.3, 3.0))
            )
            at = at + timedelta(days=days)
            rating = Rating.GOOD if rng.random() < model.recall(state, at) else Rating.AGAIN
            events.append(ReviewEvent(at, rating))
            state = model.review(state, rating, at)
        histories.append(events)
    return histories


def add_histories(db: Database, user_id: int, cards: list[int], histories: list) -> int:
    """Store ``histories`` (one per card id of ``cards``) as the user's reviews; their count."""

    def work(session):  # noqa: ANN001, ANN202 - test helper
        for card, history in zip(cards, histories, strict=True):
            for index, event in enumerate(history):
                session.add(
                    Review(
                        user_id=user_id,
                        card_id=card,
                        reviewed_at=event.at,
                        rating=int(event.rating),
                        idempotency_key=f"sim-{card}-{index}",
                    )
                )
        return sum(len(history) for history in histories)

    return db.write(work)
