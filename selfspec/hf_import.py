"""Our engine over a transformers model's own tensors (shared, not copied).

On a CPU with float32, float16 or bfloat16 weights the native kernels read the tensors as
they are, with float32 activations; otherwise (a GPU, float64) torch's path runs on dense
fused copies. Tiny random models, Hugging Face checkpoints and the dense configurations of
a GGUF model (its transformers twin) all come through here.
"""

from __future__ import annotations

from torch import nn

from selfspec.config import ModelConfig
from selfspec.layer_weights import float32_of, native_layer_of
from selfspec.model import Transformer
from selfspec.ops import KERNEL_DTYPES
from selfspec.weights import Weight

__all__ = ["engine_from_hf"]


def engine_from_hf(hf_model: nn.Module) -> Transformer:
    """Build the engine over a transformers CausalLM (Llama family, Qwen2, Gemma-2/3),
    sharing its tensors. On a CPU in float32, float16 or bfloat16 the native kernels
    read them as they are, with float32 activations; otherwise torch's path runs."""
    cfg = ModelConfig.from_hf(hf_model.config)
    base = hf_model.model
    w0 = base.embed_tokens.weight
    native_ok = w0.device.type == "cpu" and w0.dtype in KERNEL_DTYPES
    layers = [native_layer_of(layer, cfg.sandwich_norm) for layer in base.layers]
    rotary = base.rotary_emb
    if cfg.local_rope_theta is not None:  # one table per layer type
        common = dict(
            inv_freq=rotary.full_attention_inv_freq,
            rope_scale=float(rotary.full_attention_attention_scaling),
            local_inv_freq=rotary.sliding_attention_inv_freq,
        )
    else:
        common = dict(
            inv_freq=rotary.inv_freq,
            rope_scale=float(getattr(rotary, "attention_scaling", 1.0)),
        )
    common["device"] = w0.device
    embedding, head = w0.detach(), hf_model.lm_head.weight.detach()
    if native_ok:
        return Transformer(
            cfg,
            native_layers=layers,
            embedding=Weight.dense_of(embedding),
            lm_head=Weight.dense_of(head),
            final_norm=float32_of(base.norm),
            **common,
        )
    return Transformer(
        cfg,
        layers=[nl.dense(w0.dtype) for nl in layers],
        embedding=embedding,
        lm_head=head,
        final_norm=base.norm.weight.detach(),
        dtype=w0.dtype,
        **common,
    )
