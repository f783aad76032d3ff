"""Playground tab: run several decoding methods on one prompt, side by side.

The layout and its events live here; a comparison's run is ``ui.playground_run`` and what
the page shows of it (tables, words for the verdicts) ``ui.playground_rows``.
"""

import threading
from collections.abc import Iterator

import gradio as gr
import pandas as pd

from selfspec import METHODS, GenerationResult, LoadedModel, SamplingConfig, SelfSpecError
from selfspec.loading import hub_reachable
from selfspec.methods import unavailable
from study.errors import StudyError
from study.notes_service import get_note, list_notes
from study.quiz import CardKind, build_prompt
from ui.context import AppContext
from ui.playground_rows import (
    BASELINE,
    MAX_PROMPT_CHARS,
    METRIC_COLUMNS,
    NO_DRAFTS,
    accepted_rows,
    check_prompt,
    metrics_rows,
    rule_note,
    timeline_rows,
)
from ui.playground_run import Comparison, Warmups, ordered
from ui.plots import TIME_FORMAT, with_legend
from ui.queries import decode_history
from ui.queues import DB_EVENT, MODEL_EVENT
from ui.render import columns_html

__all__ = ["MAX_PROMPT_CHARS", "MAX_REPEATS", "NO_DRAFTS", "build", "check_prompt"]

MAX_REPEATS = 5


def method_choices(source: str) -> tuple[list[tuple[str, str]], str]:
    """(label, name) of the methods that apply to model `source`, and a line naming the
    others with the reason (decided from files, without loading the model)."""
    choices, missing = [], []
    for name, info in METHODS.items():
        why = unavailable(name, source)
        if why is None:
            choices.append((f"{name}: {info.description}", name))
        elif info.installed():  # a peer that is not installed is simply not offered
            missing.append(f"{name} ({why})")
    return choices, "Not for this model: " + "; ".join(missing) if missing else ""


def _weights(lm: LoadedModel) -> str:
    """What the figures were measured on: the weight format and the activations."""
    return f"weights {lm.weight_format}, activations {lm.activations}"


def _timeline_outputs(results: dict[str, GenerationResult]) -> tuple:
    """The timeline's method list (the drafting methods first), its plot and the state."""
    names = sorted(results, key=lambda n: not any(s.drafted for s in results[n].steps))
    first = names[0] if names else None
    return (
        gr.update(choices=names, value=first),
        with_legend(timeline_rows(results.get(first or "")), "phase"),
        dict(results),
    )


def build(ctx: AppContext, demo: gr.Blocks, tab: gr.Tab) -> None:
    """Lay out the Playground tab inside the current Blocks context; ``tab`` is the tab
    itself, whose opening refreshes the note presets."""
    warmups = Warmups()
    # One stop event per browser session: Stop ends that session's run between two
    # tokens, and the handler then shows what finished (a cancelled event would only
    # show Gradio's error badges).
    stops: dict[str, threading.Event] = {}
    gr.Markdown(
        "**Start here:** type a prompt (or pick a preset made from one of your notes), "
        "tick a few methods and press Run. Each output streams; accepted draft tokens and "
        "the full model's bonus tokens are coloured. Vanilla always runs: the speed-up and "
        "the lossless check are measured against it. One run on a shared CPU is noisy: "
        "compare speed-ups over several runs before trusting one."
    )
    with gr.Row():
        model = gr.Dropdown(
            ctx.models.choices(),
            value=ctx.config.default_model,
            label="Model",
            allow_custom_value=not ctx.config.hosted,
            info="A Hugging Face id works when the hub is reachable"
            + (" and the id is on this server's allow-list." if ctx.config.hosted else "."),
            scale=2,
        )
        hub_status = gr.Markdown(elem_id="hub-status")
        check_hub = gr.Button("Check hub", size="sm", scale=0)
    preset = gr.Dropdown(
        [],
        label="Preset from a note",
        allow_custom_value=True,  # choices are per user, filled on page load
        info="Fills the prompt with the quiz-writing request for that note (a copy-heavy task).",
    )
    prompt = gr.Textbox(label="Prompt", lines=4, placeholder="Ask something…", elem_id="pg-prompt")
    choices, missing = method_choices(ctx.config.default_model)
    with gr.Row():
        methods = gr.CheckboxGroup(
            choices,
            value=[BASELINE],
            label="Methods",
            info=missing,
            scale=3,
        )
        with gr.Column(scale=1):
            max_new = gr.Slider(1, 512, value=64, step=1, label="Max new tokens")
            repeat = gr.Slider(
                1,
                MAX_REPEATS,
                value=1,
                step=1,
                label="Runs per method",
                info="More than one: the table shows the median tokens/s and the spread.",
            )
            temperature = gr.Slider(
                0.0, 2.0, value=0.0, step=0.05, label="Temperature (0 = greedy)"
            )
    with gr.Row():
        run = gr.Button("Run", variant="primary", elem_id="pg-run", scale=3)
        stop = gr.Button("Stop", variant="stop", elem_id="pg-stop", scale=1)
    status = gr.Markdown(elem_id="pg-status")
    outputs = gr.HTML(elem_id="pg-output")
    table = gr.Dataframe(
        headers=METRIC_COLUMNS, label="Metrics", interactive=False, elem_id="pg-metrics"
    )
    with gr.Row():
        bars = gr.BarPlot(
            x="method",
            y="tokens/s",
            y_lim=[0, None],  # bars from zero, so their heights compare as the speeds do
            title="Tokens per second",
            label="tokens/s",
            elem_id="pg-bars",
        )
        accepted = gr.BarPlot(
            x="accepted drafts",
            y="steps",
            color="method",
            title="Accepted drafts per verification step",
            y_axis_format="d",  # whole steps
            label="accepted lengths",
            elem_id="pg-accepted",
        )
    # A row of its own: a legend of several methods needs the page's width.
    with gr.Row():
        history = gr.ScatterPlot(  # points: a series of one run is still visible
            x="time",
            y="speed-up",
            color="series",
            title="Speed-up over vanilla, history",
            label="history",
            x_axis_format=TIME_FORMAT,
            elem_id="pg-history",
        )
    with gr.Row():
        timeline_of = gr.Dropdown(
            [],
            label="Timeline of",
            info="A method of the last run",
            scale=1,
            elem_id="pg-timeline-of",
        )
        timeline = gr.BarPlot(
            x="step",
            y="ms",
            color="phase",
            title="Per step: draft and verify time (hover: drafts proposed and accepted)",
            label="timeline",
            tooltip="all",
            sort=None,  # steps in order (they are labels, so that each gets a bar)
            scale=4,
            elem_id="pg-timeline",
        )
    last_run = gr.State({})  # method -> its GenerationResult, for the timeline

    def hub_check() -> str:
        if hub_reachable():
            return "Hugging Face hub: **reachable**."
        return "Hugging Face hub: **not reachable**; the bundled model works offline."

    def run_methods(
        model_id: str,
        text: str,
        names: list[str],
        max_new_tokens: float,
        temp: float,
        runs: float,
        request: gr.Request,
        profile: gr.OAuthProfile | None,
    ) -> Iterator[tuple]:
        uid = ctx.user(request, profile)
        runs = max(1, min(MAX_REPEATS, int(runs or 1)))
        problem = check_prompt(text)
        if problem:
            gr.Warning(problem)
            yield problem, "", pd.DataFrame(columns=METRIC_COLUMNS), None, None, *[gr.skip()] * 4
            return
        try:
            cfg = SamplingConfig(max_new_tokens=int(max_new_tokens), temperature=float(temp))
        except SelfSpecError as exc:
            gr.Warning(str(exc))
            yield str(exc), "", pd.DataFrame(columns=METRIC_COLUMNS), None, None, *[gr.skip()] * 4
            return
        choice = ctx.models.get(model_id)
        lm = choice.model
        note = f"Model: **{lm.name}** ({_weights(lm)})."
        if choice.notice:
            gr.Warning(choice.notice)
            note = f"{choice.notice} {note}"
        comparison = Comparison(lm, text, cfg, ordered(names or []))

        def columns() -> str:
            return columns_html([(n, c.pieces, c.status) for n, c in comparison.columns.items()])

        def view(message: str) -> tuple:
            frame = metrics_rows(comparison.results, comparison.verdicts, comparison.repeats)
            return (message, columns(), frame, *[gr.skip()] * 6)

        stopped = stops.setdefault(request.session_hash, threading.Event())
        stopped.clear()
        for warning in comparison.run(runs, stopped, warmups):
            if warning:
                gr.Warning(warning)
            yield view(note)
        if comparison.failed is not None:
            yield view(f"{note} {comparison.failed}")
            return
        results = comparison.results
        frame = metrics_rows(results, comparison.verdicts, comparison.repeats)
        if stopped.is_set():
            summary = comparison.stopped_summary()
            yield (
                f"{note} {summary}",
                columns(),
                frame,
                frame[["method", "tokens/s"]],
                with_legend(accepted_rows(results), "method"),
                gr.skip(),
                *_timeline_outputs(results),
            )
            return
        comparison.record(ctx, uid, len(text))
        yield (
            f"{note} Done; the runs are stored in your decoding history.\n\n{rule_note(lm)}",
            columns(),
            frame,
            frame[["method", "tokens/s"]],
            with_legend(accepted_rows(results), "method"),
            with_legend(decode_history(ctx.db, uid), "series"),
            *_timeline_outputs(results),
        )

    def show_timeline(name: str | None, runs: dict[str, GenerationResult]) -> dict:
        return with_legend(timeline_rows(runs.get(name or "")), "phase")

    def stop_run(request: gr.Request) -> None:
        event = stops.get(request.session_hash)
        if event is not None:
            event.set()

    def note_choices(request: gr.Request, profile: gr.OAuthProfile | None) -> dict:
        uid = ctx.signed_in_user(request, profile)
        notes = [] if uid is None else list_notes(ctx.db, uid)
        return gr.update(choices=[(n.title, n.id) for n in notes])

    def from_note(
        note_id: int | str | None, request: gr.Request, profile: gr.OAuthProfile | None
    ) -> str:
        if not str(note_id or "").isdigit():
            return gr.skip()
        try:
            note = get_note(ctx.db, ctx.user(request, profile), int(note_id))
        except StudyError as exc:
            gr.Warning(str(exc))
            return gr.skip()
        return build_prompt(note, CardKind.BASIC)

    # The presets follow the user's notes: filled at page load and again whenever the
    # tab opens (a note added in Notes meanwhile).
    timeline_of.input(show_timeline, [timeline_of, last_run], timeline, api_visibility="private")
    demo.load(note_choices, None, preset, api_visibility="private", **DB_EVENT)
    tab.select(note_choices, None, preset, api_visibility="private", **DB_EVENT)
    preset.input(from_note, preset, prompt, api_name="playground_preset", **DB_EVENT)
    check_hub.click(hub_check, None, hub_status, api_name="hub_status")

    def model_methods(source: str | None, ticked: list[str]) -> dict:
        """The methods that apply to the chosen model, keeping the ticked ones that do."""
        choices, missing = method_choices((source or "").strip() or ctx.config.default_model)
        names = {name for _, name in choices}
        kept = [m for m in ticked or [] if m in names] or [BASELINE]
        return gr.update(choices=choices, value=kept, info=missing)

    model.change(model_methods, [model, methods], methods, api_visibility="private")
    run.click(
        run_methods,
        [model, prompt, methods, max_new, temperature, repeat],
        [status, outputs, table, bars, accepted, history, timeline_of, timeline, last_run],
        api_name="playground_run",
        **MODEL_EVENT,
    )
    # Stop sets the session's event; the running handler ends the generation and shows
    # "Stopped" with what finished. An unfinished comparison is not stored. No queue
    # limit: Stop must not wait behind the run it stops.
    stop.click(stop_run, None, None, api_visibility="private", concurrency_limit=None)
