"""Fake models for quiz tests: a scripted writer and a reader that answers truthfully."""

from __future__ import annotations

from dataclasses import dataclass

from study.quiz import CardKind, parse_cards

READING_TASK = "Read the text, then answer the question"
"""How every prompt of the meaning check starts (``study.quiz.meaning.meaning_prompt``)."""


@dataclass(frozen=True)
class FakeCompletion:
    text: str
    tokens_per_s: float = 12.5
    method: str = "vanilla"
    model: str = "fake-135m"


def is_reading_task(prompt: str) -> bool:
    """Whether ``prompt`` is the meaning check's question rather than a card request."""
    return prompt.startswith(READING_TASK)


def truthful_reply(prompt: str, scripts: list[str]) -> str:
    """The answer a perfect reader gives: the scripted card's own answer (or key letter)."""
    for text in scripts:
        for kind in CardKind:
            for card in parse_cards(text, kind).cards:
                if card.question in prompt:
                    if card.kind is CardKind.MCQ:
                        return chr(ord("A") + (card.correct_index or 0))
                    return card.answer
    return "I do not know"
