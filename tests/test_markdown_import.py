"""Markdown import: how files become notes, and the clear errors for bad input."""

from __future__ import annotations

import pytest

from study.errors import StudyError
from study.markdown_import import (
    MAX_BYTES,
    MarkdownImportError,
    NoteDraft,
    import_folder,
    parse_markdown_bytes,
    read_file,
)
from study.markdown_import import parse_markdown as parse

FRONT = """---
title: Forgetting
source: "Ebbinghaus (1885): Memory"
tags: [memory, spaced repetition]
---
"""


def test_single_heading_is_one_note_titled_by_it():
    (note,) = parse("# Kangaroo\n\nTwo early exits.\n")
    assert note == NoteDraft(title="Kangaroo", body="Two early exits.", source=None, tags=())


def test_no_heading_takes_title_from_front_matter_or_file_name():
    (note,) = parse(FRONT + "Memory fades fast.\n")
    assert note.title == "Forgetting"
    assert note.source == "Ebbinghaus (1885): Memory"
    assert note.tags == ("memory", "spaced repetition")
    (named,) = parse("Memory fades fast.", filename="notes/cap_theorem.md")
    assert named.title == "Cap theorem"


def test_several_headings_give_one_note_each_sharing_source_and_tags():
    text = FRONT + "# One\nfirst body\n\n# Two\nsecond body\n## Sub\nmore\n"
    notes = parse(text)
    assert [n.title for n in notes] == ["One", "Two"]
    assert notes[1].body == "second body\n## Sub\nmore"
    assert all(n.tags == ("memory", "spaced repetition") for n in notes)


def test_text_before_first_of_several_headings_is_its_own_note():
    notes = parse(FRONT + "intro words\n# One\nbody\n# Two\nbody\n")
    assert [n.title for n in notes] == ["Forgetting", "One", "Two"]


def test_headings_in_code_fences_and_hashtags_do_not_split():
    text = "# Real\ntext\n```python\n# a comment\n```\n#hashtag line\n"
    (note,) = parse(text)
    assert note.title == "Real"
    assert "# a comment" in note.body


def test_block_list_tags_comma_tags_and_unknown_keys():
    text = "---\ntitle: T\ndate: 2026-01-01\ntags:\n  - a\n  - 'b c'\n---\nbody"
    assert parse(text)[0].tags == ("a", "b c")
    assert parse("---\ntags: x, y, x\n---\n# T\nbody")[0].tags == ("x", "y")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("---\ntitle: x\nbody", "line 1: front matter opened with '---' is never closed"),
        ("---\ntitle: ok\nthis is not a pair\n---\nbody", "line 3: front matter line"),
        ("---\ntags: [a, b\n---\nbody", "line 2: list for 'tags' is missing its closing"),
        ("---\ntitle: a\ntitle: b\n---\nbody", "line 3: front matter key 'title' repeated"),
        ("", "empty file"),
        ("  \n\n", "empty file"),
        ("# A\n\n# B\ntext", "line 1: note 'A' is empty"),
        ("---\ntitle: T\n---\n", "note 'T' is empty"),
        ("abc\x00\x01\x02def", "binary content"),
    ],
)
def test_bad_input_says_what_and_where(text, message):
    with pytest.raises(MarkdownImportError, match=message.replace("[", r"\[")):
        parse(text, filename="f.md")


def test_import_error_is_a_study_error():
    assert issubclass(MarkdownImportError, StudyError)


def test_untitled_text_without_file_name_is_refused():
    with pytest.raises(MarkdownImportError, match="no title"):
        parse("just some words")


def test_import_folder_reads_markdown_files_in_order(tmp_path):
    (tmp_path / "b.md").write_text("# Bee\nbuzz\n", encoding="utf-8")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "a.markdown").write_text("plain words", encoding="utf-8")
    (tmp_path / "ignored.txt").write_text("# Not me\nno", encoding="utf-8")
    titles = [n.title for n in import_folder(tmp_path)]
    assert titles == ["Bee", "A"]


def test_import_folder_follows_no_link_out_of_the_folder(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.md").write_text("# Secret\nserver file", encoding="utf-8")
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "mine.md").write_text("# Mine\nmy note", encoding="utf-8")
    (folder / "link.md").symlink_to(outside / "secret.md")
    (folder / "linked-dir").symlink_to(outside, target_is_directory=True)
    (folder / "MINE2.MD").write_text("# Upper\ncase suffix", encoding="utf-8")
    assert [n.title for n in import_folder(folder)] == ["Upper", "Mine"]
    with pytest.raises(MarkdownImportError, match="not a folder"):
        import_folder(folder / "linked-dir")
    with pytest.raises(MarkdownImportError, match="not a folder"):
        import_folder(folder / "mine.md")


def test_import_rejects_large_binary_and_foreign_files(tmp_path):
    big = tmp_path / "big.md"
    big.write_text("# Big\n" + "x" * MAX_BYTES, encoding="utf-8")
    with pytest.raises(MarkdownImportError, match=r"above the limit of 1,000,000 bytes \(1 MB\)"):
        read_file(big)
    binary = tmp_path / "image.md"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    with pytest.raises(MarkdownImportError, match="binary"):
        parse_markdown_bytes(read_file(binary), str(binary))
    latin = tmp_path / "latin.md"
    latin.write_bytes("# Caf\xe9\ncr\xe8me".encode("latin-1"))
    with pytest.raises(MarkdownImportError, match="not UTF-8"):
        parse_markdown_bytes(read_file(latin), str(latin))
    other = tmp_path / "notes.txt"
    other.write_text("# T\nbody", encoding="utf-8")
    with pytest.raises(MarkdownImportError, match="not a Markdown file"):
        read_file(other)
    with pytest.raises(MarkdownImportError, match="no such file"):
        read_file(tmp_path / "missing.md")
    empty_dir = tmp_path / "empty"
    empty_dir.mkdir()
    with pytest.raises(MarkdownImportError, match="no Markdown files"):
        import_folder(empty_dir)


def test_one_bad_file_fails_the_whole_folder(tmp_path):
    (tmp_path / "a.md").write_text("# Good\ntext", encoding="utf-8")
    (tmp_path / "b.md").write_text("---\nbroken\n---\ntext", encoding="utf-8")
    with pytest.raises(MarkdownImportError, match="b.md: line 2"):
        import_folder(tmp_path)
