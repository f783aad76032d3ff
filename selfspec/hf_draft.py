"""Our Kangaroo draft as a transformers model, so Hugging Face's `assistant_model` can use it.

This is the fair way to compare the two speculative loops: the same draft (the model's
first l layers, the trained adapter, the model's head) drafting for Hugging Face's
assisted generation instead of for our loop. The draft model is a model of the same class
with l + 1 layers whose modules are the base model's own (embedding, layers 0..l-1,
rotary tables, final norm, head: no weight is copied), plus one new layer holding the
adapter: its attention is the adapter's, its MLP adds nothing, and the adapter's final
RMSNorm runs just before the model's final norm, as in our drafter.

Unlike our drafter it cannot share the shallow layers' work with verification (Hugging
Face verifies with a full forward of the main model) and it always drafts with the full
head; the adapter's draft-exit threshold becomes `assistant_confidence_threshold`.
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

from selfspec.adapter import KangarooAdapter
from selfspec.errors import BadInputError
from selfspec.loading import LoadedModel

__all__ = ["kangaroo_as_hf"]


class _NoMLP(nn.Module):
    """Stands in for the adapter layer's MLP: the adapter has none."""

    def forward(self, x: Tensor) -> Tensor:
        return torch.zeros_like(x)


class _Norm(nn.Module):
    """An RMSNorm with the adapter's weight, in the engine's arithmetic."""

    def __init__(self, lm: LoadedModel, weight: Tensor) -> None:
        super().__init__()
        self.engine = lm.engine
        self.weight = nn.Parameter(weight.detach(), requires_grad=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.engine.norm(x, self.weight)


def kangaroo_as_hf(lm: LoadedModel, adapter: KangarooAdapter) -> nn.Module:
    """A `generate`-capable draft model made of the base model's first layers and the adapter."""
    base = lm.hf_model
    if lm.engine.cfg.sandwich_norm:
        raise BadInputError(
            "hf-assist with the Kangaroo draft supports the Llama family; for Gemma name a "
            "draft model in SELFSPEC_DRAFT_MODEL."
        )
    exit_layer = adapter.settings.exit_layer
    config = copy.deepcopy(base.config)
    config.num_hidden_layers = exit_layer + 1
    if getattr(config, "layer_types", None):
        config.layer_types = [*config.layer_types[:exit_layer], "full_attention"]
    with torch.device("meta"):
        draft = type(base)(config)
    inner, base_inner = draft.model, base.model
    inner.embed_tokens = base_inner.embed_tokens
    inner.rotary_emb = base_inner.rotary_emb
    for i in range(exit_layer):
        inner.layers[i] = base_inner.layers[i]
    inner.layers[exit_layer] = _adapter_layer(lm, adapter, config)
    inner.norm = nn.Sequential(_Norm(lm, adapter.final_norm), base_inner.norm)
    draft.lm_head = base.lm_head
    draft.generation_config = copy.deepcopy(base.generation_config)
    draft.generation_config.assistant_confidence_threshold = adapter.settings.eta
    meta = [name for name, p in [*draft.named_parameters(), *draft.named_buffers()] if p.is_meta]
    assert not meta, f"draft model left without weights: {meta}"
    return draft.eval()


def _adapter_layer(lm: LoadedModel, adapter: KangarooAdapter, config) -> nn.Module:
    """A decoder layer of the base model's class computing the adapter block."""
    base_layer = lm.hf_model.model.layers[0]
    exit_layer = adapter.settings.exit_layer
    with torch.device("meta"):
        layer = type(base_layer)(config, layer_idx=exit_layer)
    layer.mlp = _NoMLP()
    layer.input_layernorm = _Norm(lm, adapter.attn_norm)
    layer.post_attention_layernorm = nn.Identity()  # feeds only the MLP, which adds nothing
    attn = layer.self_attn
    cfg = lm.engine.cfg
    sizes = (
        cfg.n_heads * cfg.head_dim,
        cfg.n_kv_heads * cfg.head_dim,
        cfg.n_kv_heads * cfg.head_dim,
    )
    weights = adapter.wqkv.detach().split(sizes)
    biases = adapter.bqkv.detach().split(sizes) if adapter.bqkv is not None else (None,) * 3
    for proj, w, b in zip((attn.q_proj, attn.k_proj, attn.v_proj), weights, biases, strict=True):
        proj.weight = nn.Parameter(w, requires_grad=False)
        if b is not None:
            proj.bias = nn.Parameter(b, requires_grad=False)
    attn.o_proj.weight = nn.Parameter(adapter.wo.detach(), requires_grad=False)
    return layer
