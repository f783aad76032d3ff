"""One Playground comparison: every chosen method on one prompt, one after another.

Methods run one after another, not at once: on a CPU they would compete for the same
cores and every tokens/s figure would be wrong. Each runs in a worker thread that the page
only reads from (``ui.streaming``), so the time Gradio spends sending updates is not in
the clock. Vanilla always runs first because the speed-up and the lossless check are
measured against it in the same run.
"""

from __future__ import annotations

import statistics
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

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
from selfspec.compare import Verdict, compare, rule_for, speedup
from ui.context import AppContext
from ui.playground_rows import BASELINE, median_speeds, verdict_text
from ui.streaming import events_job, stream_batches

__all__ = ["Column", "Comparison", "Warmups", "ordered"]

STREAM_EVERY_S = 0.15  # how often the page re-renders the streamed output


@dataclass
class Column:
    """One method's streamed output and its status line."""

    pieces: list[Piece] = field(default_factory=list)
    status: str = "waiting"


class Warmups:
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


def ordered(methods: list[str]) -> list[str]:
    """Vanilla first, then the chosen methods the registry knows."""
    chosen = [m for m in methods if m in METHODS and m != BASELINE]
    return [BASELINE, *chosen]


@dataclass
class Comparison:
    """The state of one comparison as it runs: what streamed, what finished, each
    method's tokens/s over its repeats, and its verdict (None for vanilla itself)."""

    lm: LoadedModel
    prompt: str
    cfg: SamplingConfig
    methods: list[str]
    columns: dict[str, Column] = field(init=False)
    results: dict[str, GenerationResult] = field(default_factory=dict)
    repeats: dict[str, list[float]] = field(default_factory=dict)
    verdicts: dict[str, Verdict | None] = field(default_factory=dict)
    failed: str | None = None  # why vanilla failed: nothing can be compared then

    def __post_init__(self) -> None:
        self.columns = {name: Column() for name in self.methods}

    def run(self, runs: int, stop: threading.Event, warmups: Warmups) -> Iterator[str | None]:
        """Run every method (``runs`` timed runs each); yield after every change, with a
        warning when a method failed. Ends early when ``stop`` is set, or when vanilla
        failed (`failed` says why)."""
        for name in self.methods:
            if stop.is_set():
                return
            column = self.columns[name]
            column.status = "warming up…"
            yield None
            try:
                warmups.ensure(self.lm, name)
                if stop.is_set():
                    return
                column.status = "generating…"
                yield from self._first_run(name, stop)
            except SelfSpecError as exc:
                column.status = f"failed: {exc}"
                if name == BASELINE:
                    self.failed = str(exc)
                yield f"{name}: {exc}"
                if name == BASELINE:
                    return
                continue
            if name not in self.results:  # stopped during this method
                return
            self.verdicts[name] = self._verdict(name)
            yield from self._repeats(name, runs, stop)

    def _first_run(self, name: str, stop: threading.Event) -> Iterator[None]:
        for batch in stream_batches(events_job(self._events(name)), STREAM_EVERY_S, stop):
            for event in batch:
                if isinstance(event, GenerationResult):
                    self.results[name] = event
                else:
                    self.columns[name].pieces.append(event)
            yield None

    def _repeats(self, name: str, runs: int, stop: threading.Event) -> Iterator[None]:
        """The further runs are timed, not shown; the status gives their median."""
        column, speeds = self.columns[name], [self.results[name].tokens_per_s]
        self.repeats[name] = speeds
        for run_no in range(2, runs + 1):
            if stop.is_set():
                break
            column.status = f"run {run_no} of {runs}…"
            yield None
            for batch in stream_batches(events_job(self._events(name)), STREAM_EVERY_S, stop):
                speeds += [e.tokens_per_s for e in batch if isinstance(e, GenerationResult)]
        column.status = f"{len(self.results[name].tokens)} tokens, {speeds[-1]:.1f} tokens/s"
        if len(speeds) > 1:
            column.status += f" (median of {len(speeds)}: {statistics.median(speeds):.1f})"
        yield None

    def _events(self, name: str) -> Iterator[object]:
        info = get_method(name)
        return generate(self.lm, self.prompt, info.run, self.cfg, name=name, **info.options)

    def _verdict(self, name: str) -> Verdict | None:
        """The benchmark's check of this output against vanilla's (None: vanilla itself)."""
        if name == BASELINE:
            return None
        rule = rule_for(get_method(name), self.lm.dtype) if self.cfg.greedy else None
        ids = self.lm.encode(self.prompt)
        return compare(self.lm, ids, self.results[name], self.results[BASELINE], rule)

    def stopped_summary(self) -> str:
        """What a stopped comparison got done, for the status line; marks unfinished
        columns."""
        for name, column in self.columns.items():
            if name in self.results:
                continue
            column.status = (
                f"stopped after {len(column.pieces)} pieces"
                if column.pieces
                else "not run (stopped)"
            )
        done = ", ".join(self.results) or "none"
        return f"**Stopped.** Finished: {done}. A stopped comparison is not stored."

    def record(self, ctx: AppContext, uid: int, prompt_chars: int) -> None:
        """Store each method's run (tokens/s and the speed-up: medians of its repeats); one
        transaction for the whole comparison."""
        speeds = median_speeds(self.results, self.repeats)
        lm, cfg = self.lm, self.cfg

        def work(session) -> None:
            for name, result in self.results.items():
                verdict = self.verdicts[name]
                record_decode_run(
                    session,
                    method=name,
                    model=lm.name,
                    tokens_per_s=speeds[name],
                    speedup=speedup(speeds[name], speeds[BASELINE]),
                    mean_accepted=result.mean_accepted,
                    acceptance_rate=result.acceptance_rate,
                    lossless=True if verdict is None else verdict.lossless,
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
                        "lossless_check": verdict_text(verdict),
                    },
                )

        ctx.db.write(work)
