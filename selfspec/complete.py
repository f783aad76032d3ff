"""One-call text completion and reply scoring for other parts of the product (quiz
writing, presets)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from selfspec.decoding import generate, run_to_end
from selfspec.loading import LoadedModel
from selfspec.methods import FAST_METHOD, get_method
from selfspec.sampling import SamplingConfig
from selfspec.tokens import encode_prompt

__all__ = ["Completion", "complete", "score_replies"]


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


@torch.inference_mode()
def score_replies(lm: LoadedModel, prompt: str, replies: Sequence[str]) -> list[float]:
    """Log-probability (natural log, summed over its tokens) of each reply to ``prompt``.

    The prompt goes through the chat template as in :func:`complete`, so a score is the
    chance that the model would answer exactly that reply. One forward pass per reply.
    """
    context = encode_prompt(lm.tokenizer, prompt)
    scores = []
    for reply in replies:
        ids = list(lm.tokenizer.encode(reply, add_special_tokens=False))
        if not ids:
            raise ValueError("cannot score an empty reply")
        tokens = torch.tensor([context + ids], device=lm.device)  # [1, T]
        cache = lm.engine.new_cache(tokens.shape[1])
        with lm.engine.decoding():
            logits = lm.engine.forward(tokens, cache, 0)  # [1, T, V]
        logp = torch.log_softmax(logits[0, len(context) - 1 : -1].double(), dim=-1)  # [R, V]
        scores.append(float(logp.gather(1, torch.tensor(ids, device=lm.device)[:, None]).sum()))
    return scores
