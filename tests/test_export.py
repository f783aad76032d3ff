"""Export: the .apkg is a real Anki package with stable ids; CSVs round-trip; atomic."""

from __future__ import annotations

import sqlite3
import zipfile
from datetime import UTC, datetime, timedelta, timezone

import pytest

from study.export import (
    ExportCard,
    ExportError,
    ExportReview,
    anki_guid,
    export_apkg,
    read_cards_csv,
    read_reviews_csv,
    write_cards_csv,
    write_reviews_csv,
)
from study.quiz import CardKind

CARDS = [
    ExportCard(1, "Forgetting curve", "basic", "What is S?", "stability in days", (), ("memory",)),
    ExportCard(2, "Forgetting curve", CardKind.CLOZE, "R falls to ___ at t = S.", "1/e"),
    ExportCard(
        "c-3",
        "CAP theorem",
        "multiple choice",
        "Which property is given up <during> a partition?",
        "consistency & availability",
        ("latency", "consistency & availability", "durability"),
        ("distributed systems",),
    ),
]


def _notes(apkg, tmp_path):
    with zipfile.ZipFile(apkg) as archive:
        assert "collection.anki2" in archive.namelist()
        db = tmp_path / f"{apkg.stem}.anki2"
        db.write_bytes(archive.read("collection.anki2"))
    with sqlite3.connect(db) as con:
        notes = con.execute("SELECT guid, mid, flds, tags FROM notes ORDER BY flds").fetchall()
        decks = {row[0] for row in con.execute("SELECT did FROM cards")}
    return notes, decks


def test_apkg_holds_the_expected_notes(tmp_path):
    path = export_apkg(CARDS, tmp_path / "deck.apkg", user="ada")
    notes, decks = _notes(path, tmp_path)
    assert len(notes) == 3 and len(decks) == 1
    fields = {n[2].split("\x1f")[0]: n for n in notes}
    assert fields["What is S?"][2].split("\x1f")[1] == "stability in days"
    assert "memory" in fields["What is S?"][3].split()
    cloze = fields["R falls to {{c1::1/e}} at t = S."]
    assert cloze[1] != fields["What is S?"][1]  # the cloze model, not the basic one
    mcq = next(n for n in notes if n[2].startswith("Which property"))
    front, back = mcq[2].split("\x1f")
    assert "&lt;during&gt;" in front and "B) consistency &amp; availability" in front
    assert back == "B) consistency &amp; availability"
    assert "distributed_systems" in mcq[3].split()


def test_re_export_keeps_guids_and_deck_so_anki_updates(tmp_path):
    first = export_apkg(CARDS, tmp_path / "one.apkg", user="ada", timestamp=1_700_000_000)
    edited = [CARDS[0].__class__(**{**_fields(CARDS[0]), "answer": "new answer"}), *CARDS[1:]]
    second = export_apkg(edited, tmp_path / "two.apkg", user="ada", timestamp=1_800_000_000)
    notes_1, deck_1 = _notes(first, tmp_path)
    notes_2, deck_2 = _notes(second, tmp_path)
    assert sorted(n[0] for n in notes_1) == sorted(n[0] for n in notes_2)
    assert deck_1 == deck_2
    assert {n[0] for n in notes_1} == {anki_guid("ada", c.id) for c in CARDS}
    other_user, deck_3 = _notes(export_apkg(CARDS, tmp_path / "bob.apkg", user="bob"), tmp_path)
    assert not {n[0] for n in other_user} & {n[0] for n in notes_1}
    assert deck_3 != deck_1


def _fields(card):
    return {name: getattr(card, name) for name in card.__dataclass_fields__}


def test_cards_csv_round_trip(tmp_path):
    path = write_cards_csv(CARDS, tmp_path / "cards.csv")
    assert read_cards_csv(path) == CARDS


def test_reviews_csv_round_trip_in_utc_and_shared_format(tmp_path):
    paris = timezone(timedelta(hours=1))
    reviews = [
        ExportReview(1, 3, datetime(2026, 3, 1, 9, 30, tzinfo=paris), 4200),
        ExportReview("c-3", 1, datetime(2026, 3, 2, 8, 0, 0, 250000, tzinfo=UTC), 0),
    ]
    path = write_reviews_csv(reviews, tmp_path / "log.csv")
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "card_id,review_rating,review_time,review_duration"
    assert lines[1] == "1,3,2026-03-01T08:30:00+00:00,4200"
    assert read_reviews_csv(path) == reviews


@pytest.mark.parametrize(
    ("rating", "when", "duration"),
    [(0, datetime(2026, 1, 1, tzinfo=UTC), 1), (3, datetime(2026, 1, 1), 1)],
)
def test_bad_reviews_are_refused(rating, when, duration):
    with pytest.raises(ExportError):
        ExportReview(1, rating, when, duration)


def test_corrupt_csv_says_where(tmp_path):
    path = tmp_path / "cards.csv"
    path.write_text("id,question\n1,What?\n", encoding="utf-8")
    with pytest.raises(ExportError, match="missing column"):
        read_cards_csv(path)
    log = tmp_path / "log.csv"
    log.write_text(
        "card_id,review_rating,review_time,review_duration\n1,three,2026-01-01T00:00:00+00:00,5\n",
        encoding="utf-8",
    )
    with pytest.raises(ExportError, match="line 2"):
        read_reviews_csv(log)


def test_a_failed_export_leaves_the_old_file_and_no_temp_file(tmp_path):
    path = write_cards_csv(CARDS, tmp_path / "cards.csv")
    before = path.read_bytes()
    bad_cloze = ExportCard(9, "n", "cloze", "no blank here", "x")
    with pytest.raises(ExportError, match="blank"):
        export_apkg([*CARDS, bad_cloze], tmp_path / "cards.apkg")
    assert not (tmp_path / "cards.apkg").exists()

    with pytest.raises(ExportError, match="not one of its choices"):
        export_apkg([ExportCard(4, "n", "mcq", "Q?", "z", ("a", "b"))], tmp_path / "m.apkg")
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cards.csv"]


def test_interrupted_write_removes_its_temp_file(tmp_path, monkeypatch):
    path = write_cards_csv(CARDS, tmp_path / "cards.csv")
    before = path.read_bytes()

    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("study.export.os.replace", fail)
    with pytest.raises(OSError, match="disk full"):
        write_cards_csv(CARDS[:1], path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cards.csv"]
