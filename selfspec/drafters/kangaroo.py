"""Kangaroo drafting: layers 0..l-1, the adapter, the LM head; double early exit.

First early exit: the draft leaves the model after layer l. The work of layers 0..l-1 is
not thrown away: drafting writes the shared target KV cache for those layers at the draft
positions and keeps the exit-layer hidden states of the current token and of every draft
token, so verification (`verify_logits`) runs only layers l..L-1 on them. The full
model's layers < l would compute exactly the same thing, so nothing is lost.

Second early exit: drafting stops after a token whose draft top-1 probability is below
eta (the token is still proposed, as the skip drafter does), or at `max_draft`.

Whether to draft at all: before the draft-length policy decides, the drafter runs its
first step (layers 0..l-1 over the current token, the adapter, the draft head) and names
the first draft token's confidence as the acceptance class (`probe`). That
probe is nearly free: its shallow layers are work the verification would do anyway, so
it is kept even when the policy then drafts nothing (`verify_logits` runs only layers
l..L-1 on it), and only the adapter and the small head are extra. On this model the
draft's confidence is what tells good drafts apart (measured in docs/kangaroo.md), so
each class gets its own acceptance rate. The probe's result (the first draft token and
the current token's exit-layer state) is the `Probe` the loop hands back to `draft` and
`verify_logits`; the drafted tokens' states travel in the `Draft`.

The adapter's own KV cache holds, for every committed position, keys and values computed
from exact exit-layer states, so it stays valid after a rejection: entries past the
accepted prefix are simply overwritten later. Positions the drafter never saw (the prompt,
or steps the confidence gate decoded plainly) are caught up at the next draft by running
layers 0..l-1 and the adapter over them in one pass.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from selfspec.adapter import KangarooAdapter, load_adapter
from selfspec.errors import BadInputError
from selfspec.kv_cache import KVCache
from selfspec.loading import LoadedModel
from selfspec.model import Transformer
from selfspec.profiles import model_key
from selfspec.speculative import (
    Draft,
    DraftContext,
    Drafter,
    Pick,
    Probe,
    check_unit_interval,
    pick,
)
from selfspec.weights import Weight

__all__ = ["KangarooDrafter", "kangaroo_drafter", "adapter_path"]

SHIPPED = Path(__file__).parent.parent / "data"
BANDS = (0.8, 0.6, 0.4, 0.0)  # lower edges of the first draft's confidence bands
BAND_PRIORS = (0.85, 0.35, 0.3, 0.15)  # prior acceptance rate per band (see `probe`)


@dataclass
class _Start:
    """The first step from the current token: what the probe found and the draft reuses."""

    cache: KVCache  # the target cache it was computed beside
    pos: int  # the current token's position
    state: Tensor  # the current token's exit-layer state [1, 1, C]
    first: Pick  # the first draft token


@dataclass
class _Drafted:
    """A draft's exit-layer states [1, 1, C] (current token, then each draft token)."""

    cache: KVCache
    pos: int
    states: list[Tensor]


class KangarooDrafter(Drafter):
    def __init__(
        self,
        adapter: KangarooAdapter,
        exit_layer: int,
        eta: float = 0.6,
        max_draft: int = 6,
        head_tokens: Tensor | None = None,
    ) -> None:
        check_unit_interval("The draft-exit threshold eta", eta)
        if max_draft < 1:
            raise BadInputError(f"The maximum draft length must be at least 1, got {max_draft}.")
        if exit_layer < 1:
            raise BadInputError(f"The exit layer must be at least 1, got {exit_layer}.")
        self.adapter = adapter
        self.exit_layer = exit_layer
        self.eta = eta
        self.max_draft = max_draft
        tokens = adapter.head_tokens if head_tokens is None else head_tokens
        self.head_tokens = tokens if tokens.numel() else None  # [N] ids of the draft head
        self._head: tuple[Transformer, Tensor | Weight] | None = None  # restricted head, once
        self.cache: KVCache | None = None  # the adapter's own
        self._target: KVCache | None = None  # the target cache it was built beside
        self._filled = 0  # adapter cache positions computed from committed tokens

    def _draft_head(self, engine: Transformer) -> Tensor | Weight | None:
        """The restricted head's rows (built once per engine) in the head's own storage:
        on a CPU the file's blocks, so a draft token reads their bytes, not a dense float32
        copy four to eight times larger (on Qwen2.5-Coder-1.5B, 201 MB against 41 MB per
        token). None: the full head."""
        if self.head_tokens is None:
            return None
        if self._head is None or self._head[0] is not engine:
            self._head = (engine, engine.head_block_rows(self.head_tokens))
        return self._head[1]

    def prepare(self, ctx: DraftContext) -> None:
        """Catch the adapter cache up with committed positions it never saw: the prompt, and
        steps decoded plainly. One pass, apart from drafting (see `Drafter.prepare`)."""
        engine = ctx.lm.engine
        if self.exit_layer >= engine.cfg.n_layers:
            raise BadInputError(
                f"Exit layer {self.exit_layer} leaves no layer to verify with: the model has "
                f"{engine.cfg.n_layers} layers."
            )
        if self._target is not ctx.cache:  # a new generation: nothing of the last one holds
            self.cache = self.adapter.new_cache(engine, ctx.cache.max_len)
            self._target, self._filled = ctx.cache, 0
        if self._filled < ctx.pos:
            self._step(ctx, ctx.tokens[self._filled : ctx.pos], self._filled)
            self._filled = ctx.pos

    def probe(self, ctx: DraftContext) -> Probe:
        """The first draft token's confidence band, and a prior acceptance rate for it.

        The priors come from replaying the shipped adapter over the bundled model's replies
        to the benchmark prompts (docs/kangaroo.md); each band then learns its own rate.
        """
        start = self._start(ctx)
        band = next(i for i, edge in enumerate(BANDS) if start.first.confidence >= edge)
        return Probe(band, BAND_PRIORS[band], state=start)

    def _start(self, ctx: DraftContext) -> _Start:
        """The first step from the current token: its exit-layer state (kept for
        verification) and the first draft token."""
        self.prepare(ctx)
        engine = ctx.lm.engine
        h, a = self._step(ctx, [ctx.last], ctx.pos)
        self._filled = ctx.pos + 1  # the current token is committed: its entry is valid
        logits = engine.logits(a, self._draft_head(engine))[0, -1]
        return _Start(ctx.cache, ctx.pos, h, self._pick(logits, ctx))

    def draft(self, ctx: DraftContext, probe: Probe | None = None) -> Draft:
        """Draft from the probe's first token (or a first step of its own without one)."""
        start = self._checked(probe.state, ctx) if probe else self._start(ctx)
        engine = ctx.lm.engine
        head = self._draft_head(engine)
        first = start.first
        tokens, qs, states = [], [], [start.state]
        limit = min(self.max_draft, ctx.max_tokens)
        for i in range(limit):
            tok, conf, q = first
            tokens.append(tok)
            if q is not None:
                qs.append(q)
            h, a = self._step(ctx, [tok], ctx.pos + 1 + i)  # its state, for verification
            states.append(h)
            if conf < self.eta or i + 1 == limit:
                break
            first = self._pick(engine.logits(a, head)[0, -1], ctx)  # from [V] or [N] logits
        drafted = _Drafted(ctx.cache, ctx.pos, states)
        return Draft(tokens, torch.stack(qs) if qs else None, state=drafted)

    def _step(self, ctx: DraftContext, tokens: list[int], pos: int) -> tuple[Tensor, Tensor]:
        """Layers 0..l-1 (writing the shared cache) and the adapter over tokens at pos..;
        the newest exit-layer state and adapter output, [1, 1, C] each."""
        engine = ctx.lm.engine
        x = torch.tensor([tokens], device=engine.device)  # [1, T]
        h = engine.run_layers(engine.embed(x), ctx.cache, pos, stop=self.exit_layer)  # [1, T, C]
        return h[:, -1:], self.adapter(engine, h, self.cache, pos)[:, -1:]

    def _pick(self, logits: Tensor, ctx: DraftContext) -> Pick:
        """The draft token as a full-vocabulary id (and q over the full vocabulary), from
        logits over the draft head's rows."""
        tok, conf, q = pick(logits, ctx.cfg, ctx.gen)
        ids = self.head_tokens
        if ids is None:
            return Pick(tok, conf, q)
        if q is not None:
            q = q.new_zeros(ctx.lm.engine.cfg.vocab_size).index_copy(0, ids, q)
        return Pick(int(ids[tok]), conf, q)

    def verify_logits(
        self, ctx: DraftContext, block: Tensor, draft: Draft, probe: Probe | None
    ) -> Tensor | None:
        """Target logits [k+1, V]: layers l..L-1 over the exit-layer states the draft (or,
        when the policy drafted nothing, the probe) kept. None when neither ran."""
        if draft.state is not None:
            states = self._checked(draft.state, ctx).states
        elif probe is not None:
            states = [self._checked(probe.state, ctx).state]
        else:
            return None
        if len(states) != block.shape[1]:
            raise ValueError(f"The block has {block.shape[1]} tokens, the draft {len(states)}.")
        h = torch.cat(states, dim=1)  # [1, k+1, C]
        engine = ctx.lm.engine
        return engine.logits(engine.run_layers(h, ctx.cache, ctx.pos, start=self.exit_layer))[0]

    def update(self, draft: Draft, accepted: int) -> None:
        # Valid adapter entries: the current token and the accepted drafts.
        self._filled = draft.state.pos + 1 + accepted

    @staticmethod
    def _checked(state: _Start | _Drafted, ctx: DraftContext) -> _Start | _Drafted:
        """`state`, when it was computed at this context's step; else a clear error."""
        if state.cache is not ctx.cache or state.pos != ctx.pos:
            raise ValueError(
                "This probe or draft was made at another step or generation; pass the one "
                "of the current step."
            )
        return state


def adapter_path(lm: LoadedModel | str, user: bool = True) -> Path:
    """Where the default adapter for this model lives (user data folder, or shipped)."""
    root = Path(os.environ.get("SELFSPEC_DATA_DIR", "data")) if user else SHIPPED
    return root / "adapters" / f"{model_key(lm)}.kangaroo.safetensors"


def kangaroo_drafter(
    lm: LoadedModel, path: Path | None = None, **kwargs: object
) -> KangarooDrafter:
    """The drafter over this model's default adapter (the user's own, else the shipped one)."""
    candidates = [path] if path else [adapter_path(lm), adapter_path(lm, user=False)]
    found = next((p for p in candidates if p.is_file()), None)
    if found is None:
        raise BadInputError(
            f"No Kangaroo adapter for '{lm.source}' (looked in {', '.join(map(str, candidates))}). "
            f"Train one with `python -m selfspec train-adapter --model {lm.source} --exit-layer 2 "
            f"--steps 300 --out {candidates[0]}`."
        )
    adapter = load_adapter(lm, found)
    kwargs.setdefault("eta", adapter.settings.eta)
    return KangarooDrafter(adapter, adapter.settings.exit_layer, **kwargs)
