"""Throughput of the native product kernel per weight format and input-row count.

    python scripts/kernel_bench.py --out artifacts/kernel-bench.json

Each format gets a synthetic weight of --n rows by --k columns (random blocks with sane
scales, so no NaN or denormal slows a path down), small enough to stay in cache: the
figure is the kernel's compute rate, not the memory's. For each row count the product
runs --repeats times in a row, --rounds times; the fastest round counts (on a shared
machine the least disturbed estimate). Reported: billions of weights per second (weights
of the matrix over seconds per call, whatever the row count) and the cost of a call
relative to one input row, which is what a verification pass of that many tokens costs.
`--against DIR` builds another version of the kernel sources (a `selfspec/csrc` folder
of another checkout) and runs it interleaved with this one, round by round, so both meet
the same load; each output is checked to equal this version's bit for bit.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import platform
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from selfspec import native
from selfspec.weights import BLOCKS, GGMLType, Weight

FORMATS = ("Q4_0", "Q4_1", "Q5_0", "Q8_0", "Q4_K", "Q6_K")
HALF = np.frombuffer(np.float16(0.0625).tobytes(), np.uint8)


def synthetic_weight(fmt: str, n: int, k: int, seed: int = 0) -> Weight:
    """Random blocks of `fmt` whose half-float scales are all 0.0625."""
    qtype = GGMLType[fmt]
    size, nbytes = BLOCKS[qtype]
    raw = np.random.default_rng(seed).integers(0, 256, (n, k // size, nbytes), dtype=np.uint8)
    if qtype == GGMLType.Q6_K:
        raw[:, :, nbytes - 2 :] = HALF  # d comes last
    else:
        raw[:, :, 0:2] = HALF  # d first
        if qtype in (GGMLType.Q4_1, GGMLType.Q4_K):
            raw[:, :, 2:4] = HALF  # then m / dmin
    return Weight(data=torch.from_numpy(raw.reshape(n, -1).copy()), qtype=qtype, n=n, k=k)


def build_other(csrc: Path) -> ctypes.CDLL:
    """Another version's engine.c, compiled with this version's flags (the file is
    removed once loaded: the loaded library stays mapped)."""
    with tempfile.TemporaryDirectory() as tmp:
        so = Path(tmp) / "other.so"
        cmd = ["cc", *native.FLAGS, f"-I{csrc}", str(csrc / "engine.c"), "-o", str(so), "-lm"]
        subprocess.run(cmd, check=True, capture_output=True)
        return ctypes.CDLL(str(so))


def caller(lib: ctypes.CDLL, x: torch.Tensor, w: Weight) -> Callable[[], torch.Tensor]:
    """One product through `lib`, called directly (the same call cost for every version)."""
    out, cw = torch.empty(x.shape[0], w.n), native.cweight(w)
    args = (ctypes.c_void_p(x.data_ptr()), x.shape[0], ctypes.byref(cw), None)

    def run() -> torch.Tensor:
        lib.ss_linear(*args, ctypes.c_void_p(out.data_ptr()), torch.get_num_threads())
        return out

    return run


def seconds_per_call(calls: dict[str, Callable[[], torch.Tensor]], repeats: int, rounds: int):
    """The fastest round's seconds per call of each version, rounds interleaved."""
    want = calls["this"]().clone()  # warm-up: touches the weight
    for name, call in calls.items():
        if not torch.equal(call(), want):
            raise SystemExit(f"{name}: the product differs from this version's")
    best = dict.fromkeys(calls, float("inf"))
    for _ in range(rounds):
        for name, call in calls.items():
            t0 = time.perf_counter()
            for _ in range(repeats):
                call()
            best[name] = min(best[name], (time.perf_counter() - t0) / repeats)
    return best


def bench(
    formats: list[str],
    rows: list[int],
    n: int,
    k: int,
    repeats: int,
    rounds: int,
    other: ctypes.CDLL | None = None,
) -> dict:
    libs = {"this": native._library()} | ({"against": other} if other else {})
    results: dict[str, dict[str, dict[str, dict[str, float]]]] = {name: {} for name in libs}
    for fmt in formats:
        w = synthetic_weight(fmt, n, k)
        for m in rows:
            x = torch.randn(m, k)
            seconds = seconds_per_call(
                {name: caller(lib, x, w) for name, lib in libs.items()}, repeats, rounds
            )
            for name, s in seconds.items():
                results[name].setdefault(fmt, {})[str(m)] = {
                    "us": round(s * 1e6, 2),
                    "Gweights_per_s": round(n * k / s / 1e9, 2),
                }
        for name in libs:
            per_rows = results[name][fmt]
            one = per_rows[str(rows[0])]["us"]
            for v in per_rows.values():
                v["cost_vs_first"] = round(v["us"] / one, 2)
            print(fmt, name, {m: v["Gweights_per_s"] for m, v in per_rows.items()}, flush=True)
    return {
        "shape": [n, k],
        "threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
        "cpu_flags": sorted(
            f for f in native.cpu_flags() if f.startswith(("avx", "fma", "f16c", "amx"))
        ),
        "kernel": native.status(),
        "repeats": repeats,
        "rounds": rounds,
        "results": results,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--formats", default=",".join(FORMATS))
    ap.add_argument("--rows", default="1,2,4,8,64", help="input-row counts, the first the base")
    ap.add_argument("--n", type=int, default=512, help="weight rows")
    ap.add_argument("--k", type=int, default=1536, help="weight columns (a multiple of 256)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--against", type=Path, help="another checkout's selfspec/csrc folder")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    if args.k % 256:
        ap.error(f"--k {args.k}: use a multiple of 256 (whole K-quant super-blocks)")
    if not native.available():
        ap.error(f"the native kernel is not available here: {native.status()}")
    torch.set_num_threads(args.threads)
    report = bench(
        [f.strip().upper() for f in args.formats.split(",")],
        [int(r) for r in args.rows.split(",")],
        args.n,
        args.k,
        args.repeats,
        args.rounds,
        build_other(args.against) if args.against else None,
    )
    if args.against:
        report["against"] = str(args.against)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
