"""Markdown import into a user's notes, and what to do with notes the user already has.

An import is one transaction: every note of the input is stored, or none (bad input,
or a duplicate under ``OnDuplicate.REFUSE``). A note counts as already present when the
user has a note of the same title: importing the same file twice would otherwise
silently double every note. The caller chooses what happens then; the default refuses
and names the notes (``DuplicateNotesError``), so a user is asked before anything
changes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from db import Database, Note, User
from study import markdown_import
from study.errors import DuplicateNotesError, StudyError
from study.markdown_import import NoteDraft, parse_markdown, parse_markdown_bytes
from study.notes_service import NoteView, add_drafts, apply_draft, card_counts, note_view

__all__ = ["ImportResult", "OnDuplicate", "import_folder", "import_markdown"]


class OnDuplicate(StrEnum):
    """What an import does with a note whose title the user already has."""

    REFUSE = "refuse"
    """Store nothing and raise ``DuplicateNotesError`` naming them (the default)."""
    SKIP = "skip"
    """Keep the user's note as it is; import only the new titles."""
    REPLACE = "replace"
    """The user's note takes the imported text, source and tags; its cards and reviews
    stay (as after an edit). With several notes of that title, the latest updated."""
    KEEP_BOTH = "keep-both"
    """Add the imported note beside the user's (two notes of one title)."""


@dataclass(frozen=True, slots=True)
class ImportResult:
    """What an import did: notes added, notes replaced, titles skipped."""

    added: tuple[NoteView, ...]
    replaced: tuple[NoteView, ...] = ()
    skipped: tuple[str, ...] = ()

    @property
    def notes(self) -> tuple[NoteView, ...]:
        """The notes that now hold the imported text."""
        return self.added + self.replaced

    def summary(self) -> str:
        """One line for the user, e.g. "Imported 2 note(s): A, B; replaced 1: C"."""

        def named(titles: Sequence[str]) -> str:
            return ", ".join(titles[:5]) + ("…" if len(titles) > 5 else "")

        parts = [f"Imported {len(self.added)} note(s)"]
        if self.added:
            parts[0] += f": {named([n.title for n in self.added])}"
        if self.replaced:
            parts.append(
                f"replaced {len(self.replaced)} (cards kept): "
                + named([n.title for n in self.replaced])
            )
        if self.skipped:
            parts.append(f"skipped {len(self.skipped)} already present: {named(self.skipped)}")
        return "; ".join(parts)


def _existing(session: Session, user_id: int, titles: set[str]) -> dict[str, Note]:
    """The user's notes by title among ``titles``; the latest updated one per title."""
    notes = session.scalars(
        select(Note)
        .where(Note.user_id == user_id, Note.title.in_(titles))
        .order_by(Note.updated_at, Note.id)
    )
    return {note.title: note for note in notes}


def _policy(value: OnDuplicate | str) -> OnDuplicate:
    try:
        return OnDuplicate(value)
    except ValueError:
        choices = ", ".join(p.value for p in OnDuplicate)
        raise StudyError(f"on_duplicate {value!r} is not one of {choices}") from None


def _store(
    db: Database, user_id: int, drafts: Sequence[NoteDraft], on_duplicate: OnDuplicate | str
) -> ImportResult:
    policy = _policy(on_duplicate)

    def work(session: Session) -> ImportResult:
        if session.get(User, user_id) is None:
            raise StudyError(f"user {user_id} does not exist: create it with get_or_create_user")
        present = (
            {}
            if policy is OnDuplicate.KEEP_BOTH
            else _existing(session, user_id, {d.title.strip() for d in drafts})
        )
        repeated = [d for d in drafts if d.title.strip() in present]
        if repeated and policy is OnDuplicate.REFUSE:
            raise DuplicateNotesError(list(dict.fromkeys(d.title.strip() for d in repeated)))
        added = add_drafts(session, user_id, [d for d in drafts if d.title.strip() not in present])
        replaced: list[Note] = []
        if policy is OnDuplicate.REPLACE:
            for draft in repeated:
                note = present[draft.title.strip()]
                apply_draft(note, draft)
                replaced.append(note)
        session.flush()
        counts = card_counts(session, [note.id for note in replaced])
        return ImportResult(
            added=tuple(note_view(note, 0) for note in added),
            replaced=tuple(note_view(note, counts.get(note.id, 0)) for note in replaced),
            skipped=tuple(d.title.strip() for d in repeated) if policy is OnDuplicate.SKIP else (),
        )

    return db.write(work)


def import_markdown(
    db: Database,
    user_id: int,
    content: str | bytes,
    filename: str | None = None,
    *,
    on_duplicate: OnDuplicate | str = OnDuplicate.REFUSE,
) -> ImportResult:
    """Import Markdown contents as notes, all in one transaction (bad input imports nothing).

    ``content`` is the text itself, or a file's bytes (an upload); it is never read as a
    path, so a user cannot make the app read a server file by naming it. ``filename``
    titles an untitled note and names the input in messages. Raises
    ``MarkdownImportError``, ``InvalidNoteError`` or ``DuplicateNotesError`` with the reason.
    """
    if isinstance(content, bytes):
        drafts = parse_markdown_bytes(content, filename)
    elif isinstance(content, str):
        drafts = parse_markdown(content, filename)
    else:
        raise StudyError(
            f"import_markdown takes the Markdown text or a file's bytes, not {type(content).__name__}"
            ": import a folder with import_folder"
        )
    return _store(db, user_id, drafts, on_duplicate)


def import_folder(
    db: Database,
    user_id: int,
    folder: Path,
    *,
    on_duplicate: OnDuplicate | str = OnDuplicate.REFUSE,
) -> ImportResult:
    """Import every Markdown file under ``folder`` (named explicitly; no links followed)."""
    return _store(db, user_id, markdown_import.import_folder(folder), on_duplicate)
