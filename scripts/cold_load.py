"""A cold load of the bundled model, as a fresh process sees it: how long `load_model`
takes (after Python, torch and transformers are imported, which the app does at start
anyway), and how much resident memory the model adds, against the GGUF file's size.

    python scripts/cold_load.py [--dtype auto] [--out docs/bench/cold-load.json]

Nothing is cached between runs except the compiled native library (built once per source
version); pass --fresh-kernels to time a first start that compiles it too.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path


def rss_mb() -> float:
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dtype", default="auto")
    ap.add_argument("--fresh-kernels", action="store_true")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    if args.fresh_kernels:
        os.environ["SELFSPEC_CACHE_DIR"] = tempfile.mkdtemp(prefix="selfspec-cold-")
    t0 = time.perf_counter()
    import torch  # noqa: F401
    import transformers  # noqa: F401

    from selfspec.loading import BUNDLED_FILE, bundled_folder, load_model

    imported = time.perf_counter()
    before = rss_mb()
    lm = load_model("bundled", device="cpu", dtype=args.dtype)
    loaded = time.perf_counter()
    size = (bundled_folder() / BUNDLED_FILE).stat().st_size
    eng = lm.engine
    tensors = [eng.embedding_weight.data, eng.head_weight.data, eng.final_norm]
    for nl in eng.native_layers or []:
        tensors += [w.data for w in nl.matrices()] + [nl.attn_norm, nl.mlp_norm]
    # What the weights keep resident: every storage they view, once (the file's bytes are
    # one buffer, and reordered query/key rows are copies).
    storages = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in tensors}
    report = {
        "dtype": args.dtype,
        "weights": lm.weight_format,
        "imports_s": round(imported - t0, 2),
        "load_model_s": round(loaded - imported, 2),
        "rss_added_mb": round(rss_mb() - before, 1),
        "weight_bytes_mb": round(lm.engine.weight_bytes() / 1e6, 1),
        "weight_storage_mb": round(sum(storages.values()) / 1e6, 1),
        "gguf_file_mb": round(size / 1e6, 1),
        "storage_over_file": round(sum(storages.values()) / size, 3),
        "fresh_kernels": args.fresh_kernels,
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
