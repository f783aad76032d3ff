"""The card service: list, edit and delete a user's cards.

A user's edit is trusted more than a model's draft, so an edit is checked only for
form (non-empty text, one blank in a cloze, distinct options with the answer among them
in a multiple choice), not for grounding in the note. Another user's card id is
reported as not found (``CardNotFoundError``), as everywhere in the study services.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from db import Card, CardState, Database
from study.errors import CardNotFoundError, InvalidNoteError
from study.notes_service import user_note
from study.quiz.cards import BLANK, CardKind

__all__ = [
    "CardView",
    "card_view",
    "check_edit",
    "delete_card",
    "edit_card",
    "list_cards",
    "user_card",
]


@dataclass(frozen=True, slots=True)
class CardView:
    """A stored card with how it was generated and when it is due (None while new)."""

    id: int
    note_id: int | None
    kind: CardKind
    question: str
    answer: str
    choices: tuple[str, ...]
    gen_model: str | None
    gen_method: str | None
    gen_tokens_per_s: float | None
    created_at: datetime
    due: datetime | None


def user_card(session: Session, user_id: int, card_id: int) -> Card:
    """The card ``card_id`` of ``user_id``, or ``CardNotFoundError`` (also for others' cards)."""
    card = session.scalar(select(Card).where(Card.id == card_id, Card.user_id == user_id))
    if card is None:
        raise CardNotFoundError(f"card {card_id} not found for this user")
    return card


def card_view(card: Card, due: datetime | None = None) -> CardView:
    """A plain value of ``card`` (``due`` from its memory state, if known)."""
    return CardView(
        id=card.id,
        note_id=card.note_id,
        kind=CardKind(card.kind),
        question=card.question,
        answer=card.answer,
        choices=tuple(card.choices or ()),
        gen_model=card.gen_model,
        gen_method=card.gen_method,
        gen_tokens_per_s=card.gen_tokens_per_s,
        created_at=card.created_at,
        due=due,
    )


def list_cards(db: Database, user_id: int, note_id: int | None = None) -> list[CardView]:
    """The user's cards (of one note when ``note_id`` is given), oldest first."""
    query = (
        select(Card, CardState.due)
        .outerjoin(CardState, CardState.card_id == Card.id)
        .where(Card.user_id == user_id)
        .order_by(Card.id)
    )
    with db.read() as session:
        if note_id is not None:
            user_note(session, user_id, note_id)
            query = query.where(Card.note_id == note_id)
        return [card_view(card, due) for card, due in session.execute(query).all()]


def check_edit(kind: CardKind, question: str, answer: str, choices: Sequence[str]) -> None:
    """Raise ``InvalidNoteError`` unless a card written or edited by the user is well formed."""
    if not question.strip():
        raise InvalidNoteError("a card needs a question")
    if not answer.strip():
        raise InvalidNoteError("a card needs an answer")
    if kind is CardKind.CLOZE and question.count(BLANK) != 1:
        raise InvalidNoteError(f"a cloze question needs exactly one blank ({BLANK})")
    if kind is CardKind.MCQ:
        cleaned = [c.strip() for c in choices]
        if len(cleaned) < 2 or any(not c for c in cleaned):
            raise InvalidNoteError("a multiple choice needs at least two non-empty options")
        if len({c.lower() for c in cleaned}) != len(cleaned):
            raise InvalidNoteError("the options of a multiple choice must be distinct")
        if cleaned.count(answer.strip()) != 1:
            raise InvalidNoteError("the answer must be exactly one of the options")


def edit_card(
    db: Database,
    user_id: int,
    card_id: int,
    *,
    question: str | None = None,
    answer: str | None = None,
    choices: Sequence[str] | None = None,
) -> CardView:
    """Change a card's text (``None`` keeps a field); its review history is kept."""

    def work(session: Session) -> CardView:
        card = user_card(session, user_id, card_id)
        kind = CardKind(card.kind)
        new_question = card.question if question is None else question.strip()
        new_answer = card.answer if answer is None else answer.strip()
        new_choices = list(card.choices or ()) if choices is None else [c.strip() for c in choices]
        check_edit(kind, new_question, new_answer, new_choices)
        card.question, card.answer = new_question, new_answer
        if kind is CardKind.MCQ:
            card.choices = new_choices
        session.flush()
        return card_view(card, card.state.due if card.state else None)

    return db.write(work)


def delete_card(db: Database, user_id: int, card_id: int) -> None:
    """Delete a card with its memory state and reviews."""

    def work(session: Session) -> None:
        session.delete(user_card(session, user_id, card_id))

    db.write(work)
