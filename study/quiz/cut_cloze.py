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

Candidates are the last one to three words of runs of content words, which stop at
stop words, prepositions, adverbs, punctuation and verbs: a blank ends on the head of
its noun phrase and never holds a verb. LemmInflect's English lexicon says which parts
of speech a word can be: a word that can only be a verb ("replace") stops a run, and
so does a word after a noun, or after a capitalised name the lexicon does not know,
that reads as its verb, being verb-only or agreeing with it in number ("the siren
approaches", "memory fades", "RuBisCO fixes"), unless an adjective comes before it
("concentric rings") or a verb after it ("east winds helped"). A word right before an
article or an object pronoun inside a run is a verb far more often than part of a term
("decoding lets a"). No span that occurs twice in the sentence, repeats only the title,
or answers a card the note already has; no sentence that already has a card.
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
_OBJECT_TEXT = """
a an the its their this these those several many every two three four it them him her us
"""
_OBJECT_STARTS = frozenset(_OBJECT_TEXT.split())  # what starts a verb's object
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
    gaps = [sentence[a.end() : b.start()].strip() for a, b in zip(words, words[1:], strict=False)]
    for i, word in enumerate(words):
        # the next word, unless punctuation ends the phrase first
        after = words[i + 1].group().lower() if i + 1 < len(words) and not gaps[i] else ""
        apart = i > 0 and bool(gaps[i - 1])
        apart |= i > 0 and _ends_a_term(words[i - 1].group(), word.group())
        if apart:
            runs.append([])
        subject = runs[-1][-1].group() if runs[-1] else None
        if _separates(word.group(), after, subject):
            runs.append([])
        else:
            runs[-1].append(word)
    title_words = content_words(title)
    taken = {answer.strip().lower() for answer in taken}
    spans = []
    for run in runs:
        # a blank ends on the run's last word, the head of an English noun phrase; ending
        # before it would cut the term in two ("a drug's real | effect", "Strong east | winds")
        for i in range(max(0, len(run) - MAX_BLANK_WORDS), len(run)):
            start, end = run[i].start(), run[-1].end()
            text = sentence[start:end]
            once = len(re.findall(rf"\b{re.escape(text)}\b", sentence)) == 1
            new = text.lower() not in taken and not content_words(text) <= title_words
            if once and new and _is_term([w.group().lower() for w in run[i:]]):
                spans.append((start, end))
    return spans


def _is_term(words: list[str]) -> bool:
    """Whether ``words`` can be a term. Runs already hold no verb after its subject; a
    single word must also be able to be a noun, a name, an adjective or a number (or be
    unknown to the lexicon: a name or a symbol)."""
    if len(words) > 1:
        return True
    kinds = _parts_of_speech(words[0])
    return not kinds or bool(kinds & {"NOUN", "PROPN", "ADJ", "NUM"})


def _ends_a_term(previous: str, word: str) -> bool:
    """Whether a term cannot run on from ``previous`` into ``word``: after a number, a
    name starts a new one ("In 2002 | Seth Gilbert"), and so does anything after a year
    ("in 1923 | prices doubled"; "180 copies" is a count with its unit)."""
    if not previous[0].isdigit():
        return False
    return word[0].isupper() or bool(_YEAR.fullmatch(previous))


def _subject_and_verb(before: str, word: str) -> bool:
    """Whether ``word`` (lower case) reads as the verb of the noun ``before`` (as written)."""
    lemmas = getAllLemmas(word)
    name = before[0].isupper()
    before = before.lower().removesuffix("'s")
    before_lemmas = getAllLemmas(before)
    # a capitalised word the lexicon does not know is a name (RuBisCO, Samarkand)
    noun = before_lemmas.get("NOUN", (before,) if name else ())
    if "VERB" not in lemmas or not noun or "ADJ" in before_lemmas:
        return False  # an adjective before it modifies it: "concentric rings"
    if "NOUN" not in lemmas:
        return True  # "carried", "ran", "fades": a verb whatever the noun
    plural_noun = before not in noun
    inflected = word not in lemmas["VERB"]
    # "siren approaches" (singular noun, -s verb) or "teams find" (plural, base form)
    return inflected != plural_noun


def _parts_of_speech(word: str) -> frozenset[str]:
    return frozenset(getAllLemmas(word))


def _separates(word: str, after: str, subject: str | None) -> bool:
    """Whether ``word`` cannot be part of a blank (it ends the run of content words).

    ``subject`` is the run's last word so far (None at a run's start): a word that reads
    as its verb ends the run (unless a verb follows: then it is the noun), as does any
    word that can only be a verb ("replace") and a word right before an article inside
    a run or before an object pronoun ("decoding lets | a", "numbers makes | it").
    """
    lower = word.lower()
    if is_stop_word(lower) or lower in _PREPOSITIONS or lower.endswith("ly"):
        return True
    if _only_a_verb(lower):
        return True
    if subject is not None and _subject_and_verb(subject, lower):
        # before a possible verb the word is the subject's noun itself ("east winds helped")
        verb_next = bool(after) and not _separates(after, "", None)
        return not (verb_next and "VERB" in _parts_of_speech(after))
    return subject is not None and after in _OBJECT_STARTS


def _only_a_verb(word: str) -> bool:
    """A verb in its base or -s form and nothing else; -ing and -ed forms also act as
    nouns and adjectives ("plain decoding", "replayed commits"), so they stay."""
    return _parts_of_speech(word) == {"VERB"} and not word.endswith(("ing", "ed"))


def _cut_from(question: str, sentence: str) -> bool:
    """Whether the cloze ``question`` is ``sentence`` with some words blanked."""
    before, after = question.split(BLANK, 1)
    fits = len(before) + len(after) < len(sentence)
    return fits and sentence.startswith(before) and sentence.endswith(after)


def _prompts(excerpt: str, cloze: str) -> tuple[str, str]:
    ask = f"Fill the blank ({BLANK}): {cloze}"
    return f"Text: {excerpt}\n\n{ask}", ask


def cut_cloze(
    note: NoteLike,
    part: int,
    scorer: Scorer,
    taken: Iterable[str] = (),
    asked: Iterable[str] = (),
) -> Cut:
    """The cloze of sentence ``part`` (cycling) of the note's sentences that no question
    of ``asked`` was cut from, its blank picked by ``scorer`` among words that no card
    answers already (``taken``)."""
    asked = [q for q in asked if BLANK in q]
    sentences = [(s, e) for s, e in cut_sentences(note) if not any(_cut_from(q, s) for q in asked)]
    if not sentences:
        return Cut(None, "every sentence worth a card has one already")
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
