"""The Notes tab's tables: a user's notes and a note's cards as the frames the tab shows,
and the note id read back from the page."""

import pandas as pd

from study.cards_service import list_cards
from study.notes_service import list_notes
from ui.context import AppContext

__all__ = ["CARD_COLUMNS", "NOTE_COLUMNS", "cards_frame", "note_id_of", "notes_frame"]

NOTE_COLUMNS = ["id", "title", "tags", "cards", "updated"]
CARD_COLUMNS = ["id", "kind", "question", "answer", "choices", "made by", "tokens/s", "due"]


def notes_frame(ctx: AppContext, uid: int, search: str, tag: str) -> pd.DataFrame:
    notes = list_notes(ctx.db, uid, search=search or None, tag=tag or None)
    rows = [
        [n.id, n.title, ", ".join(n.tags), n.card_count, f"{n.updated_at:%Y-%m-%d %H:%M}"]
        for n in notes
    ]
    return pd.DataFrame(rows, columns=NOTE_COLUMNS)


def cards_frame(ctx: AppContext, uid: int, note_id: int | None) -> pd.DataFrame:
    if not note_id:
        return pd.DataFrame(columns=CARD_COLUMNS)
    rows = [
        [c.id, c.kind.value, c.question, c.answer, " | ".join(c.choices), f"{c.gen_method or ''} {c.gen_model or ''}".strip(),
         None if c.gen_tokens_per_s is None else round(c.gen_tokens_per_s, 1), f"{c.due:%Y-%m-%d}" if c.due else "new"]
        for c in list_cards(ctx.db, uid, note_id)
    ]  # fmt: skip
    return pd.DataFrame(rows, columns=CARD_COLUMNS)


def note_id_of(value: str | float | int | None) -> int | None:
    """The id in the note-id field (text on the page, a number from the API), or None for
    empty or anything that is not a whole number."""
    text = "" if value is None else str(value).strip().removesuffix(".0")
    return int(text) if text.isdigit() and int(text) > 0 else None
