"""Reading a learner's review log (the shared CSV format) for the evaluation.

Bad input never becomes a silent wrong metric: a row that cannot be read fails the file
with its line number, and what is skipped or repaired is counted in the result.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from study.errors import InvalidReviewLogError
from study.memory import Rating, ReviewEvent

__all__ = ["REQUIRED_COLUMNS", "ReviewLog", "load_review_log"]

REQUIRED_COLUMNS = ("card_id", "review_rating", "review_time")


@dataclass(frozen=True)
class ReviewLog:
    """One learner's card histories, and what reading the file skipped or repaired.

    ``skipped`` counts rows left out, by reason; ``notes`` counts what was kept but is
    worth knowing (rows out of time order, cards with a single review, which have
    nothing to predict). Nothing is dropped without being counted here.
    """

    name: str
    histories: dict[str, list[ReviewEvent]]
    skipped: dict[str, int] = field(default_factory=dict)
    notes: dict[str, int] = field(default_factory=dict)

    @property
    def reviews(self) -> int:
        return sum(len(h) for h in self.histories.values())

    def summary(self) -> str:
        counted = {**self.skipped, **self.notes}
        parts = [f"{count} {reason}" for reason, count in counted.items() if count]
        return f"{self.name}: {self.reviews} reviews of {len(self.histories)} cards" + (
            f" ({'; '.join(parts)})" if parts else ""
        )


def load_review_log(path: Path | str) -> ReviewLog:
    """A learner's log from a CSV in the shared review-log format, checked row by row.

    A row that cannot be read (unknown rating, bad time, no card) fails the whole file
    with its line number, never half-read. A second review of a card at the very same
    time is a duplicate export, not a review: it is skipped and counted. Rows out of
    time order are sorted and counted.
    """
    path = Path(path)
    if not path.is_file():
        raise InvalidReviewLogError(f"review log {path} does not exist or is not a file")
    rows: dict[str, list[ReviewEvent]] = defaultdict(list)
    out_of_order = 0
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise InvalidReviewLogError(
                    f"{path}: missing column(s) {', '.join(missing)}; expected a header with "
                    f"{', '.join(REQUIRED_COLUMNS)} (review_duration optional)"
                )
            for line, row in enumerate(reader, start=2):
                card_id, event = _parse_row(row, path, line)
                previous = rows[card_id]
                out_of_order += bool(previous) and event.at < previous[-1].at
                previous.append(event)
    except UnicodeDecodeError as error:
        raise InvalidReviewLogError(f"{path}: not UTF-8 text ({error})") from error
    except csv.Error as error:
        raise InvalidReviewLogError(f"{path}: malformed CSV ({error})") from error
    if not rows:
        raise InvalidReviewLogError(f"{path}: no reviews in the file")
    histories: dict[str, list[ReviewEvent]] = {}
    duplicates = 0
    for card_id, events in rows.items():
        events.sort(key=lambda e: e.at)
        kept = [e for i, e in enumerate(events) if i == 0 or e.at != events[i - 1].at]
        duplicates += len(events) - len(kept)
        histories[card_id] = kept
    return ReviewLog(
        name=path.stem,
        histories=histories,
        skipped={"duplicate reviews (same card, same time) skipped": duplicates},
        notes={
            "rows out of time order (sorted)": out_of_order,
            "cards with one review (nothing to predict)": sum(
                len(h) == 1 for h in histories.values()
            ),
        },
    )


def _parse_row(row: dict[str, Any], path: Path, line: int) -> tuple[str, ReviewEvent]:
    where = f"{path}, line {line}"
    card_id = (row.get("card_id") or "").strip()
    if not card_id:
        raise InvalidReviewLogError(f"{where}: empty card_id")
    try:
        rating = Rating(int(row.get("review_rating") or ""))
    except ValueError:
        raise InvalidReviewLogError(
            f"{where}: review_rating {row.get('review_rating')!r} is not 1, 2, 3 or 4"
        ) from None
    raw_time = (row.get("review_time") or "").strip()
    try:
        at = datetime.fromisoformat(raw_time)
    except ValueError:
        raise InvalidReviewLogError(
            f"{where}: review_time {raw_time!r} is not an ISO 8601 time"
        ) from None
    if at.tzinfo is None:
        raise InvalidReviewLogError(f"{where}: review_time {raw_time!r} has no time zone (use UTC)")
    return card_id, ReviewEvent(at=at, rating=rating)
