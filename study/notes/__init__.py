"""The seed notes: one note per topic behind this product, written for this project.

They ship as Markdown files in ``study/notes/seed/`` and go through the same importer
as a user's own notes, so the seed content is checked by the same rules. The database
layer loads them for a new user.
"""

from __future__ import annotations

from importlib.resources import files

from study.markdown_import import MARKDOWN_SUFFIXES, NoteDraft, parse_markdown

__all__ = ["seed_notes"]


def seed_notes() -> list[NoteDraft]:
    """Every seed note, in file-name order (stable, so seeding is repeatable)."""
    folder = files(__package__) / "seed"
    entries = sorted(
        (e for e in folder.iterdir() if e.name.lower().endswith(MARKDOWN_SUFFIXES)),
        key=lambda e: e.name,
    )
    return [
        note
        for entry in entries
        for note in parse_markdown(entry.read_text(encoding="utf-8"), filename=entry.name)
    ]
