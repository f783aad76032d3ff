"""Our compact transformer: the fast path every decoding method runs on.

In the spirit of gpt-fast: plain tensors and short functions instead of nn.Module trees, a
per-layer static KV cache written by position, and a forward pass that can run any
contiguous range of layers and skip any attention or MLP sub-layer. That last ability is
what self-speculative drafting (skipped sub-layers) and Kangaroo (early exit after layer l,
resume from cached hidden states) are built on.

On a CPU the weights stay in the form they came in (a GGUF file's quantized blocks, or a
transformers model's own tensors, shared) and the decode and verify path runs in our native
kernels (`selfspec.native`) with float32 activations, every row computed the same way
whatever the number of rows in the pass: so verifying drafts gives bit for bit the logits
plain decoding gives, and every speculative method is exact (docs/engine.md). Elsewhere (a
GPU, float64, autograd, `--compile`, a CPU without the kernels) torch runs the same model
on dense weights, with q/k/v and gate/up fused into one matrix each.
"""

from __future__ import annotations

import ctypes
from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import Tensor

from selfspec import native
from selfspec.config import ModelConfig
from selfspec.kv_cache import KVCache
from selfspec.layer_weights import LayerWeights, NativeLayer
from selfspec.ops import KERNEL_DTYPES, causal_mask, linear, rms_norm, rope_tables, rotate_half
from selfspec.skipset import SkipSet
from selfspec.weights import Weight

__all__ = ["SkipSet", "Transformer", "LayerWeights", "NativeLayer", "KERNEL_DTYPES"]


class Transformer:
    """Decoder-only transformer; see the module docstring.

    Holds the weights once: as `NativeLayer`s (file blocks or dense, for the native
    kernels) on CPUs, or as dense `LayerWeights` for torch's path (GPUs, float64, autograd,
    `--compile`, CPUs without the native kernels). The other form is built on demand.
    """

    def __init__(
        self,
        cfg: ModelConfig,
        *,
        native_layers: list[NativeLayer] | None = None,
        layers: list[LayerWeights] | None = None,
        embedding: Weight | Tensor,
        lm_head: Weight | Tensor,
        final_norm: Tensor,
        inv_freq: Tensor,
        rope_scale: float = 1.0,
        local_inv_freq: Tensor | None = None,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> None:
        self.cfg = cfg
        self.native_layers = native_layers
        self._layers = layers
        self.embedding_weight = embedding  # [V, C]
        self.head_weight = lm_head  # [V, C]
        self.final_norm = final_norm
        self.inv_freq = inv_freq.float()
        self.rope_scale = rope_scale
        # Gemma-3's sliding layers rotate with their own base (and no attention scaling).
        self.local_inv_freq = None if local_inv_freq is None else local_inv_freq.float()
        self.device = torch.device(device)
        self.dtype = dtype  # activations (and the KV cache)
        self._dense: dict[str, Tensor] = {}
        self._tables: dict[bool, tuple[Tensor, Tensor]] = {}  # local? -> cos, sin [n, D]
        self._act = F.silu if cfg.activation == "silu" else lambda x: F.gelu(x, approximate="tanh")
        self._embed_scale = (
            torch.tensor(cfg.embed_scale, dtype=self.dtype) if cfg.embed_scale else None
        )
        self._configs = [native.layer_config(cfg, i) for i in range(cfg.n_layers)]
        self._c_arrays: dict[tuple[int, int], tuple[ctypes.Array, ctypes.Array]] = {}
        self._flags: dict[tuple, tuple[bytes, bytes]] = {}
        self._rope_kinds = sorted({cfg.local_rope(i) for i in range(cfg.n_layers)})
        self._compiled = False
        if native_layers is not None and not native.available():
            self._layers = self.layers  # the torch fallback: dense now, once

    def compile(self, backend: str = "inductor") -> None:
        """Compile torch's layer stack (dynamic shapes), fusing a step's small element-wise
        ops. Off by default: it takes minutes on a CPU, once more per skip set or layer
        range, and runs torch's path on dense weights, not the native kernels (so row
        invariance is not guaranteed)."""
        self._torch_layers = torch.compile(self._torch_layers, backend=backend, dynamic=True)
        self._compiled = True

    def new_cache(self, max_len: int, batch: int = 1) -> KVCache:
        return KVCache(self.cfg, max_len, batch, self.device, self.dtype)

    # ----------------------------------------------------------------- weights
    @property
    def layers(self) -> list[LayerWeights]:
        """Dense per-layer weights for torch's path (dequantized on first use)."""
        if self._layers is None:
            self._layers = [nl.dense(self.dtype) for nl in self.native_layers]
        return self._layers

    def dense_layer(self, i: int) -> LayerWeights:
        """Layer i's dense weights, without densifying the others (adapter init)."""
        dense = self._layers
        return self.native_layers[i].dense(self.dtype) if dense is None else dense[i]

    @property
    def embedding(self) -> Tensor:
        return self._dense_of("embedding", self.embedding_weight)

    @property
    def lm_head(self) -> Tensor:
        return self._dense_of("lm_head", self.head_weight)

    def _dense_of(self, name: str, w: Weight | Tensor) -> Tensor:
        if isinstance(w, Tensor):
            return w
        if name not in self._dense:
            self._dense[name] = w.dense(self.dtype).to(self.device)
        return self._dense[name]

    def _native_weights(self) -> list[Weight | Tensor]:
        """The embedding, the head and every layer matrix, as the native kernels hold them."""
        layers = [w for nl in self.native_layers for w in nl.matrices()]
        return [self.embedding_weight, self.head_weight, *layers]

    @property
    def weight_format(self) -> str:
        """The weights' storage formats, e.g. 'Q4_1+Q8_0' or 'F32'."""
        if self.native_layers is None:
            return str(self.dtype).removeprefix("torch.")
        return "+".join(sorted({w.qtype.name for w in self._native_weights()}))

    def use_int8_activations(self) -> None:
        """From now on multiply the file's blocks by 8-bit activations (csrc/dot8.h): about
        twice as fast on K-quants, and a sum of its own, so one model keeps one mode."""
        if self.native_layers is None:
            raise ValueError("8-bit activations need the native kernels' block weights")
        for w in self._native_weights():
            if isinstance(w, Weight) and w.quantized:
                w.int8_activations = True
        for nl in self.native_layers:
            nl._record = None
        self._c_arrays.clear()

    @property
    def activations(self) -> str:
        """'int8' where the block weights multiply 8-bit activations, else the dtype."""
        int8 = isinstance(self.head_weight, Weight) and self.head_weight.int8_activations
        return "int8" if int8 else str(self.dtype).removeprefix("torch.")

    def weight_bytes(self) -> int:
        """Bytes held by the weights the decoding path reads."""
        if self.native_layers is None:
            dense = [t for lw in self.layers for t in vars(lw).values() if t is not None]
            ts = [*dense, self.embedding, self.lm_head]
            return sum({id(t): t.nbytes for t in ts}.values())
        return sum({id(w.data): w.nbytes for w in self._native_weights()}.values())

    # ----------------------------------------------------------------- dispatch
    @contextmanager
    def decoding(self) -> Iterator[None]:
        """Where a decoding loop computes: inference mode, and on the native kernels
        torch kept to one thread (`native.kernel_threads` says why)."""
        with torch.inference_mode():
            if self.native_layers is not None and self.device.type == "cpu" and native.available():
                with native.kernel_threads():
                    yield
            else:
                yield

    def native_for(self, h: Tensor) -> bool:
        """Whether this call runs on the native kernels: a CPU engine with native layers,
        float32 activations, one sequence, no autograd, not compiled."""
        return (
            self.native_layers is not None
            and not self._compiled
            and h.dtype == torch.float32
            and h.device.type == "cpu"
            and h.dim() == 3
            and h.shape[0] == 1
            and not (torch.is_grad_enabled() and h.requires_grad)
            and not torch.compiler.is_compiling()
            and native.available()
        )

    # ----------------------------------------------------------------- pieces
    def embed(self, tokens: Tensor) -> Tensor:
        if self.native_layers is not None and self.device.type == "cpu" and native.available():
            return native.rows(self.embedding_weight, tokens, self.cfg.embed_scale or 0.0)
        h = F.embedding(tokens, self.embedding)  # [B, T, C]
        if self._embed_scale is not None:
            h = h * self._embed_scale
        return h

    def norm(self, x: Tensor, w: Tensor) -> Tensor:
        return rms_norm(x, w, self.cfg.norm_eps, self.cfg.norm_offset)

    def logits(self, h: Tensor, head: Tensor | Weight | None = None) -> Tensor:
        """Final norm, LM head (or a restricted head [N, C]: dense, or rows of the file's
        head in its own format, `head_block_rows`), soft-cap; float32 or wider [B, T, V]."""
        if self.native_for(h) and not (
            isinstance(head, Tensor) and head.dtype not in KERNEL_DTYPES
        ):
            w = head if isinstance(head, Weight) else self.head_weight
            w = Weight.dense_of(head) if isinstance(head, Tensor) else w
            cfg = self.cfg
            out = native.logits(
                h[0].contiguous(),
                self.final_norm,
                cfg.norm_eps,
                cfg.norm_offset,
                w,
                cfg.final_softcap,
            )
            return out[None]
        if isinstance(head, Weight):
            head = head.dense(self.dtype).to(self.device)
        out = linear(self.norm(h, self.final_norm), self.lm_head if head is None else head)
        out = out.to(torch.promote_types(out.dtype, torch.float32))
        cap = self.cfg.final_softcap
        if cap:
            out = torch.tanh(out / cap) * cap
        return out

    def head_block_rows(self, tokens: Tensor) -> Weight | Tensor:
        """A restricted LM head in the head's own storage (the file's blocks on a CPU):
        reading it costs its rows' bytes, not the dense float copy's."""
        if self.native_layers is not None and self.device.type == "cpu":
            return self.head_weight.take_rows(tokens.cpu())
        return self.lm_head[tokens]

    def head_rows(self, tokens: Tensor) -> Tensor:
        """A restricted LM head [N, C]: the full head's rows for the given token ids, as
        dense tensors of the activation dtype (exactly the file's values)."""
        if self.native_layers is not None and self.device.type == "cpu":
            return self.head_weight.take_rows(tokens.cpu()).dense(self.dtype)
        return self.lm_head[tokens]

    def rope(self, pos: int, t: int, local: bool = False) -> tuple[Tensor, Tensor]:
        """cos, sin [T, D] for positions pos..pos+T-1 (`local`: a Gemma-3 sliding layer's)."""
        return tuple(table[pos : pos + t] for table in self._rope_tables(pos + t, local))

    def _rope_tables(self, n: int, local: bool = False) -> tuple[Tensor, Tensor]:
        """The whole cos, sin tables [>= n, D], grown (doubling) when too short."""
        tables = self._tables.get(local)
        if tables is None or tables[0].shape[0] < n:
            freq, scale = (self.local_inv_freq, 1.0) if local else (self.inv_freq, self.rope_scale)
            tables = rope_tables(freq, max(2 * n, 256), scale, self.dtype, self.device)
            self._tables[local] = tables
        return tables

    # ----------------------------------------------------------------- sub-layers (torch)
    def attention(self, i: int, h: Tensor, cache: KVCache, pos: int) -> Tensor:
        """Attention sub-layer output of layer i (before the residual add)."""
        cfg, w = self.cfg, self.layers[i]
        b, t, _ = h.shape
        nq, nkv, d = cfg.n_heads, cfg.n_kv_heads, cfg.head_dim
        qkv = linear(self.norm(h, w.attn_norm), w.wqkv, w.bqkv)  # [B, T, (H + 2Hkv) D]
        qkv = qkv.view(b, t, nq + 2 * nkv, d).transpose(1, 2)  # [B, H + 2Hkv, T, D]
        if w.q_norm is not None:  # Gemma-3: each query and key head normalised first
            qkv = torch.cat(
                (
                    self.norm(qkv[:, :nq], w.q_norm),
                    self.norm(qkv[:, nq : nq + nkv], w.k_norm),
                    qkv[:, nq + nkv :],
                ),
                dim=1,
            )
        cos, sin = self.rope(pos, t, cfg.local_rope(i))
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
        if self.native_for(h):
            return self._native_layers(h, cache, pos, start, stop, skip)
        return self._torch_layers(h, cache, pos, start, stop, skip)

    def _native_layers(
        self, h: Tensor, cache: KVCache, pos: int, start: int, stop: int, skip: SkipSet | None
    ) -> Tensor:
        """One native call for the whole range, on a private copy of h [T, C]."""
        x = h[0].clone(memory_format=torch.contiguous_format)  # [T, C], updated in place
        tables = {lo: self._rope_tables(pos + x.shape[0], lo) for lo in self._rope_kinds}
        # Keyed by the tables too: they grow (a new tensor) when positions outrun them. An
        # entry holds its tables, so their ids cannot be reused while it lives.
        key = (start, stop, *(id(t[0]) for t in tables.values()))
        buffers = cache.native.get(key)
        if buffers is None:
            local = [self.cfg.local_rope(i) for i in range(start, stop)]
            buffers = cache.native[key] = native.layer_buffers(
                [k[0] for k in cache.k[start:stop]],
                [v[0] for v in cache.v[start:stop]],
                [tables[lo][0] for lo in local],
                [tables[lo][1] for lo in local],
            )
        configs, records = self._records(start, stop)
        skip_attn, skip_mlp = self._skip_flags(start, stop, skip)
        native.layers(configs, records, x, pos, buffers, skip_attn, skip_mlp)
        return x[None]

    def _skip_flags(self, start: int, stop: int, skip: SkipSet | None) -> tuple[bytes, bytes]:
        """Per layer of start..stop-1: skip its attention? its MLP? (one byte each)."""
        key = (start, stop, skip)
        if key not in self._flags:
            self._flags[key] = (
                bytes(skip is not None and i in skip.attn for i in range(start, stop)),
                bytes(skip is not None and i in skip.mlp for i in range(start, stop)),
            )
        return self._flags[key]

    def _records(self, start: int, stop: int) -> tuple[ctypes.Array, ctypes.Array]:
        """The C configs and weight records of layers start..stop-1 (built once)."""
        if (start, stop) not in self._c_arrays:
            layers = self.native_layers[start:stop]
            self._c_arrays[start, stop] = (
                (native.LayerConfig * len(layers))(*self._configs[start:stop]),
                (native.LayerWeights * len(layers))(*[nl.record() for nl in layers]),
            )
        return self._c_arrays[start, stop]

    def _torch_layers(
        self, h: Tensor, cache: KVCache, pos: int, start: int, stop: int, skip: SkipSet | None
    ) -> Tensor:
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
