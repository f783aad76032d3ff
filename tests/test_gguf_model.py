"""The GGUF loader: the bundled file becomes an engine on its own blocks, consistent with
the transformers model built from it, and damaged files are refused with their name."""

from __future__ import annotations

import pytest
import torch

from selfspec.config import ModelConfig
from selfspec.errors import ModelLoadError
from selfspec.gguf_model import read_gguf, rope_inv_freq
from selfspec.loading import BUNDLED_FILE, bundled_folder
from tests.model_helpers import bundled

pytestmark = pytest.mark.bundled


def test_the_engine_keeps_the_file_blocks_and_agrees_with_the_twin():
    lm = bundled("auto")
    assert lm.weight_format == "Q4_1+Q8_0"
    size = (bundled_folder() / BUNDLED_FILE).stat().st_size
    assert lm.engine.weight_bytes() <= size  # blocks, not a float32 copy (5.6x the bytes)
    twin = lm.hf_model  # built on demand, dense
    assert ModelConfig.from_hf(twin.config) == lm.engine.cfg
    from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding

    rotary = LlamaRotaryEmbedding(twin.config)
    assert torch.equal(rotary.inv_freq, rope_inv_freq(100000.0, lm.engine.cfg.head_dim))
    q = twin.model.layers[3].self_attn.q_proj.weight
    assert torch.equal(lm.engine.native_layers[3].q.dense(), q)  # rows back in HF order


def test_the_tokenizer_is_the_one_transformers_builds_from_the_file():
    from transformers import AutoTokenizer

    ours = bundled("auto").tokenizer
    theirs = AutoTokenizer.from_pretrained(bundled_folder(), gguf_file=BUNDLED_FILE)
    for text in ["Hello, world!", "  two spaces, ünïcödé and 123 numbers\n\ttab", "<|im_start|>"]:
        assert ours.encode(text) == theirs.encode(text)
    chat = [{"role": "user", "content": "What is 2+2?"}]
    assert ours.apply_chat_template(chat, tokenize=False) == theirs.apply_chat_template(
        chat, tokenize=False
    )


@pytest.mark.parametrize("cut", [100, 5_000_000])
def test_a_truncated_file_is_refused_with_its_name(tmp_path, cut):
    data = (bundled_folder() / BUNDLED_FILE).read_bytes()
    broken = tmp_path / "model.gguf"
    broken.write_bytes(data[:cut])
    with pytest.raises(ModelLoadError, match=str(broken)):
        read_gguf(broken)


def test_a_file_that_is_not_gguf_is_refused(tmp_path):
    bad = tmp_path / "notes.gguf"
    bad.write_text("these are notes, not a model")
    with pytest.raises(ModelLoadError, match="notes.gguf"):
        read_gguf(bad)


def test_the_converted_tokenizer_is_cached_and_the_cached_one_is_the_same(tmp_path, monkeypatch):
    from selfspec.gguf_model import _tokenizer, convert_tokenizer

    monkeypatch.setenv("SELFSPEC_CACHE_DIR", str(tmp_path))
    path = str(bundled_folder() / BUNDLED_FILE)
    _tokenizer(path)
    (saved,) = (tmp_path / "tokenizers").iterdir()
    assert (saved / "tokenizer.json").is_file()
    cached, fresh = _tokenizer(path), convert_tokenizer(path)
    for text in ["Hello, world!", "  ünïcödé 123\n\ttab", "<|im_start|>user\nhi<|im_end|>"]:
        assert cached.encode(text) == fresh.encode(text)
    chat = [{"role": "user", "content": "What is 2+2?"}]
    assert cached.apply_chat_template(chat, tokenize=False) == fresh.apply_chat_template(
        chat, tokenize=False
    )
    assert (cached.bos_token_id, cached.eos_token_id) == (fresh.bos_token_id, fresh.eos_token_id)
