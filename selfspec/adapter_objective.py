"""The Kangaroo adapter's training objective: the distillation loss and its evaluation.

Loss, at the positions that predict a generated token, with p the full model's next-token
softmax and q the adapter's:

- ``ce``: soft cross-entropy  H(p, q) = -sum_x p(x) log q(x)
- ``kl``: KL(p || q) = sum_x p(x) log p(x) - sum_x p(x) log q(x) = H(p, q) - H(p)

They differ by the target entropy H(p), which does not depend on the adapter: the two
losses have the same gradients (only the reported value shifts). KL reads as a distance
(0 when the draft matches), CE is the paper's formulation.

Evaluation reports the held-out loss and the expected acceptance sum_x min(p(x), q(x)),
the probability that speculative sampling accepts a draft token at that position.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from selfspec.adapter import KangarooAdapter
from selfspec.adapter_corpus import Sequence
from selfspec.loading import LoadedModel

__all__ = [
    "LOSSES",
    "batch_logits",
    "distill_loss",
    "evaluate",
    "expected_acceptance",
    "learn_positions",
]

LOSSES = ("ce", "kl")


def distill_loss(q_logits: Tensor, p_logits: Tensor, kind: str = "ce") -> Tensor:
    """Mean soft cross-entropy H(p, q) (or KL(p || q)) over rows of logits [M, V]."""
    log_q = F.log_softmax(q_logits.float(), dim=-1)
    log_p = F.log_softmax(p_logits.float(), dim=-1)
    ce = -(log_p.exp() * log_q).sum(-1)  # [M]
    if kind == "kl":
        ce = ce + (log_p.exp() * log_p).sum(-1)  # minus the target entropy
    return ce.mean()


def expected_acceptance(q_logits: Tensor, p_logits: Tensor, ids: Tensor | None = None) -> float:
    """Mean over rows of sum_x min(p(x), q(x)): the chance a sampled draft is accepted.

    q_logits [M, N] may cover only the token ids `ids` (a restricted head) while p_logits
    [M, V] covers the vocabulary: q is zero elsewhere, so only p at `ids` can match."""
    p = torch.softmax(p_logits.float(), dim=-1)
    if ids is not None:
        p = p[:, ids]
    q = torch.softmax(q_logits.float(), dim=-1)
    return float(torch.minimum(p, q).sum(-1).mean())


def _batch(sequences: list[Sequence], generated_only: bool) -> tuple[Tensor, Tensor, Tensor]:
    """Padded exit states [B, T, C], a mask [B, T] of the positions learnt from (those
    predicting generated tokens, or all from each sequence's `first`), and the matching
    last-layer states [M, C] (M = mask.sum())."""
    t = max(len(s.ids) for s in sequences)
    h0 = sequences[0].h_exit
    h = h0.new_zeros(len(sequences), t, h0.shape[-1])
    mask = torch.zeros(len(sequences), t, dtype=torch.bool, device=h0.device)
    lasts = []
    for i, s in enumerate(sequences):
        start = s.n_prompt - 1 if generated_only else s.first
        h[i, : len(s.ids)] = s.h_exit
        mask[i, start : len(s.ids) - 1] = True
        lasts.append(s.h_last[start:])
    return h, mask, torch.cat(lasts)


def learn_positions(sequences: list[Sequence]) -> None:
    """Let training learn from the prompts' text too, not only from the generated tokens.

    The target is the full model's next-token distribution wherever it is computed, and
    the prompts (notes, paragraphs, questions) are text of the kind the draft will meet:
    they add more positions than the generations give (docs/kangaroo.md), at no
    generation cost. Only the prefix that every sequence shares (the chat template's
    system prompt) is left out: it would count the same positions once per sequence.
    Held-out numbers are still measured on generated tokens only.
    """
    ids = [s.ids for s in sequences]
    shared = 0
    while all(len(x) > shared + 1 and x[shared] == ids[0][shared] for x in ids):
        shared += 1
    for s in sequences:
        s.first = min(shared, s.n_prompt - 1)


def batch_logits(
    adapter: KangarooAdapter,
    lm: LoadedModel,
    sequences: list[Sequence],
    generated_only: bool = True,
) -> tuple[Tensor, Tensor]:
    """Adapter logits and target logits [M, N] at the generated positions of a batch (or
    at every position from each sequence's `first`, with generated_only=False).

    With a restricted draft head (N frequent tokens) both are scored over those N tokens
    only, as drafting scores them: the adapter then learns the target's distribution
    renormalised over its own vocabulary, and a step costs N / V of the full head's
    products. Without one, N = V.
    """
    engine = lm.engine
    head = adapter.head(engine)
    h, mask, h_last = _batch(sequences, generated_only)
    q_logits = engine.logits(adapter(engine, h)[mask], head)  # [M, N]
    with torch.no_grad():
        p_logits = engine.logits(h_last, head)  # [M, N]
    return q_logits, p_logits


@torch.no_grad()
def evaluate(
    adapter: KangarooAdapter, lm: LoadedModel, sequences: list[Sequence], kind: str, batch: int
) -> tuple[float, float]:
    """Held-out loss and expected acceptance, weighted by generated positions.

    The acceptance compares the draft with the full model's distribution over the whole
    vocabulary, so target mass outside a restricted head counts as rejected."""
    loss = acc = 0.0
    total = sum(s.n_gen for s in sequences)
    ids = adapter.head_tokens if adapter.head_tokens.numel() else None
    for i in range(0, len(sequences), batch):
        chunk = sequences[i : i + batch]
        q, p = batch_logits(adapter, lm, chunk)
        loss += float(distill_loss(q, p, kind)) * q.shape[0]
        if ids is not None:
            p = lm.engine.logits(torch.cat([s.h_last[s.n_prompt - 1 :] for s in chunk]))
        acc += expected_acceptance(q, p, ids) * q.shape[0]
    return loss / total, acc / total
