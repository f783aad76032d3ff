"""Turn Markdown files into note drafts, ready for the database layer to store.

Rules (kept simple so that a user can predict what happens to their file):

* A file may open with front matter between two ``---`` lines. Only ``title``,
  ``source`` and ``tags`` are used; other keys are allowed and ignored, so notes
  written for other tools still import. Values are ``key: value`` lines; tags may be
  ``tags: [a, b]``, ``tags: a, b`` or a block of ``- a`` lines.
* A file with several top-level (``# ``) headings gives one note per heading, titled
  by the heading. Text before the first heading becomes a note of its own, titled by
  the front-matter title or the file name. Front-matter ``source`` and ``tags`` apply
  to every note of the file.
* A file with one top-level heading, or none, is one note, titled by the front-matter
  ``title``, else the heading, else the file name.
* Headings inside fenced code blocks do not count.

Nothing is stored here: the functions return every note of the input or raise
:class:`MarkdownImportError`, so a caller that stores the result in one transaction
never keeps part of a bad import.

Input is file contents (text, or an upload's bytes) or a folder named explicitly, never
a string that happens to name a path: the app must not read server files a user names.
A folder import reads regular ``.md``/``.markdown`` files under it and follows no
symbolic link (to a file or a folder), so nothing outside the folder is read.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from study.errors import StudyError

__all__ = [
    "MARKDOWN_SUFFIXES",
    "MAX_BYTES",
    "MarkdownImportError",
    "NoteDraft",
    "import_folder",
    "parse_markdown",
    "parse_markdown_bytes",
    "read_file",
]

MAX_BYTES = 1_000_000
"""Largest Markdown input accepted (1 MB), per file and per text: a note is for study."""

MARKDOWN_SUFFIXES = (".md", ".markdown")

_FENCE = re.compile(r"^\s{0,3}(`{3,}|~{3,})")
_TOP_HEADING = re.compile(r"^#[ \t]+(.*?)[ \t]*#*[ \t]*$")
_KEY_VALUE = re.compile(r"^([A-Za-z_][\w-]*)[ \t]*:(?:[ \t]+(.*?))?[ \t]*$")
_LIST_ITEM = re.compile(r"^[ \t]+-[ \t]+(.*?)[ \t]*$|^-[ \t]+(.*?)[ \t]*$")
_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1f\x7f]")


class MarkdownImportError(StudyError, ValueError):
    """A Markdown input that cannot become notes; the message says where and why."""


@dataclass(frozen=True, slots=True)
class NoteDraft:
    """A note not yet stored: title, Markdown body, source reference and tags."""

    title: str
    body: str
    source: str | None = None
    tags: tuple[str, ...] = field(default_factory=tuple)


@dataclass(frozen=True, slots=True)
class _FrontMatter:
    title: str | None
    source: str | None
    tags: tuple[str, ...]
    body_start: int  # index of the first line after the front matter


@dataclass(frozen=True, slots=True)
class _Section:
    title: str | None
    line: int  # 1-based line of the heading (or of the first body line)
    lines: tuple[str, ...]


def parse_markdown(text: str, filename: str | None = None) -> list[NoteDraft]:
    """Parse one Markdown document into notes (see the module docstring for the rules)."""
    where = filename or "<text>"
    _check_text(text, where)
    lines = text.splitlines()
    front = _parse_front_matter(lines, where)
    sections = _split_sections(lines, front.body_start)
    headed = [s for s in sections if s.title is not None]
    fallback_title = front.title or _title_from_filename(filename)

    if len(headed) <= 1:
        merged = _merge_single(sections, front.title)
        title = front.title or merged.title or fallback_title
        if not title:
            raise MarkdownImportError(
                f"{where}: the note has no title: add a '# Heading', a 'title:' "
                "in front matter, or import it from a named file"
            )
        return [_make_note(title, merged, front, where)]

    notes = []
    for section in sections:
        if section.title is None:
            if not "".join(section.lines).strip():
                continue
            if not fallback_title:
                raise MarkdownImportError(
                    f"{where}: line {section.line}: text before the first heading has no "
                    "title: add a 'title:' in front matter or move it under a heading"
                )
            notes.append(_make_note(fallback_title, section, front, where))
        else:
            notes.append(_make_note(section.title, section, front, where))
    return notes


def import_folder(folder: str | Path) -> list[NoteDraft]:
    """Import every Markdown file under ``folder``, following no symbolic link.

    Files are read in sorted order so that an import is repeatable. Every file is
    parsed before anything is returned: one bad file fails the whole import.
    """
    root = Path(folder)
    if root.is_symlink() or not root.is_dir():
        raise MarkdownImportError(f"{root}: not a folder (pass a folder of .md files)")
    files = []
    for current, dirs, names in os.walk(root, followlinks=False):
        here = Path(current)
        dirs[:] = [d for d in dirs if not (here / d).is_symlink()]
        files += [
            here / name
            for name in names
            if _is_markdown_name(Path(name))
            and not (here / name).is_symlink()
            and (here / name).is_file()
        ]
    if not files:
        raise MarkdownImportError(f"{root}: no Markdown files (*.md, *.markdown) found")
    return [
        note for file in sorted(files) for note in parse_markdown_bytes(read_file(file), str(file))
    ]


def read_file(path: str | Path) -> bytes:
    """The bytes of one Markdown file named explicitly (command line), size-checked."""
    file = Path(path)
    if not file.exists():
        raise MarkdownImportError(f"{file}: no such file")
    if not file.is_file():
        raise MarkdownImportError(f"{file}: not a file (import a folder with import_folder)")
    if not _is_markdown_name(file):
        raise MarkdownImportError(
            f"{file}: not a Markdown file (expected a name ending in .md or .markdown)"
        )
    size = file.stat().st_size
    if size > MAX_BYTES:
        raise MarkdownImportError(
            f"{file}: file is {size:,} bytes, above the limit of {MAX_BYTES:,} bytes (1 MB)"
        )
    return file.read_bytes()


def _is_markdown_name(path: Path) -> bool:
    return path.suffix.lower() in MARKDOWN_SUFFIXES


def parse_markdown_bytes(data: bytes, filename: str | None = None) -> list[NoteDraft]:
    """Parse a file's contents (an upload): UTF-8 text, no NUL bytes, at most 1 MB."""
    where = filename or "<upload>"
    if len(data) > MAX_BYTES:
        raise MarkdownImportError(
            f"{where}: file is {len(data):,} bytes, above the limit of {MAX_BYTES:,} bytes (1 MB)"
        )
    if b"\x00" in data:
        raise MarkdownImportError(f"{where}: binary content (NUL bytes), not Markdown text")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise MarkdownImportError(
            f"{where}: not UTF-8 text (byte {exc.start}): save the file as UTF-8 Markdown"
        ) from None
    return parse_markdown(text, filename=filename)


def _check_text(text: str, where: str) -> None:
    size = len(text.encode("utf-8"))
    if size > MAX_BYTES:
        raise MarkdownImportError(
            f"{where}: text is {size:,} bytes, above the limit of {MAX_BYTES:,} bytes (1 MB)"
        )
    if not text.strip():
        raise MarkdownImportError(f"{where}: empty file, nothing to import")
    controls = len(_CONTROL.findall(text))
    if "\x00" in text or controls > max(8, len(text) // 100):
        raise MarkdownImportError(f"{where}: binary content (control characters), not Markdown")


def _parse_front_matter(lines: list[str], where: str) -> _FrontMatter:
    if not lines or lines[0].strip() != "---":
        return _FrontMatter(None, None, (), 0)
    end = next((i for i in range(1, len(lines)) if lines[i].strip() in ("---", "...")), None)
    if end is None:
        raise MarkdownImportError(
            f"{where}: line 1: front matter opened with '---' is never closed "
            "(add a '---' line after it)"
        )
    values: dict[str, str | list[str]] = {}
    current_list: list[str] | None = None
    for index in range(1, end):
        raw = lines[index]
        lineno = index + 1
        if not raw.strip() or raw.lstrip().startswith("#"):
            continue
        item = _LIST_ITEM.match(raw)
        if item and current_list is not None:
            current_list.append(_unquote(item.group(1) or item.group(2) or ""))
            continue
        pair = _KEY_VALUE.match(raw)
        if not pair:
            raise MarkdownImportError(
                f"{where}: line {lineno}: front matter line is not 'key: value': {raw.strip()!r}"
            )
        key, value = pair.group(1).lower(), pair.group(2) or ""
        if key in values:
            raise MarkdownImportError(f"{where}: line {lineno}: front matter key {key!r} repeated")
        if value == "":
            current_list = []
            values[key] = current_list
            continue
        current_list = None
        if value.startswith("["):
            if not value.endswith("]"):
                raise MarkdownImportError(
                    f"{where}: line {lineno}: list for {key!r} is missing its closing ']'"
                )
            values[key] = [_unquote(part) for part in value[1:-1].split(",")]
        else:
            values[key] = _unquote(value)
    return _FrontMatter(
        title=_scalar(values, "title", where),
        source=_scalar(values, "source", where),
        tags=_tags(values.get("tags", [])),
        body_start=end + 1,
    )


def _unquote(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        return value[1:-1]
    return value


def _scalar(values: dict[str, str | list[str]], key: str, where: str) -> str | None:
    value = values.get(key)
    if value is None or value == []:
        return None
    if isinstance(value, list):
        raise MarkdownImportError(f"{where}: front matter {key!r} must be text, not a list")
    return value or None


def _tags(value: str | list[str]) -> tuple[str, ...]:
    parts = value.split(",") if isinstance(value, str) else value
    seen: dict[str, None] = {}
    for part in parts:
        tag = part.strip()
        if tag:
            seen.setdefault(tag, None)
    return tuple(seen)


def _split_sections(lines: list[str], start: int) -> list[_Section]:
    sections: list[_Section] = []
    title: str | None = None
    first = start + 1
    body: list[str] = []
    fence: str | None = None
    for index in range(start, len(lines)):
        line = lines[index]
        opener = _FENCE.match(line)
        if opener:
            marker = opener.group(1)
            if fence is None:
                fence = marker[0] * 3
            elif marker.startswith(fence):
                fence = None
        heading = _TOP_HEADING.match(line) if fence is None else None
        if heading:
            sections.append(_Section(title, first, tuple(body)))
            title, first, body = heading.group(1), index + 1, []
        else:
            body.append(line)
    sections.append(_Section(title, first, tuple(body)))
    return [s for s in sections if s.title is not None or "".join(s.lines).strip()]


def _merge_single(sections: list[_Section], front_title: str | None) -> _Section:
    """Join the (at most one) heading and the text around it into one section."""
    if not sections:
        return _Section(None, 1, ())
    heading = next((s for s in sections if s.title is not None), None)
    lines: list[str] = []
    for section in sections:
        if section.title is not None and front_title and section.title != front_title:
            lines.append(f"# {section.title}")
        lines.extend(section.lines)
    title = heading.title if heading else None
    return _Section(title, sections[0].line, tuple(lines))


def _make_note(title: str, section: _Section, front: _FrontMatter, where: str) -> NoteDraft:
    body = "\n".join(section.lines).strip("\n")
    if not title.strip():
        raise MarkdownImportError(f"{where}: line {section.line}: heading has no text")
    if not body.strip():
        raise MarkdownImportError(
            f"{where}: line {section.line}: note {title.strip()!r} is empty (no text under it)"
        )
    return NoteDraft(title=title.strip(), body=body, source=front.source, tags=front.tags)


def _title_from_filename(filename: str | None) -> str | None:
    if not filename:
        return None
    stem = Path(filename).stem.replace("_", " ").replace("-", " ").strip()
    return stem[:1].upper() + stem[1:] if stem else None
