"""The KV cache: keys and values per layer, preallocated, written by absolute position."""

from __future__ import annotations

import torch

from selfspec import native
from selfspec.config import ModelConfig

__all__ = ["KVCache"]


class KVCache:
    """Preallocated keys and values per layer, written by absolute position.

    Rolling back rejected draft tokens needs no copy: the caller simply continues from an
    earlier position and the stale entries beyond it are overwritten before they are read.
    """

    def __init__(
        self, cfg: ModelConfig, max_len: int, batch: int, device: torch.device, dtype: torch.dtype
    ) -> None:
        shape = (batch, cfg.n_kv_heads, max_len, cfg.head_dim)
        self.max_len = max_len
        self.k = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(cfg.n_layers)]
        self.v = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(cfg.n_layers)]
        # the native kernels' checked pointers into these, per layer range and rotary tables
        self.native: dict[tuple, native.LayerBuffers] = {}
