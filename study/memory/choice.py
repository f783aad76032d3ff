"""Letting the user's own reviews choose the memory model (the ``auto`` setting).

Why this file: no fixed model is right for every learner. On the shared log the
Ebbinghaus defaults predict worse than FSRS-6's (docs/study.md, "Against the aims"), and
which curve fits a learner better is a fact about their reviews, not about ours. Under
``auto`` each scheduling model is fitted as the scheduler fits it (``fit_validated``,
starting from its defaults), and the one whose kept parameters predict the user's latest
reviews better schedules. Both are scored on the same held-out reviews, and what each
brings to the comparison saw only the earlier ones (its defaults saw none), so the
choice cannot favour the model that overfits. Until enough held-out reviews exist
(``MIN_HELD_OUT``) the default model schedules.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from study.memory import MODEL_LABELS, SCHEDULING_MODELS, CardHistory, get_model
from study.memory.validation import HOLDOUT_FRACTION, MIN_HELD_OUT, FitDecision, fit_validated

__all__ = ["AUTO_MODEL", "DEFAULT_MODEL", "ModelChoice", "choose_model", "held_out_loss"]

AUTO_MODEL = "auto"
"""The memory-model setting that lets the evidence choose (``choose_model``)."""

DEFAULT_MODEL = "ebbinghaus"
"""What schedules before the evidence can choose (and the winner of a tie)."""


@dataclass(frozen=True)
class ModelChoice:
    """The model the evidence chose, every model's fit verdict, and why, in words."""

    name: str
    decisions: dict[str, FitDecision]
    reason: str
    held_out: int
    losses: dict[str, float]
    """Held-out log loss per model; empty when too few reviews could compare them."""

    @property
    def decision(self) -> FitDecision:
        """The chosen model's fit verdict (its parameters schedule the cards)."""
        return self.decisions[self.name]


def held_out_loss(decision: FitDecision) -> float | None:
    """Held-out log loss of the parameters ``decision`` keeps, as fitted before the cutoff.

    An adopted fit is scored by its candidate (fitted on the earlier reviews only; the
    refit on all reviews has seen the held-out ones), a rejected one by the parameters
    kept. None when too few held-out reviews let ``fit_validated`` score anything.
    """
    return decision.loss_fitted if decision.adopted else decision.loss_current


def _kept(decision: FitDecision) -> str:
    return "a fit on your earlier reviews" if decision.adopted else "its defaults"


def choose_model(
    histories: Sequence[CardHistory],
    holdout_fraction: float = HOLDOUT_FRACTION,
    min_held_out: int = MIN_HELD_OUT,
) -> ModelChoice:
    """Fit every scheduling model from its defaults; the lower held-out log loss schedules.

    Every model starts from its defaults, not from parameters an earlier refit fitted
    on all reviews (those have seen today's held-out reviews). A tie keeps the default.
    """
    decisions = {
        name: fit_validated(get_model(name), histories, holdout_fraction, min_held_out)
        for name in SCHEDULING_MODELS
    }
    held_out = decisions[DEFAULT_MODEL].held_out
    scored = {name: held_out_loss(decision) for name, decision in decisions.items()}
    losses = {name: loss for name, loss in scored.items() if loss is not None}
    if len(losses) < len(decisions):
        reason = (
            f"{held_out} of your latest reviews can compare the models; {min_held_out} are "
            f"needed, so {MODEL_LABELS[DEFAULT_MODEL]}, the default, schedules until then"
        )
        return ModelChoice(DEFAULT_MODEL, decisions, reason, held_out, {})
    best = min(losses, key=lambda name: (losses[name], name != DEFAULT_MODEL))
    others = ", ".join(
        f"{MODEL_LABELS[name]} {losses[name]:.4f} with {_kept(decisions[name])}"
        for name in losses
        if name != best
    )
    reason = (
        f"{MODEL_LABELS[best]} predicted your {held_out} latest reviews best (log loss "
        f"{losses[best]:.4f} with {_kept(decisions[best])}, against {others}; each model "
        "fitted only on your earlier reviews)"
    )
    return ModelChoice(best, decisions, reason, held_out, losses)
