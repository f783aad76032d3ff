"""The registry of decoding methods, by the names the CLI, benchmark and app use."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial

from selfspec.decoding import Method, vanilla
from selfspec.errors import BadInputError
from selfspec.hf_methods import hf_generate

__all__ = ["MethodInfo", "METHODS", "get_method", "FAST_METHOD"]


@dataclass(frozen=True)
class MethodInfo:
    name: str
    run: Method
    description: str
    ours: bool  # our engine (True) or a Hugging Face peer (False)
    options: dict = field(default_factory=dict)


METHODS: dict[str, MethodInfo] = {
    info.name: info
    for info in [
        MethodInfo("vanilla", vanilla, "plain decoding on our engine", ours=True),
        MethodInfo("hf", partial(hf_generate), "Hugging Face generate, plain", ours=False),
    ]
}


def get_method(name: str) -> MethodInfo:
    if name not in METHODS:
        raise BadInputError(f"Unknown method '{name}'. Available: {', '.join(METHODS)}.")
    return METHODS[name]


# The method other parts of the product use when they just want text fast. Every method
# in the registry is lossless for greedy decoding, so this only changes speed.
FAST_METHOD = "vanilla"
