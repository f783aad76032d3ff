"""HTML for streamed output. Every piece of user or model text passes through
:func:`html.escape`: the page shows text, it never runs it."""

from __future__ import annotations

import html
from collections.abc import Iterable

from selfspec import Origin, Piece

__all__ = ["ORIGIN_STYLE", "legend_html", "pieces_html", "columns_html", "escape"]

ORIGIN_STYLE = {
    Origin.TARGET: ("tok-target", "full model"),
    Origin.DRAFT: ("tok-draft", "accepted draft"),
    Origin.BONUS: ("tok-bonus", "bonus after a fully accepted draft"),
    Origin.CORRECTED: ("tok-corrected", "corrected by the full model"),
}

CSS = """
.tok-target { }
.tok-draft { background: #c8f0c8; color: #063; border-radius: 2px; }
.tok-bonus { background: #cfe0ff; color: #123a7a; border-radius: 2px; }
.tok-corrected { background: #ffe2a8; color: #630; border-radius: 2px; }
.spec-grid { display: grid; gap: 12px; grid-template-columns: repeat(auto-fit, minmax(260px, 1fr)); }
.spec-col { border: 1px solid #ccc; border-radius: 6px; padding: 8px; }
.spec-col h4 { margin: 0 0 6px 0; }
.spec-text { white-space: pre-wrap; font-family: ui-monospace, monospace; font-size: 0.9em; }
.spec-status { color: #666; font-size: 0.85em; }
"""


def escape(text: str) -> str:
    return html.escape(text, quote=True)


def pieces_html(pieces: Iterable[Piece]) -> str:
    """Streamed pieces as spans coloured by origin (plain text for the full model's tokens)."""
    out = []
    for piece in pieces:
        css, title = ORIGIN_STYLE[piece.origin]
        text = escape(piece.text)
        out.append(
            text
            if piece.origin == Origin.TARGET
            else f'<span class="{css}" title="{title}">{text}</span>'
        )
    return "".join(out)


def legend_html() -> str:
    spans = (f'<span class="{css}">{escape(title)}</span>' for css, title in ORIGIN_STYLE.values())
    return "Colours: " + " · ".join(spans)


def columns_html(columns: list[tuple[str, list[Piece], str]]) -> str:
    """One column per method: (method name, its pieces so far, a status line)."""
    cells = []
    for name, pieces, status in columns:
        cells.append(
            f'<div class="spec-col" data-method="{escape(name)}"><h4>{escape(name)}</h4>'
            f'<div class="spec-text">{pieces_html(pieces)}</div>'
            f'<div class="spec-status">{escape(status)}</div></div>'
        )
    return f'<div class="spec-grid">{"".join(cells)}</div><p>{legend_html()}</p>'
