"""Integration tests on the bundled SmolLM2-135M (float32, so rounding cannot flip tokens).

Parity tolerance against Hugging Face: 1e-3 absolute on logits of magnitude ~30 (the two
use differently fused kernels: one q/k/v matmul here, three there).
"""

from __future__ import annotations

import pytest
import torch

from selfspec.decoding import generate, run_to_end, vanilla
from selfspec.methods import get_method
from selfspec.prompts import load_prompts
from selfspec.sampling import SamplingConfig
from tests.model_helpers import bundled

pytestmark = pytest.mark.bundled


def test_bundled_model_loads_with_its_chat_template():
    lm = bundled()
    cfg = lm.engine.cfg
    assert (cfg.arch, cfg.n_layers, cfg.dim, cfg.n_heads, cfg.n_kv_heads, cfg.vocab_size) == (
        "llama",
        30,
        576,
        9,
        3,
        49152,
    )
    ids = lm.encode("What is 2+2?")
    text = lm.tokenizer.decode(ids)
    assert text.startswith("<|im_start|>") and "<|im_start|>user\nWhat is 2+2?" in text
    assert text.rstrip().endswith("<|im_start|>assistant")
    assert lm.eos_ids == frozenset({2})


def test_bundled_logits_match_hugging_face():
    lm = bundled()
    ids = torch.tensor([lm.encode("Explain the CAP theorem in two sentences.")])
    with torch.inference_mode():
        ref = lm.hf_model(ids).logits[0]
        ours = lm.engine.forward(ids, lm.engine.new_cache(ids.shape[1]), 0)[0]
    assert (ours - ref).abs().max().item() < 1e-3


def test_bundled_methods_are_lossless_on_a_quiz_prompt():
    lm = bundled()
    prompt = next(p for p in load_prompts() if p.category == "quiz").prompt
    cfg = SamplingConfig(max_new_tokens=40)
    plain = run_to_end(generate(lm, prompt, vanilla, cfg))
    assert len(plain.tokens) > 10 and plain.text.strip()
    for name in ("hf", "pld", "skip"):
        info = get_method(name)
        result = run_to_end(generate(lm, prompt, info.run, cfg, **info.options))
        assert result.tokens == plain.tokens, name
