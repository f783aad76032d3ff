"""How many tokens to draft: the length with the most expected tokens per second.

On a GPU a verification pass over 8 tokens costs about what a pass over one token does, so
drafting long is nearly free and a drafter may stop only when it loses confidence. On a CPU
it is not: the matrix products stop being memory-bound after a few rows, and on the AVX2
machine we measure on a float32 pass over M tokens costs about 1.6x a one-token pass for
M = 2, 1.8x for M = 3 and 3-4x for M >= 4. Drafting 8 tokens there loses even when most of
them are accepted.

So before each step the loop picks the cap k that maximises

    E(k) / (k * d + v(k + 1)),    E(k) = 1 + a + a^2 + ... + a^k,

where a is the running per-token acceptance rate (discounted counts under a Beta prior, so
it follows the text and drifts back to the prior while no drafts are tested; one rate per
acceptance class the drafter names, e.g. prompt lookup's match length), d the
measured time to draft one token, and v(M) the time of a verification pass over M tokens.
E(k) counts the accepted drafts plus the full model's bonus token when acceptances are
independent with rate a; k = 0 is a plain one-token step. v is measured once per model and
verification kind with a short calibration (one forward per M) and then follows the loop's
own timings. The choice only caps the draft length, so it cannot change the output:
every method stays lossless.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Hashable
from dataclasses import dataclass, field

import torch

from selfspec.model import Transformer

__all__ = ["AcceptanceRate", "VerifyCosts", "DraftLengthPolicy", "verify_costs"]

_EMA = 0.3  # weight of a new timing in the running averages


@dataclass
class AcceptanceRate:
    """Per-token acceptance rate from discounted counts under a Beta(a0, b0) prior."""

    prior: float = 0.6
    strength: float = 2.0  # the prior counts as this many tested tokens
    decay: float = 0.9  # per step: recent text matters more
    accepted: float = 0.0
    tested: float = 0.0

    @property
    def rate(self) -> float:
        return (self.accepted + self.prior * self.strength) / (self.tested + self.strength)

    def update(self, drafted: int, accepted: int) -> None:
        """A step drafted `drafted` tokens and the full model accepted `accepted` of them.

        Tested tokens are the accepted ones plus the first rejected one, if any: drafts
        after a rejection were never judged.
        """
        self.accepted = self.decay * self.accepted + accepted
        self.tested = self.decay * self.tested + accepted + (accepted < drafted)


@dataclass
class VerifyCosts:
    """Seconds of a verification pass over M tokens (M = 1 is a plain decoding step)."""

    seconds: dict[int, float] = field(default_factory=dict)

    def observe(self, m: int, seconds: float) -> None:
        old = self.seconds.get(m)
        self.seconds[m] = seconds if old is None else (1 - _EMA) * old + _EMA * seconds

    def get(self, m: int) -> float:
        """v(M); an unmeasured M is assumed to cost what the nearest measured M does."""
        if m in self.seconds:
            return self.seconds[m]
        nearest = min(self.seconds, key=lambda n: (abs(n - m), n))
        return self.seconds[nearest]


_COSTS: weakref.WeakKeyDictionary[Transformer, dict[str, VerifyCosts]] = weakref.WeakKeyDictionary()


def verify_costs(engine: Transformer, kind: str, max_m: int) -> VerifyCosts:
    """The cost table for this engine and verification kind, calibrated on first use.

    Calibration times one forward pass over M = 1..max_m tokens (after one warm-up pass)
    on a scratch cache; a kind whose verification is cheaper than a full forward (Kangaroo
    runs only the deep layers) starts from these numbers and is corrected by its own timings.
    """
    tables = _COSTS.setdefault(engine, {})
    if kind not in tables:
        tables[kind] = VerifyCosts(_calibrate(engine, max_m))
    return tables[kind]


def _calibrate(engine: Transformer, max_m: int) -> dict[int, float]:
    cache = engine.new_cache(max_m)
    tokens = torch.zeros(1, max_m, dtype=torch.long, device=engine.device)
    seconds = {}
    with torch.inference_mode():
        engine.forward(tokens[:, :1], cache, 0)  # warm-up
        for m in range(1, max_m + 1):
            _sync(engine)
            t0 = time.perf_counter()
            engine.forward(tokens[:, :m], cache, 0)
            _sync(engine)
            seconds[m] = time.perf_counter() - t0
    return seconds


def _sync(engine: Transformer) -> None:
    if engine.device.type == "cuda":
        torch.cuda.synchronize(engine.device)


class DraftLengthPolicy:
    """Chooses each step's draft cap and learns from how the step went."""

    def __init__(self, costs: VerifyCosts, max_draft: int) -> None:
        self.costs = costs
        self.max_draft = max_draft
        self.acceptance: dict[Hashable, AcceptanceRate] = {}
        self.draft_s: float | None = None  # seconds per drafted token, running average

    def choose(self, budget: int, label: Hashable = None) -> int:
        """The draft cap k in 0..min(max_draft, budget) with the best expected rate."""
        a = self.acceptance.setdefault(label, AcceptanceRate()).rate
        d = self.draft_s or 0.0
        best_k, best_rate = 0, 0.0
        expected = 0.0
        for k in range(min(self.max_draft, budget) + 1):
            expected += a**k  # E(k)
            rate = expected / (k * d + self.costs.get(k + 1))
            if rate > best_rate:
                best_k, best_rate = k, rate
        return best_k

    def observe(
        self,
        drafted: int,
        accepted: int,
        draft_s: float,
        verify_s: float,
        label: Hashable = None,
    ) -> None:
        self.costs.observe(drafted + 1, verify_s)
        for key, rate in self.acceptance.items():  # every class decays; only one is tested
            rate.update(drafted if key == label else 0, accepted if key == label else 0)
        if drafted:
            per_token = draft_s / drafted
            self.draft_s = (
                per_token if self.draft_s is None else (1 - _EMA) * self.draft_s + _EMA * per_token
            )
