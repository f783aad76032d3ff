"""Shared model fixtures helpers: tiny random models per architecture, cached per session."""

from __future__ import annotations

import os
from functools import cache

import torch

from selfspec.loading import TINY_MODELS, LoadedModel, load_model
from selfspec.weights import BLOCKS, GGMLType, Weight

ARCHS = TINY_MODELS
# scripts/gpu_check.sh runs the selfspec tests on CUDA by setting this (see tests/conftest.py).
DEVICE = os.environ.get("SELFSPEC_TEST_DEVICE", "cpu")


@cache
def tiny(name: str, dtype: str = "float64") -> LoadedModel:
    """A tiny model; cached because every test may share it (they never change weights)."""
    return load_model(name, device=DEVICE, dtype=dtype)


@cache
def bundled(dtype: str = "float32") -> LoadedModel:
    """The bundled model: "auto" runs on the file's blocks, other dtypes on dense weights."""
    return load_model("bundled", device="cpu", dtype=dtype)


def random_ids(n: int, seed: int, vocab: int = 256) -> list[int]:
    g = torch.Generator(device="cpu").manual_seed(seed)
    return torch.randint(0, vocab, (n,), generator=g, device="cpu").tolist()


def random_weight(qtype: GGMLType, n: int, k: int, seed: int = 0) -> Weight:
    """Random blocks whose float16 scale fields hold small finite values (random bytes
    elsewhere): every quant value is exercised, no block decodes to inf or NaN."""
    g = torch.Generator().manual_seed(seed)
    size, nbytes = BLOCKS[qtype]
    if qtype in (GGMLType.F32, GGMLType.F16, GGMLType.BF16):
        dtype = {GGMLType.F32: torch.float32, GGMLType.F16: torch.float16}.get(
            qtype, torch.bfloat16
        )
        return Weight.dense_of(torch.randn(n, k, generator=g).to(dtype))
    raw = torch.randint(0, 256, (n, k // size, nbytes), generator=g, dtype=torch.uint8)
    halves = torch.rand(n, k // size, 2, generator=g) * 0.02 + 0.001
    pair = halves.half().view(torch.uint8)  # [n, blocks, 4]: two float16 values
    if qtype == GGMLType.Q6_K:
        raw[..., -2:] = pair[..., :2]  # d is last
    elif qtype in (GGMLType.Q4_K, GGMLType.Q4_1):
        raw[..., 0:4] = pair  # d, dmin / d, m
    else:
        raw[..., 0:2] = pair[..., :2]  # d first
    return Weight.blocks(raw.reshape(n, -1), qtype, n, k)
