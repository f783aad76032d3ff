"""The seed notes load through the importer and hold what the product promises."""

from __future__ import annotations

from study.notes import seed_notes


def test_seven_seed_notes_with_metadata_and_several_hundred_words():
    notes = seed_notes()
    assert len(notes) == 7
    for note in notes:
        assert note.source and note.tags, note.title
        assert 400 <= len(note.body.split()) <= 700, (note.title, len(note.body.split()))
    titles = " ".join(n.title for n in notes)
    for topic in (
        "Ebbinghaus",
        "Kangaroo",
        "KL",
        "CAP",
        "confidence",
        "assisted",
        "Draft & Verify",
    ):
        assert topic in titles, topic
    assert len({n.title for n in notes}) == 7
