"""A weight matrix as the engine keeps it: the file's blocks, or a dense tensor.

GGUF files store each [out, in] matrix row by row, every row a run of fixed-size blocks
(32 or 256 weights with their scales). Rows are independent, so a matrix's rows can be
reordered or sliced as bytes, and one row dequantizes on its own. The engine computes on
the blocks directly (`selfspec.native`); only what needs a dense model (the Hugging Face
peers, a GPU, training) asks for `dense()`, and only then.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import torch
from torch import Tensor

__all__ = ["GGMLType", "Weight", "KERNEL_TYPES", "BLOCKS"]


class GGMLType(IntEnum):
    """GGML tensor type ids (as gguf numbers them) that the native kernel reads."""

    F32 = 0
    F16 = 1
    Q4_0 = 2
    Q4_1 = 3
    Q5_0 = 6
    Q8_0 = 8
    Q4_K = 12
    Q6_K = 14
    BF16 = 30


# (weights per block, bytes per block), for the block formats and the dense ones.
BLOCKS: dict[GGMLType, tuple[int, int]] = {
    GGMLType.F32: (1, 4),
    GGMLType.F16: (1, 2),
    GGMLType.BF16: (1, 2),
    GGMLType.Q4_0: (32, 18),
    GGMLType.Q4_1: (32, 20),
    GGMLType.Q5_0: (32, 22),
    GGMLType.Q8_0: (32, 34),
    GGMLType.Q4_K: (256, 144),
    GGMLType.Q6_K: (256, 210),
}
KERNEL_TYPES = frozenset(BLOCKS)
DENSE = {torch.float32: GGMLType.F32, torch.float16: GGMLType.F16, torch.bfloat16: GGMLType.BF16}


@dataclass
class Weight:
    """An [n, k] matrix: `data` is uint8 [n, row_bytes] blocks, or a dense [n, k] tensor.

    `int8_activations`: the native kernels multiply this matrix's blocks by input rows
    quantized to 8 bits (integer products, csrc/dot8.h) instead of dequantizing it to
    float32; a different sum, so a model uses one or the other throughout. Dense weights
    ignore it.
    """

    data: Tensor
    qtype: GGMLType
    n: int
    k: int
    int8_activations: bool = False

    @classmethod
    def dense_of(cls, w: Tensor) -> Weight:
        """Wrap a dense [n, k] float32 / float16 / bfloat16 tensor (rows contiguous)."""
        if w.dtype not in DENSE:
            raise TypeError(f"no kernel format for {w.dtype}")
        w = w.contiguous()
        return cls(w, DENSE[w.dtype], w.shape[0], w.shape[1])

    @classmethod
    def of(cls, w: Tensor) -> Weight:
        """A dense tensor of any float dtype: the kernels' formats as they are, others
        (float64) kept as they are for torch's path only."""
        if w.dtype in DENSE:
            return cls.dense_of(w)
        return cls(w, GGMLType.F32, w.shape[0], w.shape[1])

    @classmethod
    def blocks(cls, raw: Tensor, qtype: int, n: int, k: int) -> Weight:
        """Wrap a file's raw bytes for an [n, k] matrix of type `qtype`."""
        qtype = GGMLType(qtype)
        size, nbytes = BLOCKS[qtype]
        if k % size:
            raise ValueError(f"{qtype.name} rows hold multiples of {size} weights, not {k}")
        raw = raw.reshape(n, k // size * nbytes)
        if qtype in (GGMLType.F32, GGMLType.F16, GGMLType.BF16):
            dtype = {GGMLType.F32: torch.float32, GGMLType.F16: torch.float16}.get(
                qtype, torch.bfloat16
            )
            return cls(raw.view(dtype), qtype, n, k)
        return cls(raw, qtype, n, k)

    @property
    def row_bytes(self) -> int:
        return self.data.stride(0) * self.data.element_size()

    @property
    def nbytes(self) -> int:
        return self.n * self.row_bytes

    @property
    def quantized(self) -> bool:
        return self.data.dtype == torch.uint8

    def take_rows(self, index: Tensor) -> Weight:
        """The rows `index`, in that order (a copy): reordering or restricting a matrix."""
        if self.quantized and self.data.device.type == "cpu":  # numpy gathers bytes far faster
            rows = torch.from_numpy(self.data.numpy()[index.numpy()])
        else:
            rows = self.data[index].contiguous()
        return Weight(rows, self.qtype, int(index.numel()), self.k, self.int8_activations)

    def dense(self, dtype: torch.dtype = torch.float32) -> Tensor:
        """The matrix as a dense [n, k] tensor: the file's values exactly, then `dtype`."""
        if not self.quantized:
            return self.data.to(dtype)  # (a float64 weight of torch's path stays float64)
        from selfspec import native

        return native.dequantize(self.data, self.qtype, self.k).to(dtype)
