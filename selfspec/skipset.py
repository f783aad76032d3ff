"""Which sub-layers a skip-layer draft leaves out."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from selfspec.errors import BadInputError

__all__ = ["SkipSet"]


@dataclass(frozen=True)
class SkipSet:
    """Sub-layers to skip: indices of layers whose attention / MLP is left out."""

    attn: frozenset[int] = field(default_factory=frozenset)
    mlp: frozenset[int] = field(default_factory=frozenset)

    @classmethod
    def of(cls, attn: Iterable[int] = (), mlp: Iterable[int] = ()) -> SkipSet:
        return cls(frozenset(int(i) for i in attn), frozenset(int(i) for i in mlp))

    @property
    def size(self) -> int:
        return len(self.attn) + len(self.mlp)

    def check(self, n_layers: int) -> None:
        bad = sorted(i for i in self.attn | self.mlp if not 0 <= i < n_layers)
        if bad:
            raise BadInputError(
                f"Skip set names layers {bad}, but the model has layers 0..{n_layers - 1}. "
                "Use layer indices of this model (or run the layer search for it)."
            )
