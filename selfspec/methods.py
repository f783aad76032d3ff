"""The registry of decoding methods, by the names the CLI, benchmark and app use."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cache, partial

from selfspec.decoding import Chunk, Method, vanilla
from selfspec.drafters.kangaroo import kangaroo_drafter
from selfspec.drafters.lookup import PromptLookupDrafter
from selfspec.drafters.skip import AdaptiveThreshold, SkipLayerDrafter
from selfspec.errors import BadInputError
from selfspec.hf_methods import hf_generate
from selfspec.llamacpp import llamacpp_available, llamacpp_generate
from selfspec.loading import LoadedModel, load_model
from selfspec.sampling import SamplingConfig
from selfspec.speculative import speculative

__all__ = ["MethodInfo", "METHODS", "get_method", "FAST_METHOD"]


@dataclass(frozen=True)
class MethodInfo:
    name: str
    run: Method
    description: str
    ours: bool  # our engine (True) or a peer (False)
    options: dict = field(default_factory=dict)
    installed: Callable[[], bool] = lambda: True  # optional peers need their package


METHODS: dict[str, MethodInfo] = {
    info.name: info
    for info in [
        MethodInfo("vanilla", vanilla, "plain decoding on our engine", ours=True),
        MethodInfo(
            "skip",
            partial(speculative, drafter=lambda lm: skip_drafter(lm)),
            "self-speculative: draft with the model's skip profile (Draft & Verify)",
            ours=True,
        ),
        MethodInfo(
            "pld",
            partial(speculative, drafter=lambda lm: PromptLookupDrafter()),
            "prompt lookup drafting on our engine",
            ours=True,
        ),
        MethodInfo(
            "kangaroo",
            partial(speculative, drafter=lambda lm: kangaroo_drafter(lm)),
            "Kangaroo: first layers + trained adapter draft, double early exit",
            ours=True,
        ),
        MethodInfo("hf", partial(hf_generate), "Hugging Face generate, plain", ours=False),
        MethodInfo(
            "hf-pld",
            partial(hf_generate, prompt_lookup_num_tokens=8),
            "Hugging Face prompt lookup decoding",
            ours=False,
        ),
        MethodInfo(
            "hf-early-exit",
            partial(hf_generate, assistant_early_exit=4),
            "Hugging Face assistant_early_exit (self-speculative, first 4 layers)",
            ours=False,
        ),
        MethodInfo(
            "hf-assist",
            lambda lm, ids, cfg, **kw: hf_assist(lm, ids, cfg, **kw),
            "Hugging Face assistant_model drafting with our Kangaroo draft (or the draft model "
            "named in $SELFSPEC_HF_ASSISTANT)",
            ours=False,
        ),
        MethodInfo(
            "llamacpp",
            lambda lm, ids, cfg, **kw: llamacpp_generate(lm, ids, cfg, **kw),
            "llama.cpp on the bundled GGUF file (optional: needs llama-cpp-python)",
            ours=False,
            installed=llamacpp_available,
        ),
    ]
}


def hf_assist(
    lm: LoadedModel, prompt_ids: list[int], cfg: SamplingConfig, assistant: str | None = None
) -> Iterator[Chunk]:
    """`generate(assistant_model=...)` with our Kangaroo draft wrapped as a transformers
    model, or with the same-tokenizer draft model the user names."""
    source = assistant or os.environ.get("SELFSPEC_HF_ASSISTANT")
    if source:
        draft = _assistant(source, str(lm.device), str(lm.dtype).removeprefix("torch."))
        return hf_generate(lm, prompt_ids, cfg, assistant_model=draft.hf_model)
    from selfspec.hf_draft import kangaroo_as_hf

    adapter = kangaroo_drafter(lm).adapter
    return hf_generate(lm, prompt_ids, cfg, assistant_model=kangaroo_as_hf(lm, adapter))


@cache
def _assistant(source: str, device: str, dtype: str) -> LoadedModel:
    return load_model(source, device=device, dtype=dtype)


def skip_drafter(lm: LoadedModel, profile: str | None = None, **kwargs) -> SkipLayerDrafter:
    """The skip-layer drafter for this model's active profile."""
    from selfspec.profiles import load_profile

    chosen = load_profile(lm, profile)
    return SkipLayerDrafter(
        chosen.skip, lm.engine.cfg.n_layers, threshold=AdaptiveThreshold(), **kwargs
    )


def get_method(name: str) -> MethodInfo:
    if name not in METHODS:
        raise BadInputError(f"Unknown method '{name}'. Available: {', '.join(METHODS)}.")
    return METHODS[name]


# The method other parts of the product use when they just want text fast (quiz writing
# from a note). Every method here is lossless for greedy decoding, so this only changes
# speed: prompt lookup was the fastest on the benchmark's quiz-writing prompts (1.84x
# vanilla on this CPU, docs/bench/cpu-fp32.json) since questions quote their note.
FAST_METHOD = "pld"
