"""Cloze cards cut from the note's own sentences, the blank chosen by the model's scores.

Why: the bundled 135M model misses the card format nearly every time (docs/study.md),
yet it still knows which words of a sentence are hard to guess. So a writer too small
to write cards cuts them instead: a sentence of the note is kept as it is, and the
model's log-probabilities pick the words to blank. The pick is the candidate with the
largest pointwise mutual information with the note,

    gain = log p(words | note, cloze) - log p(words | cloze),

words that the note makes likely but the sentence alone does not, which is what a
recall card should ask for ("___ only pays when enough draft tokens are accepted" ->
"Speculative decoding", not "enough"). The card is correct and grounded by
construction, its filled-in sentence being the note's; the scores decide whether it
asks for something worth remembering, and a sentence whose best gain is small gives
no card.

Candidates are short runs of content words between stop words, prepositions, adverbs
and punctuation. A word right before an article or a quantifier is a verb far more
often than part of a term ("decoding lets a", "draft propose several"), so it splits
a run too. A blank must not swallow a verb with its subject ("the siren approaches",
"memory fades", "teams find"): LemmInflect's English lexicon says which parts of
speech a word can be, and a noun followed by a word that can only be a verb, or by
a verb form that agrees with it in number, is a clause, not a term ("target model",
with the singular noun before a base form, stays a term). No span that occurs twice
in the sentence or only repeats the title.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from lemminflect import getAllLemmas

from study.quiz.cards import BLANK, CardDraft, CardKind
from study.quiz.prompt import NoteLike, note_excerpts
from study.quiz.validate import content_words, is_stop_word

__all__ = [
    "EXTRA_WORD_COST",
    "MAX_BLANK_WORDS",
    "MIN_GAIN",
    "Cut",
    "Scorer",
    "blank_candidates",
    "cut_cloze",
    "cut_sentences",
]

MAX_BLANK_WORDS = 3
"""Longest blank: a longer span is recited, not recalled."""

MIN_GAIN = 4.0
"""Least gain (nats) for a blank: below it the note hardly helps to fill it (a common
verb such as "learned"), so the card would test guessing rather than the note."""

MIN_SENTENCE_WORDS, MAX_SENTENCE_WORDS = 8, 45
"""Sentences worth a card: shorter ones seldom state a fact, longer ones are paragraphs."""

_WORD = re.compile(r"\d+(?:[.,]\d+)*%?|[^\W_](?:[\w'-]*[^\W_])?")
_DETERMINERS = frozenset(
    [
        "a",
        "an",
        "the",
        "its",
        "their",
        "this",
        "these",
        "those",
        "several",
        "many",
        "every",
        "two",
        "three",
        "four",
    ]
)
_PREPOSITION_TEXT = """
across alongside along amid among around behind beneath beside beyond despite except
inside like near onto outside past per throughout toward towards underneath unlike upon
versus via within without
"""
_PREPOSITIONS = frozenset(_PREPOSITION_TEXT.split())  # prepositions that are not stop words
EXTRA_WORD_COST = 3.0
"""Nats a blank's gain must rise per word beyond the first: the gain of a span grows
with its length, so without a cost the blank would swallow the words around a term."""
_YEAR = re.compile(r"1[0-9]{3}|20[0-9]{2}")
_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")


@runtime_checkable
class Scorer(Protocol):
    """A model that scores replies: summed log-probabilities of each reply to a prompt."""

    @property
    def model_name(self) -> str: ...

    def score(self, prompt: str, replies: list[str]) -> list[float]: ...


@dataclass(frozen=True, slots=True)
class Cut:
    """The card cut from one sentence, or why none was (``card`` None, ``reason`` set)."""

    card: CardDraft | None
    reason: str | None = None
    gain: float | None = None


def cut_sentences(note: NoteLike) -> list[tuple[str, str]]:
    """Every sentence worth a card, with the excerpt it comes from, in note order."""
    found = []
    for excerpt in note_excerpts(note):
        for sentence in _SENTENCE.split(excerpt):
            sentence = sentence.strip()
            if MIN_SENTENCE_WORDS <= len(sentence.split()) <= MAX_SENTENCE_WORDS:
                found.append((sentence, excerpt))
    return found


def blank_candidates(
    sentence: str, title: str = "", taken: Iterable[str] = ()
) -> list[tuple[int, int]]:
    """Character spans of ``sentence`` that may become the blank, in sentence order;
    none that is one of the ``taken`` answers (a card of the note already asks it)."""
    words = list(_WORD.finditer(sentence))
    runs: list[list[re.Match[str]]] = [[]]
    for i, word in enumerate(words):
        after = words[i + 1].group().lower() if i + 1 < len(words) else ""
        apart = i > 0 and bool(sentence[words[i - 1].end() : word.start()].strip())
        apart |= i > 0 and _ends_a_term(words[i - 1].group(), word.group())
        if apart:
            runs.append([])
        if _separates(word.group(), after, first=not runs[-1]):
            runs.append([])
        else:
            runs[-1].append(word)
    title_words = content_words(title)
    taken = {answer.strip().lower() for answer in taken}
    spans = []
    for run in runs:
        for i in range(len(run)):
            for j in range(i, min(len(run), i + MAX_BLANK_WORDS)):
                start, end = run[i].start(), run[j].end()
                text = sentence[start:end]
                once = len(re.findall(rf"\b{re.escape(text)}\b", sentence)) == 1
                terms = [w.group().lower() for w in run[i : j + 1]]
                cut_off = j + 1 < len(run) and _modifies(terms[-1])  # "a drug's real | effect"
                # a span that starts on the verb of the word before it ("RuBisCO | fixes")
                cut_off |= i > 0 and _subject_and_verb(run[i - 1].group().lower(), terms[0])
                new = text.lower() not in taken and not content_words(text) <= title_words
                if once and new and not cut_off and _is_term(terms):
                    spans.append((start, end))
    return spans


def _is_term(words: list[str]) -> bool:
    """Whether ``words`` read as a term rather than a clause (no verb with its subject)."""
    if len(words) == 1:
        kinds = _parts_of_speech(words[0])
        return not kinds or bool(kinds & {"NOUN", "PROPN", "ADJ", "NUM"})
    return not any(_subject_and_verb(a, b) for a, b in zip(words, words[1:], strict=False))


def _ends_a_term(previous: str, word: str) -> bool:
    """Whether a term cannot run on from ``previous`` into ``word``: after a number, a
    name starts a new one ("In 2002 | Seth Gilbert"), and so does anything after a year
    ("in 1923 | prices doubled"; "180 copies" is a count with its unit)."""
    if not previous[0].isdigit():
        return False
    return word[0].isupper() or bool(_YEAR.fullmatch(previous))


def _modifies(word: str) -> bool:
    """Whether ``word`` can only be read as modifying the word after it (a possessive, an
    adjective): a blank ending on it would cut the term in two."""
    return word.endswith("'s") or "ADJ" in _parts_of_speech(word)


def _subject_and_verb(before: str, word: str) -> bool:
    lemmas = getAllLemmas(word)
    before = before.removesuffix("'s")
    # a word the lexicon does not know is a name (RuBisCO, Samarkand): a singular noun
    unknown = not getAllLemmas(before) and not before[0].isdigit()
    noun = getAllLemmas(before).get("NOUN", (before,) if unknown else ())
    if "VERB" not in lemmas or not noun:
        return False
    if "NOUN" not in lemmas:
        return True  # "carried", "ran", "fades": a verb whatever the noun
    plural_noun = before not in noun
    inflected = word not in lemmas["VERB"]
    # "siren approaches" (singular noun, -s verb) or "teams find" (plural, base form)
    return inflected != plural_noun


def _parts_of_speech(word: str) -> frozenset[str]:
    return frozenset(getAllLemmas(word))


def _separates(word: str, after: str, first: bool) -> bool:
    """Whether ``word`` cannot be part of a blank (it ends the run of content words)."""
    lower = word.lower()
    if is_stop_word(lower) or lower in _PREPOSITIONS or lower.endswith("ly"):
        return True
    return not first and after in _DETERMINERS


def _prompts(excerpt: str, cloze: str) -> tuple[str, str]:
    ask = f"Fill the blank ({BLANK}): {cloze}"
    return f"Text: {excerpt}\n\n{ask}", ask


def cut_cloze(note: NoteLike, part: int, scorer: Scorer, taken: Iterable[str] = ()) -> Cut:
    """The cloze of sentence ``part`` (cycling) of the note, its blank picked by ``scorer``
    among words that no card of ``taken`` answers already."""
    sentences = cut_sentences(note)
    if not sentences:
        return Cut(None, f"no sentence of {MIN_SENTENCE_WORDS}-{MAX_SENTENCE_WORDS} words to cut")
    sentence, excerpt = sentences[part % len(sentences)]
    best: tuple[float, int, int] | None = None
    for start, end in blank_candidates(sentence, note.title, taken):
        words = sentence[start:end]
        with_note, alone = _prompts(excerpt, sentence[:start] + BLANK + sentence[end:])
        gain = scorer.score(with_note, [words])[0] - scorer.score(alone, [words])[0]
        gain -= EXTRA_WORD_COST * (len(words.split()) - 1)
        if best is None or gain > best[0]:
            best = (gain, start, end)
    if best is None:
        return Cut(None, f"no word of the sentence can be a blank: {sentence[:60]!r}")
    gain, start, end = best
    if gain < MIN_GAIN:
        return Cut(
            None,
            f"no blank worth asking in {sentence[:60]!r}: the best, {sentence[start:end]!r}, "
            f"gains {gain:.1f} nats from the note (at least {MIN_GAIN} needed)",
            gain,
        )
    card = CardDraft(CardKind.CLOZE, sentence[:start] + BLANK + sentence[end:], sentence[start:end])
    return Cut(card, None, gain)
