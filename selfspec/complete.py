"""One-call text completion for other parts of the product (quiz writing, presets)."""

from __future__ import annotations

from dataclasses import dataclass

from selfspec.decoding import generate, run_to_end
from selfspec.loading import LoadedModel
from selfspec.methods import FAST_METHOD, get_method
from selfspec.sampling import SamplingConfig

__all__ = ["Completion", "complete"]


@dataclass(frozen=True)
class Completion:
    text: str
    tokens_per_s: float
    method: str
    model: str


def complete(
    lm: LoadedModel,
    prompt: str,
    *,
    method: str = FAST_METHOD,
    max_new_tokens: int = 256,
    temperature: float = 0.0,
    seed: int | None = None,
) -> Completion:
    """Generate a reply to `prompt` with the given (default: the fastest lossless) method."""
    info = get_method(method)
    cfg = SamplingConfig(max_new_tokens=max_new_tokens, temperature=temperature, seed=seed)
    result = run_to_end(generate(lm, prompt, info.run, cfg, name=method, **info.options))
    return Completion(result.text, result.tokens_per_s, method, lm.name)
