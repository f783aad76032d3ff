"""Tune tab: run the layer search and the Kangaroo adapter training from the page, with
live progress and cancel, and choose which skip profile and adapter are active.

Tuning never makes things worse: every search or training writes a new, time-stamped file,
which becomes active only if it measures better than the active one (profiles: a higher
score on the same objective; adapters: a higher held-out expected acceptance). The rest
stay listed with their figures for the user to choose, the shipped files among them, and
a replaced file is kept under a versioned name.

The layout and its events are here; the jobs are ``ui.tune_jobs``, the lists and the
switching of files ``ui.tune_files``. The job handlers share the Playground's concurrency
slot: the model is one CPU-bound resource, and a search next to a generation would spoil
both.
"""

from __future__ import annotations

import threading

import gradio as gr

from selfspec.adapter_objective import LOSSES
from selfspec.search import OBJECTIVES
from ui.context import AppContext
from ui.queues import MODEL_EVENT
from ui.tune_files import (
    adapter_choices,
    make_active,
    make_adapter_active,
    profile_choices,
    profile_status,
)
from ui.tune_jobs import search_handler, train_handler

__all__ = ["build"]


def build(ctx: AppContext, tab: gr.Tab) -> None:
    """Lay out the Tune tab inside the current Blocks context; opening ``tab`` refreshes
    the status and the lists of profiles and adapters."""
    cancel = threading.Event()  # one model slot, so at most one job to cancel
    gr.Markdown(
        "**Start here:** tuning finds the sub-layers the `skip` method leaves out (Bayesian "
        "search) and trains the Kangaroo adapter, both for the default model. Each result "
        "is saved as a new file and becomes active only if it measures better than the "
        "active one; the shipped profile and adapter can always be restored below. Jobs "
        "take the model's slot: playground runs wait until they finish. Cancel stops "
        "within a few seconds and changes nothing that is active."
    )
    status = gr.Markdown(elem_id="tune-status")
    refresh = gr.Button("Show the active profile", size="sm", elem_id="tune-refresh")
    with gr.Accordion("Layer search", open=True):
        with gr.Row():
            trials = gr.Number(
                20,
                precision=0,
                minimum=1,
                label="Trials",
                info="In total: a search resumes, counting the trials it already ran.",
            )
            objective = gr.Radio(list(OBJECTIVES), value="proxy", label="Objective")
            prompts = gr.Number(4, precision=0, minimum=1, label="Calibration prompts")
            tokens = gr.Number(32, precision=0, minimum=1, label="Tokens per prompt")
        with gr.Row():
            search_btn = gr.Button("Run search", variant="primary", elem_id="tune-search")
            search_cancel = gr.Button("Cancel", elem_id="tune-search-cancel")
        search_log = gr.Markdown(elem_id="tune-search-log")
        search_plot = gr.LinePlot(
            x="trial", y="value", color="series", title="Score per trial", label="search"
        )
    with gr.Accordion("Kangaroo adapter training", open=False):
        with gr.Row():
            exit_layer = gr.Number(2, precision=0, minimum=1, label="Exit layer")
            steps = gr.Number(300, precision=0, minimum=1, label="Steps")
            loss = gr.Radio(list(LOSSES), value="ce", label="Loss")
        with gr.Row():
            train_btn = gr.Button("Train adapter", variant="primary", elem_id="tune-train")
            train_cancel = gr.Button("Cancel", elem_id="tune-train-cancel")
        train_log = gr.Markdown(elem_id="tune-train-log")
        with gr.Row():
            loss_plot = gr.LinePlot(
                x="step", y="value", color="series", title="Distillation loss", label="loss"
            )
            acceptance_plot = gr.LinePlot(
                x="step",
                y="value",
                color="series",
                title="Expected acceptance (held out)",
                label="acceptance",
            )
    with gr.Accordion("Active profile", open=False):
        files = gr.Dropdown([], label="Profile files", elem_id="tune-profiles")
        with gr.Row():
            reload_files = gr.Button("Reload list", size="sm")
            use = gr.Button("Make active", size="sm", elem_id="tune-use")
        adapters = gr.Dropdown([], label="Adapters", elem_id="tune-adapters")
        use_adapter = gr.Button("Make this adapter active", size="sm", elem_id="tune-use-adapter")
        use_status = gr.Markdown(elem_id="tune-use-status")

    def lists() -> tuple:
        return gr.update(choices=profile_choices(ctx)), gr.update(choices=adapter_choices(ctx))

    search = search_handler(ctx, cancel)
    train = train_handler(ctx, cancel)

    def stop() -> str:
        cancel.set()
        return "Cancelling…"

    refresh.click(lambda: profile_status(ctx), None, status, api_name="tune_status")
    tab.select(lambda: (profile_status(ctx), *lists()), None, [status, files, adapters],
               api_visibility="private")  # fmt: skip
    search_btn.click(
        search,
        [trials, objective, prompts, tokens],
        [search_log, search_plot],
        api_name="tune_search",
        **MODEL_EVENT,
    ).then(lists, None, [files, adapters])
    train_btn.click(
        train,
        [exit_layer, steps, loss],
        [train_log, loss_plot, acceptance_plot],
        api_name="tune_train",
        **MODEL_EVENT,
    ).then(lists, None, [files, adapters])
    search_cancel.click(stop, None, status, api_name="tune_cancel", concurrency_limit=None)
    train_cancel.click(stop, None, status, api_visibility="private", concurrency_limit=None)
    reload_files.click(lists, None, [files, adapters], api_visibility="private")
    use.click(lambda name: make_active(ctx, name), files, use_status, api_name="tune_use_profile"
              ).then(lists, None, [files, adapters])  # fmt: skip
    use_adapter.click(lambda name: make_adapter_active(ctx, name), adapters, use_status,
                      api_name="tune_use_adapter").then(lists, None, [files, adapters])  # fmt: skip
