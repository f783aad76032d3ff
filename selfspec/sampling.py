"""Sampling settings and the one function that turns logits into a distribution.

Speculative sampling must apply exactly the same temperature / top-k / top-p to the draft
and to the target, so every method goes through :func:`probabilities`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from selfspec.errors import BadInputError

__all__ = ["SamplingConfig", "probabilities", "choose", "MAX_NEW_TOKENS_LIMIT"]

MAX_NEW_TOKENS_LIMIT = 4096


@dataclass(frozen=True)
class SamplingConfig:
    """How to pick tokens. temperature 0 means greedy (argmax), whatever top-k/top-p say."""

    max_new_tokens: int = 128
    temperature: float = 0.0
    top_k: int = 0  # 0: no top-k filter
    top_p: float = 1.0
    seed: int | None = None

    def __post_init__(self) -> None:
        if not 1 <= self.max_new_tokens <= MAX_NEW_TOKENS_LIMIT:
            raise BadInputError(
                f"max_new_tokens must be between 1 and {MAX_NEW_TOKENS_LIMIT}, "
                f"got {self.max_new_tokens}."
            )
        if not 0.0 <= self.temperature <= 10.0:
            raise BadInputError(f"temperature must be in [0, 10], got {self.temperature}.")
        if self.top_k < 0:
            raise BadInputError(f"top_k must be 0 (off) or positive, got {self.top_k}.")
        if not 0.0 < self.top_p <= 1.0:
            raise BadInputError(f"top_p must be in (0, 1], got {self.top_p}.")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0

    def generator(self, device: torch.device | str) -> torch.Generator | None:
        if self.greedy:
            return None
        gen = torch.Generator(device=device)
        gen.manual_seed(self.seed if self.seed is not None else torch.seed())
        return gen


def probabilities(logits: Tensor, cfg: SamplingConfig) -> Tensor:
    """Distribution over the vocabulary [..., V] after temperature, top-k and top-p.

    For greedy decoding this is the one-hot of the argmax, so the speculative rule
    min(1, p/q) reduces to "accept while the argmaxes agree".
    """
    if cfg.greedy:
        return torch.nn.functional.one_hot(logits.argmax(-1), logits.shape[-1]).to(logits.dtype)
    logits = logits / cfg.temperature
    if cfg.top_k and cfg.top_k < logits.shape[-1]:
        kth = torch.topk(logits, cfg.top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = torch.softmax(logits, dim=-1)
    if cfg.top_p < 1.0:
        sorted_p, order = probs.sort(dim=-1, descending=True)
        # Keep the smallest prefix whose mass reaches top_p (always at least one token).
        drop = sorted_p.cumsum(-1) - sorted_p >= cfg.top_p
        sorted_p = sorted_p.masked_fill(drop, 0.0)
        probs = torch.zeros_like(probs).scatter(-1, order, sorted_p)
        probs = probs / probs.sum(-1, keepdim=True)
    return probs


def choose(logits: Tensor, cfg: SamplingConfig, gen: torch.Generator | None) -> int:
    """Pick one token from logits [V]: argmax when greedy, else a seeded sample."""
    if cfg.greedy:
        return int(logits.argmax())
    return int(torch.multinomial(probabilities(logits, cfg), 1, generator=gen))
