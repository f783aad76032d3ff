"""Our GGUF block dequantizer (selfspec/csrc/quant.h, called through
`selfspec.native.dequantize`) against gguf-py's `gguf.quants.dequantize`, bit for bit.

Why bit for bit: the native engine multiplies by weights it dequantizes itself, and decoding
is only lossless if those are exactly the numbers the reference gives. A tolerance would let
through a rounding-order change or a nibble mix-up that moves only low bits, and float
equality would pass -0.0 for 0.0 and fail on equal NaNs, so every comparison here is on the
int32 bit patterns. Inputs are random blocks (scales set to finite f16 values of every
magnitude, subnormal ones included, and all-zero blocks), every half-float bit pattern for
F16 and BF16, a misaligned buffer, and the bundled model's own tensors.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import gguf
import numpy as np
import pytest
import torch
from gguf import GGMLQuantizationType as Q
from gguf.constants import GGML_QUANT_SIZES

from selfspec import native
from selfspec.weights import BLOCKS

QK, QK_K = 32, 256

# Block sizes written out from ggml's block layouts, field by field (weights per block,
# bytes per block), so that a wrong size anywhere (gguf-py, our table, the C header's row
# stride) disagrees with a derivation rather than with a copy.
LAYOUTS: dict[Q, tuple[int, int]] = {
    Q.F32: (1, 4),
    Q.F16: (1, 2),
    Q.BF16: (1, 2),
    Q.Q4_0: (QK, 2 + QK // 2),  # f16 d, 4-bit quants
    Q.Q4_1: (QK, 2 + 2 + QK // 2),  # f16 d, f16 m, 4-bit quants
    Q.Q5_0: (QK, 2 + 4 + QK // 2),  # f16 d, 32 fifth bits, low 4 bits
    Q.Q8_0: (QK, 2 + QK),  # f16 d, int8 quants
    Q.Q4_K: (QK_K, 2 + 2 + 12 + QK_K // 2),  # d, dmin, 6-bit scales and mins, 4-bit quants
    Q.Q6_K: (QK_K, QK_K // 2 + QK_K // 4 + QK_K // 16 + 2),  # low 4 bits, high 2, scales, d
}
FORMATS = list(LAYOUTS)

# Byte offsets of each block's f16 scale fields: random bytes there would be NaN or
# infinity one time in 32, which real files never hold.
SCALE_FIELDS: dict[Q, tuple[int, ...]] = {
    Q.Q4_0: (0,),
    Q.Q4_1: (0, 2),
    Q.Q5_0: (0,),
    Q.Q8_0: (0,),
    Q.Q4_K: (0, 2),
    Q.Q6_K: (208,),
}

# Row lengths per block size: one block, a few, and the bundled model's widths (576, 1536);
# for the dense formats also lengths that leave a remainder after the 8- and 16-wide loops.
ROW_LENGTHS: dict[int, tuple[int, ...]] = {
    1: (1, 7, 16, 33, 576),
    QK: (32, 64, 96, 576, 1536),
    QK_K: (256, 512, 1536),
}
N_ROWS = 5

F16_SPECIALS = np.array(
    [0x0000, 0x8000, 0x7BFF, 0xFBFF, 0x0001, 0x8001, 0x03FF, 0x83FF, 0x0400], dtype=np.uint16
).view(np.float16)  # +-0, +-max, +-smallest subnormal, +-largest subnormal, smallest normal


# ----------------------------------------------------------------------------- helpers
@pytest.fixture(scope="module")
def native_library() -> None:
    """Skip (with the reason) where the native library cannot be built or used: there
    `native.dequantize` falls back to gguf itself, and the comparison would be with itself."""
    if not native.available():
        pytest.skip(f"native dequantizer unavailable: {native.status()}")


needs_native = pytest.mark.usefixtures("native_library")


def reference(raw: np.ndarray, qtype: Q) -> torch.Tensor:
    """gguf-py's float32 values for uint8 rows [n, row_bytes]."""
    return torch.from_numpy(np.ascontiguousarray(gguf.quants.dequantize(raw, qtype)))


def assert_same_bits(got: torch.Tensor, want: torch.Tensor, what: str) -> None:
    """Equal as float32 bit patterns (catches -0.0 for 0.0 and differing NaNs), and as
    floats too where there is no NaN to make float equality false."""
    assert got.dtype == want.dtype == torch.float32, what
    assert got.shape == want.shape, f"{what}: shape {tuple(got.shape)} != {tuple(want.shape)}"
    same = got.view(torch.int32) == want.view(torch.int32)
    if not bool(same.all()):
        idx = tuple(int(i) for i in (~same).nonzero()[0])
        raise AssertionError(
            f"{what}: {int((~same).sum())} of {same.numel()} values differ, first at {idx}: "
            f"got {got[idx].item()!r} ({int(got.view(torch.int32)[idx]) & 0xFFFFFFFF:#010x}), "
            f"want {want[idx].item()!r} ({int(want.view(torch.int32)[idx]) & 0xFFFFFFFF:#010x})"
        )
    if not bool(want.isnan().any()):
        assert torch.equal(got, want), what


def random_f16(rng: np.random.Generator, size: int) -> np.ndarray:
    """Finite f16 values, as bytes [size, 2]: random signs, magnitudes log-uniform from the
    smallest subnormal (2^-24) to 16, and one in twenty a special (zeros, extremes,
    subnormal edges)."""
    values = (np.exp2(rng.uniform(-24, 4, size)) * rng.choice([-1.0, 1.0], size)).astype(np.float16)
    special = rng.random(size) < 0.05
    values[special] = rng.choice(F16_SPECIALS, int(special.sum()))
    return values.view(np.uint8).reshape(size, 2)


def random_rows(qtype: Q, n: int, k: int, seed: int) -> np.ndarray:
    """uint8 [n, row_bytes] of random blocks with finite scales; row 1 is all zeros, and
    the first block of row 2 too (a zero block inside a row; n >= 3)."""
    rng = np.random.default_rng(seed)
    size, nbytes = LAYOUTS[qtype]
    blocks = rng.integers(0, 256, (n, k // size, nbytes), dtype=np.uint8)
    if qtype == Q.F16:  # every weight is an f16 field
        blocks = random_f16(rng, n * k).reshape(n, k, 2)
    for offset in SCALE_FIELDS.get(qtype, ()):
        blocks[:, :, offset : offset + 2] = random_f16(rng, n * (k // size)).reshape(
            n, k // size, 2
        )
    blocks[1 % n] = 0
    blocks[2 % n, 0] = 0
    return blocks.reshape(n, -1)


def cases() -> Iterator[tuple[Q, int]]:
    for qtype in FORMATS:
        for k in ROW_LENGTHS[LAYOUTS[qtype][0]]:
            yield qtype, k


# ----------------------------------------------------------------------------- sizes
@pytest.mark.parametrize("qtype", FORMATS, ids=lambda q: q.name)
def test_block_sizes_match_gguf_and_our_table(qtype: Q) -> None:
    """The layouts above, gguf's table and the wrapper's table agree: a row of K weights is
    K / block_size * block_bytes bytes in all three."""
    assert GGML_QUANT_SIZES[qtype] == LAYOUTS[qtype]
    assert BLOCKS[qtype] == LAYOUTS[qtype]
    size, nbytes = LAYOUTS[qtype]
    for k in ROW_LENGTHS[size]:
        expected = gguf.quants.quant_shape_to_byte_shape((3, k), qtype)
        assert expected == (3, k // size * nbytes)


SIZES_PROGRAM = r"""
#include <stdio.h>
#include "quant.h"
int main(void) {
    for (int t = 0; t < 64; t++)
        printf("%d %d %d %ld\n", t, ss_block_size(t), ss_block_bytes(t), ss_row_bytes(t, 3 * 256));
    return 0;
}
"""


def test_header_block_sizes_match_the_layouts(tmp_path: Path) -> None:
    """quant.h's own size functions (the engine's contract; `dequantize` is handed its row
    stride from Python, so the tests above never reach them), for every type id: the
    layouts above for the supported ones, 0 for the rest."""
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        pytest.skip("no C compiler (cc or gcc) on PATH")
    source = tmp_path / "sizes.c"
    source.write_text(SIZES_PROGRAM)
    exe = tmp_path / "sizes"
    subprocess.run([compiler, "-O1", f"-I{native.CSRC}", str(source), "-o", str(exe)], check=True)
    lines = subprocess.run([str(exe)], check=True, capture_output=True, text=True).stdout
    table = {int(t): (int(s), int(b), int(r)) for t, s, b, r in map(str.split, lines.splitlines())}
    for type_id, got in table.items():
        size, nbytes = next((v for q, v in LAYOUTS.items() if int(q) == type_id), (0, 0))
        want_row = 3 * 256 // size * nbytes if size else 0
        assert got == (size, nbytes, want_row), f"type {type_id}"


# ----------------------------------------------------------------------------- random blocks
@pytest.mark.parametrize(("qtype", "k"), list(cases()), ids=lambda v: getattr(v, "name", v))
@needs_native
def test_random_blocks_dequantize_bit_for_bit(qtype: Q, k: int) -> None:
    """Every format at one block, a few and the model's widths, over several rows (so the
    row stride is exercised too), zero blocks and extreme scales included."""
    raw = random_rows(qtype, N_ROWS, k, seed=int(qtype) * 100_000 + k)
    got = native.dequantize(torch.from_numpy(raw), int(qtype), k)
    assert_same_bits(got, reference(raw, qtype), f"{qtype.name} [{N_ROWS}, {k}]")


@pytest.mark.parametrize("qtype", [Q.F32, Q.BF16], ids=lambda q: q.name)
@needs_native
def test_dense_formats_keep_every_bit_pattern(qtype: Q) -> None:
    """F32 and BF16 are bit copies (BF16 into the top half): random bytes, NaN payloads
    and all, come out as gguf gives them."""
    rng = np.random.default_rng(int(qtype))
    raw = rng.integers(0, 256, (N_ROWS, 1000 * LAYOUTS[qtype][1]), dtype=np.uint8)
    got = native.dequantize(torch.from_numpy(raw), int(qtype), 1000)
    assert_same_bits(got, reference(raw, qtype), qtype.name)


@pytest.mark.parametrize("qtype", [Q.F16, Q.BF16], ids=lambda q: q.name)
@needs_native
def test_every_half_float_bit_pattern(qtype: Q) -> None:
    """All 65536 values, one row: subnormals, infinities, and NaNs, whose payloads numpy
    keeps (the F16C instruction would quiet a signaling NaN; the kernel must not)."""
    raw = np.arange(1 << 16, dtype=np.uint16).view(np.uint8).reshape(1, -1)
    got = native.dequantize(torch.from_numpy(raw), int(qtype), 1 << 16)
    assert_same_bits(got, reference(raw, qtype), qtype.name)


@pytest.mark.parametrize("qtype", FORMATS, ids=lambda q: q.name)
@needs_native
def test_rows_at_an_odd_address(qtype: Q) -> None:
    """Blocks are 18, 20, 22 or 34 bytes long, so scales sit at any alignment; a buffer that
    starts one byte past an allocation must read the same."""
    k = 2 * QK_K
    raw = random_rows(qtype, 3, k, seed=7 + int(qtype))
    buffer = torch.zeros(raw.size + 1, dtype=torch.uint8)
    shifted = buffer[1:].view(raw.shape)
    shifted.copy_(torch.from_numpy(raw))
    assert shifted.is_contiguous() and shifted.data_ptr() % 2 == 1
    assert_same_bits(native.dequantize(shifted, int(qtype), k), reference(raw, qtype), "odd")


@needs_native
def test_comparison_catches_a_sign_of_zero_and_one_ulp() -> None:
    """The check itself can fail: one scale's sign flipped (so 0.0 becomes -0.0 where a
    quant is zero) and one value moved by one ulp are both reported."""
    raw = random_rows(Q.Q4_0, 3, QK, seed=3)
    raw[0, 2:] = 0x88  # every quant 8 - 8 = 0: the block is d * 0, signed like d
    want = reference(raw, Q.Q4_0)
    flipped = raw.copy()
    flipped[0, 1] ^= 0x80  # the sign bit of d
    got = native.dequantize(torch.from_numpy(flipped), int(Q.Q4_0), QK)
    assert torch.equal(got, want)  # as floats, -0.0 == 0.0 ...
    with pytest.raises(AssertionError):  # ... but not as bits
        assert_same_bits(got, want, "sign of zero")
    nudged = want.clone()
    nudged.view(torch.int32)[1, 5] += 1
    with pytest.raises(AssertionError):
        assert_same_bits(nudged, want, "one ulp")


# ----------------------------------------------------------------------------- bundled model
def bundled_reader() -> gguf.GGUFReader:
    from selfspec.loading import BUNDLED_FILE, bundled_folder

    path = bundled_folder() / BUNDLED_FILE
    if not path.is_file():
        pytest.skip(f"bundled model file missing: {path}")
    return gguf.GGUFReader(path)


@needs_native
@pytest.mark.bundled  # gguf's GGUFReader parses the 49,152-token vocabulary: a few seconds
def test_bundled_model_tensors_dequantize_bit_for_bit() -> None:
    """The file the app ships: the Q8_0 token embedding (a spread of its rows), every Q4_1
    matrix of the first and last layer in full and 16 rows of every other one, and the F32
    norms, each as the engine reads them (a row of the file is a row of the matrix)."""
    reader = bundled_reader()
    tensors = {t.name: t for t in reader.tensors}
    n_layers = 1 + max(int(name.split(".")[1]) for name in tensors if name.startswith("blk."))
    edge = ("blk.0.", f"blk.{n_layers - 1}.")
    seen: set[Q] = set()
    for name, tensor in tensors.items():
        qtype = Q(int(tensor.tensor_type))
        if qtype not in LAYOUTS:
            continue
        data = np.asarray(tensor.data)
        raw = data.view(np.uint8).reshape(data.shape[0] if data.ndim > 1 else 1, -1)
        k = int(tensor.shape[0])  # gguf lists dims innermost first
        if name == "token_embd.weight":
            rows = np.random.default_rng(0).choice(raw.shape[0], 256, replace=False)
            raw = raw[np.sort(np.concatenate([rows, [0, raw.shape[0] - 1]]))]
        elif qtype != Q.F32 and not name.startswith(edge):
            raw = raw[:: max(1, raw.shape[0] // 16)][:16]
        raw = np.array(raw)  # a writable copy: torch warns on the read-only file map
        got = native.dequantize(torch.from_numpy(raw), int(qtype), k)
        assert_same_bits(got, reference(raw, qtype), f"{name} ({qtype.name})")
        seen.add(qtype)
    assert {Q.Q4_1, Q.Q8_0} <= seen, f"expected Q4_1 and Q8_0 tensors, saw {seen}"
