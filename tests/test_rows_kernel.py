"""Our few-row float32 kernel: numbers, rounding independent of the row count, and the
fallbacks (where it cannot be built or does not apply, torch's product is used)."""

from __future__ import annotations

import logging
import shutil

import pytest
import torch
import torch.nn.functional as F

from selfspec import rows_kernel
from selfspec.model import linear

needs_kernel = pytest.mark.skipif(
    not rows_kernel._cpu_supported() or not (shutil.which("cc") or shutil.which("gcc")),
    reason="the kernel needs an x86 CPU with AVX2 and FMA, and a C compiler",
)


@pytest.fixture
def fresh_kernel(monkeypatch, tmp_path):
    """A kernel built from scratch into a private cache folder (and forgotten afterwards)."""
    monkeypatch.setenv("SELFSPEC_CACHE_DIR", str(tmp_path))
    rows_kernel._library.cache_clear()
    yield tmp_path
    rows_kernel._library.cache_clear()


@needs_kernel
def test_kernel_builds_and_is_used_on_this_machine(fresh_kernel):
    assert rows_kernel.available()
    assert list((fresh_kernel / "kernels").glob("rows_dot-*.so"))
    x, w = torch.randn(2, 64), torch.randn(32, 64)
    assert rows_kernel.usable_for(x, w)


@needs_kernel
@pytest.mark.parametrize("k", [1, 5, 8, 13, 32, 61, 96])
@pytest.mark.parametrize("n", [1, 7, 65, 130])
def test_kernel_equals_matrix_product_for_any_shape(k, n):
    """Every remainder path: K not a multiple of 32 or 8, N not a multiple of the block,
    every row-group size, bias or none."""
    torch.manual_seed(k * 1000 + n)
    w = torch.randn(n, k)
    b = torch.randn(n)
    for rows in range(1, rows_kernel.MAX_ROWS + 1):
        x = torch.randn(1, rows, k)
        want = F.linear(x.double(), w.double(), b.double()).float()
        torch.testing.assert_close(rows_kernel.rows_linear(x, w, b), want, rtol=1e-5, atol=1e-5)
        got = rows_kernel.rows_linear(x, w)
        torch.testing.assert_close(got, F.linear(x, w), rtol=1e-5, atol=1e-5)


@needs_kernel
def test_weight_with_a_row_stride_wider_than_its_rows():
    big = torch.randn(40, 100)
    w = big[:, 10:74]  # [40, 64] with row stride 100
    x = torch.randn(3, 64)
    torch.testing.assert_close(rows_kernel.rows_linear(x, w), F.linear(x, w))


@needs_kernel
def test_each_row_rounds_the_same_whatever_the_rows_beside_it_and_the_threads():
    """Why verification of drafts reproduces plain decoding bit for bit in the products."""
    torch.manual_seed(0)
    w = torch.randn(300, 576) / 24
    x = torch.randn(rows_kernel.MAX_ROWS, 576)
    alone = torch.cat([rows_kernel.rows_linear(x[i : i + 1], w) for i in range(len(x))])
    threads = torch.get_num_threads()
    try:
        for n_threads in (1, 2, 3):
            torch.set_num_threads(n_threads)
            for rows in range(1, len(x) + 1):
                assert torch.equal(rows_kernel.rows_linear(x[:rows], w), alone[:rows])
    finally:
        torch.set_num_threads(threads)


def test_kernel_does_not_apply_outside_its_domain():
    w = torch.randn(8, 16)
    assert not rows_kernel.usable_for(torch.randn(2, 16, dtype=torch.float64), w.double())
    assert not rows_kernel.usable_for(torch.randn(rows_kernel.MAX_ROWS + 1, 16), w)
    assert not rows_kernel.usable_for(torch.randn(2, 16), torch.randn(16, 8).t())  # [in, out]
    assert not rows_kernel.usable_for(torch.randn(2, 16, requires_grad=True), w)
    assert not rows_kernel.usable_for(torch.randn(2, 16), w, torch.randn(8, dtype=torch.float64))
    assert not rows_kernel.usable_for(torch.randn(2, 16).bfloat16(), w)  # mixed dtypes


def test_engine_linear_falls_back_to_torch_for_training():
    """Autograd must see a differentiable product: gradients flow through `linear`."""
    w = torch.randn(8, 16, requires_grad=True)
    x = torch.randn(2, 16)
    linear(x, w).sum().backward()
    torch.testing.assert_close(w.grad, x.sum(0).expand(8, 16))  # d/dw of sum(x w^T)


def test_switched_off_by_environment(fresh_kernel, monkeypatch):
    monkeypatch.setenv("SELFSPEC_KERNEL", "0")
    assert not rows_kernel.available()
    x, w = torch.randn(2, 16), torch.randn(8, 16)
    assert not rows_kernel.usable_for(x, w)
    torch.testing.assert_close(linear(x, w), F.linear(x, w))


@needs_kernel
def test_a_failed_build_falls_back_with_a_warning(fresh_kernel, monkeypatch, caplog):
    monkeypatch.setenv("CC", "/bin/false")
    with caplog.at_level(logging.WARNING, logger="selfspec.rows_kernel"):
        assert not rows_kernel.available()
    assert "compiling rows_dot.c failed" in caplog.text
    assert not list((fresh_kernel / "kernels").glob("*"))  # no half-written library left
    x, w = torch.randn(3, 16), torch.randn(8, 16)
    torch.testing.assert_close(linear(x, w), F.linear(x, w))


@needs_kernel
@pytest.mark.parametrize("k", [13, 64, 96])
def test_bfloat16_weights_are_widened_exactly_and_summed_in_float32(k):
    """The bf16 kernel equals a float32 product of the same bf16 values, rounded once."""
    torch.manual_seed(k)
    w = torch.randn(70, k).bfloat16()
    b = torch.randn(70).bfloat16()
    for rows in (1, 2, 5, rows_kernel.MAX_ROWS):
        x = torch.randn(rows, k).bfloat16()
        got = rows_kernel.rows_linear(x, w, b)
        assert got.dtype == torch.bfloat16
        want = F.linear(x.double(), w.double(), b.double())
        torch.testing.assert_close(got.double(), want, rtol=8e-3, atol=1e-2)
        alone = torch.cat([rows_kernel.rows_linear(x[i : i + 1], w, b) for i in range(rows)])
        assert torch.equal(got, alone)
