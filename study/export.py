"""Export cards to Anki (``.apkg``) and cards and reviews to CSV.

The inputs are plain dataclasses (:class:`ExportCard`, :class:`ExportReview`) so that
this module needs no database: the database layer maps its rows onto them.

Anki identifies a note by its GUID and a deck by its id. Both are derived from a hash
of the user and our own ids, never from the clock or a random draw, so importing a
re-export updates the cards already in Anki instead of adding copies. Basic and
multiple-choice cards use genanki's Basic model, cloze cards its Cloze model; those
models carry fixed ids.

Every file is written to a temporary file in the target folder and renamed over the
target only when complete: a failure leaves the previous file (or none), never half of
one. The review CSV uses the column names of the review logs in ``shared/data``
(``card_id, review_rating, review_time, review_duration``) so that an exported log can
be fed back to ``python -m study evaluate``.
"""

from __future__ import annotations

import csv
import hashlib
import html
import json
import os
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import genanki

from study.errors import StudyError
from study.quiz.cards import BLANK, CardKind

__all__ = [
    "CARD_COLUMNS",
    "REVIEW_COLUMNS",
    "ExportCard",
    "ExportError",
    "ExportReview",
    "anki_guid",
    "export_apkg",
    "read_cards_csv",
    "read_reviews_csv",
    "stable_id",
    "write_cards_csv",
    "write_reviews_csv",
]

CARD_COLUMNS = ("id", "note_title", "kind", "question", "answer", "choices", "tags")
REVIEW_COLUMNS = ("card_id", "review_rating", "review_time", "review_duration")


class ExportError(StudyError, ValueError):
    """Cards or reviews that cannot be exported (or a CSV that cannot be read back)."""


@dataclass(frozen=True, slots=True)
class ExportCard:
    """One card as exported. ``answer`` of a multiple choice is the correct choice's text."""

    id: int | str
    note_title: str
    kind: CardKind
    question: str
    answer: str
    choices: tuple[str, ...] = ()
    tags: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", CardKind.parse(self.kind))
        object.__setattr__(self, "choices", tuple(self.choices))
        object.__setattr__(self, "tags", tuple(self.tags))


@dataclass(frozen=True, slots=True)
class ExportReview:
    """One review: rating 1-4 (Again, Hard, Good, Easy) at an aware time."""

    card_id: int | str
    rating: int
    reviewed_at: datetime
    duration_ms: int

    def __post_init__(self) -> None:
        if self.rating not in (1, 2, 3, 4):
            raise ExportError(f"review of card {self.card_id}: rating {self.rating} not in 1..4")
        if self.reviewed_at.tzinfo is None or self.reviewed_at.utcoffset() is None:
            raise ExportError(f"review of card {self.card_id}: time has no time zone")
        if self.duration_ms < 0:
            raise ExportError(f"review of card {self.card_id}: negative duration")


def stable_id(*parts: object) -> int:
    """A deterministic id in genanki's recommended range [2**30, 2**31) from ``parts``."""
    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode("utf-8")).digest()
    return (1 << 30) + int.from_bytes(digest[:8], "big") % (1 << 30)


def anki_guid(user: str, card_id: int | str) -> str:
    """The Anki note GUID of one of our cards: the same for every export of that card."""
    return genanki.guid_for("selfspec-lab", user, card_id)


def export_apkg(
    cards: Iterable[ExportCard],
    path: str | Path,
    *,
    user: str = "local",
    deck_name: str = "selfspec study",
    timestamp: float | None = None,
) -> Path:
    """Write ``cards`` as an Anki package at ``path`` (atomically) and return the path.

    ``timestamp`` fixes the creation time genanki records (useful for reproducible
    files); ids that matter for updates never depend on it.
    """
    deck = genanki.Deck(stable_id("deck", user, deck_name), deck_name)
    for card in cards:
        deck.add_note(_anki_note(card, user))
    target = Path(path)
    _atomic_write(target, lambda tmp: genanki.Package(deck).write_to_file(tmp, timestamp))
    return target


def _anki_note(card: ExportCard, user: str) -> genanki.Note:
    tags = [_anki_tag(t) for t in (*card.tags, card.kind.value) if _anki_tag(t)]
    guid = anki_guid(user, card.id)
    if card.kind is CardKind.CLOZE:
        if card.question.count(BLANK) != 1:
            raise ExportError(f"cloze card {card.id} needs exactly one blank ({BLANK})")
        before, after = card.question.split(BLANK)
        text = f"{_html(before)}{{{{c1::{_html(card.answer)}}}}}{_html(after)}"
        fields = [text, _html(card.note_title)]
        return genanki.Note(model=genanki.CLOZE_MODEL, fields=fields, tags=tags, guid=guid)
    front, back = _html(card.question), _html(card.answer)
    if card.kind is CardKind.MCQ:
        if card.answer not in card.choices:
            raise ExportError(f"multiple-choice card {card.id}: answer is not one of its choices")
        options = "<br>".join(f"{_letter(i)}) {_html(c)}" for i, c in enumerate(card.choices))
        front = f"{front}<br><br>{options}"
        back = f"{_letter(card.choices.index(card.answer))}) {back}"
    return genanki.Note(model=genanki.BASIC_MODEL, fields=[front, back], tags=tags, guid=guid)


def _letter(index: int) -> str:
    return chr(ord("A") + index)


def _html(text: str) -> str:
    return html.escape(text).replace("\n", "<br>")


def _anki_tag(tag: str) -> str:
    """Anki tags cannot contain spaces."""
    return "_".join(tag.split())


def write_cards_csv(cards: Iterable[ExportCard], path: str | Path) -> Path:
    """Write cards as CSV (choices and tags as JSON lists), atomically."""
    rows = [
        {
            "id": card.id,
            "note_title": card.note_title,
            "kind": card.kind.value,
            "question": card.question,
            "answer": card.answer,
            "choices": json.dumps(list(card.choices), ensure_ascii=False),
            "tags": json.dumps(list(card.tags), ensure_ascii=False),
        }
        for card in cards
    ]
    return _write_csv(Path(path), CARD_COLUMNS, rows)


def write_reviews_csv(reviews: Iterable[ExportReview], path: str | Path) -> Path:
    """Write the review log as CSV in the shared review-log format, atomically."""
    rows = [
        {
            "card_id": review.card_id,
            "review_rating": review.rating,
            "review_time": review.reviewed_at.astimezone(UTC).isoformat(),
            "review_duration": review.duration_ms,
        }
        for review in reviews
    ]
    return _write_csv(Path(path), REVIEW_COLUMNS, rows)


def read_cards_csv(path: str | Path) -> list[ExportCard]:
    """Read a file written by :func:`write_cards_csv` (ids made of digits become ints)."""
    cards = []
    for lineno, row in _read_csv(Path(path), CARD_COLUMNS):
        try:
            cards.append(
                ExportCard(
                    id=_id(row["id"]),
                    note_title=row["note_title"],
                    kind=CardKind.parse(row["kind"]),
                    question=row["question"],
                    answer=row["answer"],
                    choices=tuple(json.loads(row["choices"] or "[]")),
                    tags=tuple(json.loads(row["tags"] or "[]")),
                )
            )
        except ValueError as exc:
            raise ExportError(f"{path}: line {lineno}: {exc}") from None
    return cards


def read_reviews_csv(path: str | Path) -> list[ExportReview]:
    """Read a review log in the shared format (as written by :func:`write_reviews_csv`)."""
    reviews = []
    for lineno, row in _read_csv(Path(path), REVIEW_COLUMNS):
        try:
            reviews.append(
                ExportReview(
                    card_id=_id(row["card_id"]),
                    rating=int(row["review_rating"]),
                    reviewed_at=datetime.fromisoformat(row["review_time"]),
                    duration_ms=int(row["review_duration"]),
                )
            )
        except ValueError as exc:
            raise ExportError(f"{path}: line {lineno}: {exc}") from None
    return reviews


def _id(value: str) -> int | str:
    return int(value) if value.isdigit() else value


def _write_csv(path: Path, columns: tuple[str, ...], rows: list[dict[str, object]]) -> Path:
    def write(tmp: Path) -> None:
        with tmp.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=columns)
            writer.writeheader()
            writer.writerows(rows)

    _atomic_write(path, write)
    return path


def _read_csv(path: Path, columns: tuple[str, ...]) -> list[tuple[int, dict[str, str]]]:
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in columns if c not in (reader.fieldnames or ())]
        if missing:
            raise ExportError(f"{path}: missing column(s) {', '.join(missing)}")
        return [(reader.line_num, row) for row in reader]


def _atomic_write(target: Path, write: Callable[[Path], None]) -> None:
    """Run ``write`` on a temporary file beside ``target``, then rename it into place."""
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(handle)
    tmp = Path(name)
    try:
        write(tmp)
        with tmp.open("rb+") as done:
            os.fsync(done.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
