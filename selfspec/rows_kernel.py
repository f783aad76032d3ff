"""Our few-row matrix product for float32 and bfloat16 on x86 CPUs with AVX2 (see
csrc/rows_dot.c).

Decoding multiplies 1-16 rows by each weight matrix per step, and those products decide
both plain decoding's speed and what a verification pass costs relative to a plain step,
which is what makes drafting pay or not. The C kernel streams each weight row once for up
to 6 input rows, so on the machine we measure on a whole forward pass over 2 tokens costs
~1.1x one over 1 token, over 6 tokens ~1.3x and over 9 ~1.7x, where with MKL's kernels
it cost 1.5x, 2.4x and 3.2x (the benchmark's calibrated curves); and every output is
summed in the same order for any number of rows, so a token's products are bit-identical
alone or among drafts.

The kernel is compiled on first use with the system C compiler into the selfspec cache
folder (about a second) and called through ctypes, which releases the GIL. Where it cannot
be used (no compiler, a CPU without AVX2/FMA, float16/float64, autograd, a GPU, or
``SELFSPEC_KERNEL=0``) `available()` is False and callers use torch's own product.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import platform
import shutil
import subprocess
from functools import cache
from pathlib import Path

import torch
from torch import Tensor

from selfspec.cache import cache_root

__all__ = ["MAX_ROWS", "DTYPES", "available", "rows_linear", "usable_for"]

log = logging.getLogger(__name__)

DTYPES = (torch.float32, torch.bfloat16)  # weight types the kernel reads
MAX_ROWS = 16  # decoding and verification sizes; longer inputs (prefill) are real GEMMs
# Output rows per work unit: ~150 KB of weights at C=576, kept in L2 for the next row group.
BLOCK = 64
SOURCE = Path(__file__).with_name("csrc") / "rows_dot.c"
FLAGS = ["-O3", "-mavx2", "-mfma", "-fopenmp", "-shared", "-fPIC"]


def _cpu_supported() -> bool:
    if platform.machine().lower() not in {"x86_64", "amd64"}:
        return False
    return torch.backends.cpu.get_cpu_capability() in {"AVX2", "AVX512"}


def _build() -> Path:
    """Compile the kernel once per source version, atomically (a half-written library is
    never loaded: the compiler writes a private file that is then renamed into place)."""
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if not compiler:
        raise RuntimeError("no C compiler (cc or gcc) on PATH")
    digest = hashlib.sha256(SOURCE.read_bytes() + " ".join(FLAGS).encode()).hexdigest()[:16]
    target = cache_root() / "kernels" / f"rows_dot-{digest}.so"
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f"{target.name}.tmp{os.getpid()}")
    try:
        subprocess.run(
            [compiler, *FLAGS, str(SOURCE), "-o", str(tmp)],
            check=True,
            capture_output=True,
            text=True,
        )
        os.replace(tmp, target)
    except subprocess.CalledProcessError as err:
        raise RuntimeError(f"compiling {SOURCE.name} failed: {err.stderr.strip()[:500]}") from err
    finally:
        tmp.unlink(missing_ok=True)
    return target


@cache
def _library() -> ctypes.CDLL | None:
    if os.environ.get("SELFSPEC_KERNEL", "1") == "0" or not _cpu_supported():
        return None
    try:
        lib = ctypes.CDLL(str(_build()))
    except (OSError, RuntimeError) as err:
        log.warning("Few-row kernel unavailable (%s); using torch's matrix product.", err)
        return None
    c_long, ptr = ctypes.c_long, ctypes.c_void_p
    for fn in (lib.rows_dot, lib.rows_dot_bf16):
        fn.argtypes = [ptr, c_long, c_long, ptr, c_long, c_long, ptr, ptr, c_long, ctypes.c_int]
        fn.restype = None
    return lib


def available() -> bool:
    """Whether the kernel is built and usable on this machine."""
    return _library() is not None


def usable_for(x: Tensor, w: Tensor, b: Tensor | None = None) -> bool:
    """Whether `rows_linear(x, w, b)` applies: float32 or bfloat16 on the CPU, no
    autograd, at most MAX_ROWS rows, and a weight whose rows are contiguous ([out, in])."""
    rows = x.numel() // x.shape[-1] if x.shape[-1] else 0
    return (
        0 < rows <= MAX_ROWS
        and x.device.type == "cpu"
        and x.dtype == w.dtype
        and w.dtype in DTYPES
        and w.stride(-1) == 1
        and (b is None or (b.dtype == w.dtype and b.is_contiguous()))
        and not (torch.is_grad_enabled() and (x.requires_grad or w.requires_grad))
        and available()
    )


def rows_linear(x: Tensor, w: Tensor, b: Tensor | None = None) -> Tensor:
    """F.linear(x, w, b) for x [..., K] and w [N, K] through the kernel; check `usable_for`
    first. Uses torch's thread count. bfloat16 weights are widened in the kernel and
    summed in float32 (as bf16 matrix products are); the result is rounded to bfloat16 once.
    """
    k = x.shape[-1]
    x2 = x.reshape(-1, k)  # [M, K]
    if x2.dtype != torch.float32 or not x2.is_contiguous():
        x2 = x2.float().contiguous()
    n = w.shape[0]
    out = x2.new_empty(x2.shape[0], n)  # [M, N] float32
    bf16 = w.dtype == torch.bfloat16
    if bf16 and b is not None:
        b = b.float()
    lib = _library()
    fn = lib.rows_dot_bf16 if bf16 else lib.rows_dot
    fn(
        x2.data_ptr(),
        x2.shape[0],
        k,
        w.data_ptr(),
        w.stride(0),
        n,
        None if b is None else b.data_ptr(),
        out.data_ptr(),
        BLOCK,
        torch.get_num_threads(),
    )
    if bf16:
        out = out.to(w.dtype)
    return out.view(*x.shape[:-1], n)
