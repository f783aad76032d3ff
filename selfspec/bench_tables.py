"""A benchmark report as tables: Markdown for docs (`python -m selfspec table REPORT.json`)
and plain text for the terminal. Both read the report as its JSON holds it, so reports of
the older schema still render, with a note that says what they lack.
"""

from __future__ import annotations

import statistics

from selfspec.bench import REPORT_SCHEMA

__all__ = ["category_speedups", "format_table", "markdown_table"]


def category_speedups(report: dict, method: str) -> dict[str, float]:
    """Mean per-prompt speed-up of `method` in each prompt category."""
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
        f"model {env['model']} on {env['device']} ({env['device_name']}), "
        f"{env.get('activations', env['dtype'])} activations, "
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
