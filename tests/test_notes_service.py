"""Note service: user-scoped CRUD, search, Markdown import in one transaction, seeding once."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from db import Card, Note, get_or_create_user
from study.cards_service import delete_card, edit_card, list_cards
from study.errors import (
    CardNotFoundError,
    DuplicateNotesError,
    InvalidNoteError,
    NoteNotFoundError,
    StudyError,
)
from study.markdown_import import MarkdownImportError
from study.note_import import OnDuplicate, import_folder, import_markdown
from study.notes import seed_cards, seed_notes
from study.notes_service import (
    add_note,
    delete_note,
    edit_note,
    ensure_seed_notes,
    get_note,
    list_notes,
)
from study.quiz.prompt import plain_text
from study.quiz.validate import validate_card
from study.scheduler import due_cards
from tests.study_helpers import add_user_with_cards


def _user(db, name: str) -> int:  # noqa: ANN001
    return db.write(lambda s: get_or_create_user(s, name).id)


def _note_count(db, user_id: int) -> int:  # noqa: ANN001
    with db.read() as session:
        return session.scalar(select(func.count()).where(Note.user_id == user_id))


def test_add_edit_list_search_and_delete(db):
    ann = _user(db, "ann")
    a = add_note(db, ann, "Kangaroo", "Double early exit.", tags=["paper", "draft"])
    b = add_note(db, ann, "CAP theorem", "Consistency 100% or availability_x.", source="Brewer")
    assert a.tags == ("paper", "draft") and b.source == "Brewer"
    assert [n.id for n in list_notes(db, ann)] == [b.id, a.id]
    assert [n.id for n in list_notes(db, ann, search="EARLY")] == [a.id]
    assert [n.id for n in list_notes(db, ann, search="100%")] == [b.id]
    assert list_notes(db, ann, search="availabilit__x") == []  # '_' is literal, not a wildcard
    assert [n.id for n in list_notes(db, ann, tag="draft")] == [a.id]
    edited = edit_note(db, ann, a.id, title="Kangaroo (2024)", tags="x, y", source=None)
    assert (edited.title, edited.tags, edited.body) == ("Kangaroo (2024)", ("x", "y"), a.body)
    assert edited.updated_at >= a.updated_at
    delete_note(db, ann, a.id)
    with pytest.raises(NoteNotFoundError):
        get_note(db, ann, a.id)


def test_bad_notes_are_refused_and_nothing_is_written(db):
    ann = _user(db, "ann")
    with pytest.raises(InvalidNoteError, match="title"):
        add_note(db, ann, "  ", "body")
    with pytest.raises(InvalidNoteError, match="body"):
        add_note(db, ann, "Empty", "\n  \n")
    with pytest.raises(InvalidNoteError, match="1 MB"):
        add_note(db, ann, "Huge", "x" * 1_000_001)
    assert _note_count(db, ann) == 0


def test_users_never_see_or_change_each_others_notes_and_cards(db):
    ann = _user(db, "ann")
    bob, bob_cards = add_user_with_cards(db, "bob", 2)
    note = add_note(db, ann, "Mine", "text")
    for call in (
        lambda: get_note(db, bob, note.id),
        lambda: edit_note(db, bob, note.id, title="stolen"),
        lambda: delete_note(db, bob, note.id),
        lambda: list_cards(db, bob, note.id),
    ):
        with pytest.raises(NoteNotFoundError):
            call()
    with pytest.raises(CardNotFoundError):
        edit_card(db, ann, bob_cards[0], question="mine now?")
    with pytest.raises(CardNotFoundError):
        delete_card(db, ann, bob_cards[0])
    assert get_note(db, ann, note.id).title == "Mine"
    assert len(list_cards(db, bob)) == 2
    assert list_notes(db, bob, search="Mine") == []


def test_card_edit_checks_form_and_delete_removes_it(db):
    bob, cards = add_user_with_cards(db, "bob", 2)
    edited = edit_card(db, bob, cards[0], question="What is Q0 now?", answer="A0 again")
    assert (edited.question, edited.answer) == ("What is Q0 now?", "A0 again")
    with pytest.raises(InvalidNoteError, match="answer"):
        edit_card(db, bob, cards[0], answer=" ")
    assert list_cards(db, bob)[0].answer == "A0 again"
    delete_card(db, bob, cards[1])
    assert [c.id for c in list_cards(db, bob)] == [cards[0]]


def test_import_folder_is_all_or_nothing(db, tmp_path):
    ann = _user(db, "ann")
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "a.md").write_text("# One\ntext one\n# Two\ntext two\n", encoding="utf-8")
    (folder / "b.md").write_text("---\ntitle: Three\ntags: [t]\n---\nthree\n", encoding="utf-8")
    notes = import_folder(db, ann, folder).added
    assert [n.title for n in notes] == ["One", "Two", "Three"]
    assert notes[2].tags == ("t",)
    (folder / "c.md").write_text("---\ntitle: broken\n", encoding="utf-8")
    with pytest.raises(MarkdownImportError, match="never closed"):
        import_folder(db, ann, folder)
    assert _note_count(db, ann) == 3
    text_notes = import_markdown(db, ann, "# From text\nbody here\n").added
    assert text_notes[0].title == "From text"
    upload = import_markdown(db, ann, b"untitled words", filename="my-upload.md").added
    assert upload[0].title == "My upload"


def test_a_string_that_names_a_file_is_text_never_a_path(db, tmp_path):
    ann = _user(db, "ann")
    secret = tmp_path / "secret.md"
    secret.write_text("# Server secret\nnot yours", encoding="utf-8")
    with pytest.raises(MarkdownImportError, match="no title"):
        import_markdown(db, ann, str(secret))  # parsed as one line of text: no heading
    with pytest.raises(StudyError, match="not PosixPath"):
        import_markdown(db, ann, secret)
    assert _note_count(db, ann) == 0


def test_seed_notes_are_loaded_once_and_stay_deleted(db):
    ann = _user(db, "ann")
    expected = len(seed_notes())
    assert expected >= 7
    assert ensure_seed_notes(db, ann) == expected
    assert ensure_seed_notes(db, ann) == 0
    for note in list_notes(db, ann):
        delete_note(db, ann, note.id)
    assert ensure_seed_notes(db, ann) == 0
    assert _note_count(db, ann) == 0
    bob = _user(db, "bob")
    assert ensure_seed_notes(db, bob) == expected


def test_every_seed_note_ships_vetted_cards_that_pass_the_card_checks():
    notes = {note.title: note for note in seed_notes()}
    cards = seed_cards()
    assert set(cards) == set(notes)
    for title, drafts in cards.items():
        assert len(drafts) >= 3, title
        note_text = f"{title}\n\n{plain_text(notes[title].body)}"
        for index, card in enumerate(drafts):
            others = [c.question for c in drafts[:index]]
            assert validate_card(card, note_text, others) == (), (title, card.question)


def test_a_first_visit_has_cards_to_review(db):
    user = db.write(lambda session: get_or_create_user(session, "newcomer").id)
    ensure_seed_notes(db, user)
    due = due_cards(db, user)
    assert len(due) == min(sum(len(c) for c in seed_cards().values()), 20)


def _card_on(db, user_id: int, note_id: int) -> int:  # noqa: ANN001
    def work(session):  # noqa: ANN001, ANN202 - test helper
        card = Card(user_id=user_id, note_id=note_id, question="Why space reviews?", answer="x")
        session.add(card)
        session.flush()
        return card.id

    return db.write(work)


def test_reimporting_a_file_refuses_then_skips_or_replaces_and_keeps_cards(db):
    ann = _user(db, "ann")
    first = "# Spacing\nReviews spread over days last longer.\n# Testing\nRecall beats rereading.\n"
    (spacing, testing) = import_markdown(db, ann, first).added
    card = _card_on(db, ann, spacing.id)
    again = first.replace("last longer", "last much longer") + "# Sleep\nSleep consolidates.\n"
    with pytest.raises(DuplicateNotesError, match="2 note\\(s\\).*'Spacing', 'Testing'") as caught:
        import_markdown(db, ann, again)
    assert caught.value.titles == ["Spacing", "Testing"]
    assert _note_count(db, ann) == 2  # refused: nothing stored, not even the new note
    skipped = import_markdown(db, ann, again, on_duplicate=OnDuplicate.SKIP)
    assert ([n.title for n in skipped.added], skipped.skipped) == (
        ["Sleep"],
        ("Spacing", "Testing"),
    )
    assert get_note(db, ann, spacing.id).body == "Reviews spread over days last longer."
    replaced = import_markdown(db, ann, again, on_duplicate="replace")
    assert [n.id for n in replaced.replaced][:2] == [spacing.id, testing.id]
    assert [n.title for n in replaced.added] == []  # "Sleep" is present by now
    assert get_note(db, ann, spacing.id).body == "Reviews spread over days last much longer."
    assert [c.id for c in list_cards(db, ann, spacing.id)] == [card]  # cards stay
    assert "replaced 3 (cards kept)" in replaced.summary()
    kept = import_markdown(db, ann, first, on_duplicate=OnDuplicate.KEEP_BOTH)
    assert len(kept.added) == 2 and _note_count(db, ann) == 5
    with pytest.raises(StudyError, match="not one of refuse, skip, replace, keep-both"):
        import_markdown(db, ann, first, on_duplicate="merge")
    bob = _user(db, "bob")  # another user's titles are not duplicates
    assert len(import_markdown(db, bob, first).added) == 2
