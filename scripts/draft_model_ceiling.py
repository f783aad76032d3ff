"""How fast could draft-model speculation be on this machine? A replay of plain greedy text.

A greedy draft model's proposal at a position depends only on the committed text before it,
so one teacher-forced pass of the draft model over prompt + plain reply gives, for every
position at once, the token it would draft there and its confidence (the engine computes a
row with the same bits in a long pass as alone, so these are the tokens it drafts in the
loop). This script decodes each prompt plainly with the target, runs that pass, and replays
the speculative loop over the reply in units of one plain target step, three ways:

- `policy`: our draft-length policy and adaptive draft exit, as the loop runs them;
- `oracle`: the cheapest schedule of plain steps and drafts for a policy that knows which
  drafts will be accepted (it never drafts a rejected token, and drafts a run only as far
  as pays on this verify curve; dynamic programming over the reply): the most any
  draft-length policy could get from this draft model;
- `oracle_flat`: the oracle with verification as cheap as a plain step for any k (the GPU
  regime).

Costs, in plain target steps: a draft token costs `--draft-cost` (default: the measured
draft cost of `draft-model` in the benchmark report), a verification of m tokens the
report's curve v(m). A draft model that has fallen m >= 2 committed tokens behind (after
plain steps) reads them in one pass before drafting, priced draft cost x v(m); one missing
token rides along with the first draft pass, priced draft cost x (v(2) - 1). Both prompt
passes (the target's and the draft model's) are measured here, as the benchmark counts
them: tokens/s is generated tokens over the whole reply's time. Stated simplification:
drafts after a rejected one are priced, but the confidences that decide how many of them
the exit lets through are read at the true text.

    python scripts/draft_model_ceiling.py --model qwen2.5-coder-1.5b --dtype int8 \
        --threads 2 --report docs/bench/qwen15-int8-all.json --out ceiling.json
"""

from __future__ import annotations

import argparse
import functools
import json
import timeit
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import torch
from pld_ceiling import finish  # a sibling script: run from scripts/ or loaded by tests

from selfspec.decoding import generate, prepare_prompt, run_to_end, vanilla
from selfspec.draft_length import DraftLengthPolicy, VerifyCosts
from selfspec.drafters.draft_model import DRAFT_HEAD_TOKENS
from selfspec.drafters.skip import AdaptiveThreshold
from selfspec.loading import LoadedModel, load_model
from selfspec.methods import draft_model
from selfspec.prompts import load_prompts
from selfspec.sampling import SamplingConfig

MAX_DRAFT = 8  # the loop's default cap
MODES = ("policy", "oracle", "oracle_flat")


@torch.inference_mode()
def draft_choices(draft: LoadedModel, ids: list[int], out: list[int]) -> tuple[list, list]:
    """Per reply position t: the draft model's token after out[t] (its guess of out[t + 1])
    over its restricted head, as DraftModelDrafter scores it, and that token's probability."""
    engine = draft.engine
    head_ids = torch.tensor(sorted({*range(DRAFT_HEAD_TOKENS), *draft.eos_ids}))
    cache = engine.new_cache(len(ids) + len(out) + 1)
    x = torch.tensor([ids + out])
    h = engine.run_layers(engine.embed(x), cache, 0)[:, len(ids) :]  # [1, G, C]
    probs = torch.softmax(engine.logits(h, engine.head_block_rows(head_ids))[0].float(), -1)
    conf, top = probs.max(-1)  # [G]
    return head_ids[top].tolist(), conf.tolist()


def replay(
    choices: list[int], conf: list[float], out: list[int], curve: dict, d: float, mode: str
) -> float:
    """Cost of producing `out` after its first token, in plain target steps."""
    v = (lambda m: 1.0) if mode == "oracle_flat" else (lambda m: curve[min(m, max(curve))])
    if mode != "policy":
        return oracle(choices, out, v, d)
    policy = DraftLengthPolicy(VerifyCosts(dict(curve)), MAX_DRAFT)
    policy.step_s = 1.0
    threshold = AdaptiveThreshold()
    t, cost, behind = 0, 0.0, 0  # behind: committed tokens the draft model has not read
    while t < len(out) - 1:
        k = policy.choose(min(MAX_DRAFT, len(out) - 1 - t))
        if k == 0:
            cost, t, behind = cost + 1.0, t + 1, behind + 1
            policy.observe(0, 0, 0.0, 1.0)
            continue
        cost += catch_up(behind, v, d)
        drafted = accepted = 0
        for i in range(k):
            drafted += 1
            if accepted == i and choices[t + i] == out[t + i + 1]:
                accepted += 1
            if conf[t + i] < threshold.g:
                break
        cost += drafted * d + v(drafted + 1)
        policy.observe(drafted, accepted, d * drafted, v(drafted + 1))
        threshold.update(drafted, accepted, hit_max=drafted == k)
        behind = 1 if accepted == drafted else 0  # the last draft token was never fed
        t += accepted + 1
    return cost


def catch_up(behind: int, v: Callable[[int], float], d: float) -> float:
    """The draft model's pass over committed tokens it has not read, before it drafts."""
    if behind == 0:
        return 0.0
    return d * (v(behind) if behind > 1 else v(2) - 1.0)  # one rides along: two rows


def oracle(choices: list[int], out: list[int], v: Callable[[int], float], d: float) -> float:
    """The least cost of producing `out` knowing which drafts will be accepted: at each
    position a plain step, or a draft of k tokens of the run the draft model gets right
    there (never a rejected one), whichever leads to the cheapest rest of the reply. The
    state is the position and how far the draft model has fallen behind."""
    end = len(out) - 1

    @functools.cache
    def best(t: int, behind: int) -> float:
        if t >= end:
            return 0.0
        cost = 1.0 + best(t + 1, behind + 1)
        k = 0
        while k < min(MAX_DRAFT, end - t) and choices[t + k] == out[t + k + 1]:
            k += 1
            step = catch_up(behind, v, d) + k * d + v(k + 1)
            cost = min(cost, step + best(t + k + 1, 1))
        return cost

    for t in range(end, -1, -1):  # fill from the end: no deep recursion
        for behind in range(t + 1):
            best(t, behind)
    return best(0, 0)


def prompt_pass_steps(lm: LoadedModel, target: LoadedModel, ids: list[int]) -> float:
    """`lm`'s pass over the prompt, in plain steps of the target (fastest of three each)."""

    def pass_of(model: LoadedModel, n: int):
        cache = model.engine.new_cache(len(ids) + 2)
        x = torch.tensor([ids])
        return lambda: model.engine.forward(x[:, -n:], cache, len(ids) - n, last_only=True)

    def fastest(run) -> float:
        run()  # warm-up
        return min(timeit.repeat(run, number=1, repeat=3))

    with torch.inference_mode():
        return fastest(pass_of(lm, len(ids))) / fastest(pass_of(target, 1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="qwen2.5-coder-1.5b")
    ap.add_argument("--dtype", default="int8")
    ap.add_argument("--report", required=True, help="benchmark report: verify curve, draft cost")
    ap.add_argument("--draft-cost", type=float, default=None, help="override, in plain steps")
    ap.add_argument("--max-new-tokens", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    report = json.loads(Path(args.report).read_text())
    curve = {int(m): c for m, c in report["verify_cost"].items()}
    d = args.draft_cost or report["methods"]["draft-model"]["draft_cost_ratio"]
    target = load_model(args.model, dtype=args.dtype)
    draft = draft_model(target)
    cfg = SamplingConfig(max_new_tokens=args.max_new_tokens)
    ratios: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    agree = tested = 0
    for p in load_prompts():
        ids = prepare_prompt(target, p.prompt, cfg)
        out = run_to_end(generate(target, p.prompt, vanilla, cfg)).tokens
        choices, conf = draft_choices(draft, ids, out)
        agree += sum(c == o for c, o in zip(choices[:-1], out[1:], strict=True))
        tested += len(out) - 1
        pre = prompt_pass_steps(target, target, ids)
        pre_draft = prompt_pass_steps(draft, target, ids)
        plain = pre + len(out) - 1
        for mode in MODES:
            spec = pre + pre_draft + replay(choices, conf, out, curve, d, mode)
            ratios[mode][p.category].append(plain / spec)
        print(p.id, {m: round(r[p.category][-1], 2) for m, r in ratios.items()}, flush=True)
    result = {
        "settings": {
            "model": args.model,
            "dtype": args.dtype,
            "report": args.report,
            "draft_cost": d,
            "verify_cost": curve,
            "max_draft": MAX_DRAFT,
            "threads": args.threads,
        },
        "teacher_forced_agreement": round(agree / tested, 4),
    }
    finish(result, ratios, args.out)


if __name__ == "__main__":
    main()
