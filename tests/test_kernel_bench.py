"""The kernel benchmark (scripts/kernel_bench.py): its synthetic weights are sane blocks,
and a comparison refuses a kernel whose products differ from this version's."""

from __future__ import annotations

import shutil

import pytest
import torch

from selfspec import native
from tests.script_helpers import load_script

kernel_bench = load_script("kernel_bench")

needs_native = pytest.mark.skipif(not native.available(), reason="native kernels unavailable")


@pytest.mark.parametrize("fmt", kernel_bench.FORMATS)
def test_synthetic_weights_are_finite_and_varied(fmt):
    """Random bytes as half-float scales would give NaN, infinities or denormals, which
    take other paths through the floating-point unit than real weights do."""
    dense = kernel_bench.synthetic_weight(fmt, 4, 256).dense()
    assert torch.isfinite(dense).all()
    assert dense.abs().max() < 300  # d = 0.0625 times at most a Q6_K scale (127) times 32
    assert dense.std() > 0.1


@needs_native
def test_a_comparison_reports_both_versions_and_refuses_a_different_kernel(tmp_path):
    same = kernel_bench.build_other(native.CSRC)
    report = kernel_bench.bench(["Q4_1"], [1, 2], 32, 256, repeats=2, rounds=2, other=same)
    assert set(report["results"]) == {"this", "against"}
    assert report["results"]["this"]["Q4_1"]["1"]["cost_vs_first"] == 1.0

    broken = tmp_path / "csrc"
    shutil.copytree(native.CSRC, broken)
    source = (broken / "engine.c").read_text()
    # the Q4_1 register load adds the block's minimum; without it every product is wrong
    mutated = source.replace(
        "_mm256_cvtepi32_ps(_mm256_and_si256(w0, m4)), m)",
        "_mm256_cvtepi32_ps(_mm256_and_si256(w0, m4)), _mm256_setzero_ps())",
    )
    assert mutated != source
    (broken / "engine.c").write_text(mutated)
    with pytest.raises(SystemExit, match="differs"):
        kernel_bench.bench(["Q4_1"], [1], 32, 256, 1, 1, kernel_bench.build_other(broken))
