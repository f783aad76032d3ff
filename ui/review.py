"""Review tab: today's session, one card at a time.

Each shown card gets an idempotency key (``<random>:<card id>``) that the page holds and
sends with the rating. A double click, or a retried request, sends the same key again:
``study.reviews.submit_review`` counts it once, and the tab only moves on when the key
is the one of the card on screen, so a second click never rates the next card.
"""

import time
import uuid
from datetime import timedelta

import gradio as gr

from db import utcnow
from study.errors import CardNotFoundError, NothingToUndoError, StudyError
from study.reviews import submit_review, undo_last_review
from study.scheduler import due_cards, nothing_due_reason
from study.settings import read_settings
from ui.context import AppContext
from ui.queues import DB_EVENT
from ui.render import escape

__all__ = ["RATINGS", "build", "parse_rating", "card_of_key"]

RATINGS = {1: "Again", 2: "Hard", 3: "Good", 4: "Easy"}
MAX_DURATION_MS = 3_600_000  # a card left open for an hour counts as one hour


def parse_rating(value: str | float | int) -> int:
    """Rating from a button label like "3 · Good" or a bare number; 0 when there is none."""
    digits = [ch for ch in str(value) if ch.isdigit()]
    return int(digits[0]) if digits else 0


def card_of_key(key: str) -> int | None:
    """The card id a shown-card key was made for (keys are ``<random>:<card id>``)."""
    _, _, card = (key or "").rpartition(":")
    return int(card) if card.isdigit() else None


def _new_session(ctx: AppContext, uid: int) -> dict:
    cards = [
        {
            "id": c.card_id,
            "kind": c.kind,
            "question": c.question,
            "answer": c.answer,
            "choices": c.choices or [],
        }
        for c in due_cards(ctx.db, uid)
    ]
    return {
        "cards": cards,
        "index": 0,
        "key": "",
        "shown_at": 0.0,
        "started": time.time(),
        "reviewed": 0,
        "recalled": 0,
    }


def _show_next(state: dict) -> None:
    state["shown_at"] = time.time()
    card = _current(state)
    state["key"] = f"{uuid.uuid4().hex}:{card['id']}" if card else ""


def _current(state: dict) -> dict | None:
    cards, index = state.get("cards", []), state.get("index", 0)
    return cards[index] if index < len(cards) else None


def _summary(ctx: AppContext, uid: int, state: dict) -> str:
    reviewed, recalled = state["reviewed"], state["recalled"]
    minutes = (time.time() - state["started"]) / 60
    tomorrow = len(due_cards(ctx.db, uid, now=utcnow() + timedelta(days=1)))
    rate = f"{recalled / reviewed:.0%}" if reviewed else "n/a"
    return (
        f"### Session done\n- reviewed: **{reviewed}**\n- recalled (Hard or better): **{rate}**\n"
        f"- time: **{minutes:.1f} min**\n- due by this time tomorrow (with new cards): **{tomorrow}**"
    )


def build(ctx: AppContext) -> None:
    """Lay out the Review tab inside the current Blocks context."""
    state = gr.State({})
    gr.Markdown(
        "Keys: **Space** or **Enter** shows the answer; **1-4** pick an option of a "
        "multiple-choice card, then rate Again / Hard / Good / Easy. While a card is on "
        "screen these keys always act on the card, never on a focused button."
    )
    with gr.Row():
        start = gr.Button("Start today's review", variant="primary", elem_id="review-start")
        undo = gr.Button("Undo last rating", elem_id="review-undo")
    progress = gr.Markdown(elem_id="review-progress")
    key = gr.Textbox(visible=False, elem_id="review-key")
    question = gr.HTML(elem_id="review-question")
    choices = gr.Radio([], label="Choose one", visible=False, elem_id="review-choices")
    reveal = gr.Button("Show answer (Space)", visible=False, elem_id="review-reveal")
    answer = gr.HTML(visible=False, elem_id="review-answer")
    with gr.Row(visible=False) as rating_row:
        buttons = [gr.Button(f"{n} · {label}", elem_id=f"rate-{n}") for n, label in RATINGS.items()]
    message = gr.Markdown(elem_id="review-message")
    outputs = [state, key, progress, question, choices, reveal, answer, rating_row, message]

    def view(uid: int, st: dict, revealed: bool = False, note: str = "") -> tuple:
        card = _current(st)
        if card is None:
            done = _summary(ctx, uid, st) if st.get("reviewed") else nothing_due_reason(ctx.db, uid)
            hidden = gr.update(visible=False)
            return (
                st,
                "",
                "",
                "",
                gr.update(visible=False, value=None),
                hidden,
                hidden,
                hidden,
                f"{note}\n\n{done}".strip(),
            )
        total = len(st["cards"])
        kind = "multiple choice" if card["kind"] == "mcq" else card["kind"]
        progress_text = f"Card **{st['index'] + 1}** of **{total}** · {kind} · reviewed so far: {st['reviewed']}"
        mcq = card["kind"] == "mcq" and bool(card["choices"])
        return (
            st,
            st["key"],
            progress_text,
            f'<div class="review-q">{escape(card["question"])}</div>',
            gr.update(choices=card["choices"], visible=mcq, value=None, interactive=not revealed),
            gr.update(visible=not revealed and not mcq),
            gr.update(
                value=f'<div class="review-a"><b>Answer:</b> {escape(card["answer"])}</div>',
                visible=revealed,
            ),
            gr.update(visible=revealed),
            note,
        )

    def begin(request: gr.Request, profile: gr.OAuthProfile | None) -> tuple:
        uid = ctx.user(request, profile)
        st = _new_session(ctx, uid)
        _show_next(st)
        scheduler = read_settings(ctx.db, uid).describe()
        due = f"{len(st['cards'])} card(s) due now." if st["cards"] else ""
        return view(uid, st, note=f"{due}\n\n_Scheduled by {scheduler}_".strip())

    def show_answer(st: dict, request: gr.Request, profile: gr.OAuthProfile | None) -> tuple:
        return view(ctx.user(request, profile), st, revealed=True)

    def grade(
        choice: str | None, st: dict, request: gr.Request, profile: gr.OAuthProfile | None
    ) -> tuple:
        card = _current(st)
        uid = ctx.user(request, profile)
        if card is None or choice is None:
            return view(uid, st)
        verdict = (
            "Correct: rate it Good or Easy."
            if choice == card["answer"]
            else "Not quite: rate it Again."
        )
        return view(uid, st, revealed=True, note=verdict)

    def rate(
        label: str, shown_key: str, st: dict, request: gr.Request, profile: gr.OAuthProfile | None
    ) -> tuple:
        uid = ctx.user(request, profile)
        rating, card_id = parse_rating(label), card_of_key(shown_key)
        if card_id is None or rating not in RATINGS:
            gr.Warning("No card is on screen to rate. Start the review first.")
            return view(uid, st, note="No card is on screen to rate.")
        current = shown_key == st.get("key")
        elapsed = int((time.time() - st.get("shown_at", time.time())) * 1000)
        try:
            result = submit_review(
                ctx.db,
                uid,
                card_id,
                rating,
                idempotency_key=shown_key,
                duration_ms=max(0, min(elapsed, MAX_DURATION_MS)),
            )
        except CardNotFoundError:
            gr.Warning("This card was deleted meanwhile; it is skipped and nothing was recorded.")
            note = "That card was deleted meanwhile; nothing was recorded."
        except StudyError as exc:
            gr.Warning(str(exc))
            return view(uid, st, revealed=True, note=f"Not recorded: {exc}")
        else:
            if result.duplicate:
                return view(uid, st, note="That rating was already recorded; it counts once.")
            if not current:
                return view(uid, st, note=f"Recorded **{RATINGS[rating]}** for card {card_id}.")
            st["reviewed"] += 1
            st["recalled"] += int(rating >= 2)
            note = f"Recorded **{RATINGS[rating]}**; next review {result.due:%Y-%m-%d %H:%M} UTC."
        if current:
            st["index"] += 1
            _show_next(st)
        return view(uid, st, note=note)

    def undo_last(st: dict, request: gr.Request, profile: gr.OAuthProfile | None) -> tuple:
        uid = ctx.user(request, profile)
        try:
            undone = undo_last_review(ctx.db, uid)
        except NothingToUndoError:
            gr.Warning("There is no rating to undo.")
            return view(uid, st, note="There is no rating to undo.")
        fresh = _new_session(ctx, uid)
        if st:
            reviewed = max(0, st["reviewed"] - 1)
            fresh.update(
                started=st["started"], reviewed=reviewed, recalled=min(st["recalled"], reviewed)
            )
        _show_next(fresh)
        return view(
            uid,
            fresh,
            note=f"Undid the last rating (card {undone.card_id}); it is back in the queue.",
        )

    start.click(begin, None, outputs, api_name="review_start", **DB_EVENT)
    reveal.click(show_answer, state, outputs, api_name="review_reveal", **DB_EVENT)
    choices.input(grade, [choices, state], outputs, api_name="review_choose", **DB_EVENT)
    for n, button in enumerate(buttons, start=1):
        button.click(
            rate,
            [button, key, state],
            outputs,
            api_name="review_rate" if n == 1 else None,
            api_visibility="public" if n == 1 else "private",
            trigger_mode="once",
            **DB_EVENT,
        )
    undo.click(undo_last, state, outputs, api_name="review_undo", **DB_EVENT)
