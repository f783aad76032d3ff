"""Prompt lookup drafting: copy what followed the last n-gram the last time it appeared.

Free to draft (no model call), and strong whenever the output repeats its input: summaries,
answers about a given note, quiz questions quoting the text.
"""

from __future__ import annotations

import numpy as np

from selfspec.errors import BadInputError
from selfspec.speculative import Draft, DraftContext, Drafter

__all__ = ["PromptLookupDrafter", "lookup"]

PRIORS = {3: 0.8, 2: 0.6, 1: 0.35}  # prior acceptance by match length (see acceptance_class)


def lookup(tokens: list[int], max_ngram: int, k: int) -> tuple[int, list[int]]:
    """The matched n-gram size and up to k tokens that followed the most recent earlier
    match of the context's tail; (0, []) when nothing matches.

    Tries the longest n-gram first (n = max_ngram down to 1), so a longer, more specific
    match wins over a common single token.
    """
    arr = np.asarray(tokens)
    length = len(arr)
    for n in range(min(max_ngram, length - 1), 0, -1):
        tail = arr[length - n :]
        windows = np.lib.stride_tricks.sliding_window_view(arr[: length - 1], n)
        hits = np.flatnonzero((windows == tail).all(axis=1))
        if hits.size:
            start = int(hits[-1]) + n  # most recent occurrence
            return n, arr[start : start + k].tolist()
    return 0, []


class PromptLookupDrafter(Drafter):
    def __init__(self, max_ngram: int = 3, k: int = 8) -> None:
        if k < 1:
            raise BadInputError(f"The draft length k must be at least 1, got {k}.")
        if max_ngram < 1:
            raise BadInputError(f"The n-gram size must be at least 1, got {max_ngram}.")
        self.max_ngram = max_ngram
        self.k = k
        self._match: tuple[int, list[int]] = (-1, [])  # (context length, proposal) cache

    def acceptance_class(self, ctx: DraftContext) -> tuple[int, float]:
        """The matched n-gram size, and a prior acceptance rate that grows with it.

        Replaying the bundled model's greedy outputs on our prompt set, drafts after a
        3-gram match were accepted 0.66-0.98 per token (by category), after a 2-gram
        0.39-0.76, after a 1-gram 0.19-0.47; so each size gets its own acceptance rate in
        the draft-length policy, starting from the middle of its range.
        """
        n, proposal = lookup(ctx.tokens, self.max_ngram, self.k)
        self._match = (len(ctx.tokens), proposal)
        return n, PRIORS.get(min(n, 3), 0.6)

    def draft(self, ctx: DraftContext) -> Draft:
        length, proposal = self._match
        if length != len(ctx.tokens):
            proposal = lookup(ctx.tokens, self.max_ngram, self.k)[1]
        return Draft(proposal[: ctx.max_tokens])
