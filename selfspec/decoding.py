"""The generation driver every method runs under, and plain (vanilla) decoding.

A *method* is a generator of :class:`Chunk` objects: the tokens it commits in one step,
where each token came from (the full model, an accepted draft, a bonus token) and the
step's timing. The driver owns everything methods share: input checks, the clock, stopping
at EOS or `max_new_tokens`, turning tokens into streamed text, and the final numbers. So
each method is only its decoding loop, and every method is measured the same way.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum

import torch

from selfspec.errors import BadInputError
from selfspec.loading import LoadedModel
from selfspec.sampling import SamplingConfig, choose
from selfspec.tokens import TextStream

__all__ = [
    "Origin",
    "Piece",
    "Step",
    "Chunk",
    "GenerationResult",
    "Method",
    "generate",
    "vanilla",
    "pooled",
    "prepare_prompt",
    "run_to_end",
    "CACHE_HEADROOM",
]

CACHE_HEADROOM = 16  # room past max_new_tokens for the longest draft a verifier may write


class Origin(StrEnum):
    TARGET = "target"  # decoded plainly by the full model
    DRAFT = "draft"  # proposed by a drafter and accepted by the full model
    BONUS = "bonus"  # the full model's own token after a fully accepted draft
    CORRECTED = "corrected"  # the full model's token in place of a rejected draft token


@dataclass(frozen=True)
class Piece:
    """Streamed text and where its token came from (for colouring in the UI)."""

    text: str
    origin: Origin


@dataclass(frozen=True)
class Step:
    """One decoding step: drafts proposed, drafts accepted, and the time of each phase."""

    drafted: int
    accepted: int
    draft_s: float
    verify_s: float


@dataclass(frozen=True)
class Chunk:
    tokens: list[int]
    origins: list[Origin]
    step: Step | None = None


Method = Callable[..., Iterator[Chunk]]


@dataclass
class GenerationResult:
    method: str
    model: str
    text: str
    tokens: list[int]
    prompt_tokens: int
    seconds: float
    stop_reason: str  # "eos" or "length"
    steps: list[Step] = field(default_factory=list)
    first_token_s: float | None = None  # reading the prompt and choosing the first token

    @property
    def tokens_per_s(self) -> float:
        return len(self.tokens) / self.seconds if self.seconds > 0 else 0.0

    @property
    def decode_tokens_per_s(self) -> float | None:
        """Tokens after the first over the time after it: decoding speed, prefill apart."""
        if self.first_token_s is None or len(self.tokens) < 2:
            return None
        rest = self.seconds - self.first_token_s
        return (len(self.tokens) - 1) / rest if rest > 0 else None

    @property
    def mean_accepted(self) -> float | None:
        """Tokens committed per verification step, bonus included (plain decoding: 1.0)."""
        if not self.steps:
            return None
        return sum(s.accepted + 1 for s in self.steps) / len(self.steps)

    @property
    def acceptance_rate(self) -> float | None:
        drafted = sum(s.drafted for s in self.steps)
        return sum(s.accepted for s in self.steps) / drafted if drafted else None

    def accepted_histogram(self) -> dict[int, int]:
        hist: dict[int, int] = {}
        for s in self.steps:
            if s.drafted:
                hist[s.accepted] = hist.get(s.accepted, 0) + 1
        return dict(sorted(hist.items()))


def pooled(results: list[GenerationResult]) -> GenerationResult:
    """Several runs of one method as one result (their tokens, time and steps together), so
    totals over a prompt set are read from the same properties as a single run's."""
    first = results[0]
    return GenerationResult(
        method=first.method,
        model=first.model,
        text="",
        tokens=[t for r in results for t in r.tokens],
        prompt_tokens=sum(r.prompt_tokens for r in results),
        seconds=sum(r.seconds for r in results),
        stop_reason="length",
        steps=[s for r in results for s in r.steps],
    )


def prepare_prompt(lm: LoadedModel, prompt: str, cfg: SamplingConfig) -> list[int]:
    """Token ids of the prompt, refusing prompts that are empty or that cannot fit."""
    if not prompt or not prompt.strip():
        raise BadInputError("The prompt is empty. Type a question or an instruction.")
    ids = lm.encode(prompt)
    limit = lm.engine.cfg.max_seq_len
    need = len(ids) + cfg.max_new_tokens + CACHE_HEADROOM
    if need > limit:
        raise BadInputError(
            f"The prompt is {len(ids)} tokens; with max_new_tokens={cfg.max_new_tokens} it needs "
            f"{need} positions, but {lm.name} has a context of {limit}. Shorten the prompt or "
            "lower max_new_tokens."
        )
    return ids


def generate(
    lm: LoadedModel,
    prompt: str,
    method: Method,
    cfg: SamplingConfig,
    name: str = "",
    **options,
) -> Iterator[Piece | GenerationResult]:
    """Run a method; yield text pieces as they decode, then the :class:`GenerationResult`."""
    ids = prepare_prompt(lm, prompt, cfg)
    stream = TextStream(lm.tokenizer)
    tokens: list[int] = []
    steps: list[Step] = []
    stop = "length"
    start = time.perf_counter()
    first = None
    chunks = method(lm, ids, cfg, **options)
    try:
        for chunk in chunks:
            if first is None:
                first = time.perf_counter() - start
            if chunk.step is not None:
                steps.append(chunk.step)
            for tok, origin in zip(chunk.tokens, chunk.origins, strict=True):
                if tok in lm.eos_ids:
                    stop = "eos"
                    break
                tokens.append(tok)
                text = stream.push([tok])
                if text:
                    yield Piece(text, origin)
                if len(tokens) >= cfg.max_new_tokens:
                    break
            if stop == "eos" or len(tokens) >= cfg.max_new_tokens:
                break
    finally:
        chunks.close()
    seconds = time.perf_counter() - start
    yield GenerationResult(
        method=name or getattr(method, "__name__", "method"),
        model=lm.name,
        text=lm.decode(tokens),
        tokens=tokens,
        prompt_tokens=len(ids),
        seconds=seconds,
        stop_reason=stop,
        steps=steps,
        first_token_s=first,
    )


def run_to_end(events: Iterator[Piece | GenerationResult]) -> GenerationResult:
    """Consume a generation, returning only its result (the benchmark's way to call it)."""
    result = None
    for event in events:
        if isinstance(event, GenerationResult):
            result = event
    assert result is not None
    return result


def vanilla(lm: LoadedModel, prompt_ids: list[int], cfg: SamplingConfig) -> Iterator[Chunk]:
    """Plain decoding on our engine: one forward pass per token over the KV cache."""
    engine = lm.engine
    gen = cfg.generator(engine.device)
    with torch.inference_mode():
        cache = engine.new_cache(len(prompt_ids) + cfg.max_new_tokens + CACHE_HEADROOM)
        tokens = torch.tensor([prompt_ids], device=engine.device)  # [1, T]
    pos = 0
    while True:
        t0 = time.perf_counter()
        with engine.decoding():
            logits = engine.forward(tokens, cache, pos, last_only=True)[0, -1]  # [V]
            tok = choose(logits, cfg, gen)
        pos += tokens.shape[1]
        yield Chunk([tok], [Origin.TARGET], Step(0, 0, 0.0, time.perf_counter() - t0))
        tokens = torch.tensor([[tok]], device=engine.device)
