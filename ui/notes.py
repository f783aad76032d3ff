"""Notes tab: list and search notes, edit them, import Markdown, generate questions,
edit or delete cards, and export.

Storage rules (validation, one transaction per change, user scoping) live in
``study.notes_service``, ``study.cards_service``, ``study.quiz_service`` and
``study.export_service``; this tab turns their errors into messages.
"""

import tempfile
from collections.abc import Iterator
from pathlib import Path

import gradio as gr
import pandas as pd

from study.cards_service import delete_card, edit_card
from study.errors import DuplicateNotesError, StudyError
from study.export_service import ExportFormat, export_user_data
from study.markdown_import import MARKDOWN_SUFFIXES
from study.note_import import OnDuplicate, import_markdown
from study.notes_service import add_note, delete_note, edit_note, get_note
from study.quiz_service import iter_generate_for_note
from study.settings import read_settings
from ui import drafts
from ui.context import AppContext
from ui.notes_tables import CARD_COLUMNS, NOTE_COLUMNS, cards_frame, note_id_of, notes_frame
from ui.queues import DB_EVENT, MODEL_EVENT

__all__ = ["MAX_UPLOAD_BYTES", "build", "check_upload", "split_tags"]

MAX_UPLOAD_BYTES = 20 * 1024 * 1024
EXPORTS = {"Anki deck (.apkg)": (ExportFormat.APKG, "apkg"), "Cards (CSV)": (ExportFormat.CARDS_CSV, "csv"),
           "Reviews (CSV)": (ExportFormat.REVIEWS_CSV, "csv")}  # fmt: skip


def split_tags(text: str) -> list[str]:
    return [tag.strip() for tag in (text or "").split(",") if tag.strip()]


def check_upload(path: str | None) -> str | None:
    """A message for an upload the app refuses before reading it, else None."""
    if not path:
        return "Choose a Markdown file (.md or .markdown) to import."
    file = Path(path)
    if file.suffix.lower() not in MARKDOWN_SUFFIXES:
        return (
            f"'{file.name}' is not a Markdown file: only .md and .markdown files can be imported."
        )
    size = file.stat().st_size
    if size > MAX_UPLOAD_BYTES:
        return f"'{file.name}' is {size / 2**20:.1f} MB; uploads are limited to 20 MB."
    return None


def build(ctx: AppContext, demo: gr.Blocks) -> None:
    """Lay out the Notes tab inside the current Blocks context."""
    gr.Markdown(
        "**Start here:** click a note to edit it, or write a new one and save it; then "
        "*Generate questions* turns it into review cards with the loaded model."
    )
    with gr.Row():
        search = gr.Textbox(label="Search", placeholder="words in title or body", scale=3)
        tag = gr.Textbox(label="Tag", placeholder="exact tag", scale=1)
        refresh = gr.Button("Search", scale=0)
    # Fixed shares and wrapped text keep every column on screen at 1280 px.
    notes = gr.Dataframe(headers=NOTE_COLUMNS, label="Your notes (click a row to edit)", interactive=False,
                         elem_id="notes-table", wrap=True,
                         column_widths=["7%", "43%", "25%", "8%", "17%"])  # fmt: skip
    with gr.Row():
        with gr.Column(scale=3):
            # Text, not a Number: an empty Number shows 0, which reads as a note id.
            note_id = gr.Textbox(
                "",
                label="Note id (empty: new note)",
                placeholder="new note",
                interactive=False,
                elem_id="note-id",
            )
            title = gr.Textbox(label="Title", elem_id="note-title")
            body = gr.Textbox(label="Body (Markdown)", lines=8, elem_id="note-body")
            with gr.Row():
                source = gr.Textbox(label="Source (paper, URL)")
                tags = gr.Textbox(label="Tags (comma-separated)")
            with gr.Row():
                save = gr.Button("Save note", variant="primary", elem_id="note-save")
                new = gr.Button("New note")
                delete = gr.Button("Delete note…", variant="stop")
                confirm = gr.Button(
                    "Really delete this note and its cards", variant="stop", visible=False
                )
            message = gr.Markdown(elem_id="notes-message")
        with gr.Column(scale=2):
            upload = gr.File(label="Import Markdown (.md, up to 20 MB)", elem_id="notes-upload")
            import_btn = gr.Button("Import", elem_id="notes-import")
            # Shown only when an import names notes the user already has.
            with gr.Row(visible=False) as duplicate_choice:
                skip_btn = gr.Button("Skip those (keep mine)", elem_id="notes-import-skip")
                replace_btn = gr.Button(
                    "Replace their text (cards kept)", elem_id="notes-import-replace"
                )
            generate = gr.Button("Generate questions for this note", elem_id="notes-generate")
            gen_status = gr.Markdown(elem_id="notes-gen-status")
            export_kind = gr.Radio(list(EXPORTS), value="Anki deck (.apkg)", label="Export")
            export_btn = gr.Button("Export")
            export_file = gr.File(label="Download", interactive=False, elem_id="notes-export")
    cards = gr.Dataframe(
        headers=CARD_COLUMNS, label="Cards of this note (click a row to edit)", interactive=False
    )
    with gr.Row():
        card_id = gr.Number(label="Card id", precision=0)
        card_q = gr.Textbox(label="Question")
        card_a = gr.Textbox(label="Answer")
        card_choices = gr.Textbox(label="Choices (one per line, multiple choice only)", lines=3)
    with gr.Row():
        card_save = gr.Button("Save card")
        card_delete = gr.Button("Delete card", variant="stop")
    panel, list_drafts = drafts.build(
        ctx,
        note_id,
        (card_q, card_a, card_choices),
        message,
        cards,
        note_id_of,
        lambda uid, nid: cards_frame(ctx, uid, nid),
    )
    draft_widgets = [panel.choices, panel.why]

    editor = [note_id, title, body, source, tags]

    def show(
        search_text: str, tag_text: str, request: gr.Request, profile: gr.OAuthProfile | None
    ) -> pd.DataFrame:
        uid = ctx.signed_in_user(request, profile)
        return (
            pd.DataFrame(columns=NOTE_COLUMNS)
            if uid is None
            else notes_frame(ctx, uid, search_text, tag_text)
        )

    def pick(
        table: pd.DataFrame,
        evt: gr.SelectData,
        request: gr.Request,
        profile: gr.OAuthProfile | None,
    ) -> tuple:
        uid = ctx.user(request, profile)
        chosen = int(table.iloc[evt.index[0]]["id"])
        try:
            note = get_note(ctx.db, uid, chosen)
        except StudyError as exc:
            gr.Warning(str(exc))
            return (*[gr.skip()] * 5, str(exc), gr.skip(), gr.skip())
        # The generate status belonged to the previous note: cleared.
        return (note.id, note.title, note.body, note.source or "", ", ".join(note.tags), "",
                cards_frame(ctx, uid, note.id), "")  # fmt: skip

    def store(nid: str | None, t: str, b: str, s: str, tg: str, search_text: str, tag_text: str,
              request: gr.Request, profile: gr.OAuthProfile | None) -> tuple:  # fmt: skip
        uid = ctx.user(request, profile)
        if str(nid or "").strip() and not note_id_of(nid):
            problem = f"'{nid}' is not a note id: leave the id empty to add a new note."
            gr.Warning(problem)
            return gr.skip(), f"Not saved: {problem}", gr.skip()
        try:
            if note_id_of(nid):
                note = edit_note(
                    ctx.db,
                    uid,
                    note_id_of(nid),
                    title=t,
                    body=b,
                    source=s or None,
                    tags=split_tags(tg),
                )
                said = f"Saved note **{note.id}**."
            else:
                note = add_note(ctx.db, uid, t, b, source=s or None, tags=split_tags(tg))
                said = f"Added note **{note.id}**."
        except StudyError as exc:
            gr.Warning(str(exc))
            return gr.skip(), f"Not saved: {exc}", gr.skip()
        return note.id, said, notes_frame(ctx, uid, search_text, tag_text)

    def blank() -> tuple:
        return "", "", "", "", "", "", pd.DataFrame(columns=CARD_COLUMNS), ""

    def ask_delete(nid: str | None) -> tuple:
        if not note_id_of(nid):
            return gr.update(visible=False), "Pick a note first."
        return gr.update(
            visible=True
        ), f"Delete note {note_id_of(nid)} and all its cards? Click the red button to confirm."

    def really_delete(nid: str | None, search_text: str, tag_text: str, request: gr.Request,
                      profile: gr.OAuthProfile | None) -> tuple:  # fmt: skip
        uid = ctx.user(request, profile)
        try:
            delete_note(ctx.db, uid, note_id_of(nid) or 0)
        except StudyError as exc:
            gr.Warning(str(exc))
            return (*[gr.skip()] * 5, gr.update(visible=False), f"Not deleted: {exc}", gr.skip())
        return (*blank()[:5], gr.update(visible=False), f"Deleted note {note_id_of(nid)}.",
                notes_frame(ctx, uid, search_text, tag_text))  # fmt: skip

    def do_import(
        path: str | None,
        policy: OnDuplicate,
        request: gr.Request,
        profile: gr.OAuthProfile | None,
    ) -> tuple:
        uid = ctx.user(request, profile)
        hidden = gr.update(visible=False)
        problem = check_upload(path)
        if problem:
            gr.Warning(problem)
            return problem, gr.skip(), hidden
        try:
            upload = Path(path)
            result = import_markdown(
                ctx.db, uid, upload.read_bytes(), filename=upload.name, on_duplicate=policy
            )
        except DuplicateNotesError as exc:
            gr.Warning(str(exc))
            return f"Nothing imported yet: {exc}.", gr.skip(), gr.update(visible=True)
        except StudyError as exc:
            gr.Warning(str(exc))
            return f"Nothing imported: {exc}", gr.skip(), hidden
        return result.summary(), notes_frame(ctx, uid, "", ""), hidden

    def import_asking(
        path: str | None, request: gr.Request, profile: gr.OAuthProfile | None
    ) -> tuple:
        return do_import(path, OnDuplicate.REFUSE, request, profile)

    def import_skipping(
        path: str | None, request: gr.Request, profile: gr.OAuthProfile | None
    ) -> tuple:
        return do_import(path, OnDuplicate.SKIP, request, profile)

    def import_replacing(
        path: str | None, request: gr.Request, profile: gr.OAuthProfile | None
    ) -> tuple:
        return do_import(path, OnDuplicate.REPLACE, request, profile)

    def make_questions(
        nid: str | None, request: gr.Request, profile: gr.OAuthProfile | None
    ) -> Iterator[tuple]:
        uid = ctx.user(request, profile)
        if not note_id_of(nid):
            gr.Warning("Pick or save a note first.")
            yield "Pick or save a note first.", gr.skip()
            return
        writer, writes = ctx.quiz_writer(read_settings(ctx.db, uid).quiz_model)
        lines = [f"Generating with {writer.describe()}…"]
        if writer.notice:
            lines.append(writer.notice)
        yield "\n\n".join(lines), gr.skip()
        try:
            for progress in iter_generate_for_note(ctx.db, uid, note_id_of(nid), writes):
                lines.append(f"{progress.done}/{progress.total} · {progress.message}")
                summary = progress.summary
                if summary is not None:
                    speed = (
                        f"{summary.tokens_per_s:.1f} tokens/s" if summary.tokens_per_s else "n/a"
                    )
                    lines.append(
                        f"**{len(summary.card_ids)} card(s) stored** ({summary.status.value}) · method "
                        f"`{summary.method}` · {speed}"
                        + (
                            f" · {summary.reason}"
                            if summary.reason and summary.reason not in lines[-1]
                            else ""
                        )
                        + (
                            f" · {summary.rejected_drafts} rejected draft(s) below: edit one "
                            "and keep it if it is worth it"
                            if summary.rejected_drafts
                            else ""
                        )
                    )
                yield "\n\n".join(lines), gr.skip()
        except StudyError as exc:
            gr.Warning(str(exc))
            yield f"Not generated: {exc}", gr.skip()
            return
        yield "\n\n".join(lines), cards_frame(ctx, uid, note_id_of(nid))

    def do_export(kind: str, request: gr.Request, profile: gr.OAuthProfile | None) -> tuple:
        uid = ctx.user(request, profile)
        fmt, suffix = EXPORTS[kind]
        folder = Path(tempfile.mkdtemp(prefix="selfspec-export-"))
        try:
            summary = export_user_data(ctx.db, uid, fmt, folder / f"selfspec-{fmt.value}.{suffix}")
        except StudyError as exc:
            gr.Warning(str(exc))
            return None, f"Not exported: {exc}"
        return str(summary.path), f"Exported {summary.count} item(s) as {kind}."

    def pick_card(table: pd.DataFrame, evt: gr.SelectData) -> tuple:
        row = table.iloc[evt.index[0]]
        return (
            int(row["id"]),
            row["question"],
            row["answer"],
            "\n".join(str(row["choices"]).split(" | ")) if row["choices"] else "",
        )

    def save_card(cid: float | None, q: str, a: str, ch: str, nid: str | None,
                  request: gr.Request, profile: gr.OAuthProfile | None) -> tuple:  # fmt: skip
        uid = ctx.user(request, profile)
        options = [line for line in (ch or "").splitlines() if line.strip()]
        try:
            edit_card(
                ctx.db, uid, note_id_of(cid) or 0, question=q, answer=a, choices=options or None
            )
        except StudyError as exc:
            gr.Warning(str(exc))
            return f"Card not saved: {exc}", gr.skip()
        return f"Saved card {note_id_of(cid)}.", cards_frame(ctx, uid, note_id_of(nid))

    def remove_card(
        cid: float | None, nid: str | None, request: gr.Request, profile: gr.OAuthProfile | None
    ) -> tuple:
        uid = ctx.user(request, profile)
        try:
            delete_card(ctx.db, uid, note_id_of(cid) or 0)
        except StudyError as exc:
            gr.Warning(str(exc))
            return f"Card not deleted: {exc}", gr.skip()
        return f"Deleted card {note_id_of(cid)}.", cards_frame(ctx, uid, note_id_of(nid))

    listing = [search, tag]
    refresh.click(show, listing, notes, api_name="notes_list", **DB_EVENT)
    search.submit(show, listing, notes, api_visibility="private", **DB_EVENT)
    demo.load(show, listing, notes, api_visibility="private", **DB_EVENT)
    notes.select(
        pick, notes, [*editor, message, cards, gen_status], api_visibility="private", **DB_EVENT
    ).then(list_drafts, note_id, draft_widgets, api_visibility="private", **DB_EVENT)
    save.click(
        store, [*editor, *listing], [note_id, message, notes], api_name="notes_save", **DB_EVENT
    )
    new.click(blank, None, [*editor, message, cards, gen_status], api_visibility="private")
    delete.click(ask_delete, note_id, [confirm, message], api_visibility="private", **DB_EVENT)
    confirm.click(
        really_delete,
        [note_id, *listing],
        [*editor, confirm, message, notes],
        api_name="notes_delete",
        **DB_EVENT,
    )
    imported = [message, notes, duplicate_choice]
    import_btn.click(import_asking, upload, imported, api_name="notes_import", **DB_EVENT)
    skip_btn.click(import_skipping, upload, imported, api_name="notes_import_skip", **DB_EVENT)
    replace_btn.click(
        import_replacing, upload, imported, api_name="notes_import_replace", **DB_EVENT
    )
    upload.change(
        lambda: gr.update(visible=False), None, duplicate_choice, api_visibility="private"
    )
    generate.click(
        make_questions,
        note_id,
        [gen_status, cards],
        api_name="notes_generate",
        **MODEL_EVENT,
    ).then(list_drafts, note_id, draft_widgets, api_visibility="private", **DB_EVENT)
    export_btn.click(
        do_export, export_kind, [export_file, message], api_name="notes_export", **DB_EVENT
    )
    cards.select(
        pick_card,
        cards,
        [card_id, card_q, card_a, card_choices],
        api_visibility="private",
        **DB_EVENT,
    )
    card_save.click(
        save_card,
        [card_id, card_q, card_a, card_choices, note_id],
        [message, cards],
        api_name="card_save",
        **DB_EVENT,
    )
    card_delete.click(
        remove_card, [card_id, note_id], [message, cards], api_name="card_delete", **DB_EVENT
    )
