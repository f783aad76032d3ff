"""Tune tab: run the layer search and the Kangaroo adapter training from the page, with
live progress and cancel, and choose which skip profile the `skip` method uses.

Both jobs are library functions that report through callbacks and poll a stop callback.
Each runs in a worker thread (the Playground's `stream_batches` drives it), so the page keeps
streaming while the model works, and Cancel only sets an event the job reads between
trials or steps. The handlers share the Playground's concurrency slot: the model is one
CPU-bound resource, and a search next to a generation would spoil both.
"""

from __future__ import annotations

import os
import queue
import re
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import gradio as gr
import pandas as pd

from selfspec import SelfSpecError
from selfspec.profiles import user_profile_dir
from ui.context import AppContext
from ui.playground import stream_batches

__all__ = [
    "ALLOW_ENV",
    "build",
    "heavy_refusal",
    "job_events",
    "profile_status",
    "trial_rows",
    "training_rows",
]

ALLOW_ENV = "SELFSPEC_ALLOW_TUNING"
STREAM_EVERY_S = 0.25
TRIAL_LINE = re.compile(r"trial (\d+): score (-?[\d.]+) \(best (-?[\d.]+)")
PLOT_COLUMNS = ["trial", "value", "series"]
CURVE_COLUMNS = ["step", "value", "series"]
# The restricted draft head the shipped adapter uses (docs/kangaroo.md): the app trains
# the same kind, which also makes each step ~10x cheaper than with the full head.
APP_HEAD_TOKENS = 4096


def heavy_refusal(ctx: AppContext) -> str | None:
    """Why this server will not run a search or training, else None.

    A hosted Space shares a couple of vCPUs between all visitors; a job of minutes would
    hold the model's only slot, so the host must opt in explicitly.
    """
    if ctx.config.hosted and os.environ.get(ALLOW_ENV, "").strip().lower() not in (
        "1",
        "true",
        "yes",
        "on",
    ):
        return (
            "Layer search and adapter training are turned off on this hosted server: they "
            "take minutes of CPU and would block everyone's model. Run them locally "
            f"(`python -m selfspec search`), or set {ALLOW_ENV}=1 if this server is yours."
        )
    return None


_DONE = object()


def job_events(
    job: Callable[[Callable[[str], None], Callable[[], bool]], object], cancel: threading.Event
) -> Iterator[object]:
    """Run ``job(progress, should_stop)`` in a thread; yield its progress lines, then its
    result. The library jobs report through callbacks, while `stream_batches` wants a generator;
    closing this generator (the page went away) sets ``cancel`` so the job stops too."""
    out: queue.Queue = queue.Queue()

    def work() -> None:
        try:
            out.put(job(out.put, cancel.is_set))
        except Exception as exc:  # noqa: BLE001 - re-raised in the reading thread
            out.put(exc)
        finally:
            out.put(_DONE)

    threading.Thread(target=work, daemon=True, name="tune-job").start()
    finished = False
    try:
        while (item := out.get()) is not _DONE:
            if isinstance(item, Exception):
                raise item
            yield item
        finished = True
    finally:
        if not finished:
            cancel.set()


def collect(batch: list, progress: type, into: list, result: object) -> object:
    """Sort one batch of a job's events: progress items (of type `progress`) are appended
    to `into`; anything else is the job's result, returned (else `result` unchanged)."""
    for item in batch:
        if isinstance(item, progress):
            into.append(item)
        else:
            result = item
    return result


def trial_rows(lines: list[str]) -> pd.DataFrame:
    """The plot's long-format frame: score and best-so-far per trial, from progress lines."""
    rows = []
    for line in lines:
        match = TRIAL_LINE.search(line)
        if match:
            trial, score, best = int(match[1]), float(match[2]), float(match[3])
            rows += [
                {"trial": trial, "value": score, "series": "score"},
                {"trial": trial, "value": best, "series": "best so far"},
            ]
    return pd.DataFrame(rows, columns=PLOT_COLUMNS)


def training_rows(reports: list, what: str) -> pd.DataFrame:
    """Long-format curves from the trainer's reports: `loss` (training and held-out) or
    `acceptance` (held-out expected acceptance)."""
    series = (
        [("training loss", "loss"), ("held-out loss", "held_out_loss")]
        if what == "loss"
        else [("expected acceptance", "expected_acceptance")]
    )
    rows = [
        {"step": r.step, "value": getattr(r, attr), "series": label}
        for r in reports
        for label, attr in series
    ]
    return pd.DataFrame(rows, columns=CURVE_COLUMNS)


def profile_status(ctx: AppContext) -> str:
    """Markdown: the active skip profile of the default model, or why there is none."""
    from selfspec.profiles import load_profile

    lm = ctx.models.default()
    try:
        profile = load_profile(lm)
    except SelfSpecError as exc:
        return f"- **skip profile for {lm.name}**: none. {exc}"
    verdict = {
        True: "beats plain decoding",
        False: "does not beat plain decoding",
        None: "not measured",
    }
    return (
        f"- **skip profile for {lm.name}**: attention sub-layers skipped {profile.attn or 'none'}, "
        f"MLP sub-layers skipped {profile.mlp or 'none'} of {profile.n_layers} layers; found by "
        f"{profile.objective} ({profile.trials} trials), {verdict[profile.beats_plain]}."
        + (f" {profile.note}" if profile.note else "")
    )


def profile_files() -> list[str]:
    """Skip profile files in the profiles folder, by name."""
    folder = user_profile_dir()
    return sorted(p.name for p in folder.glob("*.skip.json")) if folder.is_dir() else []


def make_active(ctx: AppContext, name: str | None) -> str:
    """Copy a profile file to the default model's profile path, which `load_profile` reads.

    The file must be made for this model (`load_profile` checks it). The profile it replaces
    is kept as `<model>.previous.skip.json`, so the switch can be undone from the same list.
    """
    from selfspec.profiles import load_profile, model_key, profile_path

    if not name:
        return "Pick a profile file first."
    lm = ctx.models.default()
    chosen = user_profile_dir() / Path(name).name
    try:
        load_profile(lm, chosen)
    except SelfSpecError as exc:
        return str(exc)
    active = profile_path(lm)
    if chosen.resolve() == active.resolve():
        return f"`{name}` is already the active profile.\n\n{profile_status(ctx)}"
    data = chosen.read_bytes()  # before the backup, which may be the chosen file itself
    if active.is_file():
        shutil.copyfile(active, active.with_name(f"{model_key(lm)}.previous.skip.json"))
    active.write_bytes(data)
    return f"Copied `{name}` to `{active}`.\n\n{profile_status(ctx)}"


def build(ctx: AppContext) -> None:
    """Lay out the Tune tab inside the current Blocks context."""
    from selfspec.drafters.kangaroo import adapter_path
    from selfspec.profiles import profile_path
    from selfspec.search import OBJECTIVES, SearchSettings, run_search
    from selfspec.train_adapter import LOSSES, TrainProgress, TrainSettings, train_adapter

    cancel = threading.Event()  # one model slot, so at most one job to cancel
    gr.Markdown(
        "Tuning finds the sub-layers the `skip` method leaves out (Bayesian search) and "
        "trains the Kangaroo adapter, both for the default model. They take the model's "
        "slot: playground runs wait until they finish. Cancel stops after the current trial "
        "or step and keeps what was found."
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
        files = gr.Dropdown(profile_files(), label="Profile files", allow_custom_value=False)
        with gr.Row():
            reload_files = gr.Button("Reload list", size="sm")
            use = gr.Button("Make active", size="sm", elem_id="tune-use")
        use_status = gr.Markdown()

    def search(
        n_trials: float, objective_name: str, n_prompts: float, n_tokens: float
    ) -> Iterator[tuple[str, pd.DataFrame]]:
        refusal = heavy_refusal(ctx)
        if refusal:
            gr.Warning(refusal)
            yield refusal, trial_rows([])
            return
        try:
            settings = SearchSettings(
                trials=int(n_trials or 0),
                objective=objective_name,
                prompts=int(n_prompts or 0),
                tokens=int(n_tokens or 0),
            )
        except SelfSpecError as exc:
            yield str(exc), trial_rows([])
            return
        lm = ctx.models.default()
        cancel.clear()
        lines: list[str] = []
        result = None
        yield f"Calibrating on **{lm.name}**…", trial_rows([])
        try:
            events = job_events(
                lambda p, s: run_search(lm, settings, progress=p, should_stop=s), cancel
            )
            for batch in stream_batches(events, STREAM_EVERY_S):
                result = collect(batch, str, lines, result)
                if batch:
                    yield (lines[-1] if lines else "Calibrating…"), trial_rows(lines)
        except SelfSpecError as exc:
            yield f"The search failed: {exc}", trial_rows(lines)
            return
        stopped = " Cancelled early." if cancel.is_set() else ""
        yield (
            f"{lines[-1] if lines else 'No new trials (the search had already run them).'}"
            f"{stopped}\n\nSaved `{profile_path(lm)}` ({result.trials} trials in total): "
            f"{result.note}.",
            trial_rows(lines),
        )

    def train(layer: float, n_steps: float, loss_name: str) -> Iterator[tuple]:
        def view(message: str, reports: list) -> tuple:
            return message, training_rows(reports, "loss"), training_rows(reports, "acceptance")

        refusal = heavy_refusal(ctx)
        if refusal:
            gr.Warning(refusal)
            yield view(refusal, [])
            return
        lm = ctx.models.default()
        out = adapter_path(lm)
        settings = TrainSettings(
            exit_layer=int(layer or 0),
            steps=int(n_steps or 0),
            loss=loss_name,
            head_tokens=APP_HEAD_TOKENS,
        )
        try:
            settings.check(lm.engine.cfg.n_layers)
        except SelfSpecError as exc:
            yield view(str(exc), [])
            return
        cancel.clear()
        start = time.perf_counter()
        adapter, reports = None, []
        try:
            events = job_events(
                lambda p, s: train_adapter(
                    lm, settings, out, progress=False, should_stop=s, report=p
                ),
                cancel,
            )
            for batch in stream_batches(events, STREAM_EVERY_S):
                adapter = collect(batch, TrainProgress, reports, adapter)
                done = (
                    f"step {reports[-1].step} of {settings.steps}, loss {reports[-1].loss:.3f}"
                    if reports
                    else "writing the training corpus with the full model"
                )
                yield view(
                    f"Training on **{lm.name}**: {done}… {time.perf_counter() - start:.0f} s.",
                    reports,
                )
        except SelfSpecError as exc:
            yield view(f"Training failed: {exc}", reports)
            return
        s = adapter.settings
        yield view(
            f"Saved `{out}` after {s.steps} steps ({s.seconds} s)"
            + (" — cancelled early" if s.steps < settings.steps else "")
            + f": held-out {s.loss} loss {s.held_out_loss:.4f}, expected acceptance "
            f"{s.expected_acceptance:.3f}. The `kangaroo` method loads it from there.",
            reports,
        )

    def stop() -> str:
        cancel.set()
        return "Cancelling after the current trial or step…"

    refresh.click(lambda: profile_status(ctx), None, status, api_name="tune_status")
    search_btn.click(
        search,
        [trials, objective, prompts, tokens],
        [search_log, search_plot],
        api_name="tune_search",
        concurrency_id="model",
    )
    train_btn.click(
        train,
        [exit_layer, steps, loss],
        [train_log, loss_plot, acceptance_plot],
        api_name="tune_train",
        concurrency_id="model",
    )
    search_cancel.click(stop, None, status, api_name="tune_cancel", concurrency_limit=None)
    train_cancel.click(stop, None, status, api_visibility="private", concurrency_limit=None)
    reload_files.click(
        lambda: gr.update(choices=profile_files()), None, files, api_visibility="private"
    )
    use.click(lambda name: make_active(ctx, name), files, use_status, api_name="tune_use_profile")
