"""The registry of decoding methods, by the names the CLI, benchmark and app use."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cache, partial

from selfspec.decoding import Chunk, Method, vanilla
from selfspec.drafters.draft_model import DraftModelDrafter, check_same_tokenizer
from selfspec.drafters.kangaroo import adapter_path, kangaroo_drafter
from selfspec.drafters.lookup import PromptLookupDrafter
from selfspec.drafters.skip import AdaptiveThreshold, SkipLayerDrafter
from selfspec.errors import BadInputError
from selfspec.hf_methods import hf_generate
from selfspec.llamacpp import llamacpp_available, llamacpp_generate
from selfspec.loading import BUNDLED, LoadedModel, load_model
from selfspec.model_packages import MODEL_PACKAGES, installed_models
from selfspec.profiles import load_profile, profile_path
from selfspec.sampling import SamplingConfig
from selfspec.speculative import speculative

__all__ = ["MethodInfo", "METHODS", "get_method", "unavailable", "draft_model", "FAST_METHOD"]


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
        MethodInfo(
            "draft-model",
            partial(speculative, drafter=lambda lm: DraftModelDrafter(draft_model(lm))),
            "speculative decoding with a smaller model of the same family as the draft",
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
            "Hugging Face assistant_model drafting with the target's draft model where it has "
            "one (or $SELFSPEC_DRAFT_MODEL), else with our Kangaroo draft",
            ours=False,
        ),
        MethodInfo(
            "llamacpp",
            lambda lm, ids, cfg, **kw: llamacpp_generate(lm, ids, cfg, **kw),
            "llama.cpp on the model's own GGUF file (optional: needs llama-cpp-python)",
            ours=False,
            installed=llamacpp_available,
        ),
    ]
}


# The smaller model of the same family that drafts for a target (`draft-model`, and the
# assistant of `hf-assist`); $SELFSPEC_DRAFT_MODEL names another for any target.
DRAFT_MODELS = {"qwen2.5-coder-1.5b": "qwen2.5-coder-0.5b"}


def draft_model_name(source: str) -> str | None:
    """The draft model for a target model name, if it has one."""
    return os.environ.get("SELFSPEC_DRAFT_MODEL") or DRAFT_MODELS.get(source)


def draft_model(lm: LoadedModel) -> LoadedModel:
    """The draft model for `lm`, loaded once on the same device and in the same dtype
    setting, and checked to share its tokenizer."""
    name = draft_model_name(lm.source)
    if name is None:
        raise BadInputError(
            f"No draft model for '{lm.source}': draft-model decoding needs a smaller model "
            f"with the same tokenizer (known pairs: {DRAFT_MODELS}); set SELFSPEC_DRAFT_MODEL "
            "to name one."
        )
    draft = _load_cached(name, str(lm.device), lm.dtype_arg)
    check_same_tokenizer(lm, draft)
    return draft


def hf_assist(lm: LoadedModel, prompt_ids: list[int], cfg: SamplingConfig) -> Iterator[Chunk]:
    """`generate(assistant_model=...)` with the target's draft model where it has one, else
    with our Kangaroo draft wrapped as a transformers model."""
    if draft_model_name(lm.source):
        return hf_generate(lm, prompt_ids, cfg, assistant_model=draft_model(lm).hf_model)
    from selfspec.hf_draft import kangaroo_as_hf

    adapter = kangaroo_drafter(lm).adapter
    return hf_generate(lm, prompt_ids, cfg, assistant_model=kangaroo_as_hf(lm, adapter))


@cache
def _load_cached(source: str, device: str, dtype: str) -> LoadedModel:
    return load_model(source, device=device, dtype=dtype)


def skip_drafter(lm: LoadedModel, profile: str | None = None, **kwargs) -> SkipLayerDrafter:
    """The skip-layer drafter for this model's active profile."""
    chosen = load_profile(lm, profile)
    return SkipLayerDrafter(
        chosen.skip, lm.engine.cfg.n_layers, threshold=AdaptiveThreshold(), **kwargs
    )


def unavailable(name: str, source: str) -> str | None:
    """Why method `name` cannot run on model `source` here, or None when it can: a peer
    whose package is missing, a skip profile, adapter, draft model or GGUF file the model
    does not have. Decided from names and files alone, without loading the model."""
    info = get_method(name)
    if not info.installed():
        return "needs llama-cpp-python (`make peers`)"
    draft = draft_model_name(source)
    has_adapter = any(adapter_path(source, user).is_file() for user in (True, False))
    needs = {
        "skip": (
            any(profile_path(source, user).is_file() for user in (True, False)),
            "no skip profile for this model yet (run the layer search in Tune)",
        ),
        "kangaroo": (has_adapter, "no Kangaroo adapter for this model yet (train one in Tune)"),
        "draft-model": (
            draft is not None and (draft not in MODEL_PACKAGES or draft in installed_models()),
            "no smaller model of its family installed to draft with",
        ),
        "hf-assist": (draft is not None or has_adapter, "no draft model or Kangaroo adapter"),
        "llamacpp": (
            source in (BUNDLED, *MODEL_PACKAGES),
            "runs GGUF files only (the bundled and `make models` ones)",
        ),
    }
    ok, why = needs.get(name, (True, None))
    return None if ok else why


def get_method(name: str) -> MethodInfo:
    if name not in METHODS:
        raise BadInputError(f"Unknown method '{name}'. Available: {', '.join(METHODS)}.")
    return METHODS[name]


# The method other parts of the product use when they just want text fast (quiz writing
# from a note). Every method here is lossless for greedy decoding, so this only changes
# speed: prompt lookup was the fastest of ours on the benchmark's quiz-writing prompts
# (docs/benchmark.md), since questions quote their note.
FAST_METHOD = "pld"
