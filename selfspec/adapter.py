"""The Kangaroo adapter: one attention block that maps exit-layer states to the LM head.

Kangaroo drafts with the model's first l layers, then this adapter, then the model's own
frozen LM head. The adapter is deliberately small (input RMSNorm, self-attention with the
base model's head layout and RoPE, residual, final RMSNorm; no MLP): its cost per draft
token is one attention sub-layer, and its job is only to close the gap between the exit
layer's hidden states and what the head expects from the last layer.

It runs on the engine's own pieces (norm, RoPE tables, attention kernel with Gemma-2
soft-capping), so it computes attention exactly as the model's layers do, and it keeps its
own one-layer KV cache written by position like the model's.

Saved as safetensors (weights, plus the optional restricted draft-head token list) with a
JSON file of settings beside it; loading checks the settings against the model.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

import torch
from torch import Tensor, nn

from selfspec.errors import BadInputError
from selfspec.kv_cache import KVCache
from selfspec.loading import LoadedModel
from selfspec.model import Transformer
from selfspec.ops import causal_mask, linear, rotate_half

__all__ = ["AdapterSettings", "KangarooAdapter", "save_adapter", "load_adapter", "settings_path"]


@dataclass
class AdapterSettings:
    """What an adapter was made for and how; stored as JSON beside the weights."""

    model: str  # selfspec.profiles.model_key of the base model
    n_layers: int
    exit_layer: int
    dim: int
    eta: float = 0.6  # draft-exit threshold recommended with this adapter
    init: str = "layer"  # "layer": copy of layer exit_layer's attention; "random"
    data: str = ""  # training data description
    loss: str = "ce"
    steps: int = 0
    lr: float = 0.0
    seed: int = 0
    held_out_loss: float | None = None
    expected_acceptance: float | None = None  # held-out mean of sum(min(p, q))
    head_tokens: int = 0  # size of the restricted draft head (0: full head)
    seconds: float = 0.0
    created: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))


class KangarooAdapter(nn.Module):
    """Input RMSNorm -> self-attention (+ residual) -> final RMSNorm; no MLP."""

    def __init__(self, engine: Transformer, settings: AdapterSettings, seed: int = 0) -> None:
        super().__init__()
        cfg = engine.cfg
        self.settings = settings
        nq, nkv, d, c = cfg.n_heads, cfg.n_kv_heads, cfg.head_dim, cfg.dim
        ones = torch.full((c,), 1.0 - cfg.norm_offset)  # unit scale under either convention
        self.attn_norm = nn.Parameter(ones.clone())
        self.wqkv = nn.Parameter(torch.empty((nq + 2 * nkv) * d, c))  # [(H + 2Hkv) D, C]
        self.bqkv = nn.Parameter(torch.zeros((nq + 2 * nkv) * d)) if cfg.qkv_bias else None
        self.wo = nn.Parameter(torch.empty(c, nq * d))  # [C, H D]
        self.post_attn_norm = nn.Parameter(ones.clone()) if cfg.sandwich_norm else None
        self.final_norm = nn.Parameter(ones.clone())
        self.register_buffer("head_tokens", torch.zeros(0, dtype=torch.long))
        self._init(engine, settings, seed)
        self.to(device=engine.device, dtype=engine.dtype)

    @torch.no_grad()
    def _init(self, engine: Transformer, settings: AdapterSettings, seed: int) -> None:
        if settings.init == "layer":
            w = engine.dense_layer(settings.exit_layer)
            self.attn_norm.copy_(w.attn_norm)
            self.wqkv.copy_(w.wqkv)
            self.wo.copy_(w.wo)
            if self.bqkv is not None:
                self.bqkv.copy_(w.bqkv)
            if self.post_attn_norm is not None:
                self.post_attn_norm.copy_(w.post_attn_norm)
        elif settings.init == "random":
            g = torch.Generator().manual_seed(seed)
            self.wqkv.normal_(0.0, 0.02, generator=g)
            self.wo.normal_(0.0, 0.02, generator=g)
        else:
            raise BadInputError(f"Unknown adapter init '{settings.init}': use layer or random.")

    def new_cache(self, engine: Transformer, max_len: int, batch: int = 1) -> KVCache:
        """A one-layer KV cache with the model's head layout."""
        return KVCache(replace(engine.cfg, n_layers=1), max_len, batch, engine.device, self.dtype)

    @property
    def dtype(self) -> torch.dtype:
        return self.wqkv.dtype

    def forward(
        self, engine: Transformer, h: Tensor, cache: KVCache | None = None, pos: int = 0
    ) -> Tensor:
        """Adapter output [B, T, C] for exit-layer states h [B, T, C] at positions pos.. .

        Without a cache (training, teacher-forced) h is the whole sequence from position 0.
        """
        cfg = engine.cfg
        b, t, _ = h.shape
        nq, nkv, d = cfg.n_heads, cfg.n_kv_heads, cfg.head_dim
        qkv = linear(engine.norm(h, self.attn_norm), self.wqkv, self.bqkv)
        q, k, v = qkv.split((nq * d, nkv * d, nkv * d), dim=-1)
        q = q.view(b, t, nq, d).transpose(1, 2)  # [B, H, T, D]
        k = k.view(b, t, nkv, d).transpose(1, 2)  # [B, Hkv, T, D]
        v = v.view(b, t, nkv, d).transpose(1, 2)
        cos, sin = _rope(engine, pos, t)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        if cache is not None:
            cache.k[0][:, :, pos : pos + t] = k
            cache.v[0][:, :, pos : pos + t] = v
            k, v = cache.k[0][:, :, : pos + t], cache.v[0][:, :, : pos + t]  # [B, Hkv, S, D]
        out = engine.attend(q, k, v, causal_mask(pos, t, None, h.device))  # [B, H, T, D]
        out = linear(out.transpose(1, 2).reshape(b, t, nq * d), self.wo)  # [B, T, C]
        if self.post_attn_norm is not None:
            out = engine.norm(out, self.post_attn_norm)
        return engine.norm(h + out, self.final_norm)

    def head(self, engine: Transformer) -> Tensor | None:
        """The restricted draft head [N, C], or None for the full head."""
        return engine.head_rows(self.head_tokens) if self.head_tokens.numel() else None


def _rope(engine: Transformer, pos: int, t: int) -> tuple[Tensor, Tensor]:
    """The engine's RoPE tables; cloned when training, since tables first built under
    inference_mode cannot be saved for backward."""
    cos, sin = engine.rope(pos, t)
    if torch.is_grad_enabled() and torch.is_inference(cos):
        return cos.clone(), sin.clone()
    return cos, sin


def settings_path(path: Path) -> Path:
    return path.with_suffix(".json")


def save_adapter(adapter: KangarooAdapter, path: str | Path) -> Path:
    """Write the weights (safetensors) and the settings (JSON beside them)."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().contiguous().cpu() for k, v in adapter.state_dict().items()}
    save_file(tensors, str(path))
    settings_path(path).write_text(json.dumps(asdict(adapter.settings), indent=2))
    return path


def load_adapter(
    lm: LoadedModel, path: str | Path, exit_layer: int | None = None
) -> KangarooAdapter:
    """The adapter at path, refused unless it was made for this model (and exit layer)."""
    from safetensors.torch import load_file

    from selfspec.profiles import model_key

    path = Path(path)
    if not path.is_file() or not settings_path(path).is_file():
        raise BadInputError(f"No Kangaroo adapter at {path} (weights plus a .json beside them).")
    try:
        settings = AdapterSettings(**json.loads(settings_path(path).read_text()))
    except (ValueError, TypeError) as exc:
        raise BadInputError(
            f"The adapter settings {settings_path(path)} are malformed: {exc}"
        ) from exc
    cfg, key = lm.engine.cfg, model_key(lm)
    made_for = (settings.model, settings.n_layers, settings.dim)
    if made_for != (key, cfg.n_layers, cfg.dim):
        raise BadInputError(
            f"The adapter {path} was trained for '{settings.model}' ({settings.n_layers} layers, "
            f"width {settings.dim}), not for '{key}' ({cfg.n_layers} layers, width {cfg.dim}). "
            f"Train one with `python -m selfspec train-adapter --model {lm.source} ...`."
        )
    if exit_layer is not None and exit_layer != settings.exit_layer:
        raise BadInputError(
            f"The adapter {path} was trained at exit layer {settings.exit_layer}, not "
            f"{exit_layer}. Use exit layer {settings.exit_layer} or train another adapter."
        )
    adapter = KangarooAdapter(lm.engine, replace(settings, init="random"))
    adapter.settings = settings
    state = load_file(str(path), device=str(lm.device))
    adapter.head_tokens = state["head_tokens"]
    adapter.load_state_dict(state)
    return adapter.to(dtype=lm.engine.dtype).requires_grad_(False)
