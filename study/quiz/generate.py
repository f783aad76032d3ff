"""Generate checked cards from a note with any text-completion callable.

The model is reached only through ``complete(prompt) -> Completion``, where a
completion is any object with ``.text``, ``.tokens_per_s``, ``.method`` and ``.model``
(``selfspec.complete`` has that shape). This keeps quiz generation testable with a
scripted fake and lets a bigger model drop in without changes here.

For each requested kind the note is asked for one card at a time, at most
``max_attempts`` times, moving to the next excerpt of the note on each attempt. A card
is kept only when it parses completely and passes every check; everything else becomes
a failure reason. Exceptions raised by ``complete`` propagate: the caller decides
whether a broken model is a failed job.
"""

from __future__ import annotations

import random
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Protocol

from study.quiz.cards import CardDraft, CardKind, GeneratedCard
from study.quiz.parse import parse_cards
from study.quiz.prompt import NoteLike, build_prompt, example_text, plain_text
from study.quiz.validate import DEFAULT_RULES, Rules, content_words, validate_card

__all__ = ["MIN_NOTE_WORDS", "Completion", "QuizOutcome", "generate_cards", "shuffle_choices"]

MIN_NOTE_WORDS = 8
"""Content words a note needs before it is worth a model call: below that there is
hardly one fact to ask about, and every attempt would be rejected."""


class Completion(Protocol):
    """What a completion callable returns (duck-typed: any object with these)."""

    @property
    def text(self) -> str: ...

    @property
    def tokens_per_s(self) -> float | None: ...

    @property
    def method(self) -> str: ...

    @property
    def model(self) -> str: ...


@dataclass(frozen=True, slots=True)
class QuizOutcome:
    """Cards that passed, every reason something was dropped, and model calls made."""

    cards: list[GeneratedCard]
    failures: list[str]
    attempts: int


def generate_cards(
    note: NoteLike,
    complete: Callable[[str], Completion],
    *,
    kinds: Sequence[CardKind | str] = (CardKind.BASIC, CardKind.CLOZE, CardKind.MCQ),
    max_attempts: int = 3,
    existing: Iterable[str] = (),
    per_kind: int = 1,
    rules: Rules = DEFAULT_RULES,
) -> QuizOutcome:
    """Ask ``complete`` for up to ``per_kind`` checked cards of each kind in ``kinds``.

    ``existing`` holds the questions the note already has; new cards must not repeat
    them or each other. ``max_attempts`` bounds the model calls per kind. Failure
    reasons read ``"<kind> attempt <n>: <reason>"``.
    """
    if max_attempts < 1:
        raise ValueError(f"max_attempts must be at least 1, got {max_attempts}")
    if per_kind < 1:
        raise ValueError(f"per_kind must be at least 1, got {per_kind}")
    wanted = [CardKind.parse(kind) for kind in kinds]
    note_text = f"{note.title}\n\n{plain_text(note.body)}"
    words = len(content_words(plain_text(note.body)))
    if words < MIN_NOTE_WORDS:
        return QuizOutcome(
            cards=[],
            failures=[
                f"note too short to quiz: {words} content words, at least {MIN_NOTE_WORDS} "
                "needed (no model call made)"
            ],
            attempts=0,
        )
    questions = [q for q in existing if q.strip()]
    cards: list[GeneratedCard] = []
    failures: list[str] = []
    calls = 0
    for kind in wanted:
        kept = 0
        for attempt in range(1, max_attempts + 1):
            if kept >= per_kind:
                break
            calls += 1
            completion = complete(build_prompt(note, kind, part=attempt - 1))
            parsed = parse_cards(completion.text, kind)
            tag = f"{kind.value} attempt {attempt}"
            failures.extend(f"{tag}: {problem}" for problem in parsed.problems)
            for card in parsed.cards:
                if kept >= per_kind:
                    break
                reasons = validate_card(card, note_text, questions, rules, example_text(kind))
                if reasons:
                    failures.extend(f"{tag}: {reason}" for reason in reasons)
                    continue
                questions.append(card.question)
                kept += 1
                cards.append(
                    GeneratedCard(
                        card=shuffle_choices(card),
                        model=str(completion.model),
                        method=str(completion.method),
                        tokens_per_s=_rate(completion),
                        attempt=attempt,
                    )
                )
    return QuizOutcome(cards=cards, failures=failures, attempts=calls)


def shuffle_choices(card: CardDraft) -> CardDraft:
    """The card with its options in a shuffled order (same order for the same card).

    The model tends to put the answer where its example did (always B); shown in the
    model's order, the position would give the answer away.
    """
    if card.kind is not CardKind.MCQ or card.correct_index is None:
        return card
    order = list(range(len(card.choices)))
    random.Random(zlib.crc32(card.question.encode())).shuffle(order)
    return replace(
        card,
        choices=tuple(card.choices[i] for i in order),
        correct_index=order.index(card.correct_index),
    )


def _rate(completion: Completion) -> float | None:
    value = completion.tokens_per_s
    return None if value is None else float(value)
