"""A GGUF file's header, read as data: its metadata and its tensor table, in one pass.

Only the header is parsed (the tensors stay on disk until the loader reads them), and
nothing in the file is ever executed. String arrays (a tokenizer's vocabulary: 262,144
entries for Gemma-3) are skipped over and kept as their length, which is all the engine
needs from them; the tokenizer is built separately by transformers' GGUF converter.
Tensor sizes come from gguf's table of block sizes, so every format gguf knows is
accepted (transformers' header reader refuses Q5_0, which the Q4_K_M files use), and a file that is not a GGUF, is damaged or is shorter than its tensor table
says is refused with its name.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from gguf.constants import GGML_QUANT_SIZES

from selfspec.errors import ModelLoadError

__all__ = ["GGUFHeader", "TensorInfo", "read_header"]

_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?"}
_SCALARS |= {10: "<Q", 11: "<q", 12: "<d"}
_NUMPY = {0: "<u1", 1: "<i1", 2: "<u2", 3: "<i2", 4: "<u4", 5: "<i4", 6: "<f4", 7: "?"}
_NUMPY |= {10: "<u8", 11: "<i8", 12: "<f8"}
_STRING, _ARRAY = 8, 9


@dataclass(frozen=True)
class TensorInfo:
    name: str
    shape: tuple[int, ...]  # torch order: [out, in] for a matrix
    ggml_type: int
    offset: int  # from the start of the file
    nbytes: int


@dataclass(frozen=True)
class GGUFHeader:
    path: Path
    metadata: dict[str, Any]  # string arrays are given as their length
    tensors: dict[str, TensorInfo]

    @property
    def architecture(self) -> str:
        return str(self.metadata.get("general.architecture", "?"))


def read_header(path: str | Path) -> GGUFHeader:
    """Parse and check a GGUF file's header; every failure names the file."""
    path = Path(path)
    try:
        blob = np.memmap(path, mode="r", dtype=np.uint8)
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"{path} is not a readable GGUF file: {exc}") from exc
    if bytes(blob[:4]) != b"GGUF":
        raise ModelLoadError(f"{path} is not a GGUF file (it does not start with 'GGUF').")
    try:
        header = _parse(path, memoryview(blob))
    except (struct.error, ValueError, UnicodeDecodeError, KeyError) as exc:
        raise ModelLoadError(f"{path} is damaged (its GGUF header cannot be parsed).") from exc
    end = max((t.offset + t.nbytes for t in header.tensors.values()), default=0)
    size = os.path.getsize(path)
    if size < end:
        raise ModelLoadError(
            f"{path} is truncated: its tensors need {end:,} bytes, the file has {size:,}. "
            "Download or reinstall it again."
        )
    return header


def _parse(path: Path, buf: memoryview) -> GGUFHeader:
    version, n_tensors, n_kv = struct.unpack_from("<IQQ", buf, 4)
    if version < 2:
        raise ValueError(f"GGUF version {version}")
    pos = 24
    metadata: dict[str, Any] = {}
    for _ in range(n_kv):
        key, pos = _string(buf, pos)
        (kind,) = struct.unpack_from("<I", buf, pos)
        metadata[key], pos = _value(buf, pos + 4, kind)
    entries = []
    for _ in range(n_tensors):
        name, pos = _string(buf, pos)
        (n_dims,) = struct.unpack_from("<I", buf, pos)
        dims = struct.unpack_from(f"<{n_dims}Q", buf, pos + 4)
        ggml_type, offset = struct.unpack_from("<IQ", buf, pos + 4 + 8 * n_dims)
        pos += 4 + 8 * n_dims + 12
        entries.append((name, tuple(reversed(dims)), ggml_type, offset))
    align = int(metadata.get("general.alignment", 32))
    data_start = (pos + align - 1) // align * align
    tensors = {}
    for name, shape, ggml_type, offset in entries:
        tensors[name] = TensorInfo(
            name, shape, ggml_type, data_start + offset, _nbytes(name, ggml_type, shape)
        )
    return GGUFHeader(path, metadata, tensors)


def _nbytes(name: str, ggml_type: int, shape: tuple[int, ...]) -> int:
    sizes = {int(t): v for t, v in GGML_QUANT_SIZES.items()}
    if ggml_type not in sizes:
        raise ModelLoadError(f"Tensor {name} has GGML type {ggml_type}, which gguf does not know.")
    size, nbytes = sizes[ggml_type]
    count = int(np.prod(shape))
    if count % size:
        raise ValueError(f"{name}: {count} weights do not fill blocks of {size}")
    return count // size * nbytes


def _string(buf: memoryview, pos: int) -> tuple[str, int]:
    (n,) = struct.unpack_from("<Q", buf, pos)
    return bytes(buf[pos + 8 : pos + 8 + n]).decode("utf-8"), pos + 8 + n


def _value(buf: memoryview, pos: int, kind: int) -> tuple[Any, int]:
    if kind in _SCALARS:
        fmt = _SCALARS[kind]
        return struct.unpack_from(fmt, buf, pos)[0], pos + struct.calcsize(fmt)
    if kind == _STRING:
        return _string(buf, pos)
    if kind != _ARRAY:
        raise ValueError(f"unknown GGUF value type {kind}")
    item, count = struct.unpack_from("<IQ", buf, pos)
    pos += 12
    if item in _NUMPY:
        dtype = np.dtype(_NUMPY[item])
        values = np.frombuffer(buf, dtype=dtype, count=count, offset=pos)
        return values.tolist() if count <= 64 else values.copy(), pos + count * dtype.itemsize
    if item == _STRING:  # skipped: only the length is kept
        for _ in range(count):
            (n,) = struct.unpack_from("<Q", buf, pos)
            pos += 8 + n
        return count, pos
    raise ValueError(f"unsupported GGUF array of type {item}")
