"""Tune tab: run the layer search and the Kangaroo adapter training from the page, with
live progress and cancel, and choose which skip profile and adapter are active.

Tuning never makes things worse: every search or training writes a new, time-stamped file,
which becomes active only if it measures better than the active one (profiles: a higher
score on the same objective; adapters: a higher held-out expected acceptance). The rest
stay listed with their figures for the user to choose, the shipped files among them, and
a replaced file is kept under a versioned name.

Both jobs are library functions that report through callbacks and poll a stop callback.
Each runs in a worker thread (`ui.streaming.stream_batches`), so the page keeps streaming
while the model works, and Cancel sets the event the job reads between trials, steps or
corpus prompts. The handlers share the Playground's concurrency slot: the model is one
CPU-bound resource, and a search next to a generation would spoil both.
"""

from __future__ import annotations

import os
import re
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import gradio as gr
import pandas as pd

from selfspec import LoadedModel, SelfSpecError
from selfspec.profiles import SkipProfile, model_key, user_profile_dir
from study.notes import seed_notes
from ui.context import AppContext
from ui.plots import with_legend
from ui.streaming import stream_batches

__all__ = [
    "ALLOW_ENV",
    "build",
    "heavy_refusal",
    "adapter_choices",
    "install_adapter_if_better",
    "install_if_better",
    "make_active",
    "make_adapter_active",
    "profile_choices",
    "profile_status",
    "trial_rows",
    "training_rows",
]

ALLOW_ENV = "SELFSPEC_ALLOW_TUNING"
STREAM_EVERY_S = 0.25
SHIPPED_CHOICE = "shipped"  # the list entry that restores the package's own file
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


def _stamp() -> str:
    """A file-name-safe UTC time, so every search or training writes a new file."""
    return datetime.now(UTC).strftime("%Y%m%d-%H%M%S")


def _profile_label(path: Path, lm: LoadedModel) -> str:
    from selfspec.profiles import load_profile

    try:
        profile = load_profile(lm, path)
    except SelfSpecError:
        return f"{path.name} (not for this model)"
    score = "not scored" if profile.score is None else f"score {profile.score:.3f}"
    return f"{path.name}: {score} ({profile.objective}, {profile.trials} trials)"


def profile_choices(ctx: AppContext) -> list[tuple[str, str]]:
    """The profiles a user can make active, each labelled with its score: the shipped one
    (always listed where the package has one) and every file in the profiles folder."""
    from selfspec.profiles import profile_path

    lm = ctx.models.default()
    choices = []
    shipped = profile_path(lm, user=False)
    if shipped.is_file():
        choices.append((f"shipped: {_profile_label(shipped, lm)}", SHIPPED_CHOICE))
    folder = user_profile_dir()
    if folder.is_dir():
        active = profile_path(lm).name
        for path in sorted(folder.glob("*.skip.json")):
            mark = " [active]" if path.name == active else ""
            choices.append((_profile_label(path, lm) + mark, path.name))
    return choices


def _backup(active: Path, suffix: str) -> Path | None:
    """Keep the user's active file under a versioned name before it is replaced."""
    if not active.is_file():
        return None
    kept = active.with_name(active.name.removesuffix(suffix) + f".{_stamp()}.replaced{suffix}")
    shutil.copyfile(active, kept)
    return kept


def make_active(ctx: AppContext, name: str | None) -> str:
    """Make a listed profile the one `skip` uses: copy it to the model's profile path, or,
    for the shipped one, remove the user's file so that `load_profile` falls back to it.

    The file must be made for this model (`load_profile` checks it). The profile it replaces
    is kept under a versioned name in the same list, so the switch can be undone.
    """
    from selfspec.profiles import load_profile, profile_path

    if not name:
        return "Pick a profile first."
    lm = ctx.models.default()
    active = profile_path(lm)
    if name == SHIPPED_CHOICE:
        if not profile_path(lm, user=False).is_file():
            return f"No profile ships with the package for {lm.name}."
        kept = _backup(active, ".skip.json")
        active.unlink(missing_ok=True)
        return (
            "The shipped profile is active again"
            + (f"; yours is kept as `{kept.name}`" if kept else "")
            + f".\n\n{profile_status(ctx)}"
        )
    chosen = user_profile_dir() / Path(name).name
    try:
        load_profile(lm, chosen)
    except SelfSpecError as exc:
        return str(exc)
    if chosen.resolve() == active.resolve():
        return f"`{name}` is already the active profile.\n\n{profile_status(ctx)}"
    data = chosen.read_bytes()
    _backup(active, ".skip.json")
    active.write_bytes(data)
    return f"Copied `{name}` to `{active}`.\n\n{profile_status(ctx)}"


def _score(profile: SkipProfile | None) -> str:
    return "none" if profile is None or profile.score is None else f"{profile.score:.3f}"


def install_if_better(ctx: AppContext, candidate: Path) -> str:
    """Make a searched profile active only if it scores higher than the active one on the
    same objective; otherwise leave it listed for the user to choose. Returns the verdict."""
    from selfspec.profiles import load_profile, profile_path

    lm = ctx.models.default()
    new = load_profile(lm, candidate)
    try:
        old = load_profile(lm)
    except SelfSpecError:
        old = None
    comparable = (
        old is not None
        and old.objective == new.objective
        and old.score is not None
        and new.score is not None
    )
    if old is None or (comparable and new.score > old.score):
        _backup(profile_path(lm), ".skip.json")
        profile_path(lm).write_bytes(candidate.read_bytes())
        return f"It is now active (score {_score(new)} against {_score(old)} for the one before)."
    why = (
        f"score {_score(new)} is not above the active profile's {_score(old)}"
        if comparable
        else f"its objective ({new.objective}) differs from the active profile's "
        f"({old.objective}), so the scores do not compare"
    )
    return f"The active profile stays ({why}); choose it under *Profiles* to use it anyway."


def adapter_choices(ctx: AppContext) -> list[tuple[str, str]]:
    """The adapters a user can make active: the shipped one and every file in the folder."""
    from selfspec.drafters.kangaroo import adapter_path

    lm = ctx.models.default()
    choices = []
    shipped = adapter_path(lm, user=False)
    if shipped.is_file():
        choices.append((f"shipped: {_adapter_label(shipped, lm)}", SHIPPED_CHOICE))
    active = adapter_path(lm)
    if active.parent.is_dir():
        for path in sorted(active.parent.glob("*.kangaroo*.safetensors")):
            mark = " [active]" if path.name == active.name else ""
            choices.append((_adapter_label(path, lm) + mark, path.name))
    return choices


def _acceptance(path: Path, lm: LoadedModel) -> float | None:
    """The held-out expected acceptance recorded with an adapter, None if unreadable."""
    from selfspec.adapter import load_adapter

    try:
        return load_adapter(lm, path).settings.expected_acceptance
    except SelfSpecError:
        return None


def _adapter_label(path: Path, lm: LoadedModel) -> str:
    acceptance = _acceptance(path, lm)
    if acceptance is None:
        return f"{path.name} (not for this model)"
    return f"{path.name}: expected acceptance {acceptance:.3f}"


def _copy_adapter(source: Path, target: Path) -> None:
    from selfspec.adapter import settings_path

    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    shutil.copyfile(settings_path(source), settings_path(target))


def make_adapter_active(ctx: AppContext, name: str | None) -> str:
    """Make a listed adapter the one `kangaroo` loads (the shipped one: remove the user's)."""
    from selfspec.adapter import settings_path
    from selfspec.drafters.kangaroo import adapter_path

    if not name:
        return "Pick an adapter first."
    lm = ctx.models.default()
    active = adapter_path(lm)
    if name != SHIPPED_CHOICE:
        chosen = active.with_name(Path(name).name)
        if _acceptance(chosen, lm) is None:
            return f"`{name}` is not a Kangaroo adapter for {lm.name}."
        if chosen.resolve() == active.resolve():
            return f"`{name}` is already the active adapter."
    elif not adapter_path(lm, user=False).is_file():
        return f"No adapter ships with the package for {lm.name}."
    if active.is_file():
        _copy_adapter(
            active, active.with_name(f"{model_key(lm)}.kangaroo.{_stamp()}.replaced.safetensors")
        )
    if name == SHIPPED_CHOICE:
        active.unlink(missing_ok=True)
        settings_path(active).unlink(missing_ok=True)
        return "The shipped adapter is active again; yours is kept in the list."
    _copy_adapter(chosen, active)
    return f"Copied `{name}` to `{active}`; the `kangaroo` method loads it from there."


def install_adapter_if_better(ctx: AppContext, candidate: Path) -> str:
    """Make a trained adapter active only if its held-out expected acceptance beats the
    active one's (the user's, else the shipped); otherwise leave it listed."""
    from selfspec.drafters.kangaroo import adapter_path

    lm = ctx.models.default()
    active = next(
        (p for p in (adapter_path(lm), adapter_path(lm, user=False)) if p.is_file()), None
    )
    old = None if active is None else _acceptance(active, lm)
    new = _acceptance(candidate, lm)
    if new is not None and (old is None or new > old):
        make_adapter_active(ctx, candidate.name)
        was = "none" if old is None else f"{old:.3f}"
        return f"It is now active (expected acceptance {new:.3f} against {was} before)."
    return (
        f"The active adapter stays (expected acceptance {new or 0:.3f} is not above its "
        f"{old:.3f}); choose it under *Adapters* to use it anyway."
    )


def _time_left(elapsed: float, done: int, left: int | None) -> str:
    """The suffix " (about N s left)", from the pace so far once there is one."""
    if not done or not left or left < 0:
        return ""
    return f" (about {elapsed / done * left:.0f} s left)"


def _cancellable_writer(cancel: threading.Event) -> Callable:
    """The corpus writer of `build_corpus`, one prompt per call, that gives up between
    prompts once ``cancel`` is set (writing the corpus is the longest stage)."""
    from selfspec.adapter_corpus import write_one_by_one

    def write(lm: LoadedModel, prompts: list[str], max_new_tokens: int) -> list[list[int]]:
        if cancel.is_set():
            raise _Cancelled
        return write_one_by_one(lm, prompts, max_new_tokens)

    return write


class _Cancelled(Exception):
    """Cancel pressed while the training corpus was being written."""


def build(ctx: AppContext, tab: gr.Tab) -> None:
    """Lay out the Tune tab inside the current Blocks context; opening ``tab`` refreshes
    the status and the lists of profiles and adapters."""
    from selfspec.adapter_corpus import build_corpus, corpus_prompts
    from selfspec.adapter_objective import LOSSES
    from selfspec.drafters.kangaroo import adapter_path
    from selfspec.profiles import model_key, profile_path
    from selfspec.search import OBJECTIVES, SearchSettings, run_search
    from selfspec.train_adapter import TrainProgress, TrainSettings, train_adapter

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

    def search(
        n_trials: float, objective_name: str, n_prompts: float, n_tokens: float
    ) -> Iterator[tuple[str, dict]]:
        refusal = heavy_refusal(ctx)
        if refusal:
            gr.Warning(refusal)
            yield refusal, with_legend(trial_rows([]), "series")
            return
        try:
            settings = SearchSettings(
                trials=int(n_trials or 0),
                objective=objective_name,
                prompts=int(n_prompts or 0),
                tokens=int(n_tokens or 0),
            )
        except SelfSpecError as exc:
            yield str(exc), with_legend(trial_rows([]), "series")
            return
        lm = ctx.models.default()
        # A new file per search; the optuna study stays the model's, so trials resume.
        candidate = user_profile_dir() / f"{model_key(lm)}.{_stamp()}.skip.json"
        storage = profile_path(lm).with_suffix(".optuna.db")
        cancel.clear()
        lines: list[str] = []
        result = None
        yield f"Calibrating on **{lm.name}**…", with_legend(trial_rows([]), "series")
        try:
            job = lambda emit, stop: run_search(  # noqa: E731 - the job's one call
                lm, settings, storage=storage, out=candidate, progress=emit, should_stop=stop
            )
            started = time.perf_counter()
            for batch in stream_batches(job, STREAM_EVERY_S, cancel):
                result = collect(batch, str, lines, result)
                if batch:
                    match = TRIAL_LINE.search(lines[-1]) if lines else None
                    left = settings.trials - int(match[1]) if match else None
                    yield (
                        (lines[-1] if lines else "Calibrating…")
                        + _time_left(time.perf_counter() - started, len(lines), left),
                        with_legend(trial_rows(lines), "series"),
                    )
        except SelfSpecError as exc:
            yield f"The search failed: {exc}", with_legend(trial_rows(lines), "series")
            return
        stopped = " Cancelled early." if cancel.is_set() else ""
        verdict = install_if_better(ctx, candidate)
        yield (
            f"{lines[-1] if lines else 'No new trials (the search had already run them).'}"
            f"{stopped}\n\nSaved `{candidate.name}` ({result.trials} trials in total): "
            f"{result.note}. {verdict}",
            with_legend(trial_rows(lines), "series"),
        )

    def train(layer: float, n_steps: float, loss_name: str) -> Iterator[tuple]:
        def view(message: str, reports: list) -> tuple:
            return (
                message,
                with_legend(training_rows(reports, "loss"), "series"),
                with_legend(training_rows(reports, "acceptance"), "series"),
            )

        refusal = heavy_refusal(ctx)
        if refusal:
            gr.Warning(refusal)
            yield view(refusal, [])
            return
        lm = ctx.models.default()
        active = adapter_path(lm)
        candidate = active.with_name(f"{model_key(lm)}.kangaroo.{_stamp()}.safetensors")
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
            cache = active.with_name(f"{model_key(lm)}.kangaroo.corpus.json")
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
            _discard_adapter(candidate)
            yield view(
                f"Cancelled after {s.steps} of {settings.steps} steps; the partly trained "
                "adapter was discarded and the active one is unchanged.",
                reports,
            )
            return
        yield view(
            f"Saved `{candidate.name}` after {s.steps} steps ({s.seconds} s): held-out {s.loss} "
            f"loss {s.held_out_loss:.4f}, expected acceptance {s.expected_acceptance:.3f}. "
            + install_adapter_if_better(ctx, candidate),
            reports,
        )

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
        concurrency_id="model",
    ).then(lists, None, [files, adapters])
    train_btn.click(
        train,
        [exit_layer, steps, loss],
        [train_log, loss_plot, acceptance_plot],
        api_name="tune_train",
        concurrency_id="model",
    ).then(lists, None, [files, adapters])
    search_cancel.click(stop, None, status, api_name="tune_cancel", concurrency_limit=None)
    train_cancel.click(stop, None, status, api_visibility="private", concurrency_limit=None)
    reload_files.click(lists, None, [files, adapters], api_visibility="private")
    use.click(lambda name: make_active(ctx, name), files, use_status, api_name="tune_use_profile"
              ).then(lists, None, [files, adapters])  # fmt: skip
    use_adapter.click(lambda name: make_adapter_active(ctx, name), adapters, use_status,
                      api_name="tune_use_adapter").then(lists, None, [files, adapters])  # fmt: skip


def _discard_adapter(path: Path) -> None:
    """Remove a cancelled training's files (weights, settings, checkpoint)."""
    from selfspec.adapter import settings_path

    for file in (path, settings_path(path), path.with_name(path.stem + ".ckpt.pt")):
        file.unlink(missing_ok=True)
