"""`selfspec bench`: every method on every prompt, timed, checked against vanilla.

Methods are interleaved prompt by prompt (each prompt runs every method back to back), so
a change in machine load hits all methods alike and the per-prompt speed-ups stay honest
on a shared, noisy machine. One warm-up generation per method is excluded from timing.
"""

from __future__ import annotations

import json
import platform
import statistics
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from selfspec.decoding import GenerationResult, generate, run_to_end
from selfspec.loading import LoadedModel
from selfspec.methods import get_method
from selfspec.prompts import BenchPrompt
from selfspec.sampling import SamplingConfig

__all__ = [
    "run_bench",
    "LOGIT_TOLERANCE",
    "environment",
    "divergence",
    "format_table",
    "markdown_table",
    "write_report",
    "category_speedups",
]

# Largest top-2 logit margin at a divergence that we attribute to rounding, per dtype. A
# different kernel path (8 tokens verified in one matmul instead of one at a time) rounds
# differently; where the model's top two logits are closer than this, either token is a
# correct greedy choice within the dtype's precision.
LOGIT_TOLERANCE = {
    torch.float64: 1e-9,
    torch.float32: 1e-3,
    torch.bfloat16: 0.25,
    torch.float16: 0.05,
}


@dataclass
class Divergence:
    position: int
    margin: float
    within_tolerance: bool


def environment(lm: LoadedModel) -> dict:
    import transformers

    return {
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
    }


def divergence(
    lm: LoadedModel, prompt_ids: list[int], reference: list[int], other: list[int]
) -> Divergence | None:
    """First position where `other` leaves `reference`, with the reference's top-2 margin."""
    n = min(len(reference), len(other))
    pos = next((i for i in range(n) if reference[i] != other[i]), None)
    if pos is None:
        if len(reference) == len(other):
            return None
        pos = n  # one stopped (EOS) where the other went on
    ids = torch.tensor([prompt_ids + reference[:pos]], device=lm.device)
    with torch.inference_mode():
        cache = lm.engine.new_cache(ids.shape[1])
        logits = lm.engine.forward(ids, cache, 0, last_only=True)[0, -1]
    top2 = torch.topk(logits.double(), 2).values
    margin = float(top2[0] - top2[1])
    return Divergence(pos, margin, margin < LOGIT_TOLERANCE.get(lm.dtype, 1e-3))


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
        m: _method_report(lm, prompts, results[m], results["vanilla"], cfg) for m in methods
    }
    return {
        "env": environment(lm),
        "settings": {
            **asdict(cfg),
            "prompts": len(prompts),
            "methods": methods,
            "method_options": {m: {**infos[m].options, **options.get(m, {})} for m in methods},
            "speedup_mean": "arithmetic mean of per-prompt ratios to vanilla",
            "logit_tolerance": LOGIT_TOLERANCE.get(lm.dtype, 1e-3),
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


def _method_report(lm, prompts, runs, vanilla_runs, cfg) -> dict:
    rows = []
    for p, r, v in zip(prompts, runs, vanilla_runs, strict=True):
        row = {
            "id": p.id,
            "category": p.category,
            "tokens": len(r.tokens),
            "tokens_per_s": round(r.tokens_per_s, 3),
            "speedup": round(r.tokens_per_s / v.tokens_per_s, 4) if v.tokens_per_s else None,
            "lossless": None,
            "exact": None,
        }
        if cfg.greedy:
            div = divergence(lm, lm.encode(p.prompt), v.tokens, r.tokens)
            row["exact"] = div is None
            row["lossless"] = div is None or div.within_tolerance
            if div is not None:
                row["divergence"] = {"position": div.position, "margin": round(div.margin, 6)}
        if r.steps and r.mean_accepted is not None:
            row["mean_accepted"] = round(r.mean_accepted, 4)
        rows.append(row)
    steps = [s for r in runs for s in r.steps]
    drafted = sum(s.drafted for s in steps)
    total_tokens = sum(len(r.tokens) for r in runs)
    total_seconds = sum(r.seconds for r in runs)
    hist: dict[int, int] = {}
    for r in runs:
        for k, c in r.accepted_histogram().items():
            hist[k] = hist.get(k, 0) + c
    return {
        "tokens_per_s": round(total_tokens / total_seconds, 3) if total_seconds else 0.0,
        "speedup": round(statistics.fmean(r["speedup"] for r in rows if r["speedup"]), 4),
        "mean_accepted": round(sum(s.accepted + 1 for s in steps) / len(steps), 4)
        if steps
        else None,
        "acceptance_rate": round(sum(s.accepted for s in steps) / drafted, 4) if drafted else None,
        "accepted_histogram": {str(k): v for k, v in sorted(hist.items())} or None,
        "draft_cost_ratio": _draft_cost_ratio(steps, vanilla_runs),
        "lossless": all(r["lossless"] for r in rows) if cfg.greedy else None,
        "exact": sum(bool(r["exact"]) for r in rows) if cfg.greedy else None,
        "prompts": rows,
    }


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
    speed-ups (means of per-prompt ratios), acceptance, draft cost, losslessness; then
    the verify-cost curve. `python -m selfspec table REPORT.json` prints it."""
    cats = list(
        dict.fromkeys(r["category"] for m in report["methods"].values() for r in m["prompts"])
    )
    head = ["method", "tok/s", "speed-up", *cats, "mean accepted", "acceptance", "draft cost"]
    lines = [_md_row([*head, "lossless (exact)"]), _md_row(["---"] * (len(head) + 1))]
    for name, m in report["methods"].items():
        by_cat = category_speedups(report, name)
        cells = [f"`{name}`", f"{m['tokens_per_s']:.1f}", f"{m['speedup']:.2f}x"]
        cells += [f"{by_cat[c]:.2f}x" if c in by_cat else "-" for c in cats]
        for key in ("mean_accepted", "acceptance_rate", "draft_cost_ratio"):
            cells.append("-" if m[key] is None else f"{m[key]:.2f}")
        n = len(m["prompts"])
        cells.append("-" if m["lossless"] is None else f"{m['lossless']} ({m['exact']}/{n})")
        lines.append(_md_row(cells))
    curve = report.get("verify_cost")
    if curve:
        lines += ["", _md_row(["M", *curve]), _md_row(["---"] * (len(curve) + 1))]
        lines.append(_md_row(["cost", *(f"{c:.2f}" for c in curve.values())]))
    return "\n".join(lines)


def _md_row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def format_table(report: dict) -> str:
    """A plain-text table of the report's headline numbers."""
    head = (
        f"{'method':<16}{'tok/s':>8}{'speedup':>9}{'mean acc':>10}{'acc rate':>10}{'lossless':>10}"
    )
    lines = [head, "-" * len(head)]
    for name, m in report["methods"].items():
        acc = f"{m['mean_accepted']:.2f}" if m["mean_accepted"] is not None else "-"
        rate = f"{m['acceptance_rate']:.2f}" if m["acceptance_rate"] is not None else "-"
        ok = "-" if m["lossless"] is None else f"{m['lossless']} ({m['exact']} exact)"
        lines.append(
            f"{name:<16}{m['tokens_per_s']:>8.1f}{m['speedup']:>8.2f}x{acc:>10}{rate:>10}  {ok}"
        )
    if report.get("verify_cost"):
        curve = ", ".join(f"{m}: {c:.2f}" for m, c in report["verify_cost"].items())
        lines.append(f"verify cost over M tokens, relative to one: {curve}")
    env = report["env"]
    lines.append(
        f"model {env['model']} on {env['device']} ({env['device_name']}), {env['dtype']}, "
        f"{env['threads']} threads, torch {env['torch']}, transformers {env['transformers']}"
    )
    return "\n".join(lines)


def write_report(report: dict, path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(report, indent=2))
    tmp.replace(path)
