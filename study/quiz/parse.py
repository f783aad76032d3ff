"""A tolerant parser for the model's answer to a quiz prompt.

Small models wrap the requested lines in chatter, number them, bold the labels, change
their case, letter the options ``A)``, ``a.`` or ``(A)`` or use ``-`` bullets, and stop
in the middle of a card. The parser keeps what it can read as complete cards and says,
for everything else, why it was dropped; :mod:`study.quiz.validate` then decides whether
a parsed card is good enough to store.

Recognised lines (case-insensitive, after removing ``**``/``__``, ``#`` and numbering):

* ``Question:`` / ``Q:`` / ``Q1:`` starts a card; ``Cloze:`` / ``Fill in:`` /
  ``Sentence:`` starts a cloze card.
* ``Answer:`` / ``Ans:`` / ``A:`` gives the answer (for multiple choice, a letter or
  the text of an option).
* ``Correct:`` / ``Correct answer:`` gives the correct option of a multiple choice.
* ``A) text``, ``a. text``, ``(A) text`` or ``- text`` after a question is an option.

A label with nothing after it takes the next line as its value. Any other line is
ignored.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from study.quiz.cards import BLANK, CardDraft, CardKind

__all__ = ["ParseResult", "parse_cards"]

_LABELS = {
    "question": "question",
    "q": "question",
    "cloze": "cloze",
    "fill in": "cloze",
    "fill in the blank": "cloze",
    "sentence": "cloze",
    "answer": "answer",
    "ans": "answer",
    "a": "answer",
    "correct": "correct",
    "correct answer": "correct",
    "correct option": "correct",
    "correct choice": "correct",
    "right answer": "correct",
    "choices": "options",
    "options": "options",
}
_LABEL = re.compile(
    r"^(?:[-*]\s+)?"
    r"(question|q|cloze|fill[- ]in(?: the blank)?|sentence|answer|ans|a|"
    r"correct(?: answer| option| choice)?|right answer|choices|options)"
    r"\s*\d*\s*[:：]\s*(.*)$",
    re.IGNORECASE,
)
_LEAD = re.compile(r"^(?:[#>]+\s*)?(?:\d+\s*[.)]\s+)?(?:#+\s*)?")
_LETTERED = re.compile(r"^(?:\(([A-Fa-f])\)|([A-Fa-f])[).\]])\s+(.+)$")
_BULLET = re.compile(r"^[-*•]\s+(.+)$")
_MARKUP = re.compile(r"\*\*|(?<!_)__(?!_)|`")
_CORRECT_MARK = re.compile(r"\s*(?:\((?:correct|right)\)|✓|✔)\s*$", re.IGNORECASE)
_ONE_LETTER = re.compile(
    r"^(?:(?:the\s+)?(?:correct\s+)?(?:answer|option|choice)\s+(?:is\s+)?)?"
    r"\(?([A-Fa-f])\)?[.)]?$",
    re.IGNORECASE,
)
_LETTER_AND_TEXT = re.compile(r"^\(?([A-Fa-f])[).:]\s+(.+)$")
_SEVERAL_LETTERS = re.compile(
    r"^\(?[A-F]\)?(?:\s*(?:,|and|&|/|or)\s*\(?[A-F]\)?)+\.?$", re.IGNORECASE
)
_BLANKS = re.compile(r"_{2,}|\[\s*(?:blank|\.\.\.|…)\s*\]|\(\s*blank\s*\)|<\s*blank\s*>", re.I)
_CLOZE_MARK = re.compile(r"\{\{c\d+::(.+?)(?:::[^}]*)?\}\}")


@dataclass(frozen=True, slots=True)
class ParseResult:
    """Cards read from a model output, and why anything else was dropped."""

    cards: tuple[CardDraft, ...]
    problems: tuple[str, ...]


@dataclass(slots=True)
class _Block:
    question: str = ""
    is_cloze: bool = False
    answer: str = ""
    correct: str = ""
    choices: list[tuple[str | None, str]] = field(default_factory=list)
    closed: bool = False  # an answer or correct line was read: no more options


def parse_cards(text: str, kind: CardKind | str | None = None) -> ParseResult:
    """Read every complete card in ``text``.

    ``kind``, when given, is the kind that was asked for: a card of another kind is
    dropped with a reason rather than silently accepted.
    """
    wanted = CardKind.parse(kind) if kind is not None else None
    blocks: list[_Block] = []
    block: _Block | None = None
    pending: str | None = None
    problems: list[str] = []

    for raw in text.splitlines():
        line = _clean(raw)
        if not line:
            continue
        label = _LABEL.match(line)
        if label:
            role = _LABELS[re.sub(r"[- ]+", " ", label.group(1).lower())]
            value = _strip_quotes(label.group(2))
            if role in ("question", "cloze"):
                block = _Block(question=value, is_cloze=role == "cloze")
                blocks.append(block)
                pending = None if value else role
            elif block is None:
                if role != "options":
                    problems.append(f"{role} line before any question: {line[:60]!r}")
            elif role == "options":
                pending = None
            elif role == "answer" and not block.answer:
                block.answer, block.closed = value, True
                pending = None if value else "answer"
            elif role == "correct" and not block.correct:
                block.correct, block.closed = value, True
                pending = None if value else "correct"
            continue
        if pending is not None and block is not None:
            _fill(block, pending, _strip_quotes(line))
            pending = None
            continue
        if block is None or not block.question or block.closed:
            continue
        option = _LETTERED.match(line)
        if option:
            letter = (option.group(1) or option.group(2)).upper()
            block.choices.append((letter, _strip_quotes(option.group(3))))
            continue
        bullet = _BULLET.match(line)
        if bullet:
            block.choices.append((None, _strip_quotes(bullet.group(1))))

    cards: list[CardDraft] = []
    for block in blocks:
        card, problem = _build(block)
        if card is not None and wanted is not None and card.kind is not wanted:
            card, problem = None, f"asked for a {wanted.value} card, got {card.kind.value}"
        if card is not None:
            cards.append(card)
        elif problem:
            problems.append(problem)
    if not blocks:
        problems.append(
            "no card found: expected lines starting with 'Question:' or 'Cloze:' "
            "followed by 'Answer:' (or options and 'Correct:')"
        )
    return ParseResult(tuple(cards), tuple(problems))


def _clean(raw: str) -> str:
    line = _MARKUP.sub("", raw).strip()
    return _LEAD.sub("", line).strip()


_VALUE_NUMBER = re.compile(r"^\d{1,2}[.)]\s+(?=\D)")


def _strip_quotes(value: str) -> str:
    """Trim a label's value: quotes around it, and a list number the model put before it."""
    value = _VALUE_NUMBER.sub("", value.strip())
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        value = value[1:-1].strip()
    return value


def _fill(block: _Block, role: str, value: str) -> None:
    if role in ("question", "cloze"):
        block.question = value
    elif role == "answer":
        block.answer = value
    elif role == "correct":
        block.correct = value


def _build(block: _Block) -> tuple[CardDraft | None, str | None]:
    shown = block.question[:60] or "(empty)"
    if not block.question:
        return None, "a question label with no question text"
    if len(block.choices) >= 2:
        return _build_mcq(block, shown)
    if len(block.choices) == 1:
        return None, f"only one option for {shown!r}: a multiple choice needs several"
    if block.is_cloze or _BLANKS.search(block.question) or _CLOZE_MARK.search(block.question):
        return _build_cloze(block, shown)
    answer = block.answer or block.correct
    if not answer:
        return None, f"no answer for question {shown!r}"
    return CardDraft(CardKind.BASIC, block.question, answer), None


def _build_cloze(block: _Block, shown: str) -> tuple[CardDraft | None, str | None]:
    sentence, answer = block.question, block.answer or block.correct
    marked = _CLOZE_MARK.search(sentence)
    if marked:
        answer = answer or marked.group(1).strip()
        sentence = _CLOZE_MARK.sub(BLANK, sentence)
    sentence = _BLANKS.sub(BLANK, sentence)
    if not answer:
        return None, f"no answer for cloze {shown!r}"
    if BLANK not in sentence:
        at = sentence.lower().find(answer.lower())
        if at < 0:
            return None, f"cloze {shown!r} has no blank (___) and does not contain its answer"
        sentence = sentence[:at] + BLANK + sentence[at + len(answer) :]
    return CardDraft(CardKind.CLOZE, sentence, answer), None


def _build_mcq(block: _Block, shown: str) -> tuple[CardDraft | None, str | None]:
    letters = [letter or chr(ord("A") + i) for i, (letter, _) in enumerate(block.choices)]
    marked = [i for i, (_, text) in enumerate(block.choices) if _CORRECT_MARK.search(text)]
    choices = tuple(_CORRECT_MARK.sub("", text).strip() for _, text in block.choices)
    key = (block.correct or block.answer).strip().rstrip(".").strip()
    if not key:
        if len(marked) == 1:
            return _mcq(block.question, choices, marked[0])
        return None, f"no correct option given for {shown!r}"
    if _SEVERAL_LETTERS.match(key):
        return None, f"more than one correct option ({key}) for {shown!r}"
    single = _ONE_LETTER.match(key) or _LETTER_AND_TEXT.match(key)
    if single:
        letter = single.group(1).upper()
        if letter not in letters:
            return None, f"correct option {letter} is not one of {''.join(letters)} in {shown!r}"
        return _mcq(block.question, choices, letters.index(letter))
    wanted = _norm(key)
    exact = [i for i, text in enumerate(choices) if _norm(text) == wanted]
    if len(exact) == 1:
        return _mcq(block.question, choices, exact[0])
    return None, f"correct option {key[:40]!r} matches none of the options of {shown!r}"


def _mcq(question: str, choices: tuple[str, ...], index: int) -> tuple[CardDraft, None]:
    return CardDraft(CardKind.MCQ, question, choices[index], choices, index), None


def _norm(text: str) -> str:
    return " ".join(re.findall(r"\w+", text.lower()))
