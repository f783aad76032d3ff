"""Shared model fixtures helpers: tiny random models per architecture, cached per session."""

from __future__ import annotations

from functools import cache

import torch

from selfspec.loading import TINY_MODELS, LoadedModel, load_model

ARCHS = TINY_MODELS


@cache
def tiny(name: str, dtype: str = "float64") -> LoadedModel:
    """A tiny model; cached because every test may share it (they never change weights)."""
    return load_model(name, device="cpu", dtype=dtype)


@cache
def bundled(dtype: str = "float32") -> LoadedModel:
    return load_model("bundled", device="cpu", dtype=dtype)


def random_ids(n: int, seed: int, vocab: int = 256) -> list[int]:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, vocab, (n,), generator=g).tolist()
