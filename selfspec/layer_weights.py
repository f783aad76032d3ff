"""A decoder layer's weights, in the two forms the engine runs them in.

`NativeLayer` keeps each matrix in its own storage format (a GGUF file's blocks, or a
transformers model's dense tensors, shared) for the native kernels, with the C record of
pointers into them; `LayerWeights` is torch's form: dense matrices of one dtype with q/k/v
and gate/up fused. Each family's differences are optional fields: q/k/v biases (Qwen2),
sandwich norms (Gemma-2/3) and per-head query/key norms (Gemma-3).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from selfspec import native
from selfspec.weights import Weight

__all__ = ["LayerWeights", "NativeLayer", "native_layer_of"]


@dataclass
class LayerWeights:
    attn_norm: Tensor
    wqkv: Tensor  # [(H + 2 Hkv) D, C]
    bqkv: Tensor | None
    wo: Tensor  # [C, H D]
    mlp_norm: Tensor
    w_gate_up: Tensor  # [2 I, C]
    w_down: Tensor  # [C, I]
    post_attn_norm: Tensor | None = None  # Gemma-2/3 sandwich norms
    post_mlp_norm: Tensor | None = None
    q_norm: Tensor | None = None  # Gemma-3 per-head norms [D]
    k_norm: Tensor | None = None


@dataclass
class NativeLayer:
    """One layer's weights for the native kernels: each matrix in its own format (a Q4_K_M
    file mixes formats within a layer), norms and biases as float32 tensors, and the C
    record of pointers into them (valid while this object holds the tensors)."""

    attn_norm: Tensor
    q: Weight
    k: Weight
    v: Weight
    o: Weight
    mlp_norm: Tensor
    gate: Weight
    up: Weight
    down: Weight
    bq: Tensor | None = None
    bk: Tensor | None = None
    bv: Tensor | None = None
    post_attn_norm: Tensor | None = None
    post_mlp_norm: Tensor | None = None
    q_norm: Tensor | None = None
    k_norm: Tensor | None = None
    _record: native.LayerWeights | None = field(default=None, repr=False)

    def record(self) -> native.LayerWeights:
        if self._record is None:

            def ptr(t: Tensor | None) -> int | None:
                return None if t is None else t.data_ptr()

            self._record = native.LayerWeights(
                ptr(self.attn_norm),
                *(native.cweight(w) for w in (self.q, self.k, self.v, self.o)),
                ptr(self.bq),
                ptr(self.bk),
                ptr(self.bv),
                ptr(self.mlp_norm),
                *(native.cweight(w) for w in (self.gate, self.up, self.down)),
                ptr(self.post_attn_norm),
                ptr(self.post_mlp_norm),
                ptr(self.q_norm),
                ptr(self.k_norm),
            )
        return self._record

    def matrices(self) -> list[Weight]:
        return [self.q, self.k, self.v, self.o, self.gate, self.up, self.down]

    def dense(self, dtype: torch.dtype) -> LayerWeights:
        """The layer as torch's path wants it: fused dense matrices of `dtype`."""

        def cat(*ws: Weight) -> Tensor:
            return torch.cat([w.dense(dtype) for w in ws])

        def f(t: Tensor | None) -> Tensor | None:
            return None if t is None else t.to(dtype)

        biases = (self.bq, self.bk, self.bv)
        return LayerWeights(
            attn_norm=f(self.attn_norm),
            wqkv=cat(self.q, self.k, self.v),
            bqkv=torch.cat(biases).to(dtype) if self.bq is not None else None,
            wo=self.o.dense(dtype),
            mlp_norm=f(self.mlp_norm),
            w_gate_up=cat(self.gate, self.up),
            w_down=self.down.dense(dtype),
            post_attn_norm=f(self.post_attn_norm),
            post_mlp_norm=f(self.post_mlp_norm),
            q_norm=f(self.q_norm),
            k_norm=f(self.k_norm),
        )


def native_layer_of(layer: nn.Module, sandwich: bool) -> NativeLayer:
    """A transformers decoder layer's weights, shared as they are (Llama family, Qwen2,
    Gemma-2/3; `sandwich`: the Gemma layout with four norms per layer)."""
    attn, mlp = layer.self_attn, layer.mlp
    mats = [attn.q_proj, attn.k_proj, attn.v_proj, attn.o_proj]
    mats += [mlp.gate_proj, mlp.up_proj, mlp.down_proj]
    q, k, v, o, gate, up, down = (Weight.of(m.weight.detach()) for m in mats)
    return NativeLayer(
        attn_norm=float32_of(layer.input_layernorm),
        q=q,
        k=k,
        v=v,
        o=o,
        mlp_norm=float32_of(
            layer.pre_feedforward_layernorm if sandwich else layer.post_attention_layernorm
        ),
        gate=gate,
        up=up,
        down=down,
        bq=float32_of(attn.q_proj, "bias"),
        bk=float32_of(attn.k_proj, "bias"),
        bv=float32_of(attn.v_proj, "bias"),
        post_attn_norm=float32_of(layer.post_attention_layernorm) if sandwich else None,
        post_mlp_norm=float32_of(layer.post_feedforward_layernorm) if sandwich else None,
        q_norm=float32_of(attn.q_norm) if hasattr(attn, "q_norm") else None,
        k_norm=float32_of(attn.k_norm) if hasattr(attn, "k_norm") else None,
    )


def float32_of(module: nn.Module, attr: str = "weight") -> Tensor | None:
    """A module's norm weight or bias as a float32 tensor (None where it has none)."""
    t = getattr(module, attr, None)
    return None if t is None else t.detach().float().contiguous()
