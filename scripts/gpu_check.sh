#!/usr/bin/env bash
# GPU check: the selfspec tests on CUDA, then `selfspec bench` on a random ~1.1B
# Llama (timings only: agreement is meaningless with random weights). Usage:
#   scripts/gpu_check.sh OUT_DIR
# Runs on the lent GPU machine (torch + transformers + pytest + hypothesis + scipy present;
# optuna absent, so the search tests are skipped there). About 5 minutes on one H100.
set -uo pipefail
out=${1:?usage: scripts/gpu_check.sh OUT_DIR}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 SELFSPEC_TEST_DEVICE=cuda SELFSPEC_DATA_DIR=$(mktemp -d)
nvidia-smi --query-gpu=name,memory.total --format=csv | tee "$out/gpu.txt"
timeout 300 python3 -m pytest -q -p no:cacheprovider tests/test_engine.py tests/test_decoding.py \
  tests/test_speculative.py tests/test_search.py 2>&1 | tee "$out/tests.txt"
# A fixed skip set for the random model (every other middle layer's attention), since the
# layer search is meaningless on random weights.
python3 - <<'PY'
import json, os, pathlib
d = pathlib.Path(os.environ["SELFSPEC_DATA_DIR"], "profiles"); d.mkdir(parents=True)
(d / "random-1b.skip.json").write_text(json.dumps(
    {"model": "random-1b", "n_layers": 22, "attn": list(range(2, 20, 2)), "mlp": [],
     "note": "fixed set for GPU timings"}))
PY
timeout 240 python3 -m selfspec bench --model random-1b --device cuda --dtype bfloat16 \
  --methods vanilla,hf,skip --limit 6 --max-new-tokens 128 --out "$out/bench-gpu.json" \
  2>&1 | tee "$out/bench.txt"
