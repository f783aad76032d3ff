"""Quiz service: scripted completions store checked cards with a run record, or a failure."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from db import Card, QuizRun, get_or_create_user, init_db
from study.cards_service import list_cards
from study.drafts_service import EDITED_SUFFIX, keep_draft, rejected_drafts
from study.errors import InvalidNoteError, NoteNotFoundError, StudyError
from study.notes import SEED_CARD_MODEL, seed_notes
from study.notes_service import add_note, ensure_seed_notes, list_notes
from study.quiz import CardKind
from study.quiz_service import QuizRunStatus, generate_for_note, iter_generate_for_note
from tests.quiz_fakes import FakeCompletion, is_reading_task, truthful_reply
from tests.study_helpers import file_db

BODY = (
    "Kangaroo drafts tokens with a shallow sub-network of the model.\n\n"
    "The adapter is one attention block with its own cache."
)
BASIC = "Question: What does Kangaroo draft tokens with?\nAnswer: a shallow sub-network"
CLOZE = "Cloze: The adapter is one ___ block with its own cache.\nAnswer: attention"
MCQ = (
    "Question: What is the Kangaroo adapter made of?\nA) one attention block\n"
    "B) two MLP layers\nC) a convolution stack\nD) a lookup table\nCorrect: A"
)


class Scripted:
    """Writes the scripted texts in order and records the prompts it saw; asked a card's
    question by the meaning check, it answers as a perfect reader would."""

    def __init__(self, *texts: str, reads: str | None = None) -> None:
        self.texts = list(texts)
        self.script = list(texts)
        self.reads = reads  # a fixed reply to the meaning check instead of the truth
        self.prompts: list[str] = []

    def __call__(self, prompt: str, **sampling: float) -> FakeCompletion:
        if is_reading_task(prompt):
            return FakeCompletion(self.reads or truthful_reply(prompt, self.script))
        self.prompts.append(prompt)
        return FakeCompletion(self.texts.pop(0))


@pytest.fixture
def setup(db_url):
    db = init_db(db_url)
    user = db.write(lambda s: get_or_create_user(s, "ann").id)
    note = add_note(db, user, "Kangaroo", BODY)
    yield db, user, note.id
    db.dispose()


def _runs(db) -> list[QuizRun]:  # noqa: ANN001
    with db.read() as session:
        return list(session.scalars(select(QuizRun).order_by(QuizRun.id)))


def test_passing_cards_are_stored_with_generation_metadata(setup):
    db, user, note_id = setup
    fake = Scripted("chatter without a card", BASIC, CLOZE, MCQ)
    summary = generate_for_note(db, user, note_id, fake)
    assert summary.status is QuizRunStatus.OK and summary.attempts == 4
    cards = list_cards(db, user, note_id)
    assert [c.kind for c in cards] == [CardKind.BASIC, CardKind.CLOZE, CardKind.MCQ]
    assert {(c.gen_model, c.gen_method, c.gen_tokens_per_s) for c in cards} == {
        ("fake-135m", "vanilla", 12.5)
    }
    assert cards[2].answer == "one attention block" and len(cards[2].choices) == 4
    (run,) = _runs(db)
    assert (run.status, run.cards_created, run.attempts, run.model) == ("ok", 3, 4, "fake-135m")
    assert any("no card found" in f for f in run.extra["failures"])


def test_existing_questions_are_passed_so_duplicates_are_dropped(setup):
    db, user, note_id = setup
    generate_for_note(db, user, note_id, Scripted(BASIC), kinds=["basic"], max_attempts=1)
    again = generate_for_note(db, user, note_id, Scripted(BASIC), kinds=["basic"], max_attempts=1)
    assert again.status is QuizRunStatus.FAILED
    assert "near-duplicate" in again.reason
    assert len(list_cards(db, user, note_id)) == 1


def test_output_that_never_passes_leaves_a_failed_record_and_no_card(setup):
    db, user, note_id = setup
    copied_example = "Question: At what temperature does water boil?\nAnswer: 100 degrees Celsius"
    summary = generate_for_note(
        db, user, note_id, Scripted(*[copied_example] * 3), kinds=["basic"], max_attempts=3
    )
    assert summary.status is QuizRunStatus.FAILED and summary.card_ids == ()
    assert "worked example" in summary.reason  # the copy is named as such, not just ungrounded
    (run,) = _runs(db)
    assert (run.status, run.cards_created, run.attempts) == ("failed", 0, 3)
    assert run.reason == summary.reason and len(run.extra["outputs"]) == 3
    assert list_cards(db, user, note_id) == []


def test_a_model_error_is_a_failed_run_with_no_partial_cards(setup):
    db, user, note_id = setup
    fake = Scripted(BASIC)  # the second call finds the script empty: IndexError

    summary = generate_for_note(db, user, note_id, fake, kinds=["basic", "cloze"])
    assert summary.status is QuizRunStatus.FAILED
    assert "model call failed: IndexError" in summary.reason
    assert list_cards(db, user, note_id) == []


def test_streaming_variant_reports_each_kind_then_the_summary(setup):
    db, user, note_id = setup
    steps = list(iter_generate_for_note(db, user, note_id, Scripted(BASIC, CLOZE, MCQ)))
    assert [s.kind for s in steps] == [CardKind.BASIC, CardKind.CLOZE, CardKind.MCQ, None]
    assert [s.cards_so_far for s in steps] == [1, 2, 3, 3]
    assert steps[-1].summary is not None and len(steps[-1].summary.card_ids) == 3
    assert all(s.summary is None for s in steps[:-1])


def test_another_users_note_is_refused_before_any_model_call(setup):
    db, _user, note_id = setup
    bob = db.write(lambda s: get_or_create_user(s, "bob").id)
    fake = Scripted(BASIC)
    with pytest.raises(NoteNotFoundError):
        generate_for_note(db, bob, note_id, fake)
    assert fake.prompts == [] and _runs(db) == []


@pytest.mark.bundled
def test_bundled_model_cuts_clozes_from_a_seed_note_and_stores_them(tmp_path):
    from selfspec.loading import BUNDLED
    from study.quiz.generate import CUT_METHOD
    from study.quiz_model import bind_writer, writer_for
    from tests.model_helpers import bundled

    db = file_db(tmp_path)
    user = db.write(lambda s: get_or_create_user(s, "ann").id)
    ensure_seed_notes(db, user)
    title = seed_notes()[0].title
    note = next(n for n in list_notes(db, user) if n.title == title)
    complete = bind_writer(bundled("float32"), writer_for(BUNDLED))  # as the app binds it
    summary = generate_for_note(db, user, note.id, complete, kinds=["basic"], max_attempts=2)
    (run,) = _runs(db)
    # The seed note ships vetted cards of its own (SEED_CARD_MODEL); count the run's cards.
    cards = [c for c in list_cards(db, user, note.id) if c.gen_model != SEED_CARD_MODEL]
    assert run.model and run.method and run.attempts == summary.attempts >= 1
    # cutting clozes, the small model gives cards where it could not write one
    assert summary.status is QuizRunStatus.OK and run.cards_created == len(cards) >= 1
    for card in cards:
        assert card.kind == "cloze" and card.question.count("___") == 1 and card.answer.strip()
        assert (card.gen_model, card.gen_method) == (run.model, CUT_METHOD)
    with db.read() as session:  # nothing stored beyond the run's cards and the seed cards
        seeded = select(func.count()).select_from(Card).where(Card.gen_model == SEED_CARD_MODEL)
        total = session.scalar(select(func.count()).select_from(Card))
        assert total - session.scalar(seeded) == len(cards)
    db.dispose()


def test_a_list_number_before_the_answer_is_not_kept():
    from study.quiz import parse_cards

    (card,) = parse_cards("Question: How does it cope?\n\nAnswer: 1. It keeps working.").cards
    assert card.answer == "It keeps working."
    (card,) = parse_cards("Question: How long is the step?\nAnswer: 1. 5 days").cards
    assert card.answer == "1. 5 days"


def test_a_rejected_draft_is_stored_with_its_reasons_and_kept_after_an_edit(setup):
    db, user, note_id = setup
    misread = Scripted(BASIC, reads="a lookup table")
    summary = generate_for_note(db, user, note_id, misread, kinds=["basic"], max_attempts=1)
    assert summary.status is QuizRunStatus.FAILED and summary.rejected_drafts == 1
    (draft,) = rejected_drafts(db, user, note_id)
    assert draft.question == "What does Kangaroo draft tokens with?"
    assert "asked with the note, the model answered 'a lookup table'" in draft.reasons[0]
    with pytest.raises(InvalidNoteError, match="needs an answer"):
        keep_draft(db, user, draft.run_id, draft.index, question=draft.question, answer=" ")
    assert list_cards(db, user, note_id) == []  # a bad edit stores nothing
    other = db.write(lambda s: get_or_create_user(s, "bob").id)
    with pytest.raises(StudyError, match="not found"):
        keep_draft(db, other, draft.run_id, draft.index, question="Q? x y", answer="z")
    card = keep_draft(
        db, user, draft.run_id, draft.index, question=draft.question, answer="a shallow part"
    )
    assert (card.answer, card.gen_model) == ("a shallow part", "fake-135m" + EDITED_SUFFIX)
    assert [c.id for c in list_cards(db, user, note_id)] == [card.id]
    assert rejected_drafts(db, user, note_id) == []  # kept: no longer offered
    with pytest.raises(StudyError, match="already kept"):
        keep_draft(db, user, draft.run_id, draft.index, question="Q? x y", answer="z")


def test_without_the_meaning_check_a_misread_card_is_stored(setup):
    db, user, note_id = setup
    misread = Scripted(BASIC, reads="a lookup table")
    summary = generate_for_note(
        db, user, note_id, misread, kinds=["basic"], max_attempts=1, check_meaning=False
    )
    assert len(summary.card_ids) == 1


def test_the_run_records_the_writers_model_method_and_speed(setup):
    db, user, note_id = setup
    replies = iter([("chatter without a card", 3.0), (BASIC, 5.0)])

    def writer(prompt: str, **sampling: float) -> FakeCompletion:
        text, rate = next(replies)
        return FakeCompletion(text, tokens_per_s=rate, method="pld", model="qwen-1.5b")

    summary = generate_for_note(db, user, note_id, writer, kinds=["basic"], check_meaning=False)
    (run,) = _runs(db)
    assert (run.model, run.method, run.tokens_per_s) == ("qwen-1.5b", "pld", 4.0)  # mean of calls
    assert (summary.model, summary.method, summary.tokens_per_s) == ("qwen-1.5b", "pld", 4.0)
    (card,) = list_cards(db, user, note_id)
    assert (card.gen_method, card.gen_tokens_per_s) == ("pld", 5.0)  # the call that wrote it
