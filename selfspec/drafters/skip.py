"""Skip-layer self-speculative drafting (Draft & Verify).

The draft model is the full model with a set of attention and MLP sub-layers skipped. It
shares the full model's KV cache: drafting writes entries for the non-skipped layers at
the draft positions, and verification overwrites all of them with the full model's.

Adaptive draft exit, as in the paper: drafting stops after a token whose draft top-1
probability is below the threshold g (or at the maximum length). After each verification
AR <- 0.5 AR + 0.5 accepted/drafted; the target g' is g + 0.01 when AR < alpha, else g when
the draft hit its maximum length, else g - 0.01; then g <- 0.9 g + 0.1 g'.
"""

from __future__ import annotations

import torch

from selfspec.drafters.chain import draft_chain
from selfspec.errors import BadInputError
from selfspec.model import SkipSet
from selfspec.speculative import Draft, DraftContext, Drafter, Probe, check_unit_interval

__all__ = ["AdaptiveThreshold", "SkipLayerDrafter"]


class AdaptiveThreshold:
    """The draft-exit threshold g and its acceptance-rate-driven update."""

    def __init__(self, g: float = 0.7, alpha: float = 0.85, adaptive: bool = True) -> None:
        check_unit_interval("The draft-exit threshold", g)
        check_unit_interval("The target acceptance rate alpha", alpha)
        self.g = g
        self.alpha = alpha
        self.adaptive = adaptive
        self.ar = 1.0  # optimistic start: the first steps may lower g

    def update(self, drafted: int, accepted: int, hit_max: bool) -> None:
        if not self.adaptive or drafted == 0:
            return
        self.ar = 0.5 * self.ar + 0.5 * accepted / drafted
        if self.ar < self.alpha:
            target = self.g + 0.01
        else:
            target = self.g if hit_max else self.g - 0.01
        self.g = 0.9 * self.g + 0.1 * target


class SkipLayerDrafter(Drafter):
    def __init__(
        self,
        skip: SkipSet,
        n_layers: int,
        max_draft: int = 10,
        threshold: AdaptiveThreshold | None = None,
    ) -> None:
        skip.check(n_layers)
        if max_draft < 1:
            raise BadInputError(f"The maximum draft length must be at least 1, got {max_draft}.")
        self.skip = skip
        self.max_draft = max_draft
        self.threshold = threshold or AdaptiveThreshold()

    def draft(self, ctx: DraftContext, probe: Probe | None = None) -> Draft:
        """Draft until the threshold or the cap; the draft's state says which stopped it."""
        engine = ctx.lm.engine

        def logits_at(tok: int, i: int) -> torch.Tensor:
            x = torch.tensor([[tok]], device=engine.device)
            return engine.forward(x, ctx.cache, ctx.pos + i, skip=self.skip)[0, -1]  # [V]

        return draft_chain(ctx, min(self.max_draft, ctx.max_tokens), self.threshold.g, logits_at)

    def update(self, draft: Draft, accepted: int) -> None:
        self.threshold.update(len(draft.tokens), accepted, hit_max=draft.state)
