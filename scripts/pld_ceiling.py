"""How fast could prompt lookup be on this machine? A replay of plain greedy outputs.

Prompt lookup drafts without a model, so whether a step's draft is accepted depends only
on the text, which greedy decoding fixes. This script decodes each prompt plainly once,
then replays the speculative loop over that text in units of one plain step, three ways:

- `policy`: our PromptLookupDrafter and draft-length policy, exactly as the loop runs them,
  with each step costing v(k + 1) from the benchmark report's measured verify-cost curve.
  This should land near the benchmark's own pld figures (a check of the replay).
- `oracle`: every step drafts exactly the tokens that will be accepted (no wasted drafts,
  no missed ones): the most any draft-length policy could get from these drafts.
- `oracle_flat`: the same with verification as cheap as a plain step for any k (the GPU
  regime): the most prompt lookup could give with a perfect policy and free verification.

Each prompt's prefill (measured here, in plain steps) is counted as the benchmark counts
it: tokens/s is generated tokens over the whole reply's time. Speed-ups are per prompt,
averaged per category (mean of ratios, as the report states them).

    taskset -c 0 python scripts/pld_ceiling.py --report docs/bench/cpu-fp32.json --out c.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections import defaultdict
from pathlib import Path

import torch

from selfspec.decoding import generate, prepare_prompt, run_to_end, vanilla
from selfspec.draft_length import DraftLengthPolicy, VerifyCosts
from selfspec.drafters.lookup import PromptLookupDrafter
from selfspec.loading import load_model
from selfspec.prompts import load_prompts
from selfspec.sampling import SamplingConfig
from selfspec.speculative import DraftContext

MAX_DRAFT = 8  # the loop's default cap


def accepted(draft: list[int], truth: list[int]) -> int:
    n = 0
    while n < len(draft) and n < len(truth) and draft[n] == truth[n]:
        n += 1
    return n


def replay(prompt: list[int], out: list[int], curve: dict[int, float], mode: str) -> float:
    """Cost of producing `out` after the first token, in plain steps."""
    drafter = PromptLookupDrafter(k=MAX_DRAFT)
    policy = DraftLengthPolicy(VerifyCosts(dict(curve)), MAX_DRAFT)
    policy.draft_s, policy.step_s = 0.0, 1.0  # lookup is free; costs are in plain steps
    tokens, t, cost = [*prompt, out[0]], 1, 0.0
    while t < len(out):
        budget = min(MAX_DRAFT, len(out) - t - 1)
        ctx = DraftContext(None, None, len(tokens) - 1, tokens[-1], tokens, None, None, budget)
        probe = drafter.probe(ctx)
        if mode == "policy":
            ctx.max_tokens = policy.choose(budget, probe.label, probe.prior)
        draft = drafter.draft(ctx, probe).tokens if ctx.max_tokens else []
        n = accepted(draft, out[t:])
        if mode != "policy":
            draft = draft[:n]  # the oracle drafts only what will be accepted
        step = 1.0 if mode == "oracle_flat" else curve[len(draft) + 1]
        policy.observe(len(draft), n, 0.0, step, probe.label)
        cost += step
        tokens += out[t : t + n + 1]
        t += n + 1
    return cost


def prefill_steps(lm, ids: list[int]) -> float:
    """The prompt's forward pass over a plain one-token step (fastest of three each)."""
    engine = lm.engine

    def fastest(run) -> float:
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            run()
            times.append(time.perf_counter() - t0)
        return min(times)

    with torch.inference_mode():
        cache = engine.new_cache(len(ids) + 2)
        x = torch.tensor([ids])
        full = fastest(lambda: engine.forward(x, cache, 0, last_only=True))
        one = fastest(lambda: engine.forward(x[:, :1], cache, len(ids) - 1))
    return full / one


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--report", default="docs/bench/cpu-fp32.json", help="for its verify curve")
    ap.add_argument("--max-new-tokens", type=int, default=128)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    curve = {int(m): c for m, c in json.loads(Path(args.report).read_text())["verify_cost"].items()}
    lm = load_model("bundled", dtype="float32")
    cfg = SamplingConfig(max_new_tokens=args.max_new_tokens)
    ratios: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for p in load_prompts():
        ids = prepare_prompt(lm, p.prompt, cfg)
        out = run_to_end(generate(lm, p.prompt, vanilla, cfg)).tokens
        pre = prefill_steps(lm, ids)
        plain = pre + len(out) - 1
        for mode in ("policy", "oracle", "oracle_flat"):
            ratios[mode][p.category].append(plain / (pre + replay(ids, out, curve, mode)))
        print(p.id, {m: round(r[p.category][-1], 2) for m, r in ratios.items()}, flush=True)
    report = {"settings": {"report": args.report, "verify_cost": curve, "max_draft": MAX_DRAFT}}
    finish(report, ratios, args.out)


def finish(report: dict, ratios: dict[str, dict[str, list[float]]], out: str | None) -> None:
    """Add the mean speed-up per mode and category (and over all prompts) to the report,
    print it and write the report (the draft-model replay finishes the same way)."""
    report["speedup_mean"] = {
        mode: {
            **{c: round(statistics.mean(v), 3) for c, v in cats.items()},
            "all": round(statistics.mean(x for v in cats.values() for x in v), 3),
        }
        for mode, cats in ratios.items()
    }
    print(json.dumps(report["speedup_mean"], indent=1))
    if out:
        Path(out).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
