"""Our native CPU kernels (csrc/engine.c, csrc/quant.h), built on first use and called
through ctypes.

The engine runs a decoder layer, the LM head and the embedding here, in float32, on
weights kept in their GGUF block formats or dense (see `selfspec.weights`), with every
output row computed the same way whatever the number of rows in the call: that is what
makes every speculative method token-for-token equal to plain decoding (docs/engine.md).

Built on first use by `selfspec.native_build` (once per source version, safely under
concurrent builders). The library needs x86-64 with AVX2, FMA and F16C; elsewhere (ARM,
Apple Silicon, no compiler, ``SELFSPEC_KERNEL=0``) `available()` is False, the engine
warns once and runs torch's operations on dense weights, and the benchmark report says
that exactness is then not guaranteed.
"""

from __future__ import annotations

import ctypes
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache

import numpy as np
import torch
from torch import Tensor

from selfspec.config import ModelConfig
from selfspec.native_build import CSRC, FLAGS, build, cpu_flags, unsupported_reason
from selfspec.weights import BLOCKS, GGMLType, Weight

__all__ = [
    "available",
    "status",
    "cpu_flags",
    "CSRC",
    "FLAGS",
    "dequantize",
    "linear",
    "rows",
    "layers",
    "kernel_threads",
    "layer_buffers",
    "LayerBuffers",
    "logits",
    "LayerConfig",
    "LayerWeights",
    "CWeight",
]

log = logging.getLogger(__name__)


class CWeight(ctypes.Structure):
    _fields_ = [
        ("data", ctypes.c_void_p),
        ("row_bytes", ctypes.c_long),
        ("type", ctypes.c_int),
        ("n", ctypes.c_long),
        ("k", ctypes.c_long),
        ("act8", ctypes.c_int),
    ]


class LayerConfig(ctypes.Structure):
    _fields_ = [
        ("dim", ctypes.c_long),
        ("hidden", ctypes.c_long),
        ("n_heads", ctypes.c_long),
        ("n_kv_heads", ctypes.c_long),
        ("head_dim", ctypes.c_long),
        ("eps", ctypes.c_float),
        ("norm_offset", ctypes.c_float),
        ("query_scale", ctypes.c_float),
        ("attn_softcap", ctypes.c_float),
        ("gelu", ctypes.c_int),
        ("window", ctypes.c_long),
    ]


class LayerWeights(ctypes.Structure):
    _fields_ = [
        ("attn_norm", ctypes.c_void_p),
        ("q", CWeight),
        ("k", CWeight),
        ("v", CWeight),
        ("o", CWeight),
        ("bq", ctypes.c_void_p),
        ("bk", ctypes.c_void_p),
        ("bv", ctypes.c_void_p),
        ("mlp_norm", ctypes.c_void_p),
        ("gate", CWeight),
        ("up", CWeight),
        ("down", CWeight),
        ("post_attn_norm", ctypes.c_void_p),
        ("post_mlp_norm", ctypes.c_void_p),
        ("q_norm", ctypes.c_void_p),
        ("k_norm", ctypes.c_void_p),
    ]


def layer_config(cfg: ModelConfig, i: int) -> LayerConfig:
    """The C config of layer i of a model."""
    return LayerConfig(
        cfg.dim,
        cfg.intermediate_size,
        cfg.n_heads,
        cfg.n_kv_heads,
        cfg.head_dim,
        cfg.norm_eps,
        cfg.norm_offset,
        cfg.query_scale,
        cfg.attn_softcap or 0.0,
        int(cfg.activation != "silu"),
        cfg.windows[i] or 0 if cfg.windows else 0,
    )


@cache
def _library() -> ctypes.CDLL | None:
    reason = unsupported_reason()
    if reason is None:
        try:
            lib = ctypes.CDLL(str(build()))
        except (OSError, RuntimeError) as err:
            reason = str(err)
    if reason is not None:
        log.warning(
            "Native kernels unavailable (%s): using torch on dense float weights; outputs "
            "of speculative methods are then not guaranteed to be token-identical.",
            reason,
        )
        return None
    ptr, c_long, c_int, c_float = ctypes.c_void_p, ctypes.c_long, ctypes.c_int, ctypes.c_float
    wp = ctypes.POINTER(CWeight)
    lib.ss_linear.argtypes = [ptr, c_long, wp, ptr, ptr, c_int]
    lib.ss_rows.argtypes = [wp, ptr, c_long, c_float, ptr]
    lib.ss_dequant_rows.argtypes = [c_int, ptr, c_long, c_long, c_long, ptr]
    lib.ss_layers.argtypes = [
        *(c_long, ctypes.POINTER(LayerConfig), ctypes.POINTER(LayerWeights), ptr, c_long, c_long),
        *(ptr, ptr, c_long, ptr, ptr, ctypes.c_char_p, ctypes.c_char_p, c_int),
    ]
    lib.ss_layers.restype = lib.ss_logits.restype = c_int
    lib.ss_logits.argtypes = [ptr, c_long, c_long, ptr, c_float, c_float, wp, c_float, ptr, c_int]
    for fn in (lib.ss_linear, lib.ss_rows, lib.ss_dequant_rows):
        fn.restype = None
    return lib


def available() -> bool:
    """Whether the native kernels are built and usable on this machine."""
    return _library() is not None


def status() -> str:
    """One line for reports: which path runs, and whether exactness is guaranteed."""
    if available():
        return "native (AVX2/FMA/F16C): row-invariant, exact"
    return f"torch fallback ({unsupported_reason() or 'build failed'}): exactness not guaranteed"


# ----------------------------------------------------------------------------- checks
def _check(t: Tensor, name: str, shape: tuple[int, ...] | None = None) -> int:
    """The pointer of a float32, contiguous CPU tensor of the given shape, or a clear error
    (a mismatched call would otherwise read or write out of bounds)."""
    if t.device.type != "cpu" or t.dtype != torch.float32 or not t.is_contiguous():
        raise ValueError(
            f"{name}: need a contiguous float32 CPU tensor, got {t.dtype} on "
            f"{t.device} (contiguous: {t.is_contiguous()})"
        )
    if shape is not None and tuple(t.shape) != shape:
        raise ValueError(f"{name}: expected shape {shape}, got {tuple(t.shape)}")
    return t.data_ptr()


def cweight(w: Weight) -> CWeight:
    """The C view of a weight, after checking that its bytes cover [n, k] in its format."""
    size, nbytes = BLOCKS[w.qtype]
    need = w.k // size * nbytes
    dense = {
        GGMLType.F32: torch.float32,
        GGMLType.F16: torch.float16,
        GGMLType.BF16: torch.bfloat16,
    }
    if w.data.dtype != dense.get(w.qtype, torch.uint8):
        raise ValueError(f"a {w.qtype.name} weight cannot hold {w.data.dtype} data")
    if w.k % size or w.data.device.type != "cpu" or w.data.stride(-1) != 1:
        raise ValueError(f"a {w.qtype.name} weight [{w.n}, {w.k}] is not laid out for the kernel")
    if (
        w.data.shape[0] != w.n
        or w.row_bytes < need
        or w.data.shape[-1] * w.data.element_size() < need
    ):
        raise ValueError(
            f"{w.qtype.name} weight [{w.n}, {w.k}]: rows of {w.row_bytes} bytes, need {need}"
        )
    return CWeight(w.data.data_ptr(), w.row_bytes, int(w.qtype), w.n, w.k, int(w.int8_activations))


_kernel = threading.local()


def _threads() -> int:
    """The kernels' thread count: the one `kernel_threads` fixed, else torch's."""
    return getattr(_kernel, "threads", None) or torch.get_num_threads()


@contextmanager
def kernel_threads() -> Iterator[None]:
    """Within: the kernels keep torch's thread count, and torch runs on one thread.

    Why: both thread pools wait for work spinning. On a machine with as many cores as
    threads, a torch operation between two kernel calls (an argmax over the vocabulary,
    Kangaroo's adapter) wanted the core where the kernels' helper was still spinning,
    and the helper in turn found torch's worker there: on the bundled model at two
    threads, vanilla decoding ran about 10% faster, prompt lookup 15% and Kangaroo 50%
    with torch kept to one thread. The torch operations of a decoding loop are small, so
    one thread loses nothing; the Hugging Face peers, which are all torch, do not use this.
    """
    before, fixed = torch.get_num_threads(), getattr(_kernel, "threads", None)
    _kernel.threads = _threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
        _kernel.threads = fixed


# ----------------------------------------------------------------------------- calls
def dequantize(raw: Tensor, qtype: int, k: int) -> Tensor:
    """float32 [n, k] of raw uint8 [n, row_bytes] blocks of `qtype`: gguf's values exactly
    (through gguf's own numpy dequantizer where the native library is unavailable)."""
    qtype = GGMLType(qtype)
    raw = raw.contiguous()
    n = raw.shape[0]
    if raw.dtype != torch.uint8:
        raw = raw.view(torch.uint8).reshape(n, -1)
    out = torch.empty(n, k, dtype=torch.float32)
    lib = _library()
    if lib is None:
        import gguf

        values = gguf.quants.dequantize(raw.numpy(), gguf.GGMLQuantizationType(int(qtype)))
        return torch.from_numpy(np.ascontiguousarray(values, dtype=np.float32)).reshape(n, k)
    size, nbytes = BLOCKS[qtype]
    if k % size or raw.shape[1] != k // size * nbytes:
        raise ValueError(
            f"{qtype.name} [{n}, {k}] needs rows of {k // size * nbytes} bytes, got {raw.shape[1]}"
        )
    lib.ss_dequant_rows(int(qtype), raw.data_ptr(), raw.shape[1], n, k, out.data_ptr())
    return out


def linear(x: Tensor, w: Weight, bias: Tensor | None = None) -> Tensor:
    """x [..., k] times w^T (+ bias) -> float32 [..., n], row-invariant."""
    x2 = x.reshape(-1, w.k).float().contiguous()
    out = torch.empty(x2.shape[0], w.n, dtype=torch.float32)
    b = None if bias is None else _check(bias, "bias", (w.n,))
    cw = cweight(w)
    _library().ss_linear(
        _check(x2, "x"), x2.shape[0], ctypes.byref(cw), b, out.data_ptr(), _threads()
    )
    return out.view(*x.shape[:-1], w.n)


def rows(w: Weight, ids: Tensor, scale: float = 0.0) -> Tensor:
    """Rows `ids` [...] of w, dequantized -> float32 [..., k] (times `scale` unless 0)."""
    flat = ids.reshape(-1).to(torch.long).contiguous()
    if flat.numel() and (int(flat.min()) < 0 or int(flat.max()) >= w.n):
        raise IndexError(f"token ids must be in 0..{w.n - 1}")
    out = torch.empty(flat.numel(), w.k, dtype=torch.float32)
    cw = cweight(w)
    _library().ss_rows(ctypes.byref(cw), flat.data_ptr(), flat.numel(), scale, out.data_ptr())
    return out.view(*ids.shape, w.k)


@dataclass(frozen=True)
class LayerBuffers:
    """The checked pointers of a layer range's caches and rotary tables.

    Built once per cache and range and reused every step: checking some 120 tensors
    before each one-token step cost about a quarter of a millisecond, a few percent of
    the step. Holds the tensors, so the pointers stay valid while it lives.
    """

    k: ctypes.Array
    v: ctypes.Array
    cos: ctypes.Array
    sin: ctypes.Array
    shape: tuple[int, int, int]  # each cache's [Hkv, S, D]
    rows: int  # positions the rotary tables cover
    tensors: tuple[Tensor, ...]

    def __len__(self) -> int:
        return len(self.k)


def layer_buffers(
    k_caches: list[Tensor], v_caches: list[Tensor], cos: list[Tensor], sin: list[Tensor]
) -> LayerBuffers:
    """Check and point at caches [Hkv, S, D] and rotary tables [rows, D], one per layer."""
    n = len(k_caches)
    if not len(v_caches) == len(cos) == len(sin) == n:
        raise ValueError("one cache pair and rotary table per layer")
    shape = tuple(k_caches[0].shape) if n else (0, 0, 0)
    d = shape[2]
    for c_, s_ in zip(cos, sin, strict=True):
        if c_.shape[1] != d or s_.shape != c_.shape:
            raise ValueError(f"rotary tables {tuple(c_.shape)} do not fit head size {d}")
    return LayerBuffers(
        (ctypes.c_void_p * n)(*[_check(k, "k cache", shape) for k in k_caches]),
        (ctypes.c_void_p * n)(*[_check(v, "v cache", shape) for v in v_caches]),
        (ctypes.c_void_p * n)(*[_check(x, "cos") for x in cos]),
        (ctypes.c_void_p * n)(*[_check(x, "sin") for x in sin]),
        shape,
        min((c_.shape[0] for c_ in cos), default=0),
        (*k_caches, *v_caches, *cos, *sin),
    )


def layers(
    configs: ctypes.Array,
    weights: ctypes.Array,
    h: Tensor,
    pos: int,
    buffers: LayerBuffers,
    skip_attn: bytes,
    skip_mlp: bytes,
) -> None:
    """Decoder layers on h [T, C] in place, in one native call: layer j of the range uses
    configs[j] (`LayerConfig`), weights[j] (`LayerWeights`, pointers into tensors the
    caller keeps alive), buffers' caches (written at positions pos..pos+T-1) and rotary
    tables, and the skip flags skip_attn[j], skip_mlp[j]."""
    n = len(buffers)
    t, c = h.shape
    if not len(configs) == len(weights) == len(skip_attn) == len(skip_mlp) == n:
        raise ValueError("one config, weight record and skip flag per layer")
    hkv, s, d = buffers.shape
    if n and (c != configs[0].dim or hkv != configs[0].n_kv_heads or d != configs[0].head_dim):
        raise ValueError(f"layers do not fit: h {tuple(h.shape)}, cache {buffers.shape}")
    if pos + t > s:
        raise ValueError(f"positions {pos}..{pos + t - 1} do not fit a cache of {s}")
    if pos + t > buffers.rows:
        raise ValueError("rotary tables shorter than the positions asked for")
    rc = _library().ss_layers(
        n,
        configs,
        weights,
        _check(h, "h"),
        t,
        pos,
        buffers.k,
        buffers.v,
        s,
        buffers.cos,
        buffers.sin,
        skip_attn,
        skip_mlp,
        _threads(),
    )
    if rc:
        raise MemoryError(f"no memory for the activations of {t} tokens")


def logits(
    h: Tensor, norm: Tensor, eps: float, offset: float, head: Weight, softcap: float | None
) -> Tensor:
    """soft-cap(rms_norm(h) head^T) for h [T, C] -> float32 [T, n]."""
    t, c = h.shape
    if head.k != c:
        raise ValueError(f"head [{head.n}, {head.k}] does not take hidden states of width {c}")
    out = torch.empty(t, head.n, dtype=torch.float32)
    cw = cweight(head)
    rc = _library().ss_logits(
        _check(h, "h"),
        t,
        c,
        _check(norm, "final norm", (c,)),
        eps,
        offset,
        ctypes.byref(cw),
        float(softcap or 0.0),
        out.data_ptr(),
        _threads(),
    )
    if rc:
        raise MemoryError(f"no memory for the logits of {t} tokens")
    return out
