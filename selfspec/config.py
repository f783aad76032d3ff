"""The engine's model configuration, read from a Hugging Face config.

One dataclass covers the Llama family (Llama, Mistral, Qwen2, SmolLM2) and Gemma-2/3: the
differences are a handful of switches (norm offset, sandwich norms, soft-capping, sliding
windows, q/k/v biases, query/key norms, a second rotary base for the local layers) rather
than separate model classes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from selfspec.errors import ModelLoadError

if TYPE_CHECKING:  # transformers is only needed at run time by the loader
    from transformers import PretrainedConfig

__all__ = ["ModelConfig", "SUPPORTED_ARCHITECTURES"]

SUPPORTED_ARCHITECTURES = ("llama", "mistral", "qwen2", "gemma2", "gemma3_text")


@dataclass(frozen=True)
class ModelConfig:
    arch: str
    vocab_size: int
    dim: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    intermediate_size: int
    norm_eps: float
    max_seq_len: int
    qkv_bias: bool = False
    activation: str = "silu"  # "silu" or "gelu_tanh"
    norm_offset: float = 0.0  # Gemma-2 scales by (1 + w)
    sandwich_norm: bool = False  # Gemma-2 also normalises each sub-layer's output
    embed_scale: float | None = None  # Gemma-2 multiplies embeddings by sqrt(dim)
    attn_softcap: float | None = None
    final_softcap: float | None = None
    query_scale: float = 1.0
    windows: tuple[int | None, ...] = ()  # sliding-window size per layer (None: full)
    qk_norm: bool = False  # Gemma-3 normalises each query and key head
    local_rope_theta: float | None = None  # Gemma-3's sliding layers rotate with this base

    def local_rope(self, i: int) -> bool:
        """Whether layer i rotates with the local base (a sliding layer of Gemma-3)."""
        return self.local_rope_theta is not None and self.windows[i] is not None

    @property
    def n_sublayers(self) -> int:
        return 2 * self.n_layers

    @classmethod
    def from_hf(cls, hf: PretrainedConfig) -> ModelConfig:
        """Translate a transformers config; refuse architectures the engine does not run."""
        arch = hf.model_type
        if arch not in SUPPORTED_ARCHITECTURES:
            raise ModelLoadError(
                f"Architecture '{arch}' is not supported by the engine. Supported: "
                f"{', '.join(SUPPORTED_ARCHITECTURES)} (e.g. SmolLM2, Llama 2/3, TinyLlama, "
                "Mistral, Qwen2/2.5, Gemma-2, Gemma-3). Pick a model of one of these families."
            )
        head_dim = getattr(hf, "head_dim", None) or hf.hidden_size // hf.num_attention_heads
        gemma = arch in ("gemma2", "gemma3_text")
        gemma3 = arch == "gemma3_text"
        query_pre = getattr(hf, "query_pre_attn_scalar", None) if gemma else None
        return cls(
            arch=arch,
            vocab_size=hf.vocab_size,
            dim=hf.hidden_size,
            n_layers=hf.num_hidden_layers,
            n_heads=hf.num_attention_heads,
            n_kv_heads=hf.num_key_value_heads or hf.num_attention_heads,
            head_dim=head_dim,
            intermediate_size=hf.intermediate_size,
            norm_eps=hf.rms_norm_eps,
            max_seq_len=hf.max_position_embeddings,
            qkv_bias=arch == "qwen2" or bool(getattr(hf, "attention_bias", False)),
            activation="gelu_tanh" if gemma else "silu",
            norm_offset=1.0 if gemma else 0.0,
            sandwich_norm=gemma,
            embed_scale=hf.hidden_size**0.5 if gemma else None,
            attn_softcap=getattr(hf, "attn_logit_softcapping", None) if gemma else None,
            final_softcap=getattr(hf, "final_logit_softcapping", None) if gemma else None,
            query_scale=(query_pre or head_dim) ** -0.5,
            windows=_layer_windows(hf),
            qk_norm=gemma3,
            local_rope_theta=_local_theta(hf) if gemma3 else None,
        )


def _local_theta(hf) -> float:
    """Gemma-3's rotary base for its sliding layers (transformers keeps one per layer type)."""
    params = getattr(hf, "rope_parameters", None) or {}
    local = params.get("sliding_attention") or {}
    if local.get("rope_type", "default") != "default":
        raise ModelLoadError("Gemma-3 local layers with scaled RoPE are not supported yet.")
    return float(local.get("rope_theta", 10000.0))


def _layer_windows(hf) -> tuple[int | None, ...]:
    """Sliding-window size of each layer, following each family's own convention."""
    window = getattr(hf, "sliding_window", None)
    layer_types = getattr(hf, "layer_types", None)
    if layer_types is not None and hf.model_type != "mistral":
        return tuple(window if t == "sliding_attention" else None for t in layer_types)
    return (window,) * hf.num_hidden_layers
