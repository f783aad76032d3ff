"""Export service: Markdown import -> cards -> .apkg / CSV and back, with stable ids."""

from __future__ import annotations

import sqlite3
import zipfile

import pytest

from db import get_or_create_user, init_db
from study.__main__ import main
from study.export import anki_guid, read_cards_csv, read_reviews_csv
from study.export_service import ExportFormat, export_user_data
from study.note_import import import_markdown
from study.quiz_service import generate_for_note
from study.reviews import submit_review, undo_last_review
from tests.study_helpers import T0
from tests.test_quiz_service import BASIC, CLOZE, MCQ, Scripted

NOTE_MD = """---
tags: [paper, kangaroo]
---
# Kangaroo
Kangaroo drafts tokens with a shallow sub-network of the model.

The adapter is one attention block with its own cache.
"""


@pytest.fixture
def filled(db_url):
    db = init_db(db_url)
    user = db.write(lambda s: get_or_create_user(s, "ada").id)
    (note,) = import_markdown(db, user, NOTE_MD).added
    summary = generate_for_note(db, user, note.id, Scripted(BASIC, CLOZE, MCQ))
    card_ids = summary.card_ids
    submit_review(db, user, card_ids[0], 3, idempotency_key="a", at=T0)
    submit_review(db, user, card_ids[1], 1, idempotency_key="b", at=T0)
    undo_last_review(db, user)
    yield db, user, card_ids
    db.dispose()


def _anki_notes(path, tmp_path) -> list[tuple]:  # noqa: ANN001
    with zipfile.ZipFile(path) as archive:
        assert "collection.anki2" in archive.namelist()
        target = tmp_path / "collection.anki2"
        target.write_bytes(archive.read("collection.anki2"))
    with sqlite3.connect(target) as con:
        return con.execute("SELECT guid, flds, tags FROM notes ORDER BY guid").fetchall()


def test_apkg_holds_every_card_and_re_export_keeps_ids(filled, tmp_path):
    db, user, card_ids = filled
    first = export_user_data(db, user, "apkg", tmp_path / "a.apkg")
    assert first.count == 3
    notes = _anki_notes(first.path, tmp_path)
    assert {guid for guid, _, _ in notes} == {anki_guid("ada", i) for i in card_ids}
    fields = " ".join(flds for _, flds, _ in notes)
    assert "{{c1::attention}}" in fields and "A) one attention block" in fields
    assert all("kangaroo" in tags for _, _, tags in notes)
    again = export_user_data(db, user, ExportFormat.APKG, tmp_path / "b.apkg")
    assert {g for g, _, _ in _anki_notes(again.path, tmp_path)} == {g for g, _, _ in notes}


def test_csv_round_trip_of_cards_and_kept_reviews(filled, tmp_path):
    db, user, card_ids = filled
    export_user_data(db, user, "cards-csv", tmp_path / "cards.csv")
    cards = read_cards_csv(tmp_path / "cards.csv")
    assert [c.id for c in cards] == list(card_ids)
    assert cards[2].choices[0] == "one attention block" and cards[0].tags == ("paper", "kangaroo")
    summary = export_user_data(db, user, "reviews-csv", tmp_path / "reviews.csv")
    reviews = read_reviews_csv(tmp_path / "reviews.csv")
    assert summary.count == 1  # the undone review is not exported
    assert [(r.card_id, r.rating, r.reviewed_at) for r in reviews] == [(card_ids[0], 3, T0)]


def test_cli_import_then_export(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    note_file = tmp_path / "k.md"
    note_file.write_text(NOTE_MD, encoding="utf-8")
    assert main(["import", str(note_file), "--db", url, "--user", "eve"]) == 0
    assert "Imported 1 note(s): Kangaroo" in capsys.readouterr().out
    out = tmp_path / "eve.csv"
    assert main(["export", "--format", "cards-csv", "--out", str(out), "--db", url]) == 0
    assert "wrote 0 item(s)" in capsys.readouterr().out
    assert main(["import", str(tmp_path / "missing.md"), "--db", url]) == 2
