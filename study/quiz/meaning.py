"""The meaning check: does the stored answer answer the question, according to the note?

Word checks (``study.quiz.validate``) cannot tell a card whose answer is grounded in the
note from one whose answer answers the question. So the card is put back to the model
as a reading-comprehension task: the excerpt the card was written from, the question
(for a multiple choice, with its options), and nothing else. The card is kept only if
the model's own answer agrees with the stored one. A multiple choice whose model pick
is another option has a distractor that the note does not rule out (or a wrong key),
which is the check that its distractors are wrong according to the note.

A reader model of the writer's own size is a weak judge; it errs towards rejecting,
which costs yield, never a wrong card. A bigger model drops in through ``complete``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Protocol

from study.quiz.cards import BLANK, CardDraft, CardKind
from study.quiz.validate import content_words

__all__ = ["AGREEMENT", "judge_reply", "meaning_prompt", "meaning_reasons"]

AGREEMENT = 0.5
"""Share of the stored answer's content words the model's answer must contain."""

MAX_REPLY_WORDS = 30
"""A longer reply is the model copying the text, which contains every answer: no verdict."""

_LETTER = re.compile(r"^\W*(?:option\s+)?([A-F])(?:[).:\s]|$)", re.I)
_NUMBER = re.compile(r"\d+(?:\.\d+)?")


def _letter(index: int) -> str:
    return chr(ord("A") + index)


def meaning_prompt(card: CardDraft, excerpt: str) -> str:
    """The reading task: answer the card's question from the excerpt alone."""
    if card.kind is CardKind.MCQ:
        options = "\n".join(f"{_letter(i)}) {c}" for i, c in enumerate(card.choices))
        return (
            "Read the text, then answer the question with the letter of the one correct "
            f"option.\n\nText: {excerpt}\n\nQuestion: {card.question}\n{options}\nCorrect:"
        )
    question = (
        f"Which words fill the blank ({BLANK}) in: {card.question}"
        if card.kind is CardKind.CLOZE
        else card.question
    )
    return (
        "Read the text, then answer the question with a short phrase taken from the text."
        f"\n\nText: {excerpt}\n\nQuestion: {question}\nAnswer:"
    )


def _first_line(reply: str) -> str:
    lines = [line.strip() for line in reply.strip().splitlines() if line.strip()]
    return re.sub(r"^(?:answer|correct)\s*:\s*", "", lines[0], flags=re.I) if lines else ""


def _picked_option(card: CardDraft, reply: str) -> int | None:
    match = _LETTER.match(reply)
    if match and ord(match.group(1).upper()) - ord("A") < len(card.choices):
        return ord(match.group(1).upper()) - ord("A")
    words = content_words(reply)
    scores = [len(words & content_words(choice)) for choice in card.choices]
    best = max(scores, default=0)
    return scores.index(best) if best and scores.count(best) == 1 else None


def judge_reply(card: CardDraft, reply: str) -> str | None:
    """Why the model's ``reply`` disagrees with the card, or None when it agrees."""
    said = _first_line(reply)
    if card.kind is CardKind.MCQ:
        picked = _picked_option(card, said)
        if picked is None:
            return f"asked with the note, the model named no option ({said[:40]!r})"
        if picked != card.correct_index:
            return (
                f"asked with the note, the model picked option {_letter(picked)} "
                f"({card.choices[picked][:40]!r}), not the keyed answer: the note does not "
                "rule that distractor out, or the key is wrong"
            )
        return None
    if len(said.split()) > MAX_REPLY_WORDS:
        return "asked with the note, the model copied text instead of answering"
    expected, got = content_words(card.answer), content_words(said)
    numbers = set(_NUMBER.findall(card.answer))
    if numbers and not numbers <= set(_NUMBER.findall(said)):
        return f"asked with the note, the model answered {said[:40]!r}, not {card.answer!r}"
    if expected and len(expected & got) >= AGREEMENT * len(expected):
        return None
    return f"asked with the note, the model answered {said[:40]!r}, not {card.answer!r}"


class _Reply(Protocol):
    @property
    def text(self) -> str: ...


def meaning_reasons(
    card: CardDraft, excerpt: str, complete: Callable[[str], _Reply]
) -> tuple[str, ...]:
    """Ask the model the card's question over ``excerpt``; the reason it disagrees, if any.

    ``complete`` is called greedily (no sampling): the reader's answer should be its best.
    """
    reason = judge_reply(card, str(complete(meaning_prompt(card, excerpt)).text))
    return () if reason is None else (reason,)
