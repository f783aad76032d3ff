"""`selfspec bench`: every method on every prompt, timed, checked against vanilla.

Methods are interleaved prompt by prompt (each prompt runs every method back to back), so
a change in machine load hits all methods alike and the per-prompt speed-ups stay honest
on a shared, noisy machine. One warm-up generation per method is excluded from timing.

The greedy check has two rules, chosen by the method registry's `ours`. Our engine's
methods must emit exactly vanilla's tokens: the engine is built so that a row computes the
same bits alone or among others, so any difference is a bug, not rounding. Peers run other
code, so their whole output is teacher-forced through our model and every token they
emitted may trail our argmax by at most the dtype's logit tolerance.
"""

from __future__ import annotations

import json
import platform
import statistics
from collections.abc import Callable, Collection
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import Tensor

from selfspec import native
from selfspec.decoding import GenerationResult, generate, run_to_end
from selfspec.llamacpp import llamacpp_environment
from selfspec.loading import LoadedModel
from selfspec.methods import MethodInfo, get_method
from selfspec.prompts import BenchPrompt
from selfspec.sampling import SamplingConfig

__all__ = [
    "run_bench",
    "REPORT_SCHEMA",
    "LOGIT_TOLERANCE",
    "Rule",
    "Margin",
    "PromptMargin",
    "Judgement",
    "PromptEntry",
    "MethodEntry",
    "rule_for",
    "tolerance",
    "judge",
    "teacher_forced_logits",
    "emitted_margins",
    "environment",
    "format_table",
    "markdown_table",
    "write_report",
    "category_speedups",
]

# 2: every method names the rule it was judged by; peers are teacher-forced at every
# position. 1 (no "schema" key): the first divergence only, one tolerance for every method.
REPORT_SCHEMA = 2

# Largest logit margin, per dtype, by which a peer's token may trail our model's argmax and
# still count as a correct greedy choice: a peer runs other code (other kernels, other
# summation orders, llama.cpp's quantized activations), and where our top two logits are
# closer than this, either token is right within the dtype's precision.
LOGIT_TOLERANCE = {
    torch.float64: 1e-9,
    torch.float32: 1e-3,
    torch.bfloat16: 0.25,
    torch.float16: 0.05,
}


@dataclass(frozen=True)
class Rule:
    """How a method's greedy output is judged against vanilla's: token for token (our
    engine's methods, which must be exact), or within a logit tolerance at every position
    (peers, which run other code)."""

    tolerance: float | None = None  # None: exact

    def __str__(self) -> str:
        return "exact" if self.tolerance is None else f"tolerance {self.tolerance:g}"


@dataclass(frozen=True)
class Margin:
    """A generated position and by how much its token trails our model's argmax there."""

    position: int  # index among the generated tokens (0: the first)
    margin: float  # logit[argmax] - logit[emitted], >= 0


@dataclass(frozen=True)
class PromptMargin(Margin):
    """A method's worst margin over the prompt set, and the prompt it came from."""

    id: str


@dataclass(frozen=True)
class Judgement:
    """One output against vanilla's under a rule."""

    exact: bool  # token for token vanilla's
    lossless: bool  # what the rule concludes
    first_difference: int | None  # first generated position that differs; None: exact
    worst: Margin | None  # teacher-forced worst position (peers always; ours when not exact)


@dataclass
class PromptEntry:
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
class MethodEntry:
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
    prompts: list[PromptEntry]


def tolerance(dtype: torch.dtype) -> float:
    """The peers' logit tolerance for a dtype (float32's for any other)."""
    return LOGIT_TOLERANCE.get(dtype, 1e-3)


def rule_for(info: MethodInfo, dtype: torch.dtype) -> Rule:
    """Exact for the methods of our engine (the registry's `ours`), the dtype's tolerance
    for peers."""
    return Rule() if info.ours else Rule(tolerance(dtype))


def environment(lm: LoadedModel, methods: Collection[str] = ()) -> dict:
    """Where the run happened, with the versions and threads of the peers it ran."""
    import transformers

    env = {
        "device": str(lm.device),
        "device_name": torch.cuda.get_device_name(lm.device)
        if lm.device.type == "cuda"
        else platform.processor() or platform.machine(),
        "dtype": str(lm.dtype).removeprefix("torch."),
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


def teacher_forced_logits(lm: LoadedModel, prompt_ids: list[int], tokens: list[int]) -> Tensor:
    """Our model's logits [n + 1, V] for an output of n tokens, from one forward pass over
    prompt + output: row i is what the model predicts for generated position i (row n,
    after the last token, judges an EOS)."""
    ids = torch.tensor([prompt_ids + tokens], device=lm.device)  # [1, T]
    with torch.inference_mode():
        cache = lm.engine.new_cache(ids.shape[1])
        logits = lm.engine.forward(ids, cache, 0)[0]  # [T, V]
    return logits[len(prompt_ids) - 1 :]


def emitted_margins(
    logits: Tensor, tokens: list[int], eos_ids: frozenset[int] = frozenset()
) -> Tensor:
    """logit[argmax] - logit[emitted] (float64) at each generated position, from logits
    [n (+1), V]. Given eos_ids (the output stopped at an EOS), the position after the last
    token is judged too, by its best EOS logit, since the driver keeps no EOS id."""
    n = len(tokens)
    rows = logits[: n + bool(eos_ids)]  # [n (+1), V]
    emitted = rows[:n].gather(
        1, torch.tensor(tokens, dtype=torch.long, device=rows.device)[:, None]
    )[:, 0]
    if eos_ids:
        eos = rows[n, torch.tensor(sorted(eos_ids), device=rows.device)].max()
        emitted = torch.cat([emitted, eos[None]])
    # The subtraction in float64 is exact for float32 and narrower logits.
    return rows.max(-1).values.double() - emitted.double()


def judge(
    lm: LoadedModel,
    prompt_ids: list[int],
    reference: list[int],
    result: GenerationResult,
    rule: Rule,
) -> Judgement:
    """Judge a greedy output against vanilla's (`reference`) under `rule`.

    Exact: the token lists must be equal. Tolerance: the output is teacher-forced through
    our model and at every position it emitted (an EOS it stopped at included; nothing
    after a stop or the length limit) its token may trail our argmax by at most the
    tolerance. The worst position is also reported for an inexact output of ours, as a
    diagnostic (how close to a tie it left vanilla), but it does not excuse it.
    """
    tokens = result.tokens
    exact = tokens == reference
    first = None
    if not exact:
        n = min(len(tokens), len(reference))
        first = next((i for i in range(n) if tokens[i] != reference[i]), n)
    worst = None
    if rule.tolerance is not None or not exact:
        eos = lm.eos_ids if result.stop_reason == "eos" else frozenset()
        margins = emitted_margins(teacher_forced_logits(lm, prompt_ids, tokens), tokens, eos)
        if margins.numel():
            i = int(margins.argmax())
            worst = Margin(i, float(margins[i]))
    if rule.tolerance is None:
        lossless = exact
    else:
        lossless = worst is None or worst.margin <= rule.tolerance
    return Judgement(exact, lossless, first, worst)


def run_bench(
    lm: LoadedModel,
    prompts: list[BenchPrompt],
    methods: list[str],
    cfg: SamplingConfig,
    options: dict[str, dict] | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict:
    """Run the benchmark and return the report (see README for the schema)."""
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

    report_methods = {
        m: asdict(
            _method_report(
                lm, prompts, results[m], results["vanilla"], cfg, rule_for(infos[m], lm.dtype)
            )
        )
        for m in methods
    }
    return {
        "schema": REPORT_SCHEMA,
        "env": environment(lm, methods),
        "settings": {
            **asdict(cfg),
            "prompts": len(prompts),
            "methods": methods,
            "method_options": {m: {**infos[m].options, **options.get(m, {})} for m in methods},
            "speedup_mean": "arithmetic mean of per-prompt ratios to vanilla",
            "logit_tolerance": tolerance(lm.dtype),
        },
        "methods": report_methods,
        "verify_cost": verify_cost_curve(lm),
    }


def verify_cost_curve(lm: LoadedModel, max_m: int = 9) -> dict[str, float]:
    """Time of a forward pass over M tokens relative to one token, M = 1..max_m.

    The curve the draft-length policy works from (measured once per process): on a GPU it
    is nearly flat, on a CPU it says how long a draft must be, and how often right, to
    pay for its verification.
    """
    from selfspec.draft_length import verify_costs

    costs = verify_costs(lm.engine, max_m)
    return {str(m): round(costs.relative(m), 3) for m in range(1, max_m + 1)}


def _method_report(
    lm: LoadedModel,
    prompts: list[BenchPrompt],
    runs: list[GenerationResult],
    vanilla_runs: list[GenerationResult],
    cfg: SamplingConfig,
    rule: Rule,
) -> MethodEntry:
    rows = []
    for p, r, v in zip(prompts, runs, vanilla_runs, strict=True):
        row = PromptEntry(
            id=p.id,
            category=p.category,
            tokens=len(r.tokens),
            tokens_per_s=round(r.tokens_per_s, 3),
            speedup=round(r.tokens_per_s / v.tokens_per_s, 4) if v.tokens_per_s else None,
            exact=None,
            lossless=None,
        )
        if cfg.greedy:
            j = judge(lm, lm.encode(p.prompt), v.tokens, r, rule)
            row.exact, row.lossless, row.first_difference = j.exact, j.lossless, j.first_difference
            if j.worst is not None:
                row.worst = Margin(j.worst.position, round(j.worst.margin, 6))
        if r.steps and r.mean_accepted is not None:
            row.mean_accepted = round(r.mean_accepted, 4)
        rows.append(row)
    steps = [s for r in runs for s in r.steps]
    drafted = sum(s.drafted for s in steps)
    total_tokens = sum(len(r.tokens) for r in runs)
    total_seconds = sum(r.seconds for r in runs)
    hist: dict[int, int] = {}
    for r in runs:
        for k, c in r.accepted_histogram().items():
            hist[k] = hist.get(k, 0) + c
    judged = [r for r in rows if r.worst is not None]
    top = max(judged, key=lambda r: r.worst.margin, default=None)
    worst = PromptMargin(top.worst.position, top.worst.margin, top.id) if top else None
    return MethodEntry(
        rule=str(rule),
        tokens_per_s=round(total_tokens / total_seconds, 3) if total_seconds else 0.0,
        speedup=round(statistics.fmean(r.speedup for r in rows if r.speedup), 4),
        mean_accepted=round(sum(s.accepted + 1 for s in steps) / len(steps), 4) if steps else None,
        acceptance_rate=round(sum(s.accepted for s in steps) / drafted, 4) if drafted else None,
        accepted_histogram={str(k): v for k, v in sorted(hist.items())} or None,
        draft_cost_ratio=_draft_cost_ratio(steps, vanilla_runs),
        lossless=all(r.lossless for r in rows) if cfg.greedy else None,
        exact=sum(bool(r.exact) for r in rows) if cfg.greedy else None,
        worst=worst,
        prompts=rows,
    )


def _draft_cost_ratio(steps, vanilla_runs) -> float | None:
    """Median time of one draft token over the median time of one plain decoding step.

    The plain step is vanilla's in the same run, its first step (the prompt prefill) left
    out, so the ratio compares like with like: one drafted token against one full pass.
    """
    drafts = [s.draft_s / s.drafted for s in steps if s.drafted]
    plain = [s.verify_s for r in vanilla_runs for s in r.steps[1:]]
    if not drafts or not plain:
        return None
    return round(statistics.median(drafts) / statistics.median(plain), 4)


def category_speedups(report: dict, method: str) -> dict[str, float]:
    rows = report["methods"][method]["prompts"]
    cats: dict[str, list[float]] = {}
    for r in rows:
        cats.setdefault(r["category"], []).append(r["speedup"])
    return {c: round(statistics.fmean(v), 3) for c, v in cats.items()}


def markdown_table(report: dict) -> str:
    """The report as the README's Markdown tables: per method, overall and per category
    speed-ups (means of per-prompt ratios), acceptance, draft cost, the rule it was judged
    by, its worst teacher-forced margin and losslessness; then the verify-cost curve.
    `python -m selfspec table REPORT.json` prints it (older reports with a note)."""
    cats = list(
        dict.fromkeys(r["category"] for m in report["methods"].values() for r in m["prompts"])
    )
    head = ["method", "tok/s", "speed-up", *cats, "mean accepted", "acceptance", "draft cost"]
    head += ["rule", "worst margin", "lossless (exact)"]
    lines = [_md_row(head), _md_row(["---"] * len(head))]
    for name, m in report["methods"].items():
        by_cat = category_speedups(report, name)
        cells = [f"`{name}`", f"{m['tokens_per_s']:.1f}", f"{m['speedup']:.2f}x"]
        cells += [f"{by_cat[c]:.2f}x" if c in by_cat else "-" for c in cats]
        for key in ("mean_accepted", "acceptance_rate", "draft_cost_ratio"):
            cells.append("-" if m[key] is None else f"{m[key]:.2f}")
        cells += [m.get("rule", "-"), _worst_cell(m.get("worst")), _lossless_cell(m)]
        lines.append(_md_row(cells))
    curve = report.get("verify_cost")
    if curve:
        lines += ["", _md_row(["M", *curve]), _md_row(["---"] * (len(curve) + 1))]
        lines.append(_md_row(["cost", *(f"{c:.2f}" for c in curve.values())]))
    if _older(report):
        lines += ["", _OLDER_NOTE.format(tol=report["settings"].get("logit_tolerance", "?"))]
    return "\n".join(lines)


_OLDER_NOTE = (
    "Older report (schema 1): `lossless` there looked only at the first position where an "
    "output left vanilla's, and excused it for every method when vanilla's top two logits "
    "were closer than {tol}; it records no rule and no worst margin."
)


def _older(report: dict) -> bool:
    return report.get("schema", 1) < REPORT_SCHEMA


def _worst_cell(worst: dict | None) -> str:
    if worst is None:
        return "-"
    if worst["margin"] == 0:  # every emitted token was our argmax: no position stands out
        return "0"
    return f"{worst['margin']:.3g} ({worst['id']} @{worst['position']})"


def _lossless_cell(m: dict) -> str:
    return "-" if m["lossless"] is None else f"{m['lossless']} ({m['exact']}/{len(m['prompts'])})"


def _md_row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def format_table(report: dict) -> str:
    """A plain-text table of the report's headline numbers."""
    head = (
        f"{'method':<16}{'tok/s':>8}{'speedup':>9}{'mean acc':>10}{'acc rate':>10}"
        f"  {'rule':<16}{'lossless (exact)':<18}worst margin"
    )
    lines = [head, "-" * len(head)]
    for name, m in report["methods"].items():
        acc = f"{m['mean_accepted']:.2f}" if m["mean_accepted"] is not None else "-"
        rate = f"{m['acceptance_rate']:.2f}" if m["acceptance_rate"] is not None else "-"
        lines.append(
            f"{name:<16}{m['tokens_per_s']:>8.1f}{m['speedup']:>8.2f}x{acc:>10}{rate:>10}"
            f"  {m.get('rule', '-'):<16}{_lossless_cell(m):<18}{_worst_cell(m.get('worst'))}"
        )
    if report.get("verify_cost"):
        curve = ", ".join(f"{m}: {c:.2f}" for m, c in report["verify_cost"].items())
        lines.append(f"verify cost over M tokens, relative to one: {curve}")
    env = report["env"]
    lines.append(
        f"model {env['model']} on {env['device']} ({env['device_name']}), {env['dtype']}, "
        f"{env['threads']} threads, torch {env['torch']}, transformers {env['transformers']}"
    )
    peer = env.get("llama_cpp")
    if peer:
        lines.append(
            f"llama.cpp (llama-cpp-python {peer['version']}): {peer['threads']} threads, "
            f"{peer['threads_batch']} for the prompt"
        )
    if _older(report):
        lines.append(_OLDER_NOTE.format(tol=report["settings"].get("logit_tolerance", "?")))
    return "\n".join(lines)


def write_report(report: dict, path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(report, indent=2))
    tmp.replace(path)
