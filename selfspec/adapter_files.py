"""Which Kangaroo adapter is active, and switching it without losing a file.

The `kangaroo` method loads the adapter at `adapter_path(lm)` (the user's data folder),
else the one shipped with the package. Trainings write new, time-stamped files beside
it; making one active copies it (weights and settings) to the active name, and the
adapter it replaces is kept under a versioned name, as profiles are (`selfspec.profiles`).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from selfspec.adapter import load_adapter, settings_path
from selfspec.drafters.kangaroo import adapter_path
from selfspec.errors import BadInputError, SelfSpecError
from selfspec.loading import LoadedModel
from selfspec.profiles import Activated, model_key, stamp

__all__ = [
    "AdapterInstalled",
    "acceptance",
    "adapter_files",
    "discard_adapter",
    "install_adapter_if_better",
    "new_adapter_path",
    "restore_shipped_adapter",
    "use_adapter",
]


def new_adapter_path(lm: LoadedModel) -> Path:
    """A fresh file beside the active adapter for a training's result (not yet active)."""
    return adapter_path(lm).with_name(f"{model_key(lm)}.kangaroo.{stamp()}.safetensors")


def adapter_files(lm: LoadedModel) -> list[Path]:
    """Every adapter file in the user's adapters folder, by name."""
    folder = adapter_path(lm).parent
    return sorted(folder.glob("*.kangaroo*.safetensors")) if folder.is_dir() else []


def acceptance(lm: LoadedModel, path: Path) -> float | None:
    """The held-out expected acceptance recorded with an adapter; None if it is not an
    adapter for this model."""
    try:
        return load_adapter(lm, path).settings.expected_acceptance
    except SelfSpecError:
        return None


def _copy(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    shutil.copyfile(settings_path(source), settings_path(target))


def _keep_active(lm: LoadedModel) -> Path | None:
    active = adapter_path(lm)
    if not active.is_file():
        return None
    kept = active.with_name(f"{model_key(lm)}.kangaroo.{stamp()}.replaced.safetensors")
    _copy(active, kept)
    return kept


def use_adapter(lm: LoadedModel, name: str) -> Activated:
    """Make the adapter file `name` of the adapters folder the one `kangaroo` loads;
    `BadInputError` unless it is an adapter for this model."""
    active = adapter_path(lm)
    chosen = active.with_name(Path(name).name)  # a name in the folder, never a path
    if acceptance(lm, chosen) is None:
        raise BadInputError(f"`{name}` is not a Kangaroo adapter for {lm.name}.")
    if chosen.resolve() == active.resolve():
        return Activated(False)
    kept = _keep_active(lm)
    _copy(chosen, active)
    return Activated(True, kept)


def restore_shipped_adapter(lm: LoadedModel) -> Activated:
    """Make the package's adapter active again by removing the user's (kept under a
    versioned name). `BadInputError` when none ships for `lm`."""
    if not adapter_path(lm, user=False).is_file():
        raise BadInputError(f"No adapter ships with the package for {lm.name}.")
    kept = _keep_active(lm)
    active = adapter_path(lm)
    active.unlink(missing_ok=True)
    settings_path(active).unlink(missing_ok=True)
    return Activated(True, kept)


@dataclass(frozen=True)
class AdapterInstalled:
    """What `install_adapter_if_better` did, with the two acceptances it compared."""

    installed: bool
    new: float | None
    old: float | None  # the active adapter's (the user's, else the shipped); None: none


def install_adapter_if_better(lm: LoadedModel, candidate: Path) -> AdapterInstalled:
    """Make a trained adapter active only if its held-out expected acceptance beats the
    active one's; otherwise leave it in the folder."""
    active = next(
        (p for p in (adapter_path(lm), adapter_path(lm, user=False)) if p.is_file()), None
    )
    old = None if active is None else acceptance(lm, active)
    new = acceptance(lm, candidate)
    better = new is not None and (old is None or new > old)
    if better:
        use_adapter(lm, candidate.name)
    return AdapterInstalled(better, new, old)


def discard_adapter(path: Path) -> None:
    """Remove a cancelled training's files (weights, settings, checkpoint)."""
    for file in (path, settings_path(path), path.with_name(path.stem + ".ckpt.pt")):
        file.unlink(missing_ok=True)
