"""llama.cpp on the same GGUF file: the peer a CPU user would pick instead of us.

Optional: it needs `llama-cpp-python`, which compiles llama.cpp on install (minutes), so it
is not part of the requirements; `make peers` builds the pinned version from source. It
runs the model's own GGUF file as it is (quantized weights, activations quantized for the
dot products), so its text can differ
from our float32 decoding now and then; the benchmark's lossless column shows where.
Tokens are fed as ids, so both sides decode exactly the same prompt.
"""

from __future__ import annotations

import atexit
from collections.abc import Iterator
from functools import cache

import torch

from selfspec.decoding import Chunk, Origin
from selfspec.errors import BadInputError
from selfspec.loading import BUNDLED_FILE, LoadedModel, bundled_folder
from selfspec.sampling import SamplingConfig

__all__ = ["llamacpp_generate", "llamacpp_available", "llamacpp_environment"]

CONTEXT = 4096


def llamacpp_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("llama_cpp") is not None


def llamacpp_generate(
    lm: LoadedModel, prompt_ids: list[int], cfg: SamplingConfig
) -> Iterator[Chunk]:
    """Decode with llama.cpp, one token per chunk, with our sampling settings."""
    if lm.gguf_path is None:
        raise BadInputError(
            f"The llamacpp method runs a model's GGUF file; '{lm.source}' has none. Use "
            "--model bundled or an installed GGUF model (`make models`)."
        )
    if not llamacpp_available():
        raise BadInputError(
            "The llamacpp method needs llama-cpp-python: `make peers` builds the pinned "
            "version from source (it compiles llama.cpp, which takes several minutes)."
        )
    llm = _llama(str(lm.gguf_path), torch.get_num_threads())
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


def llamacpp_environment() -> dict | None:
    """llama.cpp's version, the threads the llamacpp method decodes and reads prompts with
    (read back from its Llama object) and the CPU features it was built for, for the bench
    report; None when llama-cpp-python is not installed."""
    if not llamacpp_available():
        return None
    import llama_cpp

    llm = _llama(str(bundled_folder() / BUNDLED_FILE), torch.get_num_threads())
    return {
        "version": llama_cpp.__version__,
        "threads": llm.n_threads,
        "threads_batch": llm.n_threads_batch,
        "system_info": llama_cpp.llama_print_system_info().decode().strip(),
    }


@cache
def _llama(path: str, threads: int):
    """One Llama per thread count. The prompt is read with the same threads as decoding
    (llama-cpp-python would otherwise take every core for it), so `--threads` binds both.
    Freed at exit while llama_cpp is still loaded: left to interpreter shutdown, its
    destructor can run after llama_cpp's globals are gone and print a TypeError (seen at
    the end of a long test run)."""
    from llama_cpp import Llama

    llm = Llama(
        model_path=path, n_ctx=CONTEXT, n_threads=threads, n_threads_batch=threads, verbose=False
    )
    atexit.register(llm.close)
    return llm
