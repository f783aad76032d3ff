"""Generate checked cards from a note with any text-completion callable.

The model is reached only through ``complete(prompt) -> Completion``, where a
completion is any object with ``.text``, ``.tokens_per_s``, ``.method`` and ``.model``
(``selfspec.complete`` has that shape). This keeps quiz generation testable with a
scripted fake and lets a bigger model drop in without changes here.

For each requested kind the note is asked for one card at a time, at most
``max_attempts`` times. Retries explore: each attempt moves to another excerpt or
sentence of the note, and attempts after the first sample (temperature
``EXPLORE_TEMPERATURE``, a seed per note, kind and attempt, so a run can be repeated)
instead of decoding greedily, which on the same prompt would return the same rejected
card. A card is kept only when it parses completely, passes every word check and, when
a ``reader`` is given, the meaning check (``study.quiz.meaning``); every draft dropped
is kept as a :class:`Rejection` with its reasons, so the user can still read, edit and
keep it.

A writer that can score replies (``study.quiz.cut_cloze.Scorer``, the bundled 135M
model, which misses the card format) cuts clozes from the note's sentences instead of
writing cards: every kind asked for becomes a cloze of another sentence, and the
meaning check is skipped, the filled-in card being the note's own sentence (the small
reader, asked to fill the blank from the note, answered otherwise on every card tried,
docs/study.md). Exceptions raised by ``complete`` propagate: the caller decides whether a
broken model is a failed job.
"""

from __future__ import annotations

import random
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Protocol

from study.quiz.cards import CardDraft, CardKind, GeneratedCard
from study.quiz.cut_cloze import Scorer, cut_cloze
from study.quiz.meaning import meaning_reasons
from study.quiz.parse import parse_cards
from study.quiz.prompt import NoteLike, build_prompt, example_text, plain_text, prompt_excerpt
from study.quiz.validate import DEFAULT_RULES, Rules, content_words, validate_card

__all__ = [
    "CUT_METHOD",
    "EXPLORE_TEMPERATURE",
    "MIN_NOTE_WORDS",
    "Complete",
    "Completion",
    "QuizOutcome",
    "Rejection",
    "generate_cards",
    "shuffle_choices",
]

EXPLORE_TEMPERATURE = 0.7
"""Sampling temperature of retries: enough to leave a rejected greedy card, low enough
that a small model still follows the format."""

CUT_METHOD = "cut cloze"
"""What a cut card records as its method: no text was decoded, the model only scored."""

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


class Complete(Protocol):
    """The model as quiz generation calls it: greedy by default, sampled on retries."""

    def __call__(
        self, prompt: str, *, temperature: float = 0.0, seed: int | None = None
    ) -> Completion: ...


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why something was dropped: the kind, the attempt, the reason, and the parsed draft
    (None when the output held no card at all)."""

    kind: CardKind
    attempt: int
    reason: str
    card: CardDraft | None = None

    def __str__(self) -> str:
        return f"{self.kind.value} attempt {self.attempt}: {self.reason}"


@dataclass(frozen=True, slots=True)
class QuizOutcome:
    """Cards that passed, every rejection with its reason, and generation calls made."""

    cards: list[GeneratedCard]
    rejections: list[Rejection]
    attempts: int

    @property
    def failures(self) -> list[str]:
        """Each rejection as one line, ``"<kind> attempt <n>: <reason>"``."""
        return [str(r) for r in self.rejections]

    @property
    def rejected_drafts(self) -> list[tuple[CardDraft, tuple[str, ...]]]:
        """Each parsed draft that was dropped, once, with all its reasons."""
        drafts: dict[CardDraft, list[str]] = {}
        for rejection in self.rejections:
            if rejection.card is not None:
                drafts.setdefault(rejection.card, []).append(rejection.reason)
        return [(card, tuple(reasons)) for card, reasons in drafts.items()]


def generate_cards(
    note: NoteLike,
    complete: Complete,
    *,
    kinds: Sequence[CardKind | str] = (CardKind.BASIC, CardKind.CLOZE, CardKind.MCQ),
    max_attempts: int = 3,
    existing: Iterable[str] = (),
    per_kind: int = 1,
    rules: Rules = DEFAULT_RULES,
    reader: Callable[[str], Completion] | None = None,
    answers: Iterable[str] = (),
) -> QuizOutcome:
    """Ask ``complete`` for up to ``per_kind`` checked cards of each kind in ``kinds``.

    ``existing`` holds the questions the note already has; new cards must not repeat
    them or each other; ``answers`` holds their answers, which a cut cloze does not ask
    again (written cards are told apart by their questions). ``max_attempts`` bounds the
    generation calls per kind (the meaning check adds one ``reader`` call per card that
    passed the word checks).
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
            rejections=[
                Rejection(
                    wanted[0] if wanted else CardKind.BASIC,
                    0,
                    f"note too short to quiz: {words} content words, at least "
                    f"{MIN_NOTE_WORDS} needed (no model call made)",
                )
            ],
            attempts=0,
        )
    questions = [q for q in existing if q.strip()]
    cutter = complete if isinstance(complete, Scorer) else None
    if cutter is not None:
        wanted = [CardKind.CLOZE] * len(wanted)
    sentence = 0  # of those without a card: moves on past each one that gave none
    taken = [a for a in answers if a.strip()]
    cards: list[GeneratedCard] = []
    rejections: list[Rejection] = []
    calls = 0
    for kind in wanted:
        kept = 0
        for attempt in range(1, max_attempts + 1):
            if kept >= per_kind:
                break
            calls += 1
            kept_before = kept
            if cutter is not None:
                drafts = _cut(note, sentence, cutter, attempt, rejections, taken, questions)
                made_by = (cutter.model_name, CUT_METHOD, None)
            else:
                completion = complete(
                    build_prompt(note, kind, part=attempt - 1), **_sampling(note, kind, attempt)
                )
                parsed = parse_cards(completion.text, kind)
                rejections.extend(Rejection(kind, attempt, p) for p in parsed.problems)
                drafts = parsed.cards
                made_by = (str(completion.model), str(completion.method), _rate(completion))
            for card in drafts:
                if kept >= per_kind:
                    break
                reasons = validate_card(card, note_text, questions, rules, example_text(kind))
                if not reasons and reader is not None and cutter is None:
                    reasons = meaning_reasons(card, prompt_excerpt(note, attempt - 1), reader)
                if reasons:
                    rejections.extend(Rejection(kind, attempt, r, card) for r in reasons)
                    continue
                questions.append(card.question)
                taken.append(card.answer)
                kept += 1
                cards.append(GeneratedCard(shuffle_choices(card), *made_by, attempt=attempt))
            if cutter is not None and kept == kept_before:
                sentence += 1  # this sentence gave no card: the next attempt tries another
    return QuizOutcome(cards=cards, rejections=rejections, attempts=calls)


def _cut(
    note: NoteLike,
    part: int,
    cutter: Scorer,
    attempt: int,
    rejections: list[Rejection],
    taken: list[str],
    asked: list[str],
) -> list[CardDraft]:
    """The cloze cut from sentence ``part``, or none with its reason recorded."""
    cut = cut_cloze(note, part, cutter, taken, asked)
    if cut.card is None:
        rejections.append(Rejection(CardKind.CLOZE, attempt, str(cut.reason)))
        return []
    return [cut.card]


def _sampling(note: NoteLike, kind: CardKind, attempt: int) -> dict[str, float | int]:
    """Greedy for the first attempt; a seeded sample for each retry."""
    if attempt == 1:
        return {}
    seed = zlib.crc32(f"{note.title}|{kind.value}|{attempt}".encode())
    return {"temperature": EXPLORE_TEMPERATURE, "seed": seed}


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
