"""How many tokens to draft: the length with the most expected tokens per second.

On a GPU a verification pass over 8 tokens costs about what a pass over one token does, so
drafting long is nearly free and a drafter may stop only when it loses confidence. On a CPU
it is not: the products of a quantized model are bound by dequantizing and multiplying, so
each extra row costs a share of a one-row pass (the measured curve is in each benchmark
report). Drafting long there loses unless most drafts are accepted.

So before each step the loop picks the cap k that maximises

    E(k) / (k * d + v(k + 1)),    E(k) = 1 + a + a^2 + ... + a^k,

where a is the running per-token acceptance rate (discounted counts under a Beta prior, so
it follows the text and drifts back to the prior while no drafts are tested; one rate per
acceptance class the drafter names, e.g. prompt lookup's match length), d the
measured time to draft one token, and v(M) the time of a verification pass over M tokens.
E(k) counts the accepted drafts plus the full model's bonus token when acceptances are
independent with rate a; k = 0 is a plain one-token step. The curve v(M) / v(1) is
measured once per model with a short calibration (a few forwards per M, the fastest of
each kept); the draft time is taken relative to the loop's own plain steps, so a machine
that slows down as a whole changes neither. Kangaroo verifies with only its deep layers,
a little cheaper than the full forward the curve measures, so for it the policy errs on
the side of shorter drafts. The choice only caps the draft length, so it cannot change
the output: every method stays lossless.
"""

from __future__ import annotations

import statistics
import time
import weakref
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field

import torch

from selfspec.model import Transformer

__all__ = [
    "AcceptanceRate",
    "VerifyCosts",
    "DraftLengthPolicy",
    "best_draft_length",
    "verify_costs",
]

_EMA = 0.3  # weight of a new timing in the running averages


@dataclass
class AcceptanceRate:
    """Per-token acceptance rate from discounted counts under a Beta(a0, b0) prior."""

    prior: float = 0.6
    strength: float = 1.0  # the prior counts as this many tested tokens
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

    def relative(self, m: int) -> float:
        """v(M) / v(1); an unmeasured M costs what the nearest measured M does."""
        nearest = min(self.seconds, key=lambda n: (abs(n - m), n))
        return self.seconds[nearest] / self.seconds[1]


_COSTS: weakref.WeakKeyDictionary[Transformer, VerifyCosts] = weakref.WeakKeyDictionary()

CALIBRATION_CONTEXT = 64  # cached tokens before the timed passes, as in a short chat
CALIBRATION_REPEATS = 5


def verify_costs(engine: Transformer, max_m: int) -> VerifyCosts:
    """The cost curve of this engine, measured on first use and kept for the process.

    Each M = 1..max_m is timed CALIBRATION_REPEATS times, interleaved, after a context of
    CALIBRATION_CONTEXT tokens; the median is kept. On a shared machine a burst of load
    hits one sample of one M, and the median drops it, so the curve's shape survives
    noise that would otherwise stop (or force) drafting for the rest of the process.
    """
    if engine not in _COSTS or max(_COSTS[engine].seconds) < max_m:
        _COSTS[engine] = VerifyCosts(_calibrate(engine, max_m))
    return _COSTS[engine]


def _calibrate(engine: Transformer, max_m: int) -> dict[int, float]:
    n = CALIBRATION_CONTEXT
    cache = engine.new_cache(n + max_m)
    tokens = torch.zeros(1, n + max_m, dtype=torch.long, device=engine.device)
    samples: dict[int, list[float]] = {m: [] for m in range(1, max_m + 1)}
    with engine.decoding():
        engine.forward(tokens[:, :n], cache, 0)
        engine.forward(tokens[:, n : n + 1], cache, n)  # warm-up
        for _ in range(CALIBRATION_REPEATS):
            for m, times in samples.items():
                _sync(engine)
                t0 = time.perf_counter()
                engine.forward(tokens[:, n : n + m], cache, n)
                _sync(engine)
                times.append(time.perf_counter() - t0)
    return {m: statistics.median(times) for m, times in samples.items()}


def _sync(engine: Transformer) -> None:
    if engine.device.type == "cuda":
        torch.cuda.synchronize(engine.device)


def best_draft_length(
    a: float, d: float, verify: Callable[[int], float], max_k: int
) -> tuple[int, float]:
    """The draft length k in 0..max_k maximising E(k) / (k d + v(k+1)), and that rate.

    a: per-token acceptance rate; d: one draft token's cost in plain steps; verify(m): a
    forward over m tokens in plain steps (so k = 0, a plain step, has rate 1 / verify(1)).
    """
    best_k, best_rate = 0, 0.0
    expected = 0.0
    for k in range(max_k + 1):
        expected += a**k  # E(k)
        rate = expected / (k * d + verify(k + 1))
        if rate > best_rate:
            best_k, best_rate = k, rate
    return best_k, best_rate


class DraftLengthPolicy:
    """Chooses each step's draft cap and learns from how the step went."""

    def __init__(self, costs: VerifyCosts, max_draft: int) -> None:
        self.costs = costs
        self.max_draft = max_draft
        self.acceptance: dict[Hashable, AcceptanceRate] = {}
        self.draft_s: float | None = None  # seconds per drafted token, running average
        self.step_s: float | None = None  # seconds of a plain step, running average

    def choose(self, budget: int, label: Hashable = None, prior: float = 0.6) -> int:
        """The draft cap k in 0..min(max_draft, budget) with the best expected rate.

        `prior` is the acceptance rate assumed for a class not yet seen (and the one its
        estimate drifts back to while untested).
        """
        a = self.acceptance.setdefault(label, AcceptanceRate(prior=prior)).rate
        step = self.step_s or self.costs.seconds[1]
        d = (self.draft_s or 0.0) / step  # one draft token, in plain steps
        return best_draft_length(a, d, self.costs.relative, min(self.max_draft, budget))[0]

    def observe(
        self,
        drafted: int,
        accepted: int,
        draft_s: float,
        verify_s: float,
        label: Hashable = None,
    ) -> None:
        for key, rate in self.acceptance.items():  # every class decays; only one is tested
            rate.update(drafted if key == label else 0, accepted if key == label else 0)
        if drafted:
            self.draft_s = _ema(self.draft_s, draft_s / drafted)
        else:
            self.step_s = _ema(self.step_s, verify_s)


def _ema(old: float | None, new: float) -> float:
    return new if old is None else (1 - _EMA) * old + _EMA * new
