"""Where a decoding step's time goes: one token through the bundled model at a given cache
length, split into the native calls and their parts, with the bytes each reads.

    python scripts/profile_step.py --threads 1 --context 256 --out docs/bench/step-profile.json

Parts, each timed on its own (fastest of --repeats runs): the embedding lookup, the layer
stack (one native call), the final norm + LM head, every weight matrix's product alone
(their sum is the "products" share of the layer stack; the rest of the stack is
attention, norms, rotary, activations and cache writes), and the whole `forward` (its
excess over the three calls is Python and ctypes overhead). Bytes: the weights one step
reads and the keys and values attention reads at that context length.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from collections.abc import Callable
from pathlib import Path

import torch

from selfspec import native
from selfspec.loading import load_model
from selfspec.weights import Weight


def min_ms(fn: Callable[[], object], repeats: int) -> float:
    """The fastest of `repeats` runs, in ms: on a shared machine the minimum is the least
    disturbed estimate of what a call costs (the median mixes in other processes)."""
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times) * 1e3


def profile(model: str, dtype: str, context: int, repeats: int) -> dict:
    lm = load_model(model, device="cpu", dtype=dtype)
    eng = lm.engine
    cfg = eng.cfg
    cache = eng.new_cache(context + 8)
    ids = torch.randint(0, cfg.vocab_size, (1, context + 1))
    with eng.decoding():  # as the decoding loops run (torch on one thread)
        eng.forward(ids[:, :context], cache, 0)
        tok = ids[:, context:]
        h = eng.embed(tok)
        top = eng.run_layers(h, cache, context)
        parts = {
            "step (forward, one token)": min_ms(lambda: eng.forward(tok, cache, context), repeats),
            "embedding": min_ms(lambda: eng.embed(tok), repeats),
            "layer stack (one native call)": min_ms(
                lambda: eng.run_layers(h, cache, context), repeats
            ),
            "final norm + LM head": min_ms(lambda: eng.logits(top), repeats),
        }
        # Each product timed alone pays a Python/ctypes call; a 1x32 product measures it.
        tiny = Weight.dense_of(torch.randn(1, 32))
        call = min_ms(lambda: native.linear(torch.randn(1, 32), tiny), repeats)
        per_matrix: dict[str, float] = {}
        for nl in eng.native_layers:
            for name, w in zip(
                ("q", "k", "v", "o", "gate", "up", "down"), nl.matrices(), strict=False
            ):
                x = torch.randn(1, w.k)
                ms = min_ms(lambda w=w, x=x: native.linear(x, w), max(5, repeats // 4))
                per_matrix[name] = per_matrix.get(name, 0.0) + ms - call
        products = sum(per_matrix.values())
    calls = sum(parts[k] for k in list(parts)[1:])
    parts["layer products (sum of matrices alone)"] = products
    parts["attention, norms, rotary, activations, cache writes"] = (
        parts["layer stack (one native call)"] - products
    )
    parts["Python and ctypes overhead"] = parts["step (forward, one token)"] - calls
    # A step reads every layer matrix and the LM head; of the embedding, one row.
    weights = sum(w.nbytes for nl in eng.native_layers for w in nl.matrices())
    weights += eng.head_weight.nbytes
    kv = 2 * cfg.n_layers * cfg.n_kv_heads * context * cfg.head_dim * 4
    step_s = parts["step (forward, one token)"] / 1e3
    return {
        "model": lm.name,
        "weights": lm.weight_format,
        "dtype": dtype,
        "threads": torch.get_num_threads(),
        "context": context,
        "cpu": platform.processor() or platform.machine(),
        "cpu_flags": sorted(
            f for f in native.cpu_flags() if f.startswith(("avx", "fma", "f16c", "amx"))
        ),
        "kernel": native.status(),
        "ms": {k: round(v, 3) for k, v in parts.items()},
        "ms_per_matrix_kind": {k: round(v, 3) for k, v in per_matrix.items()},
        "bytes": {"weights per step": weights, "keys and values read": kv},
        "GB_per_s": round((weights + kv) / step_s / 1e9, 2),
        "tokens_per_s": round(1 / step_s, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="bundled")
    ap.add_argument("--dtype", default="auto")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--context", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=40)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    report = profile(args.model, args.dtype, args.context, args.repeats)
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
