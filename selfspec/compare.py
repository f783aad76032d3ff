"""One output against the reference's (plain decoding's, in the same run): how much faster
it was, and whether it is lossless under which rule. The benchmark and the Playground
both ask this module, so "lossless" has one definition.

The greedy check has two rules, chosen by the method registry's `ours`. Our engine's
methods must emit exactly vanilla's tokens: the engine is built so that a row computes the
same bits alone or among others, so any difference is a bug, not rounding. Peers run other
code, so their whole output is teacher-forced through our model and every token they
emitted may trail our argmax by at most the dtype's logit tolerance. A sampled output has
no single right answer, so it gets a speed-up and no verdict.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from selfspec.decoding import GenerationResult
from selfspec.loading import LoadedModel
from selfspec.methods import MethodInfo

__all__ = [
    "LOGIT_TOLERANCE",
    "Margin",
    "Rule",
    "Verdict",
    "compare",
    "emitted_margins",
    "rule_for",
    "speedup",
    "teacher_forced_logits",
    "tolerance",
]

# Largest logit margin, per dtype, by which a peer's token may trail our model's argmax and
# still count as a correct greedy choice: a peer runs other code (other kernels, other
# summation orders, llama.cpp's quantized activations), and where our top two logits are
# closer than this, either token is right within the dtype's precision.
LOGIT_TOLERANCE = {
    torch.float64: 1e-9,
    torch.float32: 1e-3,
    torch.bfloat16: 0.25,
    torch.float16: 0.05,
}


@dataclass(frozen=True)
class Rule:
    """How a greedy output is judged against vanilla's: token for token (our engine's
    methods, which must be exact), or within a logit tolerance at every position (peers,
    which run other code)."""

    tolerance: float | None = None  # None: exact

    def __str__(self) -> str:
        return "exact" if self.tolerance is None else f"tolerance {self.tolerance:g}"


@dataclass(frozen=True)
class Margin:
    """A generated position and by how much its token trails our model's argmax there."""

    position: int  # index among the generated tokens (0: the first)
    margin: float  # logit[argmax] - logit[emitted], >= 0


@dataclass(frozen=True)
class Verdict:
    """One output against the reference: the speed-up, and the lossless check by `rule`."""

    speedup: float | None  # tokens/s over the reference's; None: the reference took no time
    rule: Rule | None  # None: not judged (a sampled output has no single right answer)
    exact: bool | None = None  # token for token the reference's
    lossless: bool | None = None  # what the rule concludes
    first_difference: int | None = None  # first generated position that differs
    worst: Margin | None = None  # teacher-forced worst position (peers; ours when inexact)


def tolerance(dtype: torch.dtype) -> float:
    """The peers' logit tolerance for a dtype (float32's for any other)."""
    return LOGIT_TOLERANCE.get(dtype, 1e-3)


def rule_for(info: MethodInfo, dtype: torch.dtype) -> Rule:
    """Exact for the methods of our engine (the registry's `ours`), the dtype's tolerance
    for peers."""
    return Rule() if info.ours else Rule(tolerance(dtype))


def speedup(tokens_per_s: float, reference_tokens_per_s: float) -> float | None:
    """The ratio of two speeds; None when the reference has none to divide by."""
    return tokens_per_s / reference_tokens_per_s if reference_tokens_per_s else None


def teacher_forced_logits(lm: LoadedModel, prompt_ids: list[int], tokens: list[int]) -> Tensor:
    """Our model's logits [n + 1, V] for an output of n tokens, from one forward pass over
    prompt + output: row i is what the model predicts for generated position i (row n,
    after the last token, judges an EOS)."""
    ids = torch.tensor([prompt_ids + tokens], device=lm.device)  # [1, T]
    with torch.inference_mode():
        cache = lm.engine.new_cache(ids.shape[1])
        logits = lm.engine.forward(ids, cache, 0)[0]  # [T, V]
    return logits[len(prompt_ids) - 1 :]


def emitted_margins(
    logits: Tensor, tokens: list[int], eos_ids: frozenset[int] = frozenset()
) -> Tensor:
    """logit[argmax] - logit[emitted] (float64) at each generated position, from logits
    [n (+1), V]. Given eos_ids (the output stopped at an EOS), the position after the last
    token is judged too, by its best EOS logit, since the driver keeps no EOS id."""
    n = len(tokens)
    rows = logits[: n + bool(eos_ids)]  # [n (+1), V]
    emitted = rows[:n].gather(
        1, torch.tensor(tokens, dtype=torch.long, device=rows.device)[:, None]
    )[:, 0]
    if eos_ids:
        eos = rows[n, torch.tensor(sorted(eos_ids), device=rows.device)].max()
        emitted = torch.cat([emitted, eos[None]])
    # The subtraction in float64 is exact for float32 and narrower logits.
    return rows.max(-1).values.double() - emitted.double()


def compare(
    lm: LoadedModel,
    prompt_ids: list[int],
    result: GenerationResult,
    reference: GenerationResult,
    rule: Rule | None,
) -> Verdict:
    """`result` against `reference` (vanilla's output on the same prompt) under `rule`.

    Exact: the token lists must be equal. Tolerance: the output is teacher-forced through
    our model and at every position it emitted (an EOS it stopped at included; nothing
    after a stop or the length limit) its token may trail our argmax by at most the
    tolerance. The worst position is also reported for an inexact output of ours, as a
    diagnostic (how close to a tie it left vanilla), but it does not excuse it. `rule`
    None (a sampled output): the speed-up only.
    """
    ratio = speedup(result.tokens_per_s, reference.tokens_per_s)
    if rule is None:
        return Verdict(ratio, None)
    tokens = result.tokens
    exact = tokens == reference.tokens
    first = None
    if not exact:
        n = min(len(tokens), len(reference.tokens))
        first = next((i for i in range(n) if tokens[i] != reference.tokens[i]), n)
    worst = None
    if rule.tolerance is not None or not exact:
        eos = lm.eos_ids if result.stop_reason == "eos" else frozenset()
        margins = emitted_margins(teacher_forced_logits(lm, prompt_ids, tokens), tokens, eos)
        if margins.numel():
            i = int(margins.argmax())
            worst = Margin(i, float(margins[i]))
    if rule.tolerance is None:
        lossless = exact
    else:
        lossless = worst is None or worst.margin <= rule.tolerance
    return Verdict(ratio, rule, exact, lossless, first, worst)
