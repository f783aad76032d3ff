"""Rejected drafts in the Notes tab: pick one, edit it in the card fields, keep it.

The rules (which drafts are offered, what an edit must satisfy, what is recorded) live
in ``study.drafts_service``; this module lays out the widgets and shows its messages.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import gradio as gr
import pandas as pd

from study.drafts_service import keep_draft, rejected_drafts
from study.errors import StudyError
from ui.context import AppContext
from ui.queues import DB_EVENT

__all__ = ["DraftsPanel", "build"]


@dataclass(frozen=True)
class DraftsPanel:
    """The widgets other handlers refresh: the list of drafts and their reasons."""

    choices: gr.Dropdown
    why: gr.Markdown


def _value(run_id: int, index: int) -> str:
    return f"{run_id}:{index}"


def build(
    ctx: AppContext,
    note_id: gr.Textbox,
    fields: tuple[gr.Textbox, gr.Textbox, gr.Textbox],
    message: gr.Markdown,
    cards: gr.Dataframe,
    note_of: Callable[[str | None], int | None],
    cards_frame: Callable[[int, int | None], pd.DataFrame],
) -> tuple[DraftsPanel, Callable]:
    """Lay out the panel; returns it and the handler that lists a note's drafts."""
    with gr.Row():
        choices = gr.Dropdown(
            [],
            label="Rejected drafts of the last generation (pick one, edit it above, keep it)",
            elem_id="notes-drafts",
            allow_custom_value=True,  # the API names a draft directly as "run:index"
            scale=3,
        )
        keep = gr.Button("Keep the edited draft as a card", elem_id="notes-keep-draft", scale=1)
    why = gr.Markdown(elem_id="notes-draft-why")
    question, answer, options = fields

    def listing(nid: str | None, request: gr.Request, profile: gr.OAuthProfile | None) -> tuple:
        uid, note = ctx.user(request, profile), note_of(nid)
        drafts = rejected_drafts(ctx.db, uid, note) if note else []
        labels = [(f"{d.kind.value}: {d.question[:80]}", _value(d.run_id, d.index)) for d in drafts]
        return gr.update(choices=labels, value=None), ""

    def pick(value: str | None, nid: str | None, request: gr.Request,
             profile: gr.OAuthProfile | None) -> tuple:  # fmt: skip
        note = note_of(nid)
        if not value or not note:
            return gr.skip(), gr.skip(), gr.skip(), ""
        uid = ctx.user(request, profile)
        for d in rejected_drafts(ctx.db, uid, note):
            if _value(d.run_id, d.index) == value:
                reasons = "\n".join(f"- {r}" for r in d.reasons)
                return d.question, d.answer, "\n".join(d.choices), f"Rejected because:\n{reasons}"
        return gr.skip(), gr.skip(), gr.skip(), "That draft is no longer offered."

    def keep_it(value: str | None, nid: str | None, q: str, a: str, ch: str,
                request: gr.Request, profile: gr.OAuthProfile | None) -> tuple:  # fmt: skip
        uid, note = ctx.user(request, profile), note_of(nid)
        if not value or not note:
            return "Pick a rejected draft first.", gr.skip(), gr.skip()
        run_id, index = (int(part) for part in value.split(":"))
        lines = [line for line in (ch or "").splitlines() if line.strip()]
        try:
            card = keep_draft(ctx.db, uid, run_id, index, question=q, answer=a, choices=lines)
        except StudyError as exc:
            gr.Warning(str(exc))
            return f"Draft not kept: {exc}", gr.skip(), gr.skip()
        remaining, _ = listing(nid, request, profile)
        return f"Kept the draft as card {card.id}.", cards_frame(uid, note), remaining

    choices.select(pick, [choices, note_id], [question, answer, options, why],
                   api_visibility="private", **DB_EVENT)  # fmt: skip
    keep.click(keep_it, [choices, note_id, question, answer, options], [message, cards, choices],
               api_name="notes_keep_draft", **DB_EVENT)  # fmt: skip
    return DraftsPanel(choices, why), listing
