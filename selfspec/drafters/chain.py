"""Drafting one token at a time with an early exit: the loop skip-layer drafting and a
separate draft model share. Each drafted token is fed back to get the next one, until the
cap or a token whose draft top-1 probability is below the threshold g (Draft & Verify's
adaptive draft exit); the draft's state says whether the cap stopped it."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from selfspec.speculative import Draft, DraftContext, pick

__all__ = ["draft_chain"]


def draft_chain(
    ctx: DraftContext,
    k_max: int,
    g: float,
    logits_at: Callable[[int, int], Tensor],
    vocab_ids: Tensor | None = None,
    vocab_size: int = 0,
) -> Draft:
    """Up to k_max tokens after ctx.last; logits_at(token, i) gives the draft logits [V]
    after feeding `token` at position ctx.pos + i. A drafter that scores only some tokens
    gives their ids (ascending) as `vocab_ids` and logits over them [N]: picking among
    them is picking over the whole vocabulary with the others at -inf (same argmax, ties
    included, same probabilities), without a softmax over all `vocab_size` entries."""
    tokens: list[int] = []
    qs = []
    tok = ctx.last
    for i in range(k_max):
        tok, conf, q = pick(logits_at(tok, i), ctx.cfg, ctx.gen)
        if vocab_ids is not None:
            tok = int(vocab_ids[tok])
            if q is not None:  # the verifier needs q over the whole vocabulary
                q = q.new_zeros(vocab_size).index_copy_(0, vocab_ids, q)
        tokens.append(tok)
        if q is not None:
            qs.append(q)
        if conf < g:
            break
    hit_max = len(tokens) == k_max  # stopped by the cap, not by the threshold
    return Draft(tokens, torch.stack(qs) if qs else None, state=hit_max)
