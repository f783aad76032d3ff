"""`selfspec bench`: every method on every prompt, timed, checked against vanilla.

Methods are interleaved prompt by prompt (each prompt runs every method back to back), so
a change in machine load hits all methods alike and the per-prompt speed-ups stay honest
on a shared, noisy machine. One warm-up generation per method is excluded from timing.
Each output is judged by `selfspec.compare` (exact for our methods, a logit tolerance for
peers). The report is a `BenchReport`, written as JSON; docs/benchmark.md documents the
schema.
"""

from __future__ import annotations

import json
import platform
import statistics
from collections.abc import Callable, Collection
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import transformers

from selfspec import native
from selfspec.compare import Margin, Rule, Verdict, compare, rule_for, tolerance
from selfspec.decoding import GenerationResult, generate, pooled, run_to_end
from selfspec.draft_length import verify_costs
from selfspec.llamacpp import llamacpp_environment
from selfspec.loading import LoadedModel
from selfspec.methods import get_method
from selfspec.prompts import BenchPrompt
from selfspec.sampling import SamplingConfig

__all__ = [
    "REPORT_SCHEMA",
    "BenchReport",
    "MethodReport",
    "PromptMargin",
    "PromptReport",
    "environment",
    "run_bench",
    "verify_cost_curve",
    "write_report",
]

# 2: every method names the rule it was judged by; peers are teacher-forced at every
# position. 1 (no "schema" key): the first divergence only, one tolerance for every method.
REPORT_SCHEMA = 2


@dataclass(frozen=True)
class PromptMargin(Margin):
    """A method's worst margin over the prompt set, and the prompt it came from."""

    id: str


@dataclass
class PromptReport:
    """One method on one prompt (a report's `methods[name].prompts[i]`)."""

    id: str
    category: str
    tokens: int
    tokens_per_s: float
    speedup: float | None
    exact: bool | None  # None: sampling (nothing to compare)
    lossless: bool | None
    first_difference: int | None = None
    worst: Margin | None = None
    mean_accepted: float | None = None


@dataclass
class MethodReport:
    """One method's numbers over the prompt set (a report's `methods[name]`)."""

    rule: str  # str(Rule): "exact" or "tolerance <value>"
    tokens_per_s: float
    speedup: float
    mean_accepted: float | None
    acceptance_rate: float | None
    accepted_histogram: dict[str, int] | None
    draft_cost_ratio: float | None
    lossless: bool | None
    exact: int | None  # prompts whose output is token for token vanilla's
    worst: PromptMargin | None  # the worst margin over the prompts
    prompts: list[PromptReport]


@dataclass
class BenchReport:
    """A whole run: where it ran, with which settings, each method's numbers, and the
    verification cost curve the draft-length policy worked from."""

    env: dict
    settings: dict
    methods: dict[str, MethodReport]
    verify_cost: dict[str, float]
    schema: int = field(default=REPORT_SCHEMA)

    def to_json(self) -> dict:
        """The report as the JSON file holds it (keys in the file's order)."""
        out = asdict(self)
        return {"schema": out.pop("schema"), **out}


def environment(lm: LoadedModel, methods: Collection[str] = ()) -> dict:
    """Where the run happened, with the versions and threads of the peers it ran."""
    env = {
        "device": str(lm.device),
        "device_name": torch.cuda.get_device_name(lm.device)
        if lm.device.type == "cuda"
        else platform.processor() or platform.machine(),
        "dtype": str(lm.dtype).removeprefix("torch."),
        "activations": lm.activations,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
        "model": lm.name,
        "source": lm.source,
        "weights": lm.weight_format,
        "weight_bytes": lm.engine.weight_bytes(),
        "kernel": native.status() if lm.device.type == "cpu" else "torch on " + lm.device.type,
        "cpu_flags": sorted(
            f for f in native.cpu_flags() if f.startswith(("avx", "fma", "f16c", "amx"))
        ),
    }
    if "llamacpp" in methods:
        env["llama_cpp"] = llamacpp_environment()
    return env


def run_bench(
    lm: LoadedModel,
    prompts: list[BenchPrompt],
    methods: list[str],
    cfg: SamplingConfig,
    options: dict[str, dict] | None = None,
    progress: Callable[[str], None] | None = None,
) -> BenchReport:
    """Run the benchmark and return its report (schema: docs/benchmark.md)."""
    options = options or {}
    if "vanilla" not in methods:
        methods = ["vanilla", *methods]
    infos = {m: get_method(m) for m in methods}

    def run(method: str, prompt: str) -> GenerationResult:
        info = infos[method]
        opts = {**info.options, **options.get(method, {})}
        return run_to_end(generate(lm, prompt, info.run, cfg, name=method, **opts))

    for m in methods:
        run(m, prompts[0].prompt)  # warm-up, not timed
    results: dict[str, list[GenerationResult]] = {m: [] for m in methods}
    for i, p in enumerate(prompts, 1):
        for m in methods:
            results[m].append(run(m, p.prompt))
        if progress:
            line = ", ".join(f"{m} {results[m][-1].tokens_per_s:.1f}" for m in methods)
            progress(f"[{i}/{len(prompts)}] {p.id}: {line} tok/s")

    return BenchReport(
        env=environment(lm, methods),
        settings={
            **asdict(cfg),
            "prompts": len(prompts),
            "methods": methods,
            "method_options": {m: {**infos[m].options, **options.get(m, {})} for m in methods},
            "speedup_mean": "arithmetic mean of per-prompt ratios to vanilla",
            "logit_tolerance": tolerance(lm.dtype),
        },
        methods={
            m: _method_report(
                lm, prompts, results[m], results["vanilla"], rule_for(infos[m], lm.dtype), cfg
            )
            for m in methods
        },
        verify_cost=verify_cost_curve(lm),
    )


def verify_cost_curve(lm: LoadedModel, max_m: int = 9) -> dict[str, float]:
    """Time of a forward pass over M tokens relative to one token, M = 1..max_m.

    The curve the draft-length policy works from (measured once per process): on a GPU it
    is nearly flat, on a CPU it says how long a draft must be, and how often right, to
    pay for its verification.
    """
    costs = verify_costs(lm.engine, max_m)
    return {str(m): round(costs.relative(m), 3) for m in range(1, max_m + 1)}


def _method_report(
    lm: LoadedModel,
    prompts: list[BenchPrompt],
    runs: list[GenerationResult],
    vanilla_runs: list[GenerationResult],
    rule: Rule,
    cfg: SamplingConfig,
) -> MethodReport:
    """A method's rows (one verdict per prompt) and its totals over the prompt set.
    Sampled outputs are timed but not judged: there is no single right output."""
    judged_by = rule if cfg.greedy else None
    rows = [
        _prompt_report(p, r, compare(lm, lm.encode(p.prompt), r, v, judged_by))
        for p, r, v in zip(prompts, runs, vanilla_runs, strict=True)
    ]
    total = pooled(runs)
    hist = total.accepted_histogram()
    judged = [r for r in rows if r.worst is not None]
    top = max(judged, key=lambda r: r.worst.margin, default=None)
    return MethodReport(
        rule=str(rule),
        tokens_per_s=round(total.tokens_per_s, 3),
        speedup=round(statistics.fmean(r.speedup for r in rows if r.speedup), 4),
        mean_accepted=_rounded(total.mean_accepted, 4),
        acceptance_rate=_rounded(total.acceptance_rate, 4),
        accepted_histogram={str(k): v for k, v in hist.items()} or None,
        draft_cost_ratio=_draft_cost_ratio(total, vanilla_runs),
        lossless=all(r.lossless for r in rows) if cfg.greedy else None,
        exact=sum(bool(r.exact) for r in rows) if cfg.greedy else None,
        worst=PromptMargin(top.worst.position, top.worst.margin, top.id) if top else None,
        prompts=rows,
    )


def _prompt_report(prompt: BenchPrompt, run: GenerationResult, verdict: Verdict) -> PromptReport:
    worst = verdict.worst
    return PromptReport(
        id=prompt.id,
        category=prompt.category,
        tokens=len(run.tokens),
        tokens_per_s=round(run.tokens_per_s, 3),
        speedup=_rounded(verdict.speedup, 4),
        exact=verdict.exact,
        lossless=verdict.lossless,
        first_difference=verdict.first_difference,
        worst=None if worst is None else Margin(worst.position, round(worst.margin, 6)),
        mean_accepted=_rounded(run.mean_accepted, 4),
    )


def _rounded(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def _draft_cost_ratio(
    total: GenerationResult, vanilla_runs: list[GenerationResult]
) -> float | None:
    """Median time of one draft token over the median time of one plain decoding step.

    The plain step is vanilla's in the same run, each prompt's first step (the prefill)
    left out, so the ratio compares like with like: one drafted token against one full pass.
    """
    drafts = [s.draft_s / s.drafted for s in total.steps if s.drafted]
    plain = [s.verify_s for r in vanilla_runs for s in r.steps[1:]]
    if not drafts or not plain:
        return None
    return round(statistics.median(drafts) / statistics.median(plain), 4)


def write_report(report: BenchReport | dict, path: str | Path) -> None:
    """Write the report's JSON atomically (a reader never sees half a file)."""
    data = report.to_json() if isinstance(report, BenchReport) else report
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2))
    tmp.replace(path)
