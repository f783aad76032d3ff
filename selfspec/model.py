"""Our compact transformer: the fast path every decoding method runs on.

In the spirit of gpt-fast: plain tensors and short functions instead of nn.Module trees, a
per-layer static KV cache written by position, and a forward pass that can run any
contiguous range of layers and skip any attention or MLP sub-layer. That last ability is
what self-speculative drafting (skipped sub-layers) and Kangaroo (early exit after layer l,
resume from cached hidden states) are built on.

The weights are the Hugging Face model's own tensors. q/k/v and gate/up are fused into
one matrix each (one matmul instead of three or two: on a CPU at batch 1 the call overhead
matters), and the Hugging Face modules are re-pointed at views of the fused matrices, so
no weight is held twice and the Hugging Face model keeps working as the baseline, on the
usual [out, in] layout, exactly as transformers loads it.

On x86 CPUs in float32 the few-row products of decoding and verification go through our
own kernel (`selfspec.rows_kernel`), whose cost grows far more slowly with the number of
rows than MKL's and whose rounding does not depend on it; elsewhere through F.linear.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from selfspec import rows_kernel
from selfspec.config import ModelConfig
from selfspec.errors import BadInputError

__all__ = ["SkipSet", "KVCache", "Transformer", "LayerWeights"]


@dataclass(frozen=True)
class SkipSet:
    """Sub-layers to skip: indices of layers whose attention / MLP is left out."""

    attn: frozenset[int] = field(default_factory=frozenset)
    mlp: frozenset[int] = field(default_factory=frozenset)

    @classmethod
    def of(cls, attn: Iterable[int] = (), mlp: Iterable[int] = ()) -> SkipSet:
        return cls(frozenset(int(i) for i in attn), frozenset(int(i) for i in mlp))

    @property
    def size(self) -> int:
        return len(self.attn) + len(self.mlp)

    def check(self, n_layers: int) -> None:
        bad = sorted(i for i in self.attn | self.mlp if not 0 <= i < n_layers)
        if bad:
            raise BadInputError(
                f"Skip set names layers {bad}, but the model has layers 0..{n_layers - 1}. "
                "Use layer indices of this model (or run the layer search for it)."
            )


@dataclass
class LayerWeights:
    attn_norm: Tensor
    wqkv: Tensor  # [(H + 2 Hkv) D, C]
    bqkv: Tensor | None
    wo: Tensor  # [C, H D]
    mlp_norm: Tensor
    w_gate_up: Tensor  # [2 I, C]
    w_down: Tensor  # [C, I]
    post_attn_norm: Tensor | None = None  # Gemma-2 sandwich norms
    post_mlp_norm: Tensor | None = None


class KVCache:
    """Preallocated keys and values per layer, written by absolute position.

    Rolling back rejected draft tokens needs no copy: the caller simply continues from an
    earlier position and the stale entries beyond it are overwritten before they are read.
    """

    def __init__(
        self, cfg: ModelConfig, max_len: int, batch: int, device: torch.device, dtype: torch.dtype
    ) -> None:
        shape = (batch, cfg.n_kv_heads, max_len, cfg.head_dim)
        self.max_len = max_len
        self.k = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(cfg.n_layers)]
        self.v = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(cfg.n_layers)]


def rms_norm(x: Tensor, w: Tensor, eps: float, offset: float) -> Tensor:
    """RMSNorm as each family rounds it: Llama scales after casting back, Gemma before."""
    if not offset and x.dtype == torch.float32:
        return F.rms_norm(x, w.shape, w, eps)  # one fused kernel, the same float32 maths
    xf = x.float()
    xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)
    if offset:
        return (xf * (offset + w.float())).to(x.dtype)
    return w * xf.to(x.dtype)


def linear(x: Tensor, w: Tensor, b: Tensor | None = None) -> Tensor:
    """F.linear, through our few-row kernel where it applies (see selfspec.rows_kernel)."""
    if not torch.compiler.is_compiling() and rows_kernel.usable_for(x, w, b):
        return rows_kernel.rows_linear(x, w, b)
    return F.linear(x, w, b)


def rotate_half(x: Tensor) -> Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def causal_mask(pos: int, t: int, window: int | None, device: torch.device | str) -> Tensor | None:
    """Boolean mask [T, pos+T] (True = attend) for T new queries after `pos` cached keys.

    Every layer of a pass asks for the same mask: it is built once and shared (read-only),
    separately inside and outside inference mode (autograd refuses inference tensors).
    A compiled graph builds it itself (the cache is Python state the compiler would skip).
    """
    build = _causal_mask.__wrapped__ if torch.compiler.is_compiling() else _causal_mask
    return build(pos, t, window, torch.device(device), torch.is_inference_mode_enabled())


@functools.lru_cache(maxsize=8)
def _causal_mask(pos: int, t: int, window: int | None, device, _inference: bool):
    s = pos + t
    if t == 1 and (window is None or s <= window):
        return None
    q_pos = torch.arange(pos, s, device=device)[:, None]  # [T, 1]
    k_pos = torch.arange(s, device=device)[None, :]  # [1, S]
    mask = k_pos <= q_pos
    if window is not None:
        mask &= k_pos > q_pos - window
    return mask


class Transformer:
    """Decoder-only transformer over borrowed weights; see the module docstring."""

    def __init__(
        self,
        cfg: ModelConfig,
        layers: list[LayerWeights],
        embedding: Tensor,
        final_norm: Tensor,
        lm_head: Tensor,
        inv_freq: Tensor,
        rope_scale: float = 1.0,
    ) -> None:
        self.cfg = cfg
        self.layers = layers
        self.embedding = embedding  # [V, C]
        self.final_norm = final_norm
        self.lm_head = lm_head  # [V, C]
        self.inv_freq = inv_freq.float()
        self.rope_scale = rope_scale
        self.device = embedding.device
        self.dtype = embedding.dtype
        self._cos = self._sin = torch.empty(0)
        self._act = F.silu if cfg.activation == "silu" else lambda x: F.gelu(x, approximate="tanh")
        self._embed_scale = (
            torch.tensor(cfg.embed_scale, dtype=self.dtype) if cfg.embed_scale else None
        )

    # ----------------------------------------------------------------- construction
    @classmethod
    def from_hf(cls, hf_model: nn.Module) -> Transformer:
        """Build the engine over a transformers CausalLM (Llama family or Gemma-2)."""
        cfg = ModelConfig.from_hf(hf_model.config)
        base = hf_model.model
        gemma = cfg.arch == "gemma2"
        layers = []
        for layer in base.layers:
            attn, mlp = layer.self_attn, layer.mlp
            qkv = [attn.q_proj, attn.k_proj, attn.v_proj]
            layers.append(
                LayerWeights(
                    attn_norm=layer.input_layernorm.weight.detach(),
                    wqkv=_fuse(qkv, "weight"),
                    bqkv=_fuse(qkv, "bias") if attn.q_proj.bias is not None else None,
                    wo=attn.o_proj.weight.detach(),
                    mlp_norm=(
                        layer.pre_feedforward_layernorm if gemma else layer.post_attention_layernorm
                    ).weight.detach(),
                    w_gate_up=_fuse([mlp.gate_proj, mlp.up_proj], "weight"),
                    w_down=mlp.down_proj.weight.detach(),
                    post_attn_norm=layer.post_attention_layernorm.weight.detach()
                    if gemma
                    else None,
                    post_mlp_norm=layer.post_feedforward_layernorm.weight.detach()
                    if gemma
                    else None,
                )
            )
        rotary = base.rotary_emb
        return cls(
            cfg,
            layers,
            embedding=base.embed_tokens.weight.detach(),
            final_norm=base.norm.weight.detach(),
            lm_head=hf_model.lm_head.weight.detach(),
            inv_freq=rotary.inv_freq,
            rope_scale=float(getattr(rotary, "attention_scaling", 1.0)),
        )

    def compile(self, backend: str = "inductor") -> None:
        """Compile the layer stack with torch.compile (dynamic shapes: any position, token
        count and layer range), fusing the many small element-wise ops of a decoding step.

        Optional: compiling takes minutes on a CPU, and each new skip set or layer range
        compiles once more. Every method runs through `run_layers`, so all of them use it.
        Compiled graphs use torch's matrix product, not our few-row kernel; on the CPU we
        measure on, eager decoding was faster (see the README).
        """
        self.run_layers = torch.compile(self.run_layers, backend=backend, dynamic=True)

    def new_cache(self, max_len: int, batch: int = 1) -> KVCache:
        return KVCache(self.cfg, max_len, batch, self.device, self.dtype)

    # ----------------------------------------------------------------- pieces
    def embed(self, tokens: Tensor) -> Tensor:
        h = F.embedding(tokens, self.embedding)  # [B, T, C]
        if self._embed_scale is not None:
            h = h * self._embed_scale
        return h

    def norm(self, x: Tensor, w: Tensor) -> Tensor:
        return rms_norm(x, w, self.cfg.norm_eps, self.cfg.norm_offset)

    def logits(self, h: Tensor, head: Tensor | None = None) -> Tensor:
        """Final norm, LM head (or a restricted head), soft-cap; at least float32 [B, T, V]."""
        out = linear(self.norm(h, self.final_norm), self.lm_head if head is None else head)
        out = out.to(torch.promote_types(out.dtype, torch.float32))
        cap = self.cfg.final_softcap
        if cap:
            out = torch.tanh(out / cap) * cap
        return out

    def head_rows(self, tokens: Tensor) -> Tensor:
        """A restricted LM head [N, C]: the full head's rows for the given token ids."""
        return self.lm_head[tokens]

    def rope(self, pos: int, t: int) -> tuple[Tensor, Tensor]:
        if self._cos.shape[0] < pos + t:
            n = max(2 * (pos + t), 256)
            freqs = torch.outer(
                torch.arange(n, device=self.device, dtype=torch.float32),
                self.inv_freq.to(self.device),
            )
            emb = torch.cat((freqs, freqs), dim=-1)  # [n, D]
            self._cos = (emb.cos() * self.rope_scale).to(self.dtype)
            self._sin = (emb.sin() * self.rope_scale).to(self.dtype)
        return self._cos[pos : pos + t], self._sin[pos : pos + t]  # [T, D]

    # ----------------------------------------------------------------- sub-layers
    def attention(self, i: int, h: Tensor, cache: KVCache, pos: int) -> Tensor:
        """Attention sub-layer output of layer i (before the residual add)."""
        cfg, w = self.cfg, self.layers[i]
        b, t, _ = h.shape
        nq, nkv, d = cfg.n_heads, cfg.n_kv_heads, cfg.head_dim
        qkv = linear(self.norm(h, w.attn_norm), w.wqkv, w.bqkv)  # [B, T, (H + 2Hkv) D]
        qkv = qkv.view(b, t, nq + 2 * nkv, d).transpose(1, 2)  # [B, H + 2Hkv, T, D]
        cos, sin = self.rope(pos, t)
        qk = qkv[:, : nq + nkv]  # queries and keys get the same rotation: one pass for both
        qk = qk * cos + rotate_half(qk) * sin
        q, k = qk.split((nq, nkv), dim=1)  # [B, H, T, D], [B, Hkv, T, D]
        v = qkv[:, nq + nkv :]
        cache.k[i][:, :, pos : pos + t] = k
        cache.v[i][:, :, pos : pos + t] = v
        keys = cache.k[i][:, :, : pos + t]  # [B, Hkv, S, D]
        values = cache.v[i][:, :, : pos + t]
        mask = causal_mask(pos, t, cfg.windows[i], h.device)
        out = self.attend(q, keys, values, mask)  # [B, H, T, D]
        out = linear(out.transpose(1, 2).reshape(b, t, nq * d), w.wo)
        return self.norm(out, w.post_attn_norm) if w.post_attn_norm is not None else out

    def attend(self, q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None) -> Tensor:
        """Grouped-query attention [B, H, T, D] with this family's scaling and soft-cap.

        Shared with the Kangaroo adapter, whose block must attend exactly as the model does.
        """
        cfg = self.cfg
        groups = cfg.n_heads // cfg.n_kv_heads
        if cfg.attn_softcap is None:
            return F.scaled_dot_product_attention(
                q, k, v, attn_mask=mask, scale=cfg.query_scale, enable_gqa=groups > 1
            )
        # Gemma-2 soft-caps the attention scores, which SDPA cannot express.
        k = k.repeat_interleave(groups, dim=1)  # [B, H, S, D]
        v = v.repeat_interleave(groups, dim=1)
        scores = (q @ k.transpose(-1, -2)) * cfg.query_scale  # [B, H, T, S]
        scores = torch.tanh(scores / cfg.attn_softcap) * cfg.attn_softcap
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))
        probs = torch.softmax(scores, dim=-1, dtype=torch.float32).to(q.dtype)
        return probs @ v

    def mlp(self, i: int, h: Tensor) -> Tensor:
        """MLP sub-layer output of layer i (before the residual add)."""
        w = self.layers[i]
        gate, up = linear(self.norm(h, w.mlp_norm), w.w_gate_up).chunk(2, dim=-1)  # [B, T, I]
        out = linear(self._act(gate) * up, w.w_down)  # [B, T, C]
        return self.norm(out, w.post_mlp_norm) if w.post_mlp_norm is not None else out

    # ----------------------------------------------------------------- passes
    def run_layers(
        self,
        h: Tensor,
        cache: KVCache,
        pos: int,
        start: int = 0,
        stop: int | None = None,
        skip: SkipSet | None = None,
    ) -> Tensor:
        """Run layers start..stop-1 on hidden states h [B, T, C] at positions pos.. ."""
        stop = self.cfg.n_layers if stop is None else stop
        skip_attn = skip.attn if skip else ()
        skip_mlp = skip.mlp if skip else ()
        for i in range(start, stop):
            if i not in skip_attn:
                h = h + self.attention(i, h, cache, pos)
            if i not in skip_mlp:
                h = h + self.mlp(i, h)
        return h

    def forward(
        self,
        tokens: Tensor,
        cache: KVCache,
        pos: int,
        skip: SkipSet | None = None,
        last_only: bool = False,
    ) -> Tensor:
        """Logits [B, T, V] (or [B, 1, V] with last_only) for tokens [B, T] at pos.. ."""
        h = self.run_layers(self.embed(tokens), cache, pos, skip=skip)
        if last_only:
            h = h[:, -1:]
        return self.logits(h)


def _fuse(linears: list[nn.Linear], attr: str) -> Tensor:
    """Concatenate the linears' weights (or biases) and point each module at its slice."""
    parts = [getattr(lin, attr).detach() for lin in linears]
    fused = torch.cat(parts)
    offset = 0
    for lin, part in zip(linears, parts, strict=True):
        n = part.shape[0]
        setattr(lin, attr, nn.Parameter(fused[offset : offset + n], requires_grad=False))
        offset += n
    return fused
