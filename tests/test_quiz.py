"""Quiz cards: the prompt, the tolerant parser, the checks, and the generation loop."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from study.markdown_import import NoteDraft
from study.quiz import (
    BLANK,
    CardDraft,
    CardKind,
    build_prompt,
    generate_cards,
    note_excerpts,
    parse_cards,
    plain_text,
    similarity,
    validate_card,
)
from study.quiz.generate import EXPLORE_TEMPERATURE, shuffle_choices
from study.quiz.meaning import judge_reply, meaning_prompt
from study.quiz.prompt import example_text
from study.quiz_eval import quiz_eval
from tests.quiz_fakes import FakeCompletion, is_reading_task, truthful_reply

NOTE = NoteDraft(
    title="Ebbinghaus forgetting curve",
    body=(
        "# Forgetting\n\n"
        "Hermann Ebbinghaus measured his own memory of **nonsense syllables** in 1885.\n\n"
        "He used the savings method: the time saved when relearning a list.\n"
        "Recall falls fastest in the first hours after learning.\n\n"
        "Spaced repetition schedules each review just before recall drops too far."
    ),
)
NOTE_TEXT = NOTE.title + "\n" + NOTE.body

# ---------------------------------------------------------------- the parser, noisy input

WORDS = st.sampled_from(
    [
        "memory",
        "stability",
        "curve",
        "draft",
        "token",
        "layer",
        "adapter",
        "exit",
        "target",
        "review",
        "syllable",
        "partition",
        "recall",
        "schedule",
        "verify",
        "model",
        "entropy",
        "gradient",
    ]
)
PHRASE = st.lists(WORDS, min_size=1, max_size=5).map(" ".join)
CHATTER = st.sampled_from(
    ["Sure! Here is one question.", "Here you go", "I hope this helps.", "Let me know!", ""]
)


@st.composite
def cards(draw):
    kind = draw(st.sampled_from(list(CardKind)))
    question = draw(PHRASE).capitalize() + "?"
    if kind is CardKind.CLOZE:
        return CardDraft(kind, f"{draw(PHRASE)} {BLANK} {draw(PHRASE)}.", draw(PHRASE))
    if kind is CardKind.BASIC:
        return CardDraft(kind, question, draw(PHRASE))
    choices = draw(st.lists(PHRASE, min_size=2, max_size=5, unique=True))
    index = draw(st.integers(0, len(choices) - 1))
    return CardDraft(kind, question, choices[index], tuple(choices), index)


def _label(draw, name, short):
    word = draw(st.sampled_from([name, name.upper(), name.lower(), short]))
    styled = draw(st.sampled_from(["{}:", "**{}:**", "**{}**:", "__{}:__", "### {}:"]))
    return styled.format(word)


@st.composite
def noisy(draw, card):
    """Render ``card`` the way a small model might, then return the text."""
    lines = [draw(CHATTER)]
    number = draw(st.sampled_from(["", "1. ", "2) "]))
    if card.kind is CardKind.CLOZE:
        label = draw(st.sampled_from(["Cloze:", "CLOZE:", "**Fill in the blank:**", "Cloze :"]))
        blank = draw(st.sampled_from(["___", "_____", "[blank]"]))
        lines.append(f"{number}{label} {card.question.replace(BLANK, blank)}")
        lines.append(f"{_label(draw, 'Answer', 'A')} {card.answer}")
    else:
        lines.append(f"{number}{_label(draw, 'Question', 'Q')} {card.question}")
    if card.kind is CardKind.BASIC:
        if draw(st.booleans()):
            lines.append(f"{_label(draw, 'Answer', 'A')} {card.answer}")
        else:  # label alone, value on the next line
            lines += [_label(draw, "Answer", "Ans"), card.answer]
    if card.kind is CardKind.MCQ:
        style = draw(st.sampled_from(["{L}) ", "{l}. ", "({L}) ", "- ", "{L}. "]))
        for i, choice in enumerate(card.choices):
            letter = chr(ord("A") + i)
            lines.append(style.format(L=letter, l=letter.lower()) + choice)
        letter = chr(ord("A") + card.correct_index)
        key = draw(
            st.sampled_from(
                [
                    f"Correct: {letter}",
                    f"**Correct answer:** {letter.lower()}",
                    f"Answer: {letter}) {card.answer}",
                    f"Correct: {card.answer}",
                    f"Answer: The correct answer is {letter}",
                ]
            )
        )
        lines.append(key)
    lines.append(draw(CHATTER))
    sep = draw(st.sampled_from(["\n", "\n\n", "\r\n"]))
    return sep.join(lines).rstrip("\n") if draw(st.booleans()) else sep.join(lines)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), batch=st.lists(cards(), min_size=1, max_size=3))
def test_noisy_renderings_of_valid_cards_parse_to_the_same_cards(data, batch):
    text = "\n".join(data.draw(noisy(card)) for card in batch)
    result = parse_cards(text)
    assert list(result.cards) == batch, text


@settings(max_examples=60, deadline=None)
@given(card=cards(), cut=st.integers(1, 3))
def test_a_truncated_last_card_is_dropped_with_a_reason(card, cut):
    complete = "Question: What is the first step?\nAnswer: the draft step\n"
    lines = [f"Question: {card.question}"]
    if card.kind is CardKind.MCQ:
        lines += [f"{chr(65 + i)}) {c}" for i, c in enumerate(card.choices)][:cut]
    result = parse_cards(complete + "\n".join(lines))
    assert [c.question for c in result.cards] == ["What is the first step?"]
    assert result.problems


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("I am sorry, I cannot write questions.", "no card found"),
        ("", "no card found"),
        ("Question: What is recall?\nI think it is memory.", "no answer"),
        ("Question: Pick one\nA) x\nB) y\nC) z\nCorrect: A and C", "more than one correct"),
        ("Question: Pick one\nA) x\nB) y\nCorrect: E", "not one of AB"),
        ("Question: Pick one\nA) x\nB) y\nCorrect: banana", "matches none"),
        ("Question: Pick one\nA) x\nB) y", "no correct option"),
        ("Question: Pick one\nA) only option\nAnswer: A", "only one option"),
        ("Cloze: The sky is blue.\nAnswer: green", "no blank"),
        ("Cloze: The sky is ___.", "no answer for cloze"),
        ("Answer: stray\nCorrect: B", "before any question"),
        ("Question:\n\n", "no question text"),
    ],
)
def test_garbage_is_rejected_with_a_reason(text, reason):
    result = parse_cards(text)
    assert result.cards == ()
    assert any(reason in problem for problem in result.problems), result.problems


def test_parser_extras_cloze_marks_inline_correct_marks_and_kind_filter():
    (cloze,) = parse_cards("Cloze: Recall falls in the {{c1::first hours}}.").cards
    assert cloze == CardDraft(CardKind.CLOZE, f"Recall falls in the {BLANK}.", "first hours")
    (filled,) = parse_cards("Cloze: Recall falls fastest.\nAnswer: fastest").cards
    assert filled.question == f"Recall falls {BLANK}."
    (marked,) = parse_cards("Question: Which?\n- red\n- blue (correct)\n- green").cards
    assert marked.correct_index == 1 and marked.answer == "blue"
    wrong_kind = parse_cards("Question: What?\nAnswer: that", CardKind.MCQ)
    assert wrong_kind.cards == () and "asked for a mcq card, got basic" in wrong_kind.problems


# ---------------------------------------------------------------- the prompt


@pytest.mark.parametrize("kind", list(CardKind))
def test_prompt_example_parses_and_note_excerpt_is_plain_text(kind):
    prompt = build_prompt(NOTE, kind)
    assert "Use exactly this format" in prompt and "nonsense syllables" in prompt
    assert "**" not in prompt and "# Forgetting" not in prompt
    example = prompt.split("Example:\n", 1)[1].split("\n\nText (", 1)[0]
    (card,) = parse_cards(example, kind).cards
    # a model that copies the example is caught: the example is not about the note
    assert any("not grounded" in r for r in validate_card(card, NOTE_TEXT))


def test_long_notes_are_cut_into_excerpts_that_attempts_walk_through():
    long_note = NoteDraft("Long", "\n\n".join(f"Paragraph {i} " + "word " * 60 for i in range(6)))
    excerpts = note_excerpts(long_note, max_words=150)
    assert len(excerpts) == 3 and all(len(e.split()) <= 150 for e in excerpts)
    assert "Paragraph 2" in build_prompt(long_note, CardKind.BASIC, part=1, max_words=150)
    assert "Paragraph 0" in build_prompt(long_note, CardKind.BASIC, part=3, max_words=150)


# ---------------------------------------------------------------- the checks, both ways

GOOD_BASIC = CardDraft(CardKind.BASIC, "What did Ebbinghaus memorise?", "nonsense syllables")
GOOD_CLOZE = CardDraft(CardKind.CLOZE, f"Recall falls fastest in the first {BLANK}.", "hours")
GOOD_MCQ = CardDraft(
    CardKind.MCQ,
    "Which method did Ebbinghaus use?",
    "the savings method",
    ("the savings method", "free recall", "recognition tests"),
    0,
)


@pytest.mark.parametrize("card", [GOOD_BASIC, GOOD_CLOZE, GOOD_MCQ])
def test_good_cards_pass(card):
    assert validate_card(card, NOTE_TEXT, existing=["Who proposed the CAP theorem?"]) == ()


@pytest.mark.parametrize(
    ("card", "reason"),
    [
        (CardDraft(CardKind.BASIC, " ", "hours"), "empty question"),
        (CardDraft(CardKind.BASIC, "What falls fastest?", "  "), "empty answer"),
        (CardDraft(CardKind.BASIC, "Why?", "hours"), "shorter than 3 words"),
        (CardDraft(CardKind.BASIC, "What happens?", "memory " * 30), "longer than 25"),
        (
            CardDraft(CardKind.BASIC, "When was the savings method used?", "savings method"),
            "already contains the answer",
        ),
        (
            CardDraft(CardKind.BASIC, "Who invented the telephone?", "Alexander Graham Bell"),
            "not grounded",
        ),
        (CardDraft(CardKind.BASIC, "What is lost over time?", "all of it"), "no content words"),
        (
            GOOD_MCQ.__class__(
                CardKind.MCQ,
                GOOD_MCQ.question,
                "the savings method",
                ("the savings method", "free recall"),
                0,
            ),
            "2 options",
        ),
        (
            GOOD_MCQ.__class__(
                CardKind.MCQ,
                GOOD_MCQ.question,
                "the savings method",
                ("the savings method", "Savings method!", "recall"),
                0,
            ),
            "A and B are not distinct",
        ),
        (
            GOOD_MCQ.__class__(
                CardKind.MCQ,
                GOOD_MCQ.question,
                "the savings method",
                ("the savings method", "free recall", "all of the above"),
                0,
            ),
            "all/none of the above",
        ),
        (
            GOOD_MCQ.__class__(CardKind.MCQ, GOOD_MCQ.question, "free recall", GOOD_MCQ.choices, 0),
            "not the text of the correct option",
        ),
        (
            GOOD_MCQ.__class__(
                CardKind.MCQ, GOOD_MCQ.question, "the savings method", GOOD_MCQ.choices, None
            ),
            "no correct option",
        ),
        (
            CardDraft(CardKind.CLOZE, f"Recall falls {BLANK} in the first {BLANK}.", "hours"),
            "exactly one blank",
        ),
        (
            CardDraft(CardKind.CLOZE, f"Spaced repetition was invented in {BLANK}.", "1885"),
            "not a sentence of the note",
        ),
    ],
)
def test_each_check_rejects_with_its_reason(card, reason):
    reasons = validate_card(card, NOTE_TEXT)
    assert any(reason in r for r in reasons), reasons


def test_near_duplicates_are_rejected_and_different_questions_are_not():
    existing = ["What did Ebbinghaus memorise in 1885?"]
    near = CardDraft(CardKind.BASIC, "what did ebbinghaus memorise, in 1885", "nonsense syllables")
    assert any("near-duplicate" in r for r in validate_card(near, NOTE_TEXT, existing))
    assert validate_card(GOOD_BASIC, NOTE_TEXT, ["Which method did Ebbinghaus use?"]) == ()
    assert similarity("Recall falls.", "recall falls") == 1.0
    assert similarity("Recall falls.", "Draft tokens verify") == 0.0


def test_grounding_needs_three_quarters_of_the_answer_words_in_the_note():
    card = CardDraft(
        CardKind.BASIC,
        "What does spaced repetition do?",
        "schedules each review before recall drops early",
    )
    assert validate_card(card, NOTE_TEXT) == ()  # 4 of 5 content words
    worse = CardDraft(CardKind.BASIC, "What does spaced repetition do?", "plans review early")
    assert any("not grounded" in r for r in validate_card(worse, NOTE_TEXT))


# ---------------------------------------------------------------- the generation loop


class Scripted:
    """A fake ``complete`` that writes from a script and records prompts and sampling;
    asked a card's question by the meaning check, it answers as a perfect reader."""

    def __init__(self, *texts: str) -> None:
        self.texts = list(texts)
        self.prompts: list[str] = []
        self.sampling: list[dict] = []

    def __call__(self, prompt: str, **sampling: float) -> FakeCompletion:
        if is_reading_task(prompt):
            return FakeCompletion(truthful_reply(prompt, self.texts))
        self.prompts.append(prompt)
        self.sampling.append(sampling)
        text = self.texts[min(len(self.prompts), len(self.texts)) - 1]
        return FakeCompletion(text, tokens_per_s=42.0, method="kangaroo")


def test_junk_then_valid_output_is_retried_and_keeps_metadata():
    complete = Scripted(
        "Sure, I love quizzes!",
        "Here it is:\n**Question:** What did Ebbinghaus memorise?\n**Answer:** nonsense syllables",
    )
    outcome = generate_cards(NOTE, complete, kinds=["basic"], max_attempts=3)
    assert outcome.attempts == 2 and len(complete.prompts) == 2
    (made,) = outcome.cards
    assert made.card == GOOD_BASIC
    assert (made.model, made.method, made.tokens_per_s, made.attempt) == (
        "fake-135m",
        "kangaroo",
        42.0,
        2,
    )
    assert outcome.failures == [
        "basic attempt 1: no card found: expected lines starting with "
        "'Question:' or 'Cloze:' followed by 'Answer:' (or options and "
        "'Correct:')"
    ]


def test_output_that_never_passes_yields_failures_and_no_cards():
    complete = Scripted("Question: Who invented the telephone?\nAnswer: Alexander Graham Bell")
    outcome = generate_cards(NOTE, complete, kinds=[CardKind.BASIC, CardKind.MCQ], max_attempts=2)
    assert outcome.cards == [] and outcome.attempts == 4
    assert sum("not grounded" in f for f in outcome.failures) == 2
    assert sum("asked for a mcq card, got basic" in f for f in outcome.failures) == 2


def test_cards_are_not_duplicated_within_a_run_or_against_existing_ones():
    text = "Question: What did Ebbinghaus memorise?\nAnswer: nonsense syllables"
    again = generate_cards(NOTE, Scripted(text), kinds=["basic"], existing=[GOOD_BASIC.question])
    assert again.cards == [] and all("near-duplicate" in f for f in again.failures)
    two = generate_cards(
        NOTE, Scripted(text + "\n" + text), kinds=["basic"], per_kind=2, max_attempts=1
    )
    assert len(two.cards) == 1 and any("near-duplicate" in f for f in two.failures)


def test_each_kind_gets_its_own_prompt_and_bad_arguments_are_refused():
    complete = Scripted(
        "Question: What did Ebbinghaus memorise?\nAnswer: nonsense syllables",
        f"Cloze: {GOOD_CLOZE.question}\nAnswer: hours",
        "Question: Which method did Ebbinghaus use?\nA) the savings method\nB) free recall\n"
        "C) recognition tests\nCorrect: A",
    )
    outcome = generate_cards(NOTE, complete, kinds=list(CardKind))
    assert [c.card for c in outcome.cards] == [GOOD_BASIC, GOOD_CLOZE, shuffle_choices(GOOD_MCQ)]
    assert outcome.failures == [] and outcome.attempts == 3
    assert "Cloze: <sentence with ___>" in complete.prompts[1]
    with pytest.raises(ValueError, match="max_attempts"):
        generate_cards(NOTE, complete, kinds=["basic"], max_attempts=0)
    with pytest.raises(ValueError, match="unknown card kind"):
        generate_cards(NOTE, complete, kinds=["essay"])


def test_a_cloze_from_a_hard_wrapped_sentence_is_grounded():
    wrapped = "Kangaroo stops drafting when the draft's\ntop-1 probability falls below eta.\n"
    card = CardDraft(
        CardKind.CLOZE,
        f"Kangaroo stops drafting when the draft's top-1 {BLANK} falls below eta.",
        "probability",
    )
    assert validate_card(card, "Kangaroo\n" + plain_text(wrapped)) == ()
    assert validate_card(card, "Kangaroo stops drafting.\n\nProbability falls below eta.") != ()


def test_an_answer_found_only_in_an_unrelated_sentence_is_rejected():
    note = "Spaced repetition schedules reviews.\nThe model keeps 1 parameter per card."
    stray = CardDraft(CardKind.BASIC, "Which palindrome sentence is most probable?", "1")
    assert any("links the answer" in r for r in validate_card(stray, note))
    linked = CardDraft(CardKind.BASIC, "How many parameters does the model keep per card?", "1")
    assert not any("links the answer" in r for r in validate_card(linked, note))


def test_options_are_shuffled_reproducibly_and_the_correct_one_follows():
    cards = [
        CardDraft(CardKind.MCQ, f"Question {n} about savings?", "b", ("a", "b", "c", "d"), 1)
        for n in range(12)
    ]
    shuffled = [shuffle_choices(card) for card in cards]
    assert all(s.choices[s.correct_index] == "b" for s in shuffled)
    assert len({s.correct_index for s in shuffled}) > 1  # not always where the model put it
    assert shuffled == [shuffle_choices(card) for card in cards]


def test_retries_explore_instead_of_repeating_the_prompt():
    complete = Scripted("nothing useful", "still nothing", "no card here")
    generate_cards(NOTE, complete, kinds=["basic"], max_attempts=3)
    assert len(set(complete.prompts)) == 3


def test_a_note_too_short_to_quiz_says_so_without_calling_the_model():
    short = NoteDraft(title="Tiny", body="Cats purr.")
    complete = Scripted("Question: What do cats do?\nAnswer: purr")
    outcome = generate_cards(short, complete)
    assert outcome.attempts == 0 and complete.prompts == []
    assert "too short to quiz" in outcome.failures[0]


def test_a_number_must_be_the_fact_the_question_asks_for():
    note = "Ebbinghaus\nSavings were 58% after 20 minutes.\nThe decoder has 2 draft layers."
    stray = CardDraft(CardKind.BASIC, "How many reviews can be recalled in one day?", "20")
    assert any("number 20" in r for r in validate_card(stray, note))
    fact = CardDraft(CardKind.BASIC, "After how many minutes were savings 58%?", "20")
    assert not any("number" in r for r in validate_card(fact, note))


def test_the_prompt_example_must_not_leak_into_a_card():
    note = "Decoding\nThe draft proposes tokens and the target verifies them at each step."
    leaked = CardDraft(
        CardKind.BASIC, "What does the target verify at each step?", "100 degrees Celsius"
    )
    reasons = validate_card(leaked, note, example_text=example_text("basic"))
    assert any("worked example" in r for r in reasons)
    honest = CardDraft(CardKind.BASIC, "What does the target verify at each step?", "the tokens")
    assert not any(
        "worked example" in r
        for r in validate_card(honest, note, example_text=example_text("basic"))
    )


def test_quiz_eval_reports_yield_reasons_and_time_per_card(tmp_path):
    (tmp_path / "a.md").write_text(f"---\ntitle: {NOTE.title}\n---\n{NOTE.body}\n", "utf-8")
    (tmp_path / "b.md").write_text("---\ntitle: Tiny\n---\nCats purr.\n", encoding="utf-8")
    complete = Scripted("Question: What did Ebbinghaus memorise?\nAnswer: nonsense syllables")
    report = quiz_eval(tmp_path, complete, max_attempts=1).as_dict()
    assert report["notes"] == 2 and report["cards"] == 1
    first, tiny = report["per_note"]
    assert first["cards"][0]["answer"] == "nonsense syllables"
    assert tiny["model_calls"] == 0 and "too short to quiz" in tiny["rejections"][0]
    assert report["share_of_notes_with_2_or_more_cards"] == 0.0
    assert any("too short" in reason for reason in report["rejection_reasons"])


def test_an_answer_that_only_talks_about_answering_is_rejected():
    """Seen in quiz-eval: "The answer is" passed as grounded on a note that "answers"."""
    note = "Bloom filters\nA Bloom filter answers whether an element may be in a set."
    card = CardDraft(CardKind.BASIC, "How many elements can a Bloom filter hold?", "The answer is")
    assert any("no content words" in r for r in validate_card(card, note))


# ---------------------------------------------------------------- meaning and exploration


class Reader:
    """A meaning-check reader that always gives the same reply, recording its prompts."""

    def __init__(self, reply: str) -> None:
        self.reply = reply
        self.prompts: list[str] = []

    def __call__(self, prompt: str) -> FakeCompletion:
        self.prompts.append(prompt)
        return FakeCompletion(self.reply)


def test_the_reader_must_give_the_stored_answer():
    assert judge_reply(GOOD_BASIC, "Answer: nonsense syllables.") is None
    assert judge_reply(GOOD_BASIC, "He memorised syllables that had no meaning") is None
    wrong = judge_reply(GOOD_BASIC, "the savings method")
    assert wrong is not None and "not 'nonsense syllables'" in wrong
    copied = judge_reply(GOOD_BASIC, " ".join(["nonsense syllables and more words"] * 8))
    assert copied is not None and "copied text" in copied
    year = CardDraft(CardKind.BASIC, "In which year did Ebbinghaus publish his study?", "1885")
    assert judge_reply(year, "1885") is None
    assert judge_reply(year, "in 1880") is not None  # a number must be the same number


def test_a_multiple_choice_whose_reader_picks_a_distractor_is_rejected():
    assert judge_reply(GOOD_MCQ, "A") is None
    assert judge_reply(GOOD_MCQ, "Correct: the savings method") is None
    other = judge_reply(GOOD_MCQ, "B) free recall")
    assert other is not None and "picked option B" in other and "distractor" in other
    assert "named no option" in (judge_reply(GOOD_MCQ, "I am not sure") or "")
    prompt = meaning_prompt(GOOD_MCQ, "some excerpt")
    assert "A) the savings method\nB) free recall" in prompt and prompt.endswith("Correct:")


def test_a_card_the_reader_answers_differently_is_rejected_and_kept_as_a_draft():
    text = "Question: What did Ebbinghaus memorise?\nAnswer: nonsense syllables"
    agreeing = generate_cards(NOTE, Scripted(text), kinds=["basic"], reader=Scripted(text))
    assert [c.card for c in agreeing.cards] == [GOOD_BASIC]
    reader = Reader("the savings method")
    outcome = generate_cards(NOTE, Scripted(text), kinds=["basic"], max_attempts=2, reader=reader)
    assert outcome.cards == [] and len(reader.prompts) == 2
    assert "Text: " in reader.prompts[0] and GOOD_BASIC.question in reader.prompts[0]
    ((draft, reasons),) = outcome.rejected_drafts  # the same draft twice: listed once
    assert draft == GOOD_BASIC and all("asked with the note" in r for r in reasons)
    assert outcome.failures[0].startswith("basic attempt 1: asked with the note")


def test_a_distractor_that_restates_the_answer_is_rejected():
    card = replace(GOOD_MCQ, choices=("the savings method", "savings", "free recall"))
    assert any("option B restates" in r for r in validate_card(card, NOTE_TEXT))
    assert not any("restates" in r for r in validate_card(GOOD_MCQ, NOTE_TEXT))


def test_retries_sample_with_a_seed_per_attempt_and_repeat_exactly():
    first, again = Scripted("no card"), Scripted("no card")
    for complete in (first, again):
        generate_cards(NOTE, complete, kinds=["basic", "cloze"], max_attempts=3)
    assert first.sampling[0] == {} and first.sampling[3] == {}  # each kind starts greedy
    retries = first.sampling[1:3] + first.sampling[4:6]
    assert all(s["temperature"] == EXPLORE_TEMPERATURE for s in retries)
    assert len({s["seed"] for s in retries}) == 4
    assert first.sampling == again.sampling
