"""Prompt lookup drafting: copy what followed the last n-gram the last time it appeared.

Free to draft (no model call), and strong whenever the output repeats its input: summaries,
answers about a given note, quiz questions quoting the text.
"""

from __future__ import annotations

from selfspec.errors import BadInputError
from selfspec.speculative import Draft, DraftContext, Drafter, Probe

__all__ = ["PromptLookupDrafter", "lookup"]

PRIORS = {3: 0.8, 2: 0.6, 1: 0.35}  # prior acceptance by match length (see `probe`)


def lookup(tokens: list[int], max_ngram: int, k: int) -> tuple[int, list[int]]:
    """The matched n-gram size and up to k tokens that followed the most recent earlier
    match of the context's tail; (0, []) when nothing matches.

    A longer, more specific match (up to max_ngram) wins over a common single token; among
    matches of the same size, the most recent. One backward scan over the earlier
    occurrences of the last token, each extended backwards while it matches: this runs
    before every step, so it must cost little next to a decoding step (a few microseconds
    on a few hundred tokens, where building numpy windows for each size took 0.17 ms).
    """
    end = len(tokens) - 1
    last = tokens[end] if end >= 0 else None
    best_n, best_j = 0, -1
    for j in range(end - 1, -1, -1):
        if tokens[j] != last:
            continue
        n, limit = 1, min(max_ngram, j + 1)
        while n < limit and tokens[j - n] == tokens[end - n]:
            n += 1
        if n > best_n:
            best_n, best_j = n, j
            if n == max_ngram:
                break
    return best_n, list(tokens[best_j + 1 : best_j + 1 + k]) if best_n else []


class PromptLookupDrafter(Drafter):
    def __init__(self, max_ngram: int = 3, k: int = 8) -> None:
        if k < 1:
            raise BadInputError(f"The draft length k must be at least 1, got {k}.")
        if max_ngram < 1:
            raise BadInputError(f"The n-gram size must be at least 1, got {max_ngram}.")
        self.max_ngram = max_ngram
        self.k = k

    def probe(self, ctx: DraftContext) -> Probe:
        """The matched n-gram size, and a prior acceptance rate that grows with it; the
        proposal found is the probe's state, so the draft does not look it up again.

        Longer matches are accepted far more often on the bundled model's replies (see
        docs/engine.md), so each size gets its own acceptance rate in the draft-length
        policy.
        """
        n, proposal = lookup(ctx.tokens, self.max_ngram, self.k)
        return Probe(n, PRIORS.get(min(n, 3), 0.6), state=proposal)

    def draft(self, ctx: DraftContext, probe: Probe | None = None) -> Draft:
        proposal = probe.state if probe else lookup(ctx.tokens, self.max_ngram, self.k)[1]
        return Draft(proposal[: ctx.max_tokens])
