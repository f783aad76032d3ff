"""llama.cpp on the same GGUF file: the peer a CPU user would pick instead of us.

Optional: it needs `llama-cpp-python`, which compiles llama.cpp on install (minutes), so it
is not part of the pinned requirements. It runs the bundled model's GGUF file as it is
(4-bit Q4_1 weights, activations quantized for the dot products), so its text can differ
from our float32 decoding now and then; the benchmark's lossless column shows where.
Tokens are fed as ids, so both sides decode exactly the same prompt.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import cache

import torch

from selfspec.decoding import Chunk, Origin
from selfspec.errors import BadInputError
from selfspec.loading import BUNDLED, BUNDLED_FILE, LoadedModel, bundled_folder
from selfspec.sampling import SamplingConfig

__all__ = ["llamacpp_generate", "llamacpp_available"]

CONTEXT = 4096


def llamacpp_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("llama_cpp") is not None


def llamacpp_generate(
    lm: LoadedModel, prompt_ids: list[int], cfg: SamplingConfig
) -> Iterator[Chunk]:
    """Decode with llama.cpp, one token per chunk, with our sampling settings."""
    if lm.source != BUNDLED:
        raise BadInputError(
            f"The llamacpp method runs the bundled GGUF file; '{lm.source}' has none. Use "
            "--model bundled."
        )
    if not llamacpp_available():
        raise BadInputError(
            "The llamacpp method needs llama-cpp-python: `.venv/bin/pip install "
            "llama-cpp-python` (it compiles llama.cpp, which takes several minutes)."
        )
    llm = _llama(str(bundled_folder() / BUNDLED_FILE), torch.get_num_threads())
    llm.reset()
    if cfg.seed is not None:
        llm.set_seed(cfg.seed)
    sampling = (
        dict(temp=0.0, top_k=1)
        if cfg.greedy
        else dict(temp=cfg.temperature, top_k=cfg.top_k or 0, top_p=cfg.top_p or 1.0)
    )
    for token in llm.generate(prompt_ids, **sampling, min_p=0.0, repeat_penalty=1.0, reset=True):
        yield Chunk([int(token)], [Origin.TARGET])


@cache
def _llama(path: str, threads: int):
    from llama_cpp import Llama

    return Llama(model_path=path, n_ctx=CONTEXT, n_threads=threads, verbose=False)
