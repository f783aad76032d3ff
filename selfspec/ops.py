"""The engine's element-wise and small building blocks, shared by the torch path, the
Kangaroo adapter and the tests: RMSNorm as each family rounds it, a linear that takes the
native kernels where they apply, the rotate-half rotary helper and the causal mask."""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import Tensor

from selfspec import native
from selfspec.weights import Weight

__all__ = ["KERNEL_DTYPES", "rms_norm", "linear", "rotate_half", "rope_tables", "causal_mask"]

KERNEL_DTYPES = (torch.float32, torch.float16, torch.bfloat16)  # weights the kernels read


def rms_norm(x: Tensor, w: Tensor, eps: float, offset: float) -> Tensor:
    """RMSNorm as each family rounds it: Llama scales after casting back, Gemma before."""
    if not offset and x.dtype == torch.float32:
        return F.rms_norm(x, w.shape, w, eps)  # one fused kernel, the same float32 maths
    xf = x.float()
    xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)
    if offset:
        return (xf * (offset + w.float())).to(x.dtype)
    return w * xf.to(x.dtype)


def linear(x: Tensor, w: Tensor, b: Tensor | None = None) -> Tensor:
    """F.linear, through the native kernels where they apply: float32 activations
    on a CPU, a float32/float16/bfloat16 weight, no autograd, at most 16 rows."""
    rows = x.numel() // x.shape[-1] if x.shape[-1] else 0
    if (
        0 < rows <= 16
        and x.dtype == torch.float32
        and x.device.type == "cpu"
        and w.dtype in KERNEL_DTYPES
        and (b is None or b.dtype == torch.float32)
        and not (torch.is_grad_enabled() and (x.requires_grad or w.requires_grad))
        and not torch.compiler.is_compiling()
        and native.available()
    ):
        return native.linear(x, Weight.dense_of(w), b)
    return F.linear(x, w, b)


def rotate_half(x: Tensor) -> Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def rope_tables(
    inv_freq: Tensor, size: int, scale: float, dtype: torch.dtype, device: torch.device
) -> tuple[Tensor, Tensor]:
    """cos, sin [size, D] of positions 0..size-1 (rotate-half convention), times `scale`."""
    freqs = torch.outer(torch.arange(size, device=device, dtype=torch.float32), inv_freq.to(device))
    emb = torch.cat((freqs, freqs), dim=-1)  # [size, D]
    return (emb.cos() * scale).to(dtype), (emb.sin() * scale).to(dtype)


def causal_mask(pos: int, t: int, window: int | None, device: torch.device | str) -> Tensor | None:
    """Boolean mask [T, pos+T] (True = attend) for T new queries after `pos` cached keys.

    Every layer of a pass asks for the same mask: it is built once and shared (read-only),
    separately inside and outside inference mode (autograd refuses inference tensors).
    A compiled graph builds it itself (the cache is Python state the compiler would skip).
    """
    build = _causal_mask.__wrapped__ if torch.compiler.is_compiling() else _causal_mask
    return build(pos, t, window, torch.device(device), torch.is_inference_mode_enabled())


@functools.lru_cache(maxsize=8)
def _causal_mask(pos: int, t: int, window: int | None, device, _inference: bool):
    s = pos + t
    if t == 1 and (window is None or s <= window):
        return None
    q_pos = torch.arange(pos, s, device=device)[:, None]  # [T, 1]
    k_pos = torch.arange(s, device=device)[None, :]  # [1, S]
    mask = k_pos <= q_pos
    if window is not None:
        mask &= k_pos > q_pos - window
    return mask
