"""The note service: a user's notes and the one-time seed notes (Markdown import is in
``study.note_import``).

Every function takes the user's id and touches only that user's rows: another user's
note id is reported as not found, so ids leak nothing. Every change is one transaction
(``Database.write``).

Seeding is recorded on the user (``User.seeded_at``) rather than inferred from the notes
present, so a user who deletes the seed notes does not get them back on the next start.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from db import Card, Database, Note, User, utcnow
from study.errors import InvalidNoteError, NoteNotFoundError, StudyError
from study.markdown_import import MAX_BYTES, NoteDraft
from study.notes import SEED_CARD_MODEL, seed_cards, seed_notes

__all__ = [
    "MAX_TITLE_CHARS",
    "NoteView",
    "add_drafts",
    "apply_draft",
    "add_note",
    "card_counts",
    "delete_note",
    "edit_note",
    "ensure_seed_notes",
    "get_note",
    "list_notes",
    "note_view",
    "user_note",
]

MAX_TITLE_CHARS = 500
_UNSET = object()


@dataclass(frozen=True, slots=True)
class NoteView:
    """A stored note as the UI shows it (a plain value: safe to keep after the session)."""

    id: int
    title: str
    body: str
    source: str | None
    tags: tuple[str, ...]
    card_count: int
    created_at: datetime
    updated_at: datetime


def user_note(session: Session, user_id: int, note_id: int) -> Note:
    """The note ``note_id`` of ``user_id``, or ``NoteNotFoundError`` (also for others' notes)."""
    note = session.scalar(select(Note).where(Note.id == note_id, Note.user_id == user_id))
    if note is None:
        raise NoteNotFoundError(f"note {note_id} not found for this user")
    return note


def note_view(note: Note, card_count: int) -> NoteView:
    """The stored note as a plain value."""
    return NoteView(
        id=note.id,
        title=note.title,
        body=note.body,
        source=note.source,
        tags=tuple(note.tags or ()),
        card_count=card_count,
        created_at=note.created_at,
        updated_at=note.updated_at,
    )


def card_counts(session: Session, note_ids: Sequence[int]) -> dict[int, int]:
    """Cards per note id, for the ids that have any."""
    if not note_ids:
        return {}
    rows = session.execute(
        select(Card.note_id, func.count()).where(Card.note_id.in_(note_ids)).group_by(Card.note_id)
    ).all()
    return {note_id: count for note_id, count in rows}


def _clean_title(title: str) -> str:
    text = (title or "").strip()
    if not text:
        raise InvalidNoteError("a note needs a title")
    if len(text) > MAX_TITLE_CHARS:
        raise InvalidNoteError(f"title is {len(text)} characters; the limit is {MAX_TITLE_CHARS}")
    return text


def _clean_body(body: str) -> str:
    text = (body or "").strip("\n")
    if not text.strip():
        raise InvalidNoteError("a note needs some text in its body")
    size = len(text.encode("utf-8"))
    if size > MAX_BYTES:
        raise InvalidNoteError(f"note body is {size:,} bytes; the limit is {MAX_BYTES:,} (1 MB)")
    return text


def _clean_tags(tags: Iterable[str]) -> list[str]:
    if isinstance(tags, str):
        tags = tags.split(",")
    seen: dict[str, None] = {}
    for tag in tags:
        if not isinstance(tag, str):
            raise InvalidNoteError(f"tag {tag!r} is not text")
        if tag.strip():
            seen.setdefault(tag.strip(), None)
    return list(seen)


def _clean_source(source: str | None) -> str | None:
    text = (source or "").strip()
    if len(text) > 1000:
        raise InvalidNoteError("source is longer than 1000 characters")
    return text or None


def add_note(
    db: Database,
    user_id: int,
    title: str,
    body: str,
    *,
    source: str | None = None,
    tags: Iterable[str] = (),
) -> NoteView:
    """Store a new note written by the user; raises ``InvalidNoteError`` on bad input."""
    draft = NoteDraft(_clean_title(title), _clean_body(body), _clean_source(source), tuple(tags))
    return _store_drafts(db, user_id, [draft])[0]


def edit_note(
    db: Database,
    user_id: int,
    note_id: int,
    *,
    title: str | None = None,
    body: str | None = None,
    source: str | None | object = _UNSET,
    tags: Iterable[str] | None = None,
) -> NoteView:
    """Change the given fields of a note (``None`` keeps a field; ``source=None`` clears it).

    The note's cards stay as they are: a card that no longer fits the edited text can be
    edited or deleted by the user.
    """
    changes: dict[str, object] = {}
    if title is not None:
        changes["title"] = _clean_title(title)
    if body is not None:
        changes["body"] = _clean_body(body)
    if source is not _UNSET:
        changes["source"] = _clean_source(source)  # type: ignore[arg-type]
    if tags is not None:
        changes["tags"] = _clean_tags(tags)

    def work(session: Session) -> NoteView:
        note = user_note(session, user_id, note_id)
        for key, value in changes.items():
            setattr(note, key, value)
        note.updated_at = utcnow()
        session.flush()
        return note_view(note, card_counts(session, [note.id]).get(note.id, 0))

    return db.write(work)


def delete_note(db: Database, user_id: int, note_id: int) -> None:
    """Delete a note with its cards and their reviews (quiz-run records keep no link)."""

    def work(session: Session) -> None:
        session.delete(user_note(session, user_id, note_id))

    db.write(work)


def get_note(db: Database, user_id: int, note_id: int) -> NoteView:
    """One note of the user."""
    with db.read() as session:
        note = user_note(session, user_id, note_id)
        return note_view(note, card_counts(session, [note.id]).get(note.id, 0))


def _like_pattern(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def list_notes(
    db: Database, user_id: int, *, search: str | None = None, tag: str | None = None
) -> list[NoteView]:
    """The user's notes, newest first; ``search`` matches title or body (case-insensitive),
    ``tag`` keeps notes carrying exactly that tag."""
    query = select(Note).where(Note.user_id == user_id)
    if search and search.strip():
        pattern = _like_pattern(search.strip())
        query = query.where(
            or_(Note.title.ilike(pattern, escape="\\"), Note.body.ilike(pattern, escape="\\"))
        )
    with db.read() as session:
        notes = list(session.scalars(query.order_by(Note.created_at.desc(), Note.id.desc())))
        if tag and tag.strip():
            wanted = tag.strip()
            notes = [note for note in notes if wanted in (note.tags or ())]
        counts = card_counts(session, [note.id for note in notes])
        return [note_view(note, counts.get(note.id, 0)) for note in notes]


def add_drafts(session: Session, user_id: int, drafts: Sequence[NoteDraft]) -> list[Note]:
    """Add the drafts as notes of ``user_id`` in ``session``, each checked like a new note."""
    notes = [
        Note(
            user_id=user_id,
            title=_clean_title(draft.title),
            body=_clean_body(draft.body),
            source=_clean_source(draft.source),
            tags=_clean_tags(draft.tags),
        )
        for draft in drafts
    ]
    session.add_all(notes)
    session.flush()
    return notes


def apply_draft(note: Note, draft: NoteDraft) -> None:
    """Give an existing note the draft's text, source and tags (checked like an edit); its
    id, cards and their reviews stay."""
    note.body = _clean_body(draft.body)
    note.source = _clean_source(draft.source)
    note.tags = _clean_tags(draft.tags)
    note.updated_at = utcnow()


def _store_drafts(db: Database, user_id: int, drafts: Sequence[NoteDraft]) -> list[NoteView]:
    def work(session: Session) -> list[NoteView]:
        if session.get(User, user_id) is None:
            raise StudyError(f"user {user_id} does not exist: create it with get_or_create_user")
        return [note_view(note, 0) for note in add_drafts(session, user_id, drafts)]

    return db.write(work)


def ensure_seed_notes(db: Database, user_id: int) -> int:
    """Give the user the seed notes, with their vetted cards, once; return the notes added.

    Titles the user already has are skipped, so a database from before seeding was
    recorded does not get copies of notes it holds.
    """
    drafts = seed_notes()

    def work(session: Session) -> int:
        # Locked, so two first requests of one user at once seed once on PostgreSQL too
        # (SQLite's BEGIN IMMEDIATE already serialises them).
        user = session.get(User, user_id, with_for_update=True)
        if user is None:
            raise StudyError(f"user {user_id} does not exist: create it with get_or_create_user")
        if user.seeded_at is not None:
            return 0
        have = set(session.scalars(select(Note.title).where(Note.user_id == user_id)))
        added = add_drafts(session, user_id, [d for d in drafts if d.title not in have])
        vetted = seed_cards()
        session.add_all(
            Card(
                user_id=user_id,
                note_id=note.id,
                kind=card.kind.value,
                question=card.question,
                answer=card.answer,
                choices=list(card.choices) or None,
                gen_model=SEED_CARD_MODEL,
            )
            for note in added
            for card in vetted.get(note.title, [])
        )
        user.seeded_at = utcnow()
        return len(added)

    return db.write(work)
