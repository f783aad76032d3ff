"""Export a user's cards (Anki ``.apkg``, CSV) and review log (CSV) from the database.

This maps database rows onto :mod:`study.export`'s plain dataclasses and leaves the
file formats to that module. Card ids in the files are our database ids and the Anki
GUIDs derive from the user's name and those ids, so a re-export updates the cards
already imported into Anki instead of duplicating them.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from sqlalchemy import select

from db import Card, Database, Note, Review, User
from study.errors import StudyError
from study.export import (
    ExportCard,
    ExportReview,
    export_apkg,
    write_cards_csv,
    write_reviews_csv,
)

__all__ = [
    "ExportFormat",
    "ExportSummary",
    "export_user_data",
    "user_export_cards",
    "user_export_reviews",
]


class ExportFormat(StrEnum):
    APKG = "apkg"
    CARDS_CSV = "cards-csv"
    REVIEWS_CSV = "reviews-csv"


@dataclass(frozen=True, slots=True)
class ExportSummary:
    """The file written and how many cards or reviews went into it."""

    path: Path
    format: ExportFormat
    count: int


def user_export_cards(db: Database, user_id: int) -> list[ExportCard]:
    """Every card of the user as an :class:`ExportCard`, in id order."""
    with db.read() as session:
        rows = session.execute(
            select(Card, Note.title, Note.tags)
            .outerjoin(Note, Note.id == Card.note_id)
            .where(Card.user_id == user_id)
            .order_by(Card.id)
        ).all()
    return [
        ExportCard(
            id=card.id,
            note_title=title or "",
            kind=card.kind,
            question=card.question,
            answer=card.answer,
            choices=tuple(card.choices or ()),
            tags=tuple(tags or ()),
        )
        for card, title, tags in rows
    ]


def user_export_reviews(db: Database, user_id: int) -> list[ExportReview]:
    """The user's kept (not undone) reviews in time order."""
    with db.read() as session:
        rows = session.scalars(
            select(Review)
            .where(Review.user_id == user_id, Review.undone_at.is_(None))
            .order_by(Review.reviewed_at, Review.id)
        ).all()
    return [
        ExportReview(
            card_id=r.card_id, rating=r.rating, reviewed_at=r.reviewed_at, duration_ms=r.duration_ms
        )
        for r in rows
    ]


def export_user_data(
    db: Database, user_id: int, fmt: ExportFormat | str, out: str | Path
) -> ExportSummary:
    """Write the user's cards or reviews to ``out`` in ``fmt`` (written atomically)."""
    try:
        chosen = ExportFormat(fmt)
    except ValueError:
        known = ", ".join(f.value for f in ExportFormat)
        raise StudyError(f"unknown export format {fmt!r}: use one of {known}") from None
    with db.read() as session:
        user_name = session.scalar(select(User.name).where(User.id == user_id))
    if user_name is None:
        raise StudyError(f"user {user_id} does not exist")
    if chosen is ExportFormat.REVIEWS_CSV:
        reviews = user_export_reviews(db, user_id)
        return ExportSummary(write_reviews_csv(reviews, out), chosen, len(reviews))
    cards = user_export_cards(db, user_id)
    if chosen is ExportFormat.APKG:
        path = export_apkg(cards, out, user=user_name, deck_name=f"selfspec study ({user_name})")
    else:
        path = write_cards_csv(cards, out)
    return ExportSummary(path, chosen, len(cards))
