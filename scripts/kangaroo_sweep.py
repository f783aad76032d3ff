"""Choose Kangaroo's exit layer by measurement: train a short adapter at each exit layer on
the shipped corpus, then combine what each one costs and how often it agrees with the model.

For each exit layer l it reports:
- `agreement`: on held-out text, how often the draft's top token equals the full model's
  (greedy acceptance per token, teacher-forced), and the expected acceptance sum(min(p, q));
- `draft_cost`: one draft token (layers 0..l-1, adapter, restricted head) over one plain step;
- `verify_cost`: layers l..L-1 and the head over m = k + 1 tokens, over one plain step (with
  Kangaroo's shared shallow layers, verification skips layers 0..l-1);
- `predicted`: max over k of E(k) / (k d + v(k+1)), E(k) = 1 + a + ... + a^k: the speed-up
  over plain decoding that the draft-length policy can expect, the same formula it uses.

    taskset -c 1 python scripts/kangaroo_sweep.py --exits 2,4,6,10 --steps 100 --out sweep.json

The bundled model trains on the shipped adapter's corpus (the seed notes and the built-in
prompts); another model (`--model qwen2.5-coder-1.5b --dtype int8`) on its greedy
continuations of the built-in prompts, as its shipped adapter was trained, built once in
the work folder.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import time
from pathlib import Path

import torch
from torch import Tensor

from selfspec.adapter import KangarooAdapter
from selfspec.adapter_corpus import add_states, build_corpus, corpus_prompts
from selfspec.draft_length import best_draft_length
from selfspec.drafters.kangaroo import SHIPPED, kangaroo_drafter
from selfspec.loading import LoadedModel, load_model
from selfspec.prompts import load_prompts
from selfspec.train_adapter import BUILTIN_DATA, TrainSettings, split, train_adapter
from study.notes import seed_notes

REPEATS = 15
CONTEXT = 64
MAX_M = 9


def _median_time(fn) -> float:
    times = []
    for _ in range(REPEATS):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


@torch.no_grad()
def draft_vs_target(adapter: KangarooAdapter, lm: LoadedModel, held_out) -> tuple[Tensor, Tensor]:
    """Per held-out generated position: whether draft and model pick the same token, and
    the draft's top-1 probability (what eta is compared with)."""
    head = adapter.head(lm.engine)
    ids = adapter.head_tokens
    same, conf = [], []
    for s in held_out:
        a = adapter(lm.engine, s.h_exit[None])[0, s.n_prompt - 1 : -1]  # [G, C]
        probs = torch.softmax(lm.engine.logits(a[None], head)[0], -1)  # [G, N]
        top, q = probs.max(-1)
        draft = ids[q] if head is not None else q
        target = lm.engine.logits(s.h_last[None, s.n_prompt - 1 :])[0].argmax(-1)  # [G]
        same.append(draft == target)
        conf.append(top)
    return torch.cat(same), torch.cat(conf)


def eta_table(same: Tensor, conf: Tensor) -> list[dict]:
    """For each eta: the share of positions whose draft is at least that confident, and
    how often those drafts agree with the model."""
    rows = []
    for eta in (0.0, 0.2, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9):
        sure = conf >= eta
        n = int(sure.sum())
        rows.append(
            {
                "eta": eta,
                "coverage": round(n / len(conf), 4),
                "agreement": round(float(same[sure].float().mean()), 4) if n else None,
            }
        )
    return rows


@torch.inference_mode()
def costs(lm: LoadedModel, adapter: KangarooAdapter, exit_layer: int) -> tuple[float, dict]:
    """Draft cost per token and verification cost per m, relative to one plain step."""
    engine = lm.engine
    cache = engine.new_cache(CONTEXT + MAX_M + 2)
    tokens = torch.zeros(1, CONTEXT + MAX_M, dtype=torch.long)
    engine.forward(tokens[:, :CONTEXT], cache, 0)
    acache = adapter.new_cache(engine, CONTEXT + MAX_M + 2)
    adapter(
        engine,
        engine.run_layers(engine.embed(tokens[:, :CONTEXT]), cache, 0, stop=exit_layer),
        acache,
        0,
    )
    head = adapter.head(engine)
    one = tokens[:, CONTEXT : CONTEXT + 1]

    def draft_token():
        h = engine.run_layers(engine.embed(one), cache, CONTEXT, stop=exit_layer)
        engine.logits(adapter(engine, h, acache, CONTEXT), head)

    step = _median_time(lambda: engine.forward(one, cache, CONTEXT, last_only=True))
    draft = _median_time(draft_token) / step
    verify = {}
    for m in range(1, MAX_M + 1):
        h = engine.embed(tokens[:, CONTEXT : CONTEXT + m])
        verify[m] = (
            _median_time(
                lambda h=h: engine.logits(engine.run_layers(h, cache, CONTEXT, start=exit_layer))
            )
            / step
        )
    return draft, verify


def predicted(a: float, d: float, verify: dict) -> tuple[float, int]:
    """The policy's own choice (selfspec.draft_length): k = 0 is a plain step (cost 1),
    k > 0 verifies k + 1 tokens through layers l..L-1 only."""
    k, rate = best_draft_length(a, d, lambda m: 1.0 if m == 1 else verify[m], MAX_M - 1)
    return rate, k


def eta_on_benchmark(lm: LoadedModel, work: Path, out: Path) -> None:
    """The eta table of the shipped adapter on the model's greedy replies to the benchmark
    prompts (128 tokens): the text eta is used on, and held out from the adapter, which is
    trained without the built-in prompts (its settings say so; refused otherwise)."""
    shipped = kangaroo_drafter(lm).adapter
    if BUILTIN_DATA in shipped.settings.data:
        raise SystemExit("The shipped adapter saw the benchmark prompts: no held-out text.")
    prompts = [p.prompt for p in load_prompts()]
    replies = build_corpus(lm, prompts, 128, work / "bench-replies.json", progress=True)
    exit_layer = shipped.settings.exit_layer
    add_states(lm, replies, exit_layer)
    same, conf = draft_vs_target(shipped, lm, replies)
    table = eta_table(same, conf)
    text = "the model's greedy replies to the benchmark prompts"
    out.write_text(json.dumps({"exit_layer": exit_layer, "text": text, "by_eta": table}))
    for row in table:
        print(row)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="bundled")
    ap.add_argument("--dtype", default="auto")
    ap.add_argument("--max-new-tokens", type=int, default=None, help="corpus continuations")
    ap.add_argument("--exits", default="2,4,6,10")
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--head-tokens", type=int, default=4096)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--work", default="sweep-adapters", help="folder for the trained adapters")
    ap.add_argument("--out", default="kangaroo-sweep.json")
    ap.add_argument(
        "--eta-only",
        action="store_true",
        help="no training: the shipped adapter's agreement by confidence threshold, on the "
        "model's replies to the benchmark prompts",
    )
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    lm = load_model(args.model, dtype=args.dtype)
    bundled = args.model == "bundled"
    notes = tuple(note.body for note in seed_notes()) if bundled else ()  # as the app trains
    settings0 = TrainSettings(exit_layer=1, notes=notes)
    max_new = args.max_new_tokens or settings0.max_new_tokens
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    if args.eta_only:
        eta_on_benchmark(lm, work, Path(args.out))
        return
    corpus = work / "corpus.json"  # a copy of the shipped adapter's corpus: same text for all
    if bundled and not corpus.exists():
        shutil.copy(SHIPPED / "adapters" / "bundled.kangaroo.corpus.json", corpus)
    prompts = corpus_prompts(notes, None, settings0.max_prompt_chars)
    sequences = build_corpus(lm, prompts, max_new, corpus, progress=True)
    rows = []
    for exit_layer in [int(x) for x in args.exits.split(",")]:
        settings = TrainSettings(
            exit_layer=exit_layer,
            steps=args.steps,
            head_tokens=args.head_tokens,
            notes=notes,
            max_new_tokens=max_new,
        )
        t0 = time.perf_counter()
        adapter = train_adapter(
            lm, settings, work / f"exit{exit_layer}.safetensors", sequences=sequences
        )
        seconds = time.perf_counter() - t0
        _, held_out = split(sequences, settings.held_out, settings.seed)
        same, conf = draft_vs_target(adapter, lm, held_out)
        a = float(same.float().mean())
        d, verify = costs(lm, adapter, exit_layer)
        speed, k = predicted(a, d, verify)
        row = {
            "model": args.model,
            "activations": lm.activations,
            "exit_layer": exit_layer,
            "steps": args.steps,
            "train_seconds": round(seconds, 1),
            "agreement": round(a, 4),
            "expected_acceptance": round(adapter.settings.expected_acceptance, 4),
            "draft_cost": round(d, 3),
            "verify_cost": {m: round(v, 3) for m, v in verify.items()},
            "predicted_speedup": round(speed, 3),
            "best_k": k,
            "by_eta": eta_table(same, conf),
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
        Path(args.out).write_text(json.dumps(rows, indent=1))
    print(f"{'exit':>4} {'agree':>6} {'E[acc]':>6} {'draft':>6} {'v(2)':>5} {'pred':>5} k")
    for r in rows:
        print(
            f"{r['exit_layer']:>4} {r['agreement']:>6.3f} {r['expected_acceptance']:>6.3f} "
            f"{r['draft_cost']:>6.3f} {r['verify_cost'][2]:>5.2f} {r['predicted_speedup']:>5.2f} "
            f"{r['best_k']}"
        )


if __name__ == "__main__":
    main()
