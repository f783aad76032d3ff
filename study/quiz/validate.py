"""Checks a parsed card must pass before it is stored.

Each check returns a human-readable reason when it fails, so that a note whose output
never passes can carry a "generation failed" record that says why. The rules, with
their thresholds in :class:`Rules`:

* **Non-empty**: question and answer (and every option) have text; the question has at
  least ``min_question_words`` words; the answer at most ``max_answer_words``.
* **No give-away**: for basic and cloze cards, the answer's content words are not all
  already in the question.
* **Not a near-duplicate**: the question's content words (lower case, light plural
  stemming, stop words removed) overlap no existing question of the note with a
  Jaccard similarity of ``duplicate_similarity`` or more.
* **Grounded**: the answer has at least one content word, and at least
  ``grounded_share`` of its content words occur in the note (title and body). For a
  multiple choice, the correct option is the answer.
* **Question and answer meet in the note** (basic and multiple choice): some sentence of
  the note holds a content word of the answer and a content word of the question, so an
  answer such as "1" that occurs somewhere in the note, unrelated to the question, fails.
* **Multiple choice**: ``min_choices`` to ``max_choices`` options, pairwise distinct
  in their content words, no "all/none of the above", exactly one correct option whose
  text is the answer, and no distractor that is part or all of the answer ("attention"
  beside "one attention block"): the note cannot make such an option wrong. Whether the
  note rules each distractor out is asked of the model (``study.quiz.meaning``).
* **Cloze**: exactly one blank, and the sentence with the blank filled in comes from
  the note: some sentence of the note contains every content word of the answer and at
  least ``cloze_sentence_share`` of the filled sentence's content words.
* **Numbers are the fact asked for**: every number in the answer occurs in a sentence of
  the note that also holds at least a third of the question's content words (at least
  two), so a number that merely appears somewhere in the note ("20" from "after 20
  minutes") does not answer an unrelated question.
* **Nothing of the prompt's example**: no content word of the prompt's worked example
  that the note does not itself use appears in the card ("100 degrees Celsius" on a
  note about decoding is the example leaking, not a fact of the note).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from study.quiz.cards import BLANK, CardDraft, CardKind

__all__ = [
    "DEFAULT_RULES",
    "Rules",
    "content_words",
    "is_stop_word",
    "similarity",
    "validate_card",
]

_TOKEN = re.compile(r"\d+(?:\.\d+)?|[^\W\d_]+")
_SENTENCE_END = re.compile(r"(?<=[.!?;:])\s+|\n\s*\n")
_CATCH_ALL = re.compile(r"\b(?:all|none|both|neither) of (?:the )?(?:above|these|them)\b", re.I)
_STOP_TEXT = """
a about above after again against all am an and any are as at be because been before
being below between both but by can could did do does doing down during each few for
from further had has have having he her here hers him his how i if in into is it its
itself just me more most my no nor not now of off on once only or other our ours out
over own same she should so some such than that the their theirs them then there these
they this those through to too under until up very was we were what when where which
while who whom why will with would you your yours one also may might must shall
answer question text
"""
_STOP_WORDS = frozenset(_STOP_TEXT.split())


@dataclass(frozen=True, slots=True)
class Rules:
    """Thresholds of the checks; the defaults suit short cards from a small model."""

    min_question_words: int = 3
    max_answer_words: int = 25
    duplicate_similarity: float = 0.8
    grounded_share: float = 0.75
    min_choices: int = 3
    max_choices: int = 6
    cloze_sentence_share: float = 0.6


DEFAULT_RULES = Rules()


def content_words(text: str) -> frozenset[str]:
    """Lower-cased, lightly stemmed words of ``text`` without stop words."""
    return frozenset(
        _stem(token) for token in _TOKEN.findall(text.lower()) if token not in _STOP_WORDS
    )


def is_stop_word(word: str) -> bool:
    """Whether ``word`` carries no content of its own (the stop words of the checks)."""
    return word.lower() in _STOP_WORDS


def similarity(a: str, b: str) -> float:
    """Jaccard similarity of the content words of two texts (0 when both are empty)."""
    words_a, words_b = content_words(a), content_words(b)
    union = words_a | words_b
    return len(words_a & words_b) / len(union) if union else 0.0


def validate_card(
    card: CardDraft,
    note_text: str,
    existing: Iterable[str] = (),
    rules: Rules = DEFAULT_RULES,
    example_text: str = "",
) -> tuple[str, ...]:
    """Every reason ``card`` must not be stored; an empty tuple means it passed.

    ``example_text`` is the worked example the prompt showed the model, if any.
    """
    reasons = _check_filled(card, rules)
    if reasons:
        return tuple(reasons)
    reasons += _check_give_away(card)
    reasons += _check_duplicate(card, existing, rules)
    reasons += _check_grounded(card.answer, note_text, rules)
    if card.kind is not CardKind.CLOZE:
        reasons += _check_context(card, note_text)
    if card.kind is CardKind.MCQ:
        reasons += _check_choices(card, rules)
    if card.kind is CardKind.CLOZE:
        reasons += _check_cloze(card, note_text, rules)
    reasons += _check_numbers(card, note_text)
    reasons += _check_example_leak(card, note_text, example_text)
    return tuple(reasons)


def _stem(token: str) -> str:
    if len(token) > 3 and token.endswith("s") and not token.endswith("ss"):
        return token[:-1]
    return token


def _words(text: str) -> int:
    return len(_TOKEN.findall(text))


def _check_filled(card: CardDraft, rules: Rules) -> list[str]:
    reasons = []
    question = card.question.replace(BLANK, " ")
    if not question.strip():
        reasons.append("empty question")
    elif _words(question) < rules.min_question_words:
        reasons.append(f"question shorter than {rules.min_question_words} words")
    if not card.answer.strip():
        reasons.append("empty answer")
    elif _words(card.answer) > rules.max_answer_words:
        reasons.append(f"answer longer than {rules.max_answer_words} words")
    if any(not choice.strip() for choice in card.choices):
        reasons.append("an empty option")
    return reasons


def _check_give_away(card: CardDraft) -> list[str]:
    if card.kind is CardKind.MCQ:
        return []
    answer = content_words(card.answer)
    question = content_words(card.question.replace(BLANK, " "))
    if answer and answer <= question:
        return ["the question already contains the answer"]
    return []


def _check_duplicate(card: CardDraft, existing: Iterable[str], rules: Rules) -> list[str]:
    for other in existing:
        score = similarity(card.question, other)
        if score >= rules.duplicate_similarity:
            return [f"near-duplicate of an existing question ({score:.2f}): {other[:60]!r}"]
    return []


def _check_grounded(answer: str, note_text: str, rules: Rules) -> list[str]:
    words = content_words(answer)
    if not words:
        return [f"answer {answer[:40]!r} has no content words to check against the note"]
    found = words & content_words(note_text)
    if len(found) < rules.grounded_share * len(words):
        missing = ", ".join(sorted(words - found)[:5])
        return [f"answer not grounded in the note (not in the note: {missing})"]
    return []


def _check_context(card: CardDraft, note_text: str) -> list[str]:
    answer, question = content_words(card.answer), content_words(card.question)
    for sentence in _SENTENCE_END.split(note_text):
        words = content_words(sentence)
        if answer & words and question & words:
            return []
    return ["no sentence of the note links the answer to the question"]


_NUMBER = re.compile(r"\d+(?:\.\d+)?")


def _check_numbers(card: CardDraft, note_text: str) -> list[str]:
    numbers = _NUMBER.findall(card.answer)
    if not numbers:
        return []
    question = content_words(card.question.replace(BLANK, " ")) - set(numbers)
    needed = max(2, -(-len(question) // 3))
    if card.kind is CardKind.CLOZE:  # the cloze check already ties it to its sentence
        return []
    for number in numbers:
        if not any(
            number in _NUMBER.findall(sentence)
            and len(question & content_words(sentence)) >= min(needed, len(question))
            for sentence in _SENTENCE_END.split(note_text)
        ):
            return [
                f"the number {number} in the answer is not stated in the note as the fact "
                "the question asks for"
            ]
    return []


def _check_example_leak(card: CardDraft, note_text: str, example_text: str) -> list[str]:
    leaked = content_words(example_text) - content_words(note_text)
    card_words = content_words(" ".join((card.question, card.answer, *card.choices)))
    found = sorted(leaked & card_words)
    if found:
        return [f"copies the prompt's worked example ({', '.join(found[:4])})"]
    return []


def _check_choices(card: CardDraft, rules: Rules) -> list[str]:
    reasons = []
    count = len(card.choices)
    if not rules.min_choices <= count <= rules.max_choices:
        reasons.append(
            f"{count} options; a multiple choice needs {rules.min_choices} to {rules.max_choices}"
        )
    if card.correct_index is None or not 0 <= card.correct_index < count:
        return [*reasons, "no correct option marked"]
    if card.choices[card.correct_index] != card.answer:
        reasons.append("the answer is not the text of the correct option")
    words = [content_words(choice) for choice in card.choices]
    for i in range(count):
        for j in range(i + 1, count):
            if words[i] == words[j]:
                reasons.append(f"options {_letter(i)} and {_letter(j)} are not distinct")
    key = words[card.correct_index]
    for i, other in enumerate(words):
        if (
            i != card.correct_index
            and other
            and key
            and other != key
            and (other <= key or key <= other)
        ):
            reasons.append(
                f"option {_letter(i)} restates the correct answer, so the note cannot make it wrong"
            )
    if any(_CATCH_ALL.search(choice) for choice in card.choices):
        reasons.append("an 'all/none of the above' option makes more than one answer correct")
    return reasons


def _letter(index: int) -> str:
    return chr(ord("A") + index)


def _check_cloze(card: CardDraft, note_text: str, rules: Rules) -> list[str]:
    blanks = card.question.count(BLANK)
    if blanks != 1:
        return [f"a cloze needs exactly one blank ({BLANK}), found {blanks}"]
    filled = content_words(card.question.replace(BLANK, f" {card.answer} "))
    answer = content_words(card.answer)
    best = 0.0
    for sentence in _SENTENCE_END.split(note_text):
        words = content_words(sentence)
        if answer <= words and filled:
            best = max(best, len(filled & words) / len(filled))
    if best < rules.cloze_sentence_share:
        return ["the cloze sentence with its answer filled in is not a sentence of the note"]
    return []
