"""A GGUF file straight into the engine: its blocks become the engine's weights.

Nothing is dequantized to build the engine: each matrix keeps the file's bytes (read once
from disk into memory), and the native kernels compute on them. The only reordering is
llama.cpp's own: its converter interleaves the rows of Llama's query and key matrices for
its rotary convention, and we put those rows back in Hugging Face's order (a permutation
of whole rows, so of block runs: exact). The file is parsed as data only, through
transformers' GGUF header reader (gguf's own `GGUFReader` takes ~7 s on the bundled file's
100,000 tokenizer strings; this one 0.3 s), and checked before use: a file that is not a
GGUF, or is shorter than its tensor table says, is refused with its name.

Tensors of a type the kernels do not read are dequantized with gguf's own dequantizer to
dense float32, with a one-line warning naming the type.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from selfspec.config import ModelConfig
from selfspec.errors import ModelLoadError
from selfspec.model import NativeLayer, Transformer
from selfspec.weights import KERNEL_TYPES, Weight

__all__ = ["GGUFModel", "read_gguf", "build_hf_twin"]

log = logging.getLogger(__name__)

ARCHITECTURES = ("llama", "qwen2")  # GGUF architectures whose tensors we map


@dataclass
class GGUFModel:
    """What a GGUF file gives: the engine, the tokenizer, and the transformers config
    settings from which a dense Hugging Face twin can be built on demand."""

    engine: Transformer
    tokenizer: Any
    config: dict[str, Any]  # transformers config keyword arguments (model_type included)
    path: Path

    def hf_config(self):
        """The transformers config (built on demand: importing it costs seconds)."""
        from transformers import AutoConfig

        kwargs = dict(self.config)
        return AutoConfig.for_model(kwargs.pop("model_type"), **kwargs)


def read_gguf(path: str | Path) -> GGUFModel:
    """Parse, check and load a GGUF file; every failure names the file."""
    path = Path(path)
    from transformers.integrations.gguf.reader import GgufHeader, read_gguf_metadata

    try:
        header = GgufHeader.from_file(str(path))
        metadata, _ = read_gguf_metadata(str(path))
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise ModelLoadError(f"{path} is not a readable GGUF file: {exc}") from exc
    except Exception as exc:  # a truncated header makes struct.unpack fail anywhere
        raise ModelLoadError(f"{path} is damaged (its GGUF header cannot be parsed).") from exc
    end = max(header.data_start + t.offset + t.nbytes for t in header.tensors)
    size = os.path.getsize(path)
    if size < end:
        raise ModelLoadError(
            f"{path} is truncated: its tensors need {end:,} bytes, the file has {size:,}. "
            "Download or reinstall it again."
        )
    arch = header.architecture
    if arch not in ARCHITECTURES:
        raise ModelLoadError(
            f"{path} is a '{arch}' model; the GGUF loader maps {', '.join(ARCHITECTURES)}."
        )
    config = _config(metadata, arch, header)
    cfg = _model_config(config)
    tensors = _tensors(path, header)
    engine = _engine(cfg, config["rope_theta"], tensors)
    return GGUFModel(engine, _tokenizer(str(path)), config, path)


def _tensors(path: Path, header) -> dict[str, tuple[torch.Tensor, int, tuple[int, ...]]]:
    """name -> (raw bytes, ggml type, torch-order shape), read into memory in one pass."""
    blob = np.fromfile(path, dtype=np.uint8)
    out = {}
    for t in header.tensors:
        start = header.data_start + t.offset
        out[t.name] = (torch.from_numpy(blob[start : start + t.nbytes]), t.ggml_type, t.shape)
    return out


def _weight(name: str, raw: torch.Tensor, qtype: int, shape: tuple[int, ...]) -> Weight:
    n, k = shape
    if qtype in KERNEL_TYPES:
        return Weight.blocks(raw, qtype, n, k)
    import gguf

    kind = gguf.GGMLQuantizationType(qtype)
    log.warning("%s is %s, which the kernel does not read: using dense float32.", name, kind.name)
    dense = gguf.quants.dequantize(raw.numpy(), kind).reshape(n, k).astype(np.float32)
    return Weight.dense_of(torch.from_numpy(dense))


def _vector(tensors: dict, name: str) -> torch.Tensor | None:
    if name not in tensors:
        return None
    raw, qtype, shape = tensors[name]
    return _weight(name, raw, qtype, (1, shape[-1])).dense(torch.float32)[0].contiguous()


def _unpermute(n_rows: int, n_heads: int) -> torch.Tensor:
    """Row order that undoes llama.cpp's interleaving of each head's rotary halves."""
    half = n_rows // n_heads // 2
    return torch.arange(n_rows).reshape(n_heads, half, 2).transpose(1, 2).reshape(-1)


def _engine(cfg: ModelConfig, rope_theta: float, tensors: dict) -> Transformer:
    def w(name: str) -> Weight:
        return _weight(name, *tensors[name])

    layers = []
    for i in range(cfg.n_layers):
        p = f"blk.{i}."
        q, k = w(p + "attn_q.weight"), w(p + "attn_k.weight")
        if cfg.arch in ("llama", "mistral"):
            q = q.take_rows(_unpermute(q.n, cfg.n_heads))
            k = k.take_rows(_unpermute(k.n, cfg.n_kv_heads))
        layers.append(
            NativeLayer(
                attn_norm=_vector(tensors, p + "attn_norm.weight"),
                q=q,
                k=k,
                v=w(p + "attn_v.weight"),
                o=w(p + "attn_output.weight"),
                mlp_norm=_vector(tensors, p + "ffn_norm.weight"),
                gate=w(p + "ffn_gate.weight"),
                up=w(p + "ffn_up.weight"),
                down=w(p + "ffn_down.weight"),
                bq=_vector(tensors, p + "attn_q.bias"),
                bk=_vector(tensors, p + "attn_k.bias"),
                bv=_vector(tensors, p + "attn_v.bias"),
            )
        )
    embedding = w("token_embd.weight")
    head = w("output.weight") if "output.weight" in tensors else embedding
    return Transformer(
        cfg,
        native_layers=layers,
        embedding=embedding,
        lm_head=head,
        final_norm=_vector(tensors, "output_norm.weight"),
        inv_freq=rope_inv_freq(rope_theta, cfg.head_dim),
    )


def rope_inv_freq(base: float, dim: int) -> torch.Tensor:
    """Plain RoPE's inverse frequencies base^(-2i/dim), computed in float32 as transformers
    computes them (so the tables match its bit for bit), without importing its model code
    (that import alone takes seconds: it pulls in scipy)."""
    exponents = torch.arange(0, dim, 2, dtype=torch.int64).float() / dim
    return 1.0 / (base**exponents)


def _config(md: dict, arch: str, header) -> dict[str, Any]:
    """transformers config settings from the file's metadata (llama.cpp's key names)."""

    def key(name: str, default=None):
        return md.get(f"{arch}.{name}", default)

    names = {t.name for t in header.tensors}
    heads = key("attention.head_count")
    scaling = key("rope.scaling.type")
    if scaling not in (None, "none"):
        raise ModelLoadError(f"GGUF models with '{scaling}' RoPE scaling are not supported yet.")
    return dict(
        model_type=arch,
        vocab_size=key("vocab_size") or md["tokenizer.ggml.tokens"],
        hidden_size=key("embedding_length"),
        intermediate_size=key("feed_forward_length"),
        num_hidden_layers=key("block_count"),
        num_attention_heads=heads,
        num_key_value_heads=key("attention.head_count_kv", heads),
        max_position_embeddings=key("context_length"),
        rms_norm_eps=key("attention.layer_norm_rms_epsilon"),
        rope_theta=key("rope.freq_base", 10000.0),
        tie_word_embeddings="output.weight" not in names,
        bos_token_id=md.get("tokenizer.ggml.bos_token_id"),
        eos_token_id=md.get("tokenizer.ggml.eos_token_id"),
        pad_token_id=md.get("tokenizer.ggml.padding_token_id"),
    )


def _model_config(c: dict[str, Any]) -> ModelConfig:
    """The engine's config for these settings, as `ModelConfig.from_hf` would give for the
    transformers config (a test checks that), without building the latter."""
    head_dim = c["hidden_size"] // c["num_attention_heads"]
    return ModelConfig(
        arch=c["model_type"],
        vocab_size=c["vocab_size"],
        dim=c["hidden_size"],
        n_layers=c["num_hidden_layers"],
        n_heads=c["num_attention_heads"],
        n_kv_heads=c["num_key_value_heads"],
        head_dim=head_dim,
        intermediate_size=c["intermediate_size"],
        norm_eps=c["rms_norm_eps"],
        max_seq_len=c["max_position_embeddings"],
        qkv_bias=c["model_type"] == "qwen2",
        query_scale=head_dim**-0.5,
        windows=(None,) * c["num_hidden_layers"],
    )


def _tokenizer(path: str):
    """The tokenizer the file describes, through transformers' own GGUF conversion."""
    from transformers import PreTrainedTokenizerFast
    from transformers.integrations.gguf.gguf_tokenizer_mapping import (
        convert_gguf_tokenizer,
        get_gguf_tokenizer,
    )

    arch, tokenizer_dict, tokenizer_config = get_gguf_tokenizer(path)
    backend, extra = convert_gguf_tokenizer(arch, tokenizer_dict)
    return PreTrainedTokenizerFast(tokenizer_object=backend, **tokenizer_config, **extra)


def build_hf_twin(g: GGUFModel, dtype: torch.dtype) -> nn.Module:
    """A dense transformers model with the engine's weights, exactly the file's values
    (what `from_pretrained(gguf_file=...)` would load), for the Hugging Face peers."""
    from transformers import AutoModelForCausalLM

    hf_config, engine = g.hf_config(), g.engine
    model = AutoModelForCausalLM.from_config(hf_config, dtype=dtype)
    state = {"model.embed_tokens.weight": engine.embedding_weight.dense(dtype)}
    if not hf_config.tie_word_embeddings:
        state["lm_head.weight"] = engine.head_weight.dense(dtype)
    state["model.norm.weight"] = engine.final_norm.to(dtype)
    names = {"q": "self_attn.q_proj", "k": "self_attn.k_proj", "v": "self_attn.v_proj"}
    names |= {"o": "self_attn.o_proj", "gate": "mlp.gate_proj", "up": "mlp.up_proj"}
    names["down"] = "mlp.down_proj"
    for i, nl in enumerate(engine.native_layers):
        p = f"model.layers.{i}."
        for field, module in names.items():
            state[p + module + ".weight"] = getattr(nl, field).dense(dtype)
        for field in ("q", "k", "v"):
            bias = getattr(nl, "b" + field)
            if bias is not None:
                state[p + names[field] + ".bias"] = bias.to(dtype)
        state[p + "input_layernorm.weight"] = nl.attn_norm.to(dtype)
        state[p + "post_attention_layernorm.weight"] = nl.mlp_norm.to(dtype)
    missing, unexpected = model.load_state_dict(state, strict=False)
    tied = {"lm_head.weight"} if hf_config.tie_word_embeddings else set()
    missing = [m for m in missing if not m.endswith("rotary_emb.inv_freq") and m not in tied]
    if missing or unexpected:
        raise ModelLoadError(f"GGUF to transformers mapping incomplete: {missing or unexpected}")
    if hf_config.tie_word_embeddings:
        model.tie_weights()
    return model.eval().requires_grad_(False)
