"""Errors the study services raise, each saying what was wrong and what to do.

One base class lets the UI catch every user-facing study error in one place and show
its message, while programming errors (``TypeError`` and friends) still surface loudly.
"""

from __future__ import annotations

__all__ = [
    "CardNotFoundError",
    "DuplicateNotesError",
    "InvalidNoteError",
    "InvalidRatingError",
    "InvalidReviewLogError",
    "InvalidSettingError",
    "InvalidTimestampError",
    "NoteNotFoundError",
    "NothingToUndoError",
    "StudyError",
    "UnknownJobError",
]


class StudyError(Exception):
    """Base class of the study companion's user-facing errors."""


class InvalidRatingError(StudyError, ValueError):
    """A rating outside Again 1, Hard 2, Good 3, Easy 4."""


class InvalidTimestampError(StudyError, ValueError):
    """A time without a time zone, in the future, or before the card's last review."""


class CardNotFoundError(StudyError, LookupError):
    """No such card for this user (another user's card counts as no such card)."""


class NothingToUndoError(StudyError, LookupError):
    """Undo was asked for but the user has no review left to undo."""


class InvalidSettingError(StudyError, ValueError):
    """A setting outside its allowed range or set of values."""


class InvalidReviewLogError(StudyError, ValueError):
    """A review-log file that cannot be read: missing columns, bad values, no reviews."""


class NoteNotFoundError(StudyError, LookupError):
    """No such note for this user (another user's note counts as no such note)."""


class InvalidNoteError(StudyError, ValueError):
    """A note or card edit that cannot be stored: empty, too long, badly formed."""


class UnknownJobError(StudyError, LookupError):
    """A background-job name that does not exist."""


class DuplicateNotesError(StudyError, ValueError):
    """An import whose notes the user already has (same title); nothing was stored.

    ``titles`` names them, so the caller can offer to skip or replace them.
    """

    def __init__(self, titles: list[str]) -> None:
        self.titles = list(titles)
        named = ", ".join(f"'{t}'" for t in self.titles[:5]) + ("…" if len(self.titles) > 5 else "")
        super().__init__(
            f"{len(self.titles)} note(s) of this import are already among your notes ({named}): "
            "import again skipping them (yours stay as they are) or replacing them (they take "
            "the imported text and keep their cards and reviews)"
        )
