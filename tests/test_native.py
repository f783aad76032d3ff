"""The native kernels: products on every weight format equal the dense float32 products bit
for bit, every row is computed alike whatever the row count or thread count, mismatched
calls are refused before they reach C, and the build is safe and falls back cleanly.

(That each format's dequantized values are gguf's own is tests/test_quant_formats.py.)
"""

from __future__ import annotations

import logging
import multiprocessing
import shutil

import pytest
import torch
import torch.nn.functional as F

from selfspec import native, native_build
from selfspec.ops import linear
from selfspec.weights import BLOCKS, GGMLType, Weight
from tests.model_helpers import random_weight

needs_native = pytest.mark.skipif(
    native_build.unsupported_reason() is not None,
    reason=f"native kernels unsupported here: {native_build.unsupported_reason()}",
)
QUANTIZED = [t for t in GGMLType if BLOCKS[t][0] > 1]


@pytest.fixture
def fresh_build(monkeypatch, tmp_path):
    """The library built from scratch into a private cache folder, forgotten afterwards."""
    monkeypatch.setenv("SELFSPEC_CACHE_DIR", str(tmp_path))
    native._library.cache_clear()
    yield tmp_path
    native._library.cache_clear()


@needs_native
def test_library_builds_into_the_cache(fresh_build):
    assert native.available()
    assert len(list((fresh_build / "kernels").glob("selfspec-*.so"))) == 1
    assert not list((fresh_build / "kernels").glob("*.tmp*"))
    assert "exact" in native.status()


@needs_native
@pytest.mark.parametrize("qtype", list(GGMLType), ids=lambda t: t.name)
def test_products_on_blocks_equal_dense_float32_products(qtype):
    """For every format and every row count (one pass, several passes, the many-row
    path), the block kernel's output equals the float32 kernel's on the dequantized
    weights bit for bit, and each row equals that row computed alone."""
    # K-quant rows are whole super-blocks; both widths pass the many-row path's 512-wide
    # column tiles, so its accumulators are carried from one tile to the next
    k = 768 if BLOCKS[qtype][0] == 256 else 544
    w = random_weight(qtype, 37, k, seed=int(qtype))
    dense = Weight.dense_of(w.dense())
    bias = torch.randn(37)
    x = torch.randn(20, k)
    alone = torch.cat([native.linear(x[i : i + 1], w, bias) for i in range(20)])
    for rows in (1, 2, 3, 4, 5, 6, 7, 8, 9, 13, 20):
        got = native.linear(x[:rows], w, bias)
        assert torch.equal(got, native.linear(x[:rows], dense, bias)), rows
        assert torch.equal(got, alone[:rows]), rows
    want = F.linear(x.double(), w.dense().double(), bias.double())
    scale = (x.abs().double() @ w.dense().abs().double().T).max().item()
    torch.testing.assert_close(alone.double(), want, rtol=0, atol=1e-6 * scale)


@needs_native
# K = 16 i + 8 j + s: the 16-wide main loop (i), the 8-wide remainder (j) and the scalar
# tail (s), alone and in every combination: 3 (s), 8 (j), 13 (j, s), 16 (i), 35 (i, s),
# 40 (i, j), 61 (i, j, s), 96 (i, several); past the many-row path's 512-wide column
# tiles, with only a tail in the last tile (523) and with all three in it (1061).
@pytest.mark.parametrize("k", [3, 8, 13, 16, 35, 40, 61, 96, 523, 1061])
def test_float32_remainders_and_threads_keep_the_sums(k):
    """Dense float32 rows of any length: a row computed alone, or among the rows of any
    pass size, gives the same bits; so do one or two threads; and the float64 product to
    rounding."""
    torch.manual_seed(k)
    w = Weight.dense_of(torch.randn(70, k))
    x = torch.randn(20, k)
    alone = torch.cat([native.linear(x[i : i + 1], w) for i in range(20)])
    for rows in (1, 2, 3, 4, 5, 6, 7, 8, 9, 13, 20):
        assert torch.equal(native.linear(x[:rows], w), alone[:rows]), rows
    one = native.linear(x, w)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        assert torch.equal(native.linear(x, w), one)
    finally:
        torch.set_num_threads(before)
    torch.testing.assert_close(one.double(), x.double() @ w.data.double().T, rtol=1e-5, atol=1e-5)


def odd_widths_engine():
    """A Llama whose widths leave remainders everywhere: head size 12 (attention's dot
    products and weighted sums end in a scalar tail), an MLP of 100 (SiLU's last four
    elements go through the padded lanes), six query heads sharing one key-value head (a
    token alone on two threads splits them 3 + 3, a block keeps them together)."""
    from selfspec.hf_import import engine_from_hf
    from selfspec.random_models import random_config, seeded_model

    config = random_config("tiny-llama")
    config.hidden_size, config.intermediate_size, config.head_dim = 72, 100, 12
    config.num_attention_heads, config.num_key_value_heads = 6, 1
    return engine_from_hf(seeded_model(config, torch.float32).eval().requires_grad_(False))


@needs_native
@pytest.mark.parametrize("model", ["tiny-mistral", "odd widths"])
def test_a_layer_row_is_the_same_alone_or_in_a_block(model):
    """A decoder layer over 7 rows equals 7 one-row calls, bit for bit (attention over
    a cache whose length changes, norms, rotary, MLP), with both thread counts."""
    from tests.model_helpers import tiny

    eng = odd_widths_engine() if model == "odd widths" else tiny("tiny-mistral", "float32").engine
    h = torch.randn(1, 30, eng.cfg.dim)
    with torch.inference_mode():
        block = eng.run_layers(h, eng.new_cache(40), 0)
        cache = eng.new_cache(40)
        eng.run_layers(h[:, :23], cache, 0)
        before = torch.get_num_threads()
        try:
            torch.set_num_threads(2)
            rows = [eng.run_layers(h[:, t : t + 1], cache, t) for t in range(23, 30)]
        finally:
            torch.set_num_threads(before)
    assert torch.equal(torch.cat(rows, 1), block[:, 23:])


@needs_native
def test_mismatched_calls_are_refused_before_c():
    w = random_weight(GGMLType.Q4_1, 8, 64)
    with pytest.raises(ValueError, match="does not take"):
        native.logits(torch.randn(2, 32), torch.ones(32), 1e-5, 0.0, w, None)
    with pytest.raises(ValueError, match="float32"):
        native._check(torch.randn(2, 64).double(), "x")
    with pytest.raises(ValueError, match="bias"):
        native.linear(torch.randn(2, 64), w, torch.randn(9))
    short = Weight(w.data[:, :-4], w.qtype, 8, 64)
    with pytest.raises(ValueError, match="rows of"):
        native.linear(torch.randn(1, 64), short)
    with pytest.raises(ValueError, match="cannot hold"):
        native.cweight(Weight(torch.randn(8, 64).double(), GGMLType.F32, 8, 64))
    with pytest.raises(IndexError, match="0..7"):
        native.rows(w, torch.tensor([8]))


def test_engine_linear_falls_back_to_torch_for_training():
    """Autograd must see a differentiable product: gradients flow through `linear`."""
    w = torch.randn(8, 16, requires_grad=True)
    x = torch.randn(2, 16)
    linear(x, w).sum().backward()
    torch.testing.assert_close(w.grad, x.sum(0).expand(8, 16))  # d/dw of sum(x w^T)


def test_switched_off_by_environment(fresh_build, monkeypatch, caplog):
    monkeypatch.setenv("SELFSPEC_KERNEL", "0")
    with caplog.at_level(logging.WARNING, logger="selfspec.native"):
        assert not native.available()
    assert "SELFSPEC_KERNEL=0" in caplog.text and "not guaranteed" in native.status()
    x, w = torch.randn(2, 16), torch.randn(8, 16)
    torch.testing.assert_close(linear(x, w), F.linear(x, w))


def test_without_kernels_the_engine_still_decodes(fresh_build, monkeypatch):
    """The torch fallback (ARM, no compiler): a GGUF-style engine turns its blocks into
    dense weights and decodes the same greedy tokens as the native path."""
    from selfspec.decoding import generate, run_to_end, vanilla
    from selfspec.loading import load_model
    from selfspec.sampling import SamplingConfig

    cfg = SamplingConfig(max_new_tokens=6)
    want = run_to_end(generate(load_model("tiny-llama", dtype="float32"), "hi", vanilla, cfg))
    monkeypatch.setenv("SELFSPEC_KERNEL", "0")
    native._library.cache_clear()
    lm = load_model("tiny-llama", dtype="float32")
    assert not lm.engine.native_for(torch.zeros(1, 1, lm.engine.cfg.dim))
    assert run_to_end(generate(lm, "hi", vanilla, cfg)).tokens == want.tokens


@needs_native
def test_a_failed_build_falls_back_with_a_warning(fresh_build, monkeypatch, caplog):
    monkeypatch.setenv("CC", "/bin/false")
    with caplog.at_level(logging.WARNING, logger="selfspec.native"):
        assert not native.available()
    assert "compiling engine.c failed" in caplog.text
    assert not [p for p in (fresh_build / "kernels").glob("*") if p.name != ".build.lock"]


def _build_in_child(folder: str, queue) -> None:
    import os

    os.environ["SELFSPEC_CACHE_DIR"] = folder
    from selfspec import native as n

    n._library.cache_clear()
    queue.put(n.available())


@needs_native
@pytest.mark.skipif(not shutil.which("gcc") and not shutil.which("cc"), reason="no compiler")
def test_concurrent_builds_leave_one_working_library(tmp_path):
    """Three processes building at once: all get the kernels, one library is installed,
    no temporary file is left behind."""
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_build_in_child, args=(str(tmp_path), queue)) for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [queue.get(timeout=5) for _ in procs] == [True, True, True]
    files = [p.name for p in (tmp_path / "kernels").glob("*") if p.name != ".build.lock"]
    assert len(files) == 1 and files[0].endswith(".so")


def test_kernel_threads_keep_the_count_for_the_kernels_and_one_for_torch():
    """Inside a decoding loop the kernels run on torch's thread count while torch itself
    runs on one thread (so the two pools never wait for each other's spinning threads);
    both counts come back afterwards, after an error too, and nesting keeps them."""
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        with native.kernel_threads():
            assert (torch.get_num_threads(), native._threads()) == (1, 2)
            with native.kernel_threads():
                assert (torch.get_num_threads(), native._threads()) == (1, 2)
            assert (torch.get_num_threads(), native._threads()) == (1, 2)
        assert (torch.get_num_threads(), native._threads()) == (2, 2)
        with pytest.raises(RuntimeError), native.kernel_threads():
            raise RuntimeError("a failed step")
        assert (torch.get_num_threads(), native._threads()) == (2, 2)
    finally:
        torch.set_num_threads(before)
