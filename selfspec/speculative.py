"""The speculative loop that every drafter plugs into.

Each step: the drafter proposes up to k tokens (with their draft distributions q), the full
model scores the current token plus all drafts in one forward pass, and the loop keeps the
prefix the full model agrees with plus one token of the full model's own (the bonus). The
KV cache is written by position, so rolling back rejected drafts is just not advancing the
position past them: the next pass overwrites those entries before anything reads them.

Greedy verification accepts while the full model's argmax equals the draft. Sampling
verification uses the rejection rule (accept x with probability min(1, p(x)/q(x)); on
rejection sample from normalize(max(p - q, 0)); if all are accepted, the bonus comes from
p), which makes the output distribution exactly that of plain sampling from p.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
from torch import Tensor

from selfspec.decoding import CACHE_HEADROOM, Chunk, Origin, Step
from selfspec.draft_length import DraftLengthPolicy, verify_costs
from selfspec.errors import BadInputError
from selfspec.kv_cache import KVCache
from selfspec.loading import LoadedModel
from selfspec.sampling import SamplingConfig, choose, probabilities

__all__ = [
    "Draft",
    "DraftContext",
    "Drafter",
    "Pick",
    "Probe",
    "check_unit_interval",
    "pick",
    "speculative",
    "verify",
]


@dataclass
class DraftContext:
    """What a drafter may look at: the committed text and the target's cache state."""

    lm: LoadedModel
    cache: KVCache
    pos: int  # tokens whose keys/values are in the cache
    last: int  # the newest committed token, not yet in the cache
    tokens: list[int]  # all committed tokens (prompt + output), `last` included
    cfg: SamplingConfig
    gen: torch.Generator | None
    max_tokens: int  # never draft past this many tokens (budget left, cache room)


@dataclass
class Probe:
    """A drafter's look at the next draft's prospects, taken before its length is chosen."""

    label: Hashable = None  # drafts with different labels learn separate acceptance rates
    prior: float = 0.6  # the acceptance rate to assume for the label before any evidence
    state: Any = None  # the drafter's own finding, handed back to `draft` and `verify_logits`


@dataclass
class Draft:
    tokens: list[int]
    q: Tensor | None = None  # [k, V] draft distributions; None: deterministic (one-hot)
    state: Any = None  # the drafter's own record, handed back to `verify_logits`, `update`


class Pick(NamedTuple):
    """One drafted token, the draft's top-1 probability, and q [V] when sampling."""

    token: int
    confidence: float
    q: Tensor | None


def pick(logits: Tensor, cfg: SamplingConfig, gen: torch.Generator | None) -> Pick:
    """The draft token from draft logits [V]: argmax when greedy, else a sample from q.
    The confidence is what the drafters' early exits compare with their thresholds."""
    if cfg.greedy:
        token = int(logits.argmax())
        return Pick(token, float(torch.softmax(logits, -1)[token]), None)
    q = probabilities(logits, cfg)
    return Pick(int(torch.multinomial(q, 1, generator=gen)), float(q.max()), q)


class Drafter:
    """Proposes draft tokens for the loop.

    Every hook gets what it needs from its arguments: the loop hands the step's `Probe` to
    `draft` and `verify_logits`, and the step's `Draft` to `verify_logits` and `update`, so
    a drafter keeps nothing from one hook for the next. What it does keep across steps (an
    adapter's own cache) it checks against the context it is given.
    """

    def probe(self, ctx: DraftContext) -> Probe:
        """A cheap label of the next draft's prospects, looked at before the draft length
        is chosen (prompt lookup labels by match length). The default puts every draft in
        one class."""
        return Probe()

    def prepare(self, ctx: DraftContext) -> None:
        """Bring the drafter's own state up to the committed text before a draft (Kangaroo
        runs its adapter over the prompt here). Its time counts as drafting time in the
        records, but the draft-length policy, which prices each drafted token, does not see
        it: a one-off pass over a long prompt would otherwise price drafting out for good."""

    def draft(self, ctx: DraftContext, probe: Probe | None = None) -> Draft:
        """Up to `ctx.max_tokens` draft tokens; `probe` is this step's, or None when the
        loop did not probe (no draft-length policy)."""
        raise NotImplementedError

    def verify_logits(
        self, ctx: DraftContext, block: Tensor, draft: Draft, probe: Probe | None
    ) -> Tensor | None:
        """Target logits [k+1, V] for block [1, k+1] (current token + `draft`, k >= 0),
        when the drafter can get them cheaper than a full forward (Kangaroo reuses its
        shallow layers); it must write the target cache as the full forward would. None:
        the loop runs the full forward."""
        return None

    def update(self, draft: Draft, accepted: int) -> None:
        """Hook for adaptive drafters; called after every verification of a draft."""


def check_unit_interval(name: str, value: float | None) -> None:
    if value is not None and not 0.0 < value < 1.0:
        raise BadInputError(f"{name} must be strictly between 0 and 1, got {value}.")


def verify(
    logits: Tensor, draft: Draft, cfg: SamplingConfig, gen: torch.Generator | None
) -> tuple[int, int]:
    """Accepted draft count n and the bonus token, from target logits [k+1, V]."""
    k = len(draft.tokens)
    if cfg.greedy:
        target = logits.argmax(-1).tolist()  # [k+1]
        n = 0
        while n < k and target[n] == draft.tokens[n]:
            n += 1
        return n, target[n]
    p = probabilities(logits, cfg)  # [k+1, V]
    for i, x in enumerate(draft.tokens):
        q_x = float(draft.q[i, x]) if draft.q is not None else 1.0
        p_x = float(p[i, x])
        if q_x > 0 and torch.rand((), generator=gen, device=p.device).item() < min(1.0, p_x / q_x):
            continue
        residual = p[i].clone()
        if draft.q is not None:
            residual = (residual - draft.q[i]).clamp_min(0.0)
        else:
            residual[x] = 0.0
        total = residual.sum()
        dist = residual / total if total > 0 else p[i]
        return i, int(torch.multinomial(dist, 1, generator=gen))
    return k, int(torch.multinomial(p[k], 1, generator=gen))


def speculative(
    lm: LoadedModel,
    prompt_ids: list[int],
    cfg: SamplingConfig,
    drafter: Callable[[LoadedModel], Drafter],
    gate: float | None = None,
    cost_aware: bool = True,
    max_draft: int = 8,
) -> Iterator[Chunk]:
    """Draft-then-verify decoding with any drafter; lossless by construction.

    `gate`: when the full model's own top-1 probability at the last verified position is
    below this, skip drafting for that step and decode one token plainly.
    `cost_aware`: cap each draft at the length with the best expected tokens per second
    (see `selfspec.draft_length`, which considers caps up to `max_draft`); otherwise
    drafters draft as long as their own limits allow.
    """
    check_unit_interval("The confidence gate", gate)
    if max_draft < 1 or max_draft > CACHE_HEADROOM - 1:
        raise BadInputError(
            f"The maximum draft length must be between 1 and {CACHE_HEADROOM - 1}, got {max_draft}."
        )
    engine = lm.engine
    gen = cfg.generator(engine.device)
    d = drafter(lm)
    policy = None
    if cost_aware:
        policy = DraftLengthPolicy(verify_costs(engine, max_draft + 1), max_draft)
    limit = len(prompt_ids) + cfg.max_new_tokens + CACHE_HEADROOM
    with engine.decoding():
        cache = engine.new_cache(limit)
        t0 = time.perf_counter()
        logits = engine.forward(
            torch.tensor([prompt_ids], device=engine.device), cache, 0, last_only=True
        )[0, -1]
        last = choose(logits, cfg, gen)
    yield Chunk([last], [Origin.TARGET], Step(0, 0, 0.0, time.perf_counter() - t0))
    tokens = [*prompt_ids, last]
    pos = len(prompt_ids)
    confident = gate is None or _top1(logits) >= gate
    while True:
        budget = min(len(prompt_ids) + cfg.max_new_tokens - len(tokens), limit - pos - 1)
        t0 = time.perf_counter()
        with engine.decoding():
            draft = Draft([])
            ctx = DraftContext(lm, cache, pos, last, tokens, cfg, gen, budget)
            probe = None
            if policy and confident:
                probe = d.probe(ctx)
                ctx.max_tokens = policy.choose(budget, probe.label, probe.prior)
            tp = t0
            if confident and ctx.max_tokens > 0:
                d.prepare(ctx)
                tp = time.perf_counter()
                draft = d.draft(ctx, probe)
            t1 = time.perf_counter()
            block = torch.tensor([[last, *draft.tokens]], device=engine.device)  # [1, k+1]
            logits = d.verify_logits(ctx, block, draft, probe)
            if logits is None:
                logits = engine.forward(block, cache, pos)[0]  # [k+1, V]
            n, bonus = verify(logits, draft, cfg, gen)
            if gate is not None:
                confident = _top1(logits[n]) >= gate
        t2 = time.perf_counter()
        if policy:  # a step that drafts nothing costs all it took, probing included
            verify_s = t2 - t1 if draft.tokens else t2 - t0
            policy.observe(len(draft.tokens), n, t1 - tp, verify_s, probe.label if probe else None)
        if draft.tokens:
            d.update(draft, n)
        new = [*draft.tokens[:n], bonus]
        tokens.extend(new)
        pos += n + 1
        last = bonus
        last_origin = Origin.TARGET  # no draft this step: a plain token
        if draft.tokens:
            last_origin = Origin.BONUS if n == len(draft.tokens) else Origin.CORRECTED
        origins = [Origin.DRAFT] * n + [last_origin]
        yield Chunk(new, origins, Step(len(draft.tokens), n, t1 - t0, t2 - t1))


def _top1(logits: Tensor) -> float:
    return float(torch.softmax(logits.float(), dim=-1).max())
