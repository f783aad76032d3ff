"""Products with 8-bit activations (csrc/dot8.h, `dtype="int8"`): each output is the
integer method's sum (input rows quantized per 32 values for the legacy formats, per 256
for the K-quants; the weights' own quants) up to float32 rounding, every row is computed alike whatever the row count or thread count, and
a non-finite input row gives NaN rather than a finite wrong number.

The reference below is written from the definition in dot8.h's header, in float64 on the
dequantized weights: sum over blocks j of d_j * sum_i w_i * q_i, with d_j = max|x| / 127 over
the block and q = round(x * (127 / max|x|)) to nearest even, in float32 as the kernel
rounds it.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from selfspec import native
from selfspec.weights import BLOCKS, GGMLType
from tests.model_helpers import random_weight
from tests.test_native import QUANTIZED, needs_native


def int8_weight(qtype: GGMLType, n: int, k: int, seed: int):
    w = random_weight(qtype, n, k, seed=seed)
    w.int8_activations = True
    return w


def quantized_input(x: torch.Tensor, block: int) -> torch.Tensor:
    """x as the kernels see it: per `block` values, d * round(x * (127 / max|x|))."""
    v = x.numpy().astype(np.float32).reshape(x.shape[0], -1, block)
    amax = np.abs(v).max(axis=-1, keepdims=True)
    inv = np.where(amax > 0, np.float32(127) / np.where(amax > 0, amax, 1), np.float32(0))
    q = np.rint(v * inv.astype(np.float32))  # float32 product, rounded half to even
    d = amax / np.float32(127)
    return torch.from_numpy((q.astype(np.float64) * d.astype(np.float64)).reshape(x.shape))


@needs_native
@pytest.mark.parametrize("qtype", QUANTIZED, ids=lambda t: t.name)
def test_int8_products_follow_the_definition(qtype):
    k = 768 if BLOCKS[qtype][0] == 256 else 544
    w = int8_weight(qtype, 37, k, seed=int(qtype))
    x = torch.randn(5, k) * torch.linspace(0.1, 3.0, k)  # blocks of different scales
    x[2, 40] = 25.0  # an outlier: its block's other values get coarse quants
    bias = torch.randn(37)
    got = native.linear(x, w, bias).double()
    dense = w.dense().double()
    xq = quantized_input(x, 32 if BLOCKS[qtype][0] == 32 else 256)
    want = xq @ dense.T + bias.double()
    bound = 1e-5 * (xq.abs() @ dense.abs().T) + 1e-6
    assert ((got - want).abs() <= bound).all()
    # and it is not the float32 product: the mode is a sum of its own
    assert not torch.equal(
        native.linear(x, random_weight(qtype, 37, k, seed=int(qtype))), got.float()
    )


@needs_native
@pytest.mark.parametrize("qtype", QUANTIZED, ids=lambda t: t.name)
def test_int8_rows_are_the_same_alone_or_in_a_block(qtype):
    """Every row count (one group of rows, several, past the float path's 8-row limit)
    and both thread counts give each row the bits it gets alone."""
    k = 512 if BLOCKS[qtype][0] == 256 else 96
    w = int8_weight(qtype, 70, k, seed=7)
    x = torch.randn(13, k)
    alone = torch.cat([native.linear(x[i : i + 1], w) for i in range(13)])
    before = torch.get_num_threads()
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            for rows in (1, 2, 3, 4, 5, 7, 8, 9, 13):
                assert torch.equal(native.linear(x[:rows], w), alone[:rows]), (threads, rows)
    finally:
        torch.set_num_threads(before)


@needs_native
def test_a_non_finite_input_row_gives_nan_not_a_wrong_number():
    w = int8_weight(GGMLType.Q4_K, 8, 256, seed=3)
    x = torch.randn(3, 256)
    x[1, 5] = float("inf")
    x[2, 200] = float("nan")
    y = native.linear(x, w)
    assert torch.isfinite(y[0]).all()
    assert torch.isnan(y[1]).all() and torch.isnan(y[2]).all()


def test_int8_is_refused_where_there_are_no_file_blocks():
    from selfspec.errors import BadInputError
    from selfspec.loading import load_model

    with pytest.raises(BadInputError, match="int8 multiplies a GGUF file's own blocks"):
        load_model("tiny-llama", device="cpu", dtype="int8")


def test_the_app_prefers_int8_on_model_packages_only():
    from selfspec.loading import preferred_dtype

    assert preferred_dtype("bundled") == "auto"  # int8 is no faster there
    assert preferred_dtype("tiny-llama") == "auto"
    assert preferred_dtype("qwen2.5-coder-1.5b", "float32") == "float32"  # asked outright
    want = "int8" if native.available() else "auto"
    assert preferred_dtype("qwen2.5-coder-1.5b") == want
    assert preferred_dtype("gemma3-270m", device="cpu") == want
