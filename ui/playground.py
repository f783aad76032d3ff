"""Playground tab: run several decoding methods on one prompt, side by side.

Methods run one after another, not at once: on a CPU they would compete for the same
cores and every tokens/s figure would be wrong. Each runs in a worker thread that the
page only reads from, so the time Gradio spends sending updates is not in the clock. Vanilla always runs first because the
speed-up and the lossless check are measured against it in the same run.
"""

import statistics
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

import gradio as gr
import pandas as pd

from db import record_decode_run
from selfspec import (
    METHODS,
    GenerationResult,
    LoadedModel,
    Piece,
    SamplingConfig,
    SelfSpecError,
    generate,
    get_method,
    run_to_end,
)
from selfspec.bench import Judgement, Rule, judge, rule_for, tolerance
from selfspec.decoding import prepare_prompt
from study.errors import StudyError
from study.notes_service import get_note, list_notes
from study.quiz import CardKind, build_prompt
from ui.context import AppContext
from ui.plots import TIME_FORMAT, with_legend
from ui.queries import decode_history
from ui.render import columns_html
from ui.streaming import events_job, stream_batches

__all__ = [
    "MAX_PROMPT_CHARS",
    "MAX_REPEATS",
    "BASELINE",
    "Verdict",
    "accepted_rows",
    "build",
    "check_prompt",
    "judge_run",
    "median_speeds",
    "metrics_rows",
    "rule_note",
    "timeline_rows",
    "verdict",
]

MAX_PROMPT_CHARS = 20_000
MAX_REPEATS = 5
NO_DRAFTS = "no drafting method ran"
BASELINE = "vanilla"
STREAM_EVERY_S = 0.15  # how often the page re-renders the streamed output
METRIC_COLUMNS = [
    "method",
    "tokens",
    "tokens/s",
    "spread",
    "speed-up",
    "drafted",
    "accepted",
    "mean accepted",
    "acceptance",
    "lossless",
]
TIMELINE_COLUMNS = ["step", "ms", "phase", "drafted", "accepted"]


def check_prompt(prompt: str) -> str | None:
    """A message for a prompt the app refuses before tokenizing, else None."""
    if not prompt or not prompt.strip():
        return "The prompt is empty. Type a question or an instruction, or pick a preset."
    if len(prompt) > MAX_PROMPT_CHARS:
        return (
            f"The prompt is {len(prompt):,} characters; the playground takes at most "
            f"{MAX_PROMPT_CHARS:,}. Shorten it."
        )
    return None


@dataclass(frozen=True)
class Verdict:
    """The lossless check of one method's output against vanilla's, as the table shows it.

    The judgement itself is ``selfspec.bench.judge``, the benchmark's own rule (exact for
    our methods, a logit tolerance for peers); this only words it.
    """

    lossless: bool | None  # None: nothing to judge (the reference, or sampling)
    text: str


REFERENCE = Verdict(True, "reference")
NOT_JUDGED = Verdict(None, "n/a (sampling)")


def verdict(judgement: Judgement, rule: Rule) -> Verdict:
    """Words for a judgement: the answer, the rule, and where the output differs."""
    if judgement.exact:
        return Verdict(True, f"yes: identical ({rule})")
    where = f"differs at token {judgement.first_difference}"
    worst = judgement.worst
    margin = "" if worst is None else f", worst margin {worst.margin:.3g} at token {worst.position}"
    if judgement.lossless:
        return Verdict(True, f"yes within {rule}: {where}{margin}")
    return Verdict(False, f"no ({rule}): {where}{margin}")


def judge_run(
    lm: LoadedModel, prompt_ids: list[int], base: GenerationResult, result: GenerationResult
) -> Verdict:
    """Judge ``result`` against vanilla's ``base`` by the benchmark's rule for its method."""
    rule = rule_for(get_method(result.method), lm.dtype)
    return verdict(judge(lm, prompt_ids, base.tokens, result, rule), rule)


def rule_note(lm: LoadedModel) -> str:
    """The lossless rule in one sentence, with this model's tolerance for peers."""
    return (
        "Lossless: our methods must match vanilla token for token (exact); peers (hf, "
        "llama.cpp), which run other code, pass if at every position the token they emitted "
        "trails our model's top logit by at most "
        f"{tolerance(lm.dtype):g} ({str(lm.dtype).removeprefix('torch.')})."
    )


def median_speeds(
    results: dict[str, GenerationResult], repeats: dict[str, list[float]] | None = None
) -> dict[str, float]:
    """Each method's tokens/s: the median over its repeated runs, else its one run."""
    repeats = repeats or {}
    return {
        name: statistics.median(repeats.get(name) or [result.tokens_per_s])
        for name, result in results.items()
    }


def metrics_rows(
    results: dict[str, GenerationResult],
    verdicts: dict[str, Verdict],
    repeats: dict[str, list[float]] | None = None,
) -> pd.DataFrame:
    """The metrics table: one row per finished method. With ``repeats`` (tokens/s of every
    run of a method), tokens/s and the speed-up are medians and the spread is shown."""
    speeds = median_speeds(results, repeats)
    rows = []
    for name, result in results.items():
        runs = (repeats or {}).get(name) or []
        base_speed = speeds.get(BASELINE)
        speedup = speeds[name] / base_speed if base_speed else None
        rows.append(
            {
                "method": name,
                "tokens": len(result.tokens),
                "tokens/s": round(speeds[name], 1),
                "spread": f"{min(runs):.1f}-{max(runs):.1f} over {len(runs)} runs"
                if len(runs) > 1
                else "one run",
                "speed-up": None if speedup is None else round(speedup, 2),
                "drafted": sum(s.drafted for s in result.steps),
                "accepted": sum(s.accepted for s in result.steps),
                "mean accepted": None
                if result.mean_accepted is None
                else round(result.mean_accepted, 2),
                "acceptance": None
                if result.acceptance_rate is None
                else round(result.acceptance_rate, 3),
                "lossless": verdicts[name].text if name in verdicts else "checking…",
            }
        )
    return pd.DataFrame(rows, columns=METRIC_COLUMNS)


def accepted_rows(results: dict[str, GenerationResult]) -> pd.DataFrame:
    """How many verification steps accepted 0, 1, 2, ... drafts, per drafting method."""
    rows = [
        {"method": name, "accepted drafts": str(n), "steps": count}
        for name, result in results.items()
        for n, count in result.accepted_histogram().items()
    ]
    if not rows:  # a row that says so: Gradio keeps an earlier plot when sent no value
        rows = [{"method": NO_DRAFTS, "accepted drafts": "0", "steps": 0}]
    return pd.DataFrame(rows, columns=["method", "accepted drafts", "steps"])


def timeline_rows(result: GenerationResult | None) -> pd.DataFrame:
    """Per verification step: draft and verify time (ms), with the drafts proposed and
    accepted, so a user sees where a method's time goes against what it gets accepted."""
    rows = [
        {
            "step": i,
            "ms": 1000 * seconds,
            "phase": phase,
            "drafted": s.drafted,
            "accepted": s.accepted,
        }  # fmt: skip
        for i, s in enumerate(result.steps if result else [], start=1)
        for phase, seconds in (("draft", s.draft_s), ("verify", s.verify_s))
    ]
    return pd.DataFrame(rows, columns=TIMELINE_COLUMNS)


@dataclass
class _Column:
    pieces: list[Piece] = field(default_factory=list)
    status: str = "waiting"


class _Warmups:
    """One short untimed generation per (model, method) and process: the first call of a
    method pays for allocation and lazy set-up, which is not decoding speed."""

    def __init__(self) -> None:
        self._done: set[tuple[int, str]] = set()

    def ensure(self, lm: LoadedModel, name: str) -> None:
        key = (id(lm.engine), name)
        if key in self._done:
            return
        info = get_method(name)
        cfg = SamplingConfig(max_new_tokens=4)
        run_to_end(generate(lm, "Hello", info.run, cfg, name=name, **info.options))
        self._done.add(key)


def _weights(lm: LoadedModel) -> str:
    """What the figures were measured on: the weight format and the dtype."""
    return f"weights {lm.weight_format}, dtype {str(lm.dtype).removeprefix('torch.')}"


def _timeline_outputs(results: dict[str, GenerationResult]) -> tuple:
    """The timeline's method list (the drafting methods first), its plot and the state."""
    names = sorted(results, key=lambda n: not any(s.drafted for s in results[n].steps))
    first = names[0] if names else None
    return (
        gr.update(choices=names, value=first),
        with_legend(timeline_rows(results.get(first or "")), "phase"),
        dict(results),
    )


def _stopped_summary(columns: dict[str, _Column], results: dict[str, GenerationResult]) -> str:
    """What a stopped comparison got done, for the status line; marks unfinished columns."""
    for name, column in columns.items():
        if name in results:
            continue
        column.status = (
            f"stopped after {len(column.pieces)} pieces" if column.pieces else "not run (stopped)"
        )
    done = ", ".join(results) or "none"
    return f"**Stopped.** Finished: {done}. A stopped comparison is not stored."


def _ordered(methods: list[str]) -> list[str]:
    chosen = [m for m in methods if m in METHODS and m != BASELINE]
    return [BASELINE, *chosen]


def build(ctx: AppContext, demo: gr.Blocks, tab: gr.Tab) -> None:
    """Lay out the Playground tab inside the current Blocks context; ``tab`` is the tab
    itself, whose opening refreshes the note presets."""
    warmups = _Warmups()
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
    with gr.Row():
        methods = gr.CheckboxGroup(
            [
                (f"{name}: {info.description}", name)
                for name, info in METHODS.items()
                if info.installed()
            ],
            value=[BASELINE],
            label="Methods",
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
        from selfspec.loading import hub_reachable

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
        order = _ordered(names or [])
        columns = {name: _Column() for name in order}
        results: dict[str, GenerationResult] = {}
        repeats: dict[str, list[float]] = {}  # tokens/s of every run, per method
        verdicts: dict[str, Verdict] = {}

        def _verdict(
            name: str, results: dict[str, GenerationResult], text: str, cfg: SamplingConfig
        ) -> Verdict:
            if name == BASELINE:
                return REFERENCE
            if not cfg.greedy:
                return NOT_JUDGED
            try:
                ids = prepare_prompt(lm, text, cfg)
                return judge_run(lm, ids, results[BASELINE], results[name])
            except SelfSpecError as exc:
                return Verdict(None, f"not checked: {exc}")

        def view(message: str) -> tuple:
            cols = [(n, c.pieces, c.status) for n, c in columns.items()]
            return (
                message,
                columns_html(cols),
                metrics_rows(results, verdicts, repeats),
                gr.skip(),
                gr.skip(),
                gr.skip(),
                gr.skip(),
                gr.skip(),
                gr.skip(),
            )

        stopped = stops.setdefault(request.session_hash, threading.Event())
        stopped.clear()
        for name in order:
            if stopped.is_set():
                break
            info = get_method(name)
            column = columns[name]
            column.status = "warming up…"
            yield view(note)
            try:
                warmups.ensure(lm, name)
                if stopped.is_set():
                    break
                column.status = "generating…"
                events = generate(lm, text, info.run, cfg, name=name, **info.options)
                for batch in stream_batches(events_job(events), STREAM_EVERY_S, stopped):
                    for event in batch:
                        if isinstance(event, GenerationResult):
                            results[name] = event
                        else:
                            column.pieces.append(event)
                    yield view(note)
            except SelfSpecError as exc:
                column.status = f"failed: {exc}"
                gr.Warning(f"{name}: {exc}")
                if name == BASELINE:
                    yield view(f"{note} {exc}")
                    return
                continue
            if name not in results:  # stopped during this method
                break
            result = results[name]
            verdicts[name] = _verdict(name, results, text, cfg)
            repeats[name] = [result.tokens_per_s]
            for run_no in range(2, runs + 1):  # the repeats are timed, not shown
                if stopped.is_set():
                    break
                column.status = f"run {run_no} of {runs}…"
                yield view(note)
                events = generate(lm, text, info.run, cfg, name=name, **info.options)
                for batch in stream_batches(events_job(events), STREAM_EVERY_S, stopped):
                    repeats[name] += [
                        e.tokens_per_s for e in batch if isinstance(e, GenerationResult)
                    ]
            column.status = f"{len(result.tokens)} tokens, {repeats[name][-1]:.1f} tokens/s" + (
                f" (median of {len(repeats[name])}: {statistics.median(repeats[name]):.1f})"
                if len(repeats[name]) > 1
                else ""
            )
            yield view(note)
        frame = metrics_rows(results, verdicts, repeats)
        if stopped.is_set():
            yield (
                f"{note} {_stopped_summary(columns, results)}",
                columns_html([(n, c.pieces, c.status) for n, c in columns.items()]),
                frame,
                frame[["method", "tokens/s"]],
                with_legend(accepted_rows(results), "method"),
                gr.skip(),
                *_timeline_outputs(results),
            )
            return
        _record(
            ctx, uid, lm, results, frame, verdicts, cfg, len(text), median_speeds(results, repeats)
        )
        yield (
            f"{note} Done; the runs are stored in your decoding history.\n\n{rule_note(lm)}",
            columns_html([(n, c.pieces, c.status) for n, c in columns.items()]),
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
    demo.load(note_choices, None, preset, api_visibility="private")
    tab.select(note_choices, None, preset, api_visibility="private")
    preset.input(from_note, preset, prompt, api_name="playground_preset")
    check_hub.click(hub_check, None, hub_status, api_name="hub_status")
    run.click(
        run_methods,
        [model, prompt, methods, max_new, temperature, repeat],
        [status, outputs, table, bars, accepted, history, timeline_of, timeline, last_run],
        api_name="playground_run",
        concurrency_id="model",
    )
    # Stop sets the session's event; the running handler ends the generation and shows
    # "Stopped" with what finished. An unfinished comparison is not stored. No queue
    # limit: Stop must not wait behind the run it stops.
    stop.click(stop_run, None, None, api_visibility="private", concurrency_limit=None)


def _record(
    ctx: AppContext,
    uid: int,
    lm: LoadedModel,
    results: dict[str, GenerationResult],
    frame: pd.DataFrame,
    verdicts: dict[str, Verdict],
    cfg: SamplingConfig,
    prompt_chars: int,
    speeds: dict[str, float],
) -> None:
    """Store each method's run (tokens/s: the median of its repeats); one transaction for
    the whole comparison."""
    rows = frame.set_index("method")

    def work(session) -> None:
        for name, result in results.items():
            speedup = rows.loc[name, "speed-up"]
            record_decode_run(
                session,
                method=name,
                model=lm.name,
                tokens_per_s=speeds[name],
                speedup=None if pd.isna(speedup) else float(speedup),
                mean_accepted=result.mean_accepted,
                acceptance_rate=result.acceptance_rate,
                lossless=verdicts[name].lossless,
                user_id=uid,
                extra={
                    "source": "playground",
                    "tokens": len(result.tokens),
                    "prompt_chars": prompt_chars,
                    "max_new_tokens": cfg.max_new_tokens,
                    "temperature": cfg.temperature,
                    "device": str(lm.device),
                    "dtype": str(lm.dtype),
                    "weight_format": lm.weight_format,
                    "lossless_check": verdicts[name].text,
                },
            )

    ctx.db.write(work)
