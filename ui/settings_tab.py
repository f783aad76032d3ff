"""Settings tab: the user's memory model, desired retention, daily new cards, job time,
and the model that writes their quiz cards.

Validation lives in ``study.settings.update_settings``; this tab shows its message."""

from collections.abc import Callable

import gradio as gr

from study.errors import StudyError
from study.quiz_model import AUTO, quiz_model_choices, writer_for_setting
from study.runner import resync
from study.settings import read_settings, update_settings
from ui.context import AppContext
from ui.models import model_label
from ui.queues import DB_EVENT

__all__ = ["build"]

MODELS = [
    ("Auto: your own reviews choose (Ebbinghaus until they can)", "auto"),
    ("Ebbinghaus (mixture of exponentials)", "ebbinghaus"),
    ("FSRS-6 (power curve)", "fsrs6"),
]


def build(ctx: AppContext) -> tuple[Callable, tuple]:
    """Lay out the tab; returns the page-load function and the components it fills."""
    gr.Markdown(
        "**Start here:** how your reviews are scheduled. Save checks every value; an "
        "invalid one is named and nothing is saved."
    )
    memory_model = gr.Radio(MODELS, label="Memory model", value="auto")
    scheduler = gr.Markdown(elem_id="settings-scheduler")
    retention = gr.Slider(
        0.7, 0.97, value=0.9, step=0.01, label="Desired retention", elem_id="settings-retention"
    )
    # No minimum/maximum here: Gradio would refuse the value before the handler runs and
    # show a bare error badge; study.settings validates and the message says why.
    new_limit = gr.Number(value=20, precision=0, label="New cards per day")
    job_time = gr.Textbox(value="03:00", label="Daily preparation job time (HH:MM, UTC)")
    best = writer_for_setting(None, ctx.config.default_model)
    quiz_model = gr.Dropdown(
        [(f"Best installed (now {best.describe()})", AUTO)]
        + [(model_label(name), name) for name in quiz_model_choices()],
        value=AUTO,
        label="Quiz writer (the model that turns your notes into cards)",
        info="A larger model writes better cards, more slowly; each uses its fastest exact method.",
        elem_id="settings-quiz-model",
    )
    save = gr.Button("Save", variant="primary")
    message = gr.Markdown(elem_id="settings-message")

    def load(request: gr.Request, profile: gr.OAuthProfile | None) -> tuple:
        uid = ctx.signed_in_user(request, profile)
        if uid is None:
            return (gr.skip(),) * 6
        now = read_settings(ctx.db, uid)
        return (
            now.memory_model,
            now.policy.desired_retention,
            now.daily_new_limit,
            now.daily_job_time,
            now.quiz_model,
            scheduled_by(request, profile),
        )

    def scheduled_by(request: gr.Request, profile: gr.OAuthProfile | None) -> str:
        uid = ctx.signed_in_user(request, profile)
        if uid is None:
            return ""
        return f"_Your cards are scheduled by {read_settings(ctx.db, uid).describe()}_"

    def store(
        model: str,
        desired: float,
        limit: float,
        at: str,
        writer: str | None,
        request: gr.Request,
        profile: gr.OAuthProfile | None,
    ) -> str:
        uid = ctx.user(request, profile)
        try:
            update_settings(
                ctx.db,
                uid,
                memory_model=model,
                desired_retention=float(desired),
                daily_new_limit=int(limit or 0),
                daily_job_time=(at or "").strip(),
                quiz_model=writer or AUTO,
            )
        except StudyError as exc:
            gr.Warning(str(exc))
            return f"Not saved: {exc} Nothing was changed."
        resync()  # the job runner of this process follows the new job time at once
        return "Saved."

    fields = (memory_model, retention, new_limit, job_time, quiz_model)
    save.click(store, list(fields), message, api_name="save_settings", **DB_EVENT).then(
        scheduled_by, None, scheduler, api_visibility="private", **DB_EVENT
    )
    return load, (*fields, scheduler)
