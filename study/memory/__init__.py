"""Memory models behind one interface: Ebbinghaus (default), FSRS-6, and two baselines.

``get_model(name, params)`` builds a model by the name stored in a user's settings.
"""

from __future__ import annotations

from collections.abc import Sequence

from study.memory.base import (
    CardHistory,
    MemoryModel,
    MemoryState,
    Rating,
    ReviewEvent,
    elapsed_days,
    require_utc,
)
from study.memory.baselines import HLRModel, SM2Model
from study.memory.ebbinghaus import EbbinghausModel
from study.memory.fsrs6 import FSRS6Model

__all__ = [
    "MODELS",
    "MODEL_LABELS",
    "SCHEDULING_MODELS",
    "CardHistory",
    "EbbinghausModel",
    "FSRS6Model",
    "HLRModel",
    "MemoryModel",
    "MemoryState",
    "Rating",
    "ReviewEvent",
    "SM2Model",
    "elapsed_days",
    "get_model",
    "require_utc",
]

MODELS: dict[str, type[MemoryModel]] = {
    model.name: model for model in (EbbinghausModel, FSRS6Model, SM2Model, HLRModel)
}
SCHEDULING_MODELS = ("ebbinghaus", "fsrs6")
"""Models a user may schedule with; the baselines exist only for comparison."""

MODEL_LABELS = {"ebbinghaus": "Ebbinghaus", "fsrs6": "FSRS-6"}
"""How the scheduling models are named to the user (Review, Settings, fit verdicts)."""


def get_model(name: str, params: Sequence[float] | None = None) -> MemoryModel:
    """The model called ``name`` with ``params`` (its defaults when None)."""
    try:
        model_type = MODELS[name]
    except KeyError:
        raise ValueError(f"unknown memory model {name!r}: choose one of {sorted(MODELS)}") from None
    return model_type(params)
