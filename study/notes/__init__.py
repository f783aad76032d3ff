"""The seed notes: one note per topic behind this product, written for this project.

They ship as Markdown files in ``study/notes/seed/`` and go through the same importer
as a user's own notes, so the seed content is checked by the same rules; a few vetted
cards per note ship beside them in ``cards.json``. ``ensure_seed_notes`` (in
``study.notes_service``) gives them, with their cards, to a user once.
"""

from __future__ import annotations

import json
from importlib.resources import files

from study.markdown_import import MARKDOWN_SUFFIXES, NoteDraft, parse_markdown
from study.quiz.cards import CardDraft, CardKind

__all__ = ["SEED_CARD_MODEL", "seed_cards", "seed_notes"]

SEED_CARD_MODEL = "vetted seed card"
"""What a seed card records as its generator: written and checked by hand, not a model."""


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


def seed_cards() -> dict[str, list[CardDraft]]:
    """The vetted cards of each seed note, by note title (``seed/cards.json``).

    Why: a first visit's Review must have something to review before any model has run,
    and these cards show what a good card looks like. Each is checked by the same rules
    as a generated card (a test holds them to it).
    """
    folder = files(__package__) / "seed"
    by_file = json.loads((folder / "cards.json").read_text(encoding="utf-8"))
    out: dict[str, list[CardDraft]] = {}
    for name, cards in sorted(by_file.items()):
        [note] = parse_markdown((folder / name).read_text(encoding="utf-8"), filename=name)
        out[note.title] = [
            CardDraft(
                kind=CardKind.parse(card["kind"]),
                question=card["question"],
                answer=card["answer"],
                choices=tuple(card.get("choices", ())),
                correct_index=(
                    card["choices"].index(card["answer"]) if "choices" in card else None
                ),
            )
            for card in cards
        ]
    return out
