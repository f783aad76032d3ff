"""A GGUF file straight into the engine: its blocks become the engine's weights.

Nothing is dequantized to build the engine: each matrix is the file's bytes, mapped from
disk (`selfspec.gguf_file` reads the header), and the native kernels compute on them. The
only reordering is llama.cpp's own: its converter interleaves the rows of Llama's query
and key matrices for its rotary convention, and we put those rows back in Hugging Face's
order (a permutation of whole rows, so of block runs: exact). Gemma's norm weights are
stored as 1 + w by llama.cpp's converter and used as stored.

Tensors of a type the kernels do not read are dequantized with gguf's own dequantizer to
dense float32, with a one-line warning naming the type.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from selfspec.cache import cache_root
from selfspec.config import ModelConfig
from selfspec.errors import ModelLoadError
from selfspec.gguf_file import GGUFHeader, read_header
from selfspec.layer_weights import NativeLayer
from selfspec.model import Transformer
from selfspec.weights import KERNEL_TYPES, Weight

__all__ = ["GGUFModel", "read_gguf", "build_hf_twin"]

log = logging.getLogger(__name__)

ARCHITECTURES = ("llama", "qwen2", "gemma3")  # GGUF architectures whose tensors we map


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
    header = read_header(path)
    path = header.path
    arch = header.architecture
    if arch not in ARCHITECTURES:
        raise ModelLoadError(
            f"{path} is a '{arch}' model; the GGUF loader maps {', '.join(ARCHITECTURES)}."
        )
    config = _config(header.metadata, arch, header.tensors)
    cfg = _model_config(config)
    engine = _engine(cfg, config, _tensors(path, header))
    return GGUFModel(engine, _tokenizer(str(path)), config, path)


def _tensors(
    path: Path, header: GGUFHeader
) -> dict[str, tuple[torch.Tensor, int, tuple[int, ...]]]:
    """name -> (raw bytes, ggml type, torch-order shape), mapped from the file (copy on
    write, never written): loading costs no read, and the weights are the page cache's."""
    blob = np.memmap(path, dtype=np.uint8, mode="c")  # pages come in as the kernels read them
    return {
        t.name: (torch.from_numpy(blob[t.offset : t.offset + t.nbytes]), t.ggml_type, t.shape)
        for t in header.tensors.values()
    }


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


def _engine(cfg: ModelConfig, config: dict[str, Any], tensors: dict) -> Transformer:
    def w(name: str) -> Weight:
        return _weight(name, *tensors[name])

    def vec(name: str) -> torch.Tensor | None:
        return _vector(tensors, name)

    layers = []
    for i in range(cfg.n_layers):
        p = f"blk.{i}."
        q, k = w(p + "attn_q.weight"), w(p + "attn_k.weight")
        if cfg.arch in ("llama", "mistral"):
            q = q.take_rows(_unpermute(q.n, cfg.n_heads))
            k = k.take_rows(_unpermute(k.n, cfg.n_kv_heads))
        layers.append(
            NativeLayer(
                attn_norm=vec(p + "attn_norm.weight"),
                q=q,
                k=k,
                v=w(p + "attn_v.weight"),
                o=w(p + "attn_output.weight"),
                mlp_norm=vec(p + "ffn_norm.weight"),
                gate=w(p + "ffn_gate.weight"),
                up=w(p + "ffn_up.weight"),
                down=w(p + "ffn_down.weight"),
                bq=vec(p + "attn_q.bias"),
                bk=vec(p + "attn_k.bias"),
                bv=vec(p + "attn_v.bias"),
                post_attn_norm=vec(p + "post_attention_norm.weight"),
                post_mlp_norm=vec(p + "post_ffw_norm.weight"),
                q_norm=vec(p + "attn_q_norm.weight"),
                k_norm=vec(p + "attn_k_norm.weight"),
            )
        )
    embedding = w("token_embd.weight")
    head = w("output.weight") if "output.weight" in tensors else embedding
    return Transformer(
        cfg,
        native_layers=layers,
        embedding=embedding,
        lm_head=head,
        final_norm=vec("output_norm.weight"),
        inv_freq=rope_inv_freq(_theta(config, "full_attention"), cfg.head_dim),
        local_inv_freq=(
            None
            if cfg.local_rope_theta is None
            else rope_inv_freq(cfg.local_rope_theta, cfg.head_dim)
        ),
    )


def _theta(config: dict[str, Any], layer_type: str) -> float:
    if "rope_parameters" in config:
        return config["rope_parameters"][layer_type]["rope_theta"]
    return config["rope_theta"]


def rope_inv_freq(base: float, dim: int) -> torch.Tensor:
    """Plain RoPE's inverse frequencies base^(-2i/dim), computed in float32 as transformers
    computes them (so the tables match its bit for bit), without importing its model code
    (that import alone takes seconds: it pulls in scipy)."""
    exponents = torch.arange(0, dim, 2, dtype=torch.int64).float() / dim
    return 1.0 / (base**exponents)


# Gemma-3 settings that llama.cpp fixes in code rather than in the file: every sixth layer
# attends globally, the others over a sliding window with rotary base 10,000.
GEMMA3_GLOBAL_EVERY = 6
GEMMA3_LOCAL_THETA = 10000.0


def _config(md: dict, arch: str, tensors: dict) -> dict[str, Any]:
    """transformers config settings from the file's metadata (llama.cpp's key names)."""

    def key(name: str, default=None):
        return md.get(f"{arch}.{name}", default)

    heads = key("attention.head_count")
    scaling = key("rope.scaling.type")
    if scaling not in (None, "none"):
        raise ModelLoadError(f"GGUF models with '{scaling}' RoPE scaling are not supported yet.")
    config = dict(
        model_type=arch,
        vocab_size=key("vocab_size") or md["tokenizer.ggml.tokens"],
        hidden_size=key("embedding_length"),
        intermediate_size=key("feed_forward_length"),
        num_hidden_layers=key("block_count"),
        num_attention_heads=heads,
        num_key_value_heads=key("attention.head_count_kv", heads),
        head_dim=key("attention.key_length") or key("embedding_length") // heads,
        max_position_embeddings=key("context_length"),
        rms_norm_eps=key("attention.layer_norm_rms_epsilon"),
        rope_theta=key("rope.freq_base", 10000.0),
        tie_word_embeddings="output.weight" not in tensors,
        bos_token_id=md.get("tokenizer.ggml.bos_token_id"),
        eos_token_id=md.get("tokenizer.ggml.eos_token_id"),
        pad_token_id=md.get("tokenizer.ggml.padding_token_id"),
    )
    if arch == "gemma3":
        n = config["num_hidden_layers"]
        config |= dict(
            model_type="gemma3_text",
            query_pre_attn_scalar=config["head_dim"],
            sliding_window=key("attention.sliding_window"),
            layer_types=[
                "full_attention" if (i + 1) % GEMMA3_GLOBAL_EVERY == 0 else "sliding_attention"
                for i in range(n)
            ],
            rope_parameters={
                "full_attention": {"rope_type": "default", "rope_theta": config.pop("rope_theta")},
                "sliding_attention": {"rope_type": "default", "rope_theta": GEMMA3_LOCAL_THETA},
            },
            hidden_activation="gelu_pytorch_tanh",
        )
    return config


def _model_config(c: dict[str, Any]) -> ModelConfig:
    """The engine's config for these settings, as `ModelConfig.from_hf` would give for the
    transformers config (a test checks that), without building the latter; except that a
    Gemma file's norm weights already hold 1 + w (llama.cpp's converter adds the 1), so
    its norms scale by the stored value (offset 0), exactly as llama.cpp computes them."""
    gemma = c["model_type"] == "gemma3_text"
    n = c["num_hidden_layers"]
    windows = (None,) * n
    if gemma:
        windows = tuple(
            c["sliding_window"] if t == "sliding_attention" else None for t in c["layer_types"]
        )
    return ModelConfig(
        arch=c["model_type"],
        vocab_size=c["vocab_size"],
        dim=c["hidden_size"],
        n_layers=n,
        n_heads=c["num_attention_heads"],
        n_kv_heads=c["num_key_value_heads"],
        head_dim=c["head_dim"],
        intermediate_size=c["intermediate_size"],
        norm_eps=c["rms_norm_eps"],
        max_seq_len=c["max_position_embeddings"],
        qkv_bias=c["model_type"] == "qwen2",
        activation="gelu_tanh" if gemma else "silu",
        sandwich_norm=gemma,
        embed_scale=c["hidden_size"] ** 0.5 if gemma else None,
        query_scale=c.get("query_pre_attn_scalar", c["head_dim"]) ** -0.5,
        windows=windows,
        qk_norm=gemma,
        local_rope_theta=_theta(c, "sliding_attention") if gemma else None,
    )


def _tokenizer(path: str):
    """The tokenizer the file describes, through transformers' own GGUF conversion, kept
    in the cache once converted: converting a 150,000-token BPE vocabulary takes seconds
    (tens on a busy machine), loading the converted one a fraction of a second."""
    import transformers
    from transformers import PreTrainedTokenizerFast

    stat = os.stat(path)
    key = f"{os.path.realpath(path)}|{stat.st_size}|{stat.st_mtime_ns}|{transformers.__version__}"
    folder = cache_root() / "tokenizers" / hashlib.sha256(key.encode()).hexdigest()[:16]
    if (folder / "tokenizer.json").is_file():
        return PreTrainedTokenizerFast.from_pretrained(str(folder))
    tokenizer = convert_tokenizer(path)
    tmp = folder.with_name(f"{folder.name}.{os.getpid()}.tmp")
    try:
        tokenizer.save_pretrained(str(tmp))
        os.replace(tmp, folder)
    except OSError:  # a read-only cache, or another process got there first: no matter
        shutil.rmtree(tmp, ignore_errors=True)
    return tokenizer


def convert_tokenizer(path: str):
    """The tokenizer of a GGUF file, converted by transformers (uncached)."""
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
    gemma = engine.cfg.sandwich_norm

    def norm(t: torch.Tensor) -> torch.Tensor:
        # The file's Gemma norms hold 1 + w; transformers adds the 1 itself.
        return (t - 1.0 if gemma else t).to(dtype)

    state = {"model.embed_tokens.weight": engine.embedding_weight.dense(dtype)}
    if not hf_config.tie_word_embeddings:
        state["lm_head.weight"] = engine.head_weight.dense(dtype)
    state["model.norm.weight"] = norm(engine.final_norm)
    names = {"q": "self_attn.q_proj", "k": "self_attn.k_proj", "v": "self_attn.v_proj"}
    names |= {"o": "self_attn.o_proj", "gate": "mlp.gate_proj", "up": "mlp.up_proj"}
    names["down"] = "mlp.down_proj"
    norms = {"attn_norm": "input_layernorm", "q_norm": "self_attn.q_norm"}
    norms |= {"k_norm": "self_attn.k_norm", "post_attn_norm": "post_attention_layernorm"}
    norms |= {"post_mlp_norm": "post_feedforward_layernorm"}
    norms["mlp_norm"] = "pre_feedforward_layernorm" if gemma else "post_attention_layernorm"
    for i, nl in enumerate(engine.native_layers):
        p = f"model.layers.{i}."
        for field, module in names.items():
            state[p + module + ".weight"] = getattr(nl, field).dense(dtype)
        for field in ("q", "k", "v"):
            bias = getattr(nl, "b" + field)
            if bias is not None:
                state[p + names[field] + ".bias"] = bias.to(dtype)
        for field, module in norms.items():
            if getattr(nl, field) is not None:
                state[p + module + ".weight"] = norm(getattr(nl, field))
    missing, unexpected = model.load_state_dict(state, strict=False)
    tied = {"lm_head.weight"} if hf_config.tie_word_embeddings else set()
    missing = [m for m in missing if "rotary_emb" not in m and m not in tied]
    if missing or unexpected:
        raise ModelLoadError(f"GGUF to transformers mapping incomplete: {missing or unexpected}")
    if hf_config.tie_word_embeddings:
        model.tie_weights()
    return model.eval().requires_grad_(False)
