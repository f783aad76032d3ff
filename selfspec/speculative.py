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

import torch
from torch import Tensor

from selfspec.decoding import CACHE_HEADROOM, Chunk, Origin, Step
from selfspec.draft_length import DraftLengthPolicy, verify_costs
from selfspec.errors import BadInputError
from selfspec.loading import LoadedModel
from selfspec.model import KVCache
from selfspec.sampling import SamplingConfig, choose, probabilities

__all__ = ["Draft", "DraftContext", "Drafter", "speculative", "verify", "check_unit_interval"]


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
class Draft:
    tokens: list[int]
    q: Tensor | None = None  # [k, V] draft distributions; None: deterministic (one-hot)


class Drafter:
    """Proposes draft tokens; `update` hears how many of them the full model accepted."""

    def draft(self, ctx: DraftContext) -> Draft:
        raise NotImplementedError

    def update(self, drafted: int, accepted: int) -> None:
        """Hook for adaptive drafters; called after every verification."""

    def prepare(self, ctx: DraftContext) -> None:
        """Bring the drafter's own state up to the committed text before a draft (Kangaroo
        runs its adapter over the prompt here). Its time counts as drafting time in the
        records, but the draft-length policy, which prices each drafted token, does not see
        it: a one-off pass over a long prompt would otherwise price drafting out for good."""

    def verify_logits(self, ctx: DraftContext, block: Tensor) -> Tensor | None:
        """Target logits [k+1, V] for block [1, k+1] (current token + drafts, k >= 0),
        when the drafter can get them cheaper than a full forward (Kangaroo reuses its
        shallow layers); it must write the target cache as the full forward would. None:
        the loop runs the full forward."""
        return None

    def acceptance_class(self, ctx: DraftContext) -> tuple[Hashable, float]:
        """A cheap label of the next draft's prospects, looked at before the draft length is
        chosen, and the acceptance rate to assume for that label before any evidence.
        Drafts with different labels get separate acceptance rates (prompt lookup labels
        by match length). The default puts every draft in one class."""
        return None, 0.6


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
    with torch.inference_mode():
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
        with torch.inference_mode():
            draft = Draft([])
            ctx = DraftContext(lm, cache, pos, last, tokens, cfg, gen, budget)
            label = None
            if policy and confident:
                label, prior = d.acceptance_class(ctx)
                ctx.max_tokens = policy.choose(budget, label, prior)
            tp = t0
            if confident and ctx.max_tokens > 0:
                d.prepare(ctx)
                tp = time.perf_counter()
                draft = d.draft(ctx)
            t1 = time.perf_counter()
            block = torch.tensor([[last, *draft.tokens]], device=engine.device)  # [1, k+1]
            logits = d.verify_logits(ctx, block)
            if logits is None:
                logits = engine.forward(block, cache, pos)[0]  # [k+1, V]
            n, bonus = verify(logits, draft, cfg, gen)
            if gate is not None:
                confident = _top1(logits[n]) >= gate
        t2 = time.perf_counter()
        if policy:  # a step that drafts nothing costs all it took, probing included
            verify_s = t2 - t1 if draft.tokens else t2 - t0
            policy.observe(len(draft.tokens), n, t1 - tp, verify_s, label)
        if draft.tokens:
            d.update(len(draft.tokens), n)
        new = [*draft.tokens[:n], bonus]
        tokens.extend(new)
        pos += n + 1
        last = bonus
        origins = [Origin.DRAFT] * n + [Origin.BONUS if draft.tokens else Origin.TARGET]
        yield Chunk(new, origins, Step(len(draft.tokens), n, t1 - t0, t2 - t1))


def _top1(logits: Tensor) -> float:
    return float(torch.softmax(logits.float(), dim=-1).max())
