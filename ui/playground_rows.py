"""What the Playground shows of a comparison: the metrics table, the accepted-drafts bars,
the per-step timeline, and the lossless column in words.

Only presentation: the verdicts come typed from ``selfspec.compare`` (the benchmark's own
check) and the speed-up is its ``speedup``; these functions word and round them.
"""

from __future__ import annotations

import statistics

import pandas as pd

from selfspec import GenerationResult, LoadedModel
from selfspec.compare import Verdict, speedup, tolerance

__all__ = [
    "BASELINE",
    "MAX_PROMPT_CHARS",
    "METRIC_COLUMNS",
    "NO_DRAFTS",
    "accepted_rows",
    "check_prompt",
    "median_speeds",
    "metrics_rows",
    "rule_note",
    "timeline_rows",
    "verdict_text",
]

MAX_PROMPT_CHARS = 20_000
NO_DRAFTS = "no drafting method ran"
BASELINE = "vanilla"
METRIC_COLUMNS = [
    "method",
    "tokens",
    "tokens/s",
    "spread",
    "prefill s",
    "decode tok/s",
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


def verdict_text(verdict: Verdict | None) -> str:
    """Words for a verdict: the answer, the rule, and where the output differs. None is
    the reference itself (vanilla), which nothing is compared with."""
    if verdict is None:
        return "reference"
    rule = verdict.rule
    if rule is None:
        return "n/a (sampling)"
    if verdict.exact:
        return f"yes: identical ({rule})"
    where = f"differs at token {verdict.first_difference}"
    worst = verdict.worst
    margin = "" if worst is None else f", worst margin {worst.margin:.3g} at token {worst.position}"
    if verdict.lossless:
        return f"yes within {rule}: {where}{margin}"
    return f"no ({rule}): {where}{margin}"


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
    verdicts: dict[str, Verdict | None],
    repeats: dict[str, list[float]] | None = None,
) -> pd.DataFrame:
    """The metrics table: one row per finished method. With ``repeats`` (tokens/s of every
    run of a method), tokens/s and the speed-up are medians and the spread is shown."""
    speeds = median_speeds(results, repeats)
    rows = []
    for name, result in results.items():
        runs = (repeats or {}).get(name) or []
        ratio = speedup(speeds[name], speeds[BASELINE]) if BASELINE in speeds else None
        rows.append(
            {
                "method": name,
                "tokens": len(result.tokens),
                "tokens/s": round(speeds[name], 1),
                "spread": f"{min(runs):.1f}-{max(runs):.1f} over {len(runs)} runs"
                if len(runs) > 1
                else "one run",
                "prefill s": _rounded(result.first_token_s, 2),
                "decode tok/s": _rounded(result.decode_tokens_per_s, 1),
                "speed-up": None if ratio is None else round(ratio, 2),
                "drafted": sum(s.drafted for s in result.steps),
                "accepted": sum(s.accepted for s in result.steps),
                "mean accepted": _rounded(result.mean_accepted, 2),
                "acceptance": _rounded(result.acceptance_rate, 3),
                "lossless": verdict_text(verdicts[name]) if name in verdicts else "checking…",
            }
        )
    return pd.DataFrame(rows, columns=METRIC_COLUMNS)


def _rounded(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


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
