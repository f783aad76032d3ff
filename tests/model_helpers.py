"""Shared model fixtures helpers: tiny random models per architecture, cached per session."""

from __future__ import annotations

import os
from functools import cache

import torch

from selfspec.loading import TINY_MODELS, LoadedModel, load_model

ARCHS = TINY_MODELS
# scripts/gpu_check.sh runs the selfspec tests on CUDA by setting this (see tests/conftest.py).
DEVICE = os.environ.get("SELFSPEC_TEST_DEVICE", "cpu")


@cache
def tiny(name: str, dtype: str = "float64") -> LoadedModel:
    """A tiny model; cached because every test may share it (they never change weights)."""
    return load_model(name, device=DEVICE, dtype=dtype)


@cache
def bundled(dtype: str = "float32") -> LoadedModel:
    return load_model("bundled", device="cpu", dtype=dtype)


def random_ids(n: int, seed: int, vocab: int = 256) -> list[int]:
    g = torch.Generator(device="cpu").manual_seed(seed)
    return torch.randint(0, vocab, (n,), generator=g, device="cpu").tolist()
