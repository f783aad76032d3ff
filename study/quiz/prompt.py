"""The generation prompt: a short instruction, one tiny worked example, the note text.

The prompt is written for the weakest model we ship (a 135M instruct model): one card
per request, one kind per request, plain labelled lines, and a worked example on an
unrelated fact so that copying the example fails the grounding check instead of
producing a plausible wrong card. A bigger model reads the same prompt just as well.

Long notes are cut into excerpts of a few paragraphs; successive attempts use
successive excerpts, which keeps the prompt short and spreads questions over the note.
"""

from __future__ import annotations

import re
from typing import Protocol

from study.quiz.cards import CardKind

__all__ = [
    "NoteLike",
    "build_prompt",
    "example_text",
    "note_excerpts",
    "plain_text",
    "prompt_excerpt",
]

_EXAMPLE_TEXT = "Water boils at 100 degrees Celsius at sea level."

_INSTRUCTIONS = {
    CardKind.BASIC: (
        "Write one quiz question about the text below. The answer must be a short phrase "
        "taken from the text. Use exactly this format:\n"
        "Question: <question>\n"
        "Answer: <answer>"
    ),
    CardKind.CLOZE: (
        "Copy one important sentence from the text below and replace one key word or "
        "phrase with ___. Use exactly this format:\n"
        "Cloze: <sentence with ___>\n"
        "Answer: <the words that fill the blank>"
    ),
    CardKind.MCQ: (
        "Write one multiple-choice question about the text below, with four options. "
        "Only one option is correct. Use exactly this format:\n"
        "Question: <question>\n"
        "A) <option>\nB) <option>\nC) <option>\nD) <option>\n"
        "Correct: <letter>"
    ),
}

_EXAMPLES = {
    CardKind.BASIC: (
        "Question: At what temperature does water boil at sea level?\nAnswer: 100 degrees Celsius"
    ),
    CardKind.CLOZE: "Cloze: Water boils at ___ at sea level.\nAnswer: 100 degrees Celsius",
    CardKind.MCQ: (
        "Question: At what temperature does water boil at sea level?\n"
        "A) 50 degrees Celsius\nB) 100 degrees Celsius\nC) 150 degrees Celsius\n"
        "D) 200 degrees Celsius\nCorrect: B"
    ),
}

_LINK = re.compile(r"!?\[([^\]]*)\]\([^)]*\)")
_EMPHASIS = re.compile(r"(\*\*|__|\*|`)")
_HEADING = re.compile(r"^\s{0,3}#{1,6}\s*")
_FENCE = re.compile(r"^\s{0,3}(`{3,}|~{3,})")
_LIST_MARK = re.compile(r"^\s*(?:[-*+]|\d+[.)])\s+")


class NoteLike(Protocol):
    """Anything with a title and a Markdown body (a database note, a NoteDraft)."""

    @property
    def title(self) -> str: ...

    @property
    def body(self) -> str: ...


def plain_text(markdown: str) -> str:
    """Strip the Markdown syntax a small model would copy into its answer.

    Hard-wrapped lines of a paragraph are joined, so that a sentence is one line for the
    model and for the sentence-level cloze check; headings and list items stay lines.
    """
    out: list[str] = []
    joinable = False  # the previous line is prose that a wrapped line may continue
    for raw in markdown.splitlines():
        if _FENCE.match(raw):
            continue
        starts_block = bool(_HEADING.match(raw) or _LIST_MARK.match(raw))
        line = _EMPHASIS.sub("", _LINK.sub(r"\1", _LIST_MARK.sub("", _HEADING.sub("", raw))))
        line = line.strip()
        if not line:
            out.append("")
            joinable = False
        elif joinable and not starts_block:
            out[-1] = f"{out[-1]} {line}"
        else:
            out.append(line)
            joinable = not _HEADING.match(raw)
    text = "\n".join(out)
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def note_excerpts(note: NoteLike, max_words: int = 160) -> list[str]:
    """Cut the note into excerpts of whole paragraphs, each at most ``max_words`` long.

    A single paragraph longer than the limit is cut at sentence ends.
    """
    paragraphs = [p.strip() for p in plain_text(note.body).split("\n\n") if p.strip()]
    pieces: list[str] = []
    for paragraph in paragraphs:
        if len(paragraph.split()) <= max_words:
            pieces.append(paragraph)
        else:
            pieces.extend(_split_sentences(paragraph, max_words))
    excerpts: list[str] = []
    current: list[str] = []
    for piece in pieces:
        if current and len(" ".join(current + [piece]).split()) > max_words:
            excerpts.append("\n\n".join(current))
            current = []
        current.append(piece)
    if current:
        excerpts.append("\n\n".join(current))
    return excerpts or [note.title]


def _split_sentences(paragraph: str, max_words: int) -> list[str]:
    sentences = re.split(r"(?<=[.!?])\s+", paragraph)
    chunks: list[str] = []
    current: list[str] = []
    for sentence in sentences:
        if current and len(" ".join(current + [sentence]).split()) > max_words:
            chunks.append(" ".join(current))
            current = []
        current.append(sentence)
    if current:
        chunks.append(" ".join(current))
    return chunks


def example_text(kind: CardKind | str) -> str:
    """Everything the prompt's worked example for ``kind`` says (checked against leaks)."""
    return f"{_EXAMPLE_TEXT}\n{_EXAMPLES[CardKind.parse(kind)]}"


def prompt_excerpt(note: NoteLike, part: int = 0, max_words: int = 160) -> str:
    """The excerpt of the note that attempt ``part`` asks about (the meaning check reads
    the same text the card was written from)."""
    excerpts = note_excerpts(note, max_words)
    return excerpts[part % len(excerpts)]


def build_prompt(note: NoteLike, kind: CardKind, *, part: int = 0, max_words: int = 160) -> str:
    """The user message asking for one card of ``kind`` from excerpt ``part`` of the note.

    Each ``part`` explores: it cycles through the excerpts first and then, within an
    excerpt, through its sentences, naming one sentence to ask about. A retry therefore
    never sends the same prompt again, which with greedy decoding would only return the
    same rejected card (on a one-paragraph note, a retry with an unchanged prompt repeats
    the first attempt byte for byte).
    """
    kind = CardKind.parse(kind)
    excerpts = note_excerpts(note, max_words)
    excerpt = prompt_excerpt(note, part, max_words)
    sentences = [s for s in re.split(r"(?<=[.!?])\s+", excerpt) if len(s.split()) >= 5]
    focus = sentences[(part // len(excerpts)) % len(sentences)] if sentences else ""
    about = f"\nAsk about this sentence of the text: {focus}" if focus else ""
    return (
        f"{_INSTRUCTIONS[kind]}\n\n"
        f"Example:\nText: {_EXAMPLE_TEXT}\n{_EXAMPLES[kind]}\n\n"
        f"Text ({note.title}): {excerpt}{about}"
    )
