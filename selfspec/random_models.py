"""Randomly initialised models by name, for trying the lab without downloading anything.

``tiny-*`` are a few layers of each supported architecture (Llama, Qwen2, Mistral,
Gemma-2) with the byte tokenizer: the CLI and the app load them like any model, so every
method can be run end to end in seconds. ``random-1b`` has the shape of a 1.1B Llama and
is only good for timings on a GPU. Each name builds the same weights every time (a fixed
seed), so two runs on ``tiny-llama`` are comparable.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from selfspec.tokens import ByteTokenizer

if TYPE_CHECKING:
    from transformers import PretrainedConfig

__all__ = ["TINY_MODELS", "RANDOM_MODELS", "random_config", "random_model", "seeded_model"]

TINY_MODELS = ("tiny-llama", "tiny-qwen2", "tiny-mistral", "tiny-gemma2", "tiny-gemma3")
RANDOM_MODELS = ("random-1b",)


def random_config(name: str) -> PretrainedConfig:
    """A few-layer config per architecture; small windows so sliding attention is exercised."""
    # transformers is imported where it is used, here and below, as in the rest of the
    # loading path: importing it costs seconds, and the names above are read at start-up.
    from transformers import (
        Gemma2Config,
        Gemma3TextConfig,
        LlamaConfig,
        MistralConfig,
        Qwen2Config,
    )

    common = dict(
        vocab_size=320,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        initializer_range=0.15,
        bos_token_id=ByteTokenizer.bos_token_id,
        eos_token_id=ByteTokenizer.eos_token_id,
        pad_token_id=ByteTokenizer.pad_token_id,
        tie_word_embeddings=False,
    )
    if name == "random-1b":
        return LlamaConfig(
            **common
            | dict(
                hidden_size=2048,
                intermediate_size=5632,
                num_hidden_layers=22,
                num_attention_heads=32,
                num_key_value_heads=4,
                max_position_embeddings=4096,
                initializer_range=0.02,
            )
        )
    if name == "tiny-llama":
        return LlamaConfig(**common)
    if name == "tiny-qwen2":
        return Qwen2Config(**common)
    if name == "tiny-mistral":
        return MistralConfig(**common, sliding_window=24)
    if name == "tiny-gemma3":  # two sliding layers, then a global one: both rotary bases
        return Gemma3TextConfig(
            **common | dict(num_hidden_layers=6, num_key_value_heads=1),
            head_dim=32,
            query_pre_attn_scalar=32,
            sliding_window=24,
            sliding_window_pattern=3,
            rope_parameters={
                "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0},
                "full_attention": {"rope_type": "default", "rope_theta": 1000000.0},
            },
        )
    return Gemma2Config(
        **common, head_dim=16, query_pre_attn_scalar=16, sliding_window=24, hidden_act="gelu"
    )


def random_model(name: str, dtype: torch.dtype) -> nn.Module:
    """The Hugging Face model of ``name``, seeded so that every load has the same weights."""
    return seeded_model(random_config(name), dtype, eager=name == "tiny-gemma2")


def seeded_model(
    config: PretrainedConfig, dtype: torch.dtype, eager: bool = False, seed: int = 0
) -> nn.Module:
    """A model of ``config`` with weights drawn from ``seed`` (the global RNG untouched);
    ``eager`` attention for Gemma-2, whose logit soft-capping sdpa does not apply."""
    from transformers import AutoModelForCausalLM

    config._attn_implementation = "eager" if eager else "sdpa"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(config)
    return model.to(dtype)
