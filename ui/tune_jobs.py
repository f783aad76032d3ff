"""The Tune tab's two long jobs, the layer search and the adapter training, as page
handlers that stream their progress.

Both jobs are library functions that report typed progress (`SearchProgress`,
`TrainProgress`) through a callback and poll a stop callback. Each runs in a worker thread
(``ui.streaming.stream_batches``), so the page keeps streaming while the model works, and
Cancel sets the event the job reads between trials, steps or corpus prompts.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator

import gradio as gr
import pandas as pd

from selfspec import LoadedModel, SelfSpecError
from selfspec.adapter_corpus import build_corpus, corpus_prompts, write_one_by_one
from selfspec.adapter_files import discard_adapter, new_adapter_path
from selfspec.drafters.kangaroo import adapter_path
from selfspec.profiles import model_key, new_profile_path, profile_path
from selfspec.search import SearchProgress, SearchSettings, run_search
from selfspec.train_adapter import TrainProgress, TrainSettings, train_adapter
from study.notes import seed_notes
from ui.context import AppContext
from ui.plots import with_legend
from ui.streaming import stream_batches
from ui.tune_files import install_adapter_words, install_profile_words

__all__ = [
    "ALLOW_ENV",
    "heavy_refusal",
    "search_handler",
    "train_handler",
    "training_rows",
    "trial_rows",
]

ALLOW_ENV = "SELFSPEC_ALLOW_TUNING"
STREAM_EVERY_S = 0.25
PLOT_COLUMNS = ["trial", "value", "series"]
CURVE_COLUMNS = ["step", "value", "series"]
# The restricted draft head the shipped adapter uses (docs/kangaroo.md): the app trains
# the same kind, which also makes each step much cheaper than with the full head.
APP_HEAD_TOKENS = 4096


def heavy_refusal(ctx: AppContext) -> str | None:
    """Why this server will not run a search or training, else None.

    A hosted Space shares a couple of vCPUs between all visitors; a job of minutes would
    hold the model's only slot, so the host must opt in explicitly.
    """
    allowed = os.environ.get(ALLOW_ENV, "").strip().lower() in ("1", "true", "yes", "on")
    if ctx.config.hosted and not allowed:
        return (
            "Layer search and adapter training are turned off on this hosted server: they "
            "take minutes of CPU and would block everyone's model. Run them locally "
            f"(`python -m selfspec search`), or set {ALLOW_ENV}=1 if this server is yours."
        )
    return None


def collect(batch: list, progress: type, into: list, result: object) -> object:
    """Sort one batch of a job's events: progress items (of type `progress`) are appended
    to `into`; anything else is the job's result, returned (else `result` unchanged)."""
    for item in batch:
        if isinstance(item, progress):
            into.append(item)
        else:
            result = item
    return result


def trial_rows(trials: list[SearchProgress]) -> pd.DataFrame:
    """The plot's long-format frame: score and best-so-far per trial."""
    rows = [
        {"trial": p.trial, "value": value, "series": series}
        for p in trials
        for series, value in (("score", p.score), ("best so far", p.best))
    ]
    return pd.DataFrame(rows, columns=PLOT_COLUMNS)


def training_rows(reports: list[TrainProgress], what: str) -> pd.DataFrame:
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


def _time_left(elapsed: float, done: int, left: int | None) -> str:
    """The suffix " (about N s left)", from the pace so far once there is one."""
    if not done or not left or left < 0:
        return ""
    return f" (about {elapsed / done * left:.0f} s left)"


def search_handler(ctx: AppContext, cancel: threading.Event) -> Callable:
    """The Run search button's handler: status text and the score plot, trial by trial."""

    def plot(trials: list[SearchProgress]) -> dict:
        return with_legend(trial_rows(trials), "series")

    def search(
        n_trials: float, objective_name: str, n_prompts: float, n_tokens: float
    ) -> Iterator[tuple[str, dict]]:
        refusal = heavy_refusal(ctx)
        if refusal:
            gr.Warning(refusal)
            yield refusal, plot([])
            return
        try:
            settings = SearchSettings(
                trials=int(n_trials or 0),
                objective=objective_name,
                prompts=int(n_prompts or 0),
                tokens=int(n_tokens or 0),
            )
        except SelfSpecError as exc:
            yield str(exc), plot([])
            return
        lm = ctx.models.default()
        # A new file per search; the optuna study stays the model's, so trials resume.
        candidate = new_profile_path(lm)
        storage = profile_path(lm).with_suffix(".optuna.db")
        cancel.clear()
        trials: list[SearchProgress] = []
        result = None
        yield f"Calibrating on **{lm.name}**…", plot([])
        try:
            job = lambda emit, stop: run_search(  # noqa: E731 - the job's one call
                lm, settings, storage=storage, out=candidate, progress=emit, should_stop=stop
            )
            started = time.perf_counter()
            for batch in stream_batches(job, STREAM_EVERY_S, cancel):
                result = collect(batch, SearchProgress, trials, result)
                if batch:
                    left = settings.trials - trials[-1].trial if trials else None
                    yield (
                        (str(trials[-1]) if trials else "Calibrating…")
                        + _time_left(time.perf_counter() - started, len(trials), left),
                        plot(trials),
                    )
        except SelfSpecError as exc:
            yield f"The search failed: {exc}", plot(trials)
            return
        last = str(trials[-1]) if trials else "No new trials (the search had already run them)."
        stopped = " Cancelled early." if cancel.is_set() else ""
        yield (
            f"{last}{stopped}\n\nSaved `{candidate.name}` ({result.trials} trials in total): "
            f"{result.note}. {install_profile_words(ctx, candidate)}",
            plot(trials),
        )

    return search


class _Cancelled(Exception):
    """Cancel pressed while the training corpus was being written."""


def _cancellable_writer(cancel: threading.Event) -> Callable:
    """The corpus writer of `build_corpus`, one prompt per call, that gives up between
    prompts once ``cancel`` is set (writing the corpus is the longest stage)."""

    def write(lm: LoadedModel, prompts: list[str], max_new_tokens: int) -> list[list[int]]:
        if cancel.is_set():
            raise _Cancelled
        return write_one_by_one(lm, prompts, max_new_tokens)

    return write


def train_handler(ctx: AppContext, cancel: threading.Event) -> Callable:
    """The Train adapter button's handler: status text and the two curves, step by step."""

    def view(message: str, reports: list[TrainProgress]) -> tuple:
        return (
            message,
            with_legend(training_rows(reports, "loss"), "series"),
            with_legend(training_rows(reports, "acceptance"), "series"),
        )

    def train(layer: float, n_steps: float, loss_name: str) -> Iterator[tuple]:
        refusal = heavy_refusal(ctx)
        if refusal:
            gr.Warning(refusal)
            yield view(refusal, [])
            return
        lm = ctx.models.default()
        candidate = new_adapter_path(lm)
        settings = TrainSettings(
            exit_layer=int(layer or 0),
            steps=int(n_steps or 0),
            loss=loss_name,
            head_tokens=APP_HEAD_TOKENS,
            notes=tuple(note.body for note in seed_notes()),
        )
        try:
            settings.check(lm.engine.cfg.n_layers)
        except SelfSpecError as exc:
            yield view(str(exc), [])
            return
        cancel.clear()
        start = time.perf_counter()
        first_step: float | None = None  # when training began, after the corpus

        def job(emit: Callable, stop: Callable[[], bool]) -> object:
            # The corpus is written here, not inside train_adapter, so that Cancel is
            # heard between prompts; its cache keeps one name, so later runs reuse it.
            prompts = corpus_prompts(
                settings.notes, None, settings.max_prompt_chars, settings.builtin
            )
            cache = adapter_path(lm).with_name(f"{model_key(lm)}.kangaroo.corpus.json")
            sequences = build_corpus(lm, prompts, settings.max_new_tokens, cache,
                                     writer=_cancellable_writer(cancel))  # fmt: skip
            return train_adapter(lm, settings, candidate, progress=False, sequences=sequences,
                                 should_stop=stop, report=emit)  # fmt: skip

        adapter, reports = None, []
        try:
            for batch in stream_batches(job, STREAM_EVERY_S, cancel):
                adapter = collect(batch, TrainProgress, reports, adapter)
                if reports and first_step is None:
                    first_step = time.perf_counter()
                done = (
                    f"step {reports[-1].step} of {settings.steps}, loss {reports[-1].loss:.3f}"
                    + _time_left(
                        time.perf_counter() - first_step,
                        len(reports) - 1,
                        settings.steps - reports[-1].step,
                    )  # fmt: skip
                    if reports
                    else "writing the training corpus with the full model"
                )
                yield view(
                    f"Training on **{lm.name}**: {done}… {time.perf_counter() - start:.0f} s.",
                    reports,
                )
        except _Cancelled:
            yield view("Cancelled while writing the corpus; the active adapter is unchanged.", [])
            return
        except SelfSpecError as exc:
            yield view(f"Training failed: {exc}", reports)
            return
        s = adapter.settings
        if cancel.is_set():
            discard_adapter(candidate)
            yield view(
                f"Cancelled after {s.steps} of {settings.steps} steps; the partly trained "
                "adapter was discarded and the active one is unchanged.",
                reports,
            )
            return
        yield view(
            f"Saved `{candidate.name}` after {s.steps} steps ({s.seconds} s): held-out {s.loss} "
            f"loss {s.held_out_loss:.4f}, expected acceptance {s.expected_acceptance:.3f}. "
            + install_adapter_words(ctx, candidate),
            reports,
        )

    return train
