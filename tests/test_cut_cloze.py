"""Clozes cut from a note's sentences, the blank picked by a model's scores."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import pytest
import torch

from selfspec import score_replies
from selfspec.loading import BUNDLED
from study.markdown_import import NoteDraft
from study.quiz import BLANK, CardKind, generate_cards
from study.quiz.cut_cloze import MIN_GAIN, Scorer, blank_candidates, cut_cloze, cut_sentences
from study.quiz.generate import CUT_METHOD
from study.quiz.recorder import record_calls
from study.quiz_model import bind_writer, writer_for
from tests.model_helpers import bundled, tiny
from tests.quiz_fakes import FakeCompletion

NOTE = NoteDraft(
    title="Memory research",
    body=(
        "Hermann Ebbinghaus measured forgetting with lists of nonsense syllables.\n\n"
        "Spaced repetition schedules each review just before recall drops too far.\n\n"
        "The savings method counts the time saved when a list is learned again."
    ),
)


@dataclass
class KnowsTheNote:
    """A scorer that finds ``known`` words likely only when the note is in the prompt,
    and every other reply equally likely with or without it."""

    known: tuple[str, ...]
    model_name: str = "fake-scorer"
    prompts: list[str] = field(default_factory=list)
    writes: int = 0

    def score(self, prompt: str, replies: list[str]) -> list[float]:
        self.prompts.append(prompt)
        with_note = prompt.startswith("Text:")
        return [-2.0 if with_note and r in self.known else -12.0 for r in replies]

    def __call__(self, prompt: str, *, temperature: float = 0.0, seed: int | None = None):
        self.writes += 1
        return FakeCompletion("Question: never asked\nAnswer: never")


def _spans(sentence: str, title: str = "") -> list[str]:
    return [sentence[a:b] for a, b in blank_candidates(sentence, title)]


def test_candidates_are_short_runs_of_content_words():
    sentence = "Speculative decoding lets a cheap draft propose several tokens that it checks."
    spans = _spans(sentence)
    assert "Speculative decoding" in spans and "cheap draft" in spans
    # a word before an article or a quantifier is taken for a verb and splits the run
    assert not any("lets" in s or "propose" in s for s in spans)
    assert all(len(s.split()) <= 3 for s in spans)
    assert not any(w in ("a", "that", "it") for s in spans for w in s.split())


def test_adverbs_prepositions_repeats_and_the_title_are_never_the_blank():
    sentence = "The residual stream simply passes inside each block, and each block repeats."
    spans = _spans(sentence, title="Residual stream")
    assert "residual stream" not in spans and "stream" not in spans  # the title's words
    assert not any("simply" in s or "inside" in s for s in spans)
    assert "block" not in spans  # it occurs twice: the blank would be ambiguous
    assert "passes" in spans


def test_a_blank_never_cuts_a_term_after_its_modifier_nor_repeats_a_taken_answer():
    sentence = "Trials separate a drug's real effect from the softer placebo beneath it."
    spans = _spans(sentence)
    assert "drug's real effect" in spans and "real effect" in spans
    assert "drug's real" not in spans and "drug's" not in spans and "softer" not in spans
    assert "softer placebo" in spans and not any("beneath" in s for s in spans)
    spans = _spans("Strong east winds helped the French to replace hundreds of units.")
    assert "Strong east winds" in spans and "east winds" in spans and "hundreds" in spans
    assert not any(s.startswith(("Strong", "east")) and "winds" not in s for s in spans)
    assert not any("replace" in s for s in spans)
    taken = [sentence[a:b] for a, b in blank_candidates(sentence, taken=["Real Effect "])]
    assert "real effect" not in taken and "drug's real effect" in taken


def test_a_year_and_the_name_after_it_are_separate_blanks():
    spans = _spans("In 2002 Seth Gilbert and Nancy Lynch proved the conjecture.")
    assert "2002" in spans and "Seth Gilbert" in spans
    assert not any("2002 Seth" in s for s in spans)
    spans = _spans("In 1923 prices doubled; 180 copies were printed.")
    assert "180 copies" in spans and "1923 prices" not in spans


def test_a_plural_after_a_noun_is_a_compound_unless_it_reads_as_the_verb():
    assert "sequence numbers" in _spans("Random sequence numbers make it harder to attack.")
    assert "concentric rings" in _spans("The lens is made of concentric rings, each thin.")
    spans = _spans("A region of low pressure forms over the land as the siren approaches.")
    assert "low pressure" in spans and "siren" in spans
    assert not any("forms" in s or "approaches" in s for s in spans)


def test_a_name_is_a_noun_so_its_verb_stays_out_of_the_blank():
    spans = _spans("The enzyme RuBisCO fixes carbon, and Samarkand grew rich on trade.")
    assert "RuBisCO" in spans and "Samarkand" in spans
    assert not any("fixes" in s or "grew" in s for s in spans)


def test_the_blank_is_the_words_the_note_makes_likely():
    scorer = KnowsTheNote(known=("nonsense syllables",))
    cut = cut_cloze(NOTE, 0, scorer)
    assert cut.card is not None and cut.card.kind is CardKind.CLOZE
    assert cut.card.answer == "nonsense syllables"
    assert cut.card.question.replace(BLANK, cut.card.answer) == cut_sentences(NOTE)[0][0]
    assert cut.gain == pytest.approx(10.0 - 3.0)  # 2 words: one extra word's cost
    # each candidate is scored with the note and without it, on the same cloze
    with_note = [p for p in scorer.prompts if p.startswith("Text:")]
    assert len(with_note) * 2 == len(scorer.prompts)


def test_no_card_when_the_note_does_not_help_fill_any_blank():
    cut = cut_cloze(NOTE, 1, KnowsTheNote(known=()))
    assert cut.card is None
    assert "no blank worth asking" in str(cut.reason) and f"{MIN_GAIN}" in str(cut.reason)


def test_a_cutting_writer_cuts_a_cloze_of_another_sentence_for_every_kind_asked():
    scorer = KnowsTheNote(known=("nonsense syllables", "Spaced repetition", "savings method"))
    recorder = record_calls(scorer)
    outcome = generate_cards(NOTE, recorder, reader=recorder)
    assert [g.card.kind for g in outcome.cards] == [CardKind.CLOZE] * 3
    assert [g.card.answer for g in outcome.cards] == [
        "nonsense syllables",
        "Spaced repetition",
        "savings method",
    ]
    assert {(g.model, g.method, g.tokens_per_s) for g in outcome.cards} == {
        ("fake-scorer", CUT_METHOD, None)
    }
    assert scorer.writes == 0  # nothing written, no meaning check read back
    assert (recorder.model(), recorder.method()) == ("fake-scorer", CUT_METHOD)


def test_a_note_with_cards_is_cut_from_its_next_sentences_and_not_asked_again():
    scorer = KnowsTheNote(known=("nonsense syllables", "Spaced repetition", "savings method"))
    asked = "Hermann Ebbinghaus measured ___ with lists of nonsense syllables."
    outcome = generate_cards(NOTE, scorer, kinds=[CardKind.CLOZE], existing=["Q1", asked])
    assert [g.card.answer for g in outcome.cards] == ["Spaced repetition"]
    # three sentences give three cards, never a second card from one sentence
    outcome = generate_cards(NOTE, scorer, kinds=["cloze"] * 4)
    assert len(outcome.cards) == 3 and len({g.card.question for g in outcome.cards}) == 3
    assert outcome.failures[-1].endswith("every sentence worth a card has one already")
    scorer = KnowsTheNote(known=("nonsense syllables", "lists", "Spaced repetition"))
    again = generate_cards(NOTE, scorer, kinds=["cloze"], answers=["Nonsense syllables"])
    assert [g.card.answer for g in again.cards] == ["lists"]


def test_a_sentence_without_a_worthy_blank_is_a_rejection_and_the_next_is_tried():
    scorer = KnowsTheNote(known=("Spaced repetition",))
    outcome = generate_cards(NOTE, scorer, kinds=[CardKind.CLOZE], max_attempts=2)
    assert [g.card.answer for g in outcome.cards] == ["Spaced repetition"]
    assert [r.attempt for r in outcome.rejections] == [1]
    assert "no blank worth asking" in outcome.rejections[0].reason


def _reference_logprob(lm, prompt: str, reply: str) -> float:
    """The reply's log-probability from the Hugging Face twin (not our engine)."""
    context = lm.encode(prompt)
    ids = lm.tokenizer.encode(reply)
    logits = lm.hf_model(torch.tensor([context + ids])).logits[0].double()
    logp = torch.log_softmax(logits, dim=-1)
    return sum(float(logp[len(context) - 1 + i, t]) for i, t in enumerate(ids))


@pytest.mark.parametrize("arch", ["tiny-llama", "tiny-qwen2"])
def test_reply_scores_are_the_models_log_probabilities(arch):
    lm = tiny(arch)
    prompt = "The savings method"
    replies = ["x", " counts time", "\u00e9t\u00e9"]
    for reply, score in zip(replies, score_replies(lm, prompt, replies), strict=True):
        assert score == pytest.approx(_reference_logprob(lm, prompt, reply), abs=1e-6)
    printable = [chr(c) for c in range(32, 127)]  # one byte token each: disjoint replies
    assert 0.0 < math.fsum(math.exp(s) for s in score_replies(lm, prompt, printable)) < 1.0
    with pytest.raises(ValueError, match="empty reply"):
        score_replies(lm, prompt, [""])


def test_every_cut_sentence_is_a_whole_sentence_of_the_note():
    for sentence, excerpt in cut_sentences(NOTE):
        assert sentence in excerpt
        assert re.search(r"[.!?]$", sentence)


def test_only_the_bundled_writer_cuts_clozes():
    lm = tiny("tiny-llama")
    cutter = bind_writer(lm, writer_for(BUNDLED))
    writer = bind_writer(lm, writer_for("tiny-llama"))
    assert isinstance(cutter, Scorer) and not isinstance(writer, Scorer)
    assert isinstance(record_calls(cutter), Scorer) and not isinstance(record_calls(writer), Scorer)
    assert "cutting clozes" in writer_for(BUNDLED).describe()
    assert cutter.score("a", ["b"]) == score_replies(lm, "a", ["b"])
    assert writer("The savings").model == lm.name


@pytest.mark.bundled
def test_the_bundled_model_cuts_a_cloze_from_an_unseen_note():
    note = NoteDraft(
        title="Lighthouses",
        body=(
            "The Pharos of Alexandria was a lighthouse built in the third century BC. "
            "Modern lighthouses focus their beam with a Fresnel lens, invented by "
            "Augustin-Jean Fresnel in 1822, which is far thinner than a solid lens."
        ),
    )
    recorder = record_calls(bind_writer(bundled(), writer_for(BUNDLED)))
    outcome = generate_cards(note, recorder, kinds=[CardKind.CLOZE], max_attempts=2)
    assert outcome.cards, outcome.failures
    card = outcome.cards[0].card
    sentence = card.question.replace(BLANK, card.answer)
    assert sentence in [s for s, _ in cut_sentences(note)]
    assert outcome.cards[0].method == CUT_METHOD
