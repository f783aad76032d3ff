"""The card shapes shared by the quiz prompt, parser, checks and exporters.

A card drafted by a model is only a :class:`CardDraft` until it passes the checks in
:mod:`study.quiz.validate`; the database layer stores drafts that passed, together
with how they were generated (:class:`GeneratedCard`).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = ["BLANK", "CardDraft", "CardKind", "GeneratedCard"]

BLANK = "___"
"""How a cloze question marks its one missing span."""


class CardKind(enum.StrEnum):
    """The three kinds of review card."""

    BASIC = "basic"
    CLOZE = "cloze"
    MCQ = "mcq"

    @classmethod
    def parse(cls, value: str | CardKind) -> CardKind:
        """Accept the enum, its value, or a common spelling such as ``multiple choice``."""
        if isinstance(value, CardKind):
            return value
        key = value.strip().lower().replace("-", " ").replace("_", " ")
        aliases = {"multiple choice": cls.MCQ, "mc": cls.MCQ, "qa": cls.BASIC}
        if key in aliases:
            return aliases[key]
        try:
            return cls(key)
        except ValueError:
            known = ", ".join(k.value for k in cls)
            raise ValueError(f"unknown card kind {value!r}; expected one of {known}") from None


@dataclass(frozen=True, slots=True)
class CardDraft:
    """One parsed card.

    ``question`` holds the prompt shown to the learner (for a cloze, the sentence with
    :data:`BLANK` where the answer goes); ``answer`` the expected answer (for a multiple
    choice, the text of the correct choice); ``choices`` and ``correct_index`` are only
    set for multiple choice.
    """

    kind: CardKind
    question: str
    answer: str
    choices: tuple[str, ...] = ()
    correct_index: int | None = None


@dataclass(frozen=True, slots=True)
class GeneratedCard:
    """A card that passed every check, with the generation facts the database records."""

    card: CardDraft
    model: str
    method: str
    tokens_per_s: float | None
    attempt: int
