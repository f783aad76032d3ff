"""Skip-layer profiles: which sub-layers a model's draft skips, found by the layer search.

A profile is a small JSON file per model. The search writes it to the user's data folder;
a profile for the bundled model ships with the package. `skip` decoding, the benchmark and
the app load the active profile for their model by default.

The active profile is the file at `profile_path(lm)`; the others in the folder are kept
for a user to choose. Making one active (`use_profile`, `restore_shipped_profile`,
`install_if_better`) never loses a file: the one replaced is kept under a versioned name.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from selfspec.errors import BadInputError
from selfspec.loading import LoadedModel
from selfspec.model import SkipSet

__all__ = [
    "Activated",
    "Installed",
    "SkipProfile",
    "install_if_better",
    "keep_versioned",
    "load_profile",
    "model_key",
    "new_profile_path",
    "profile_files",
    "profile_path",
    "restore_shipped_profile",
    "save_profile",
    "stamp",
    "use_profile",
    "user_profile_dir",
]

SHIPPED = Path(__file__).parent / "data" / "profiles"


@dataclass
class SkipProfile:
    model: str  # model key (see model_key)
    n_layers: int
    attn: list[int]
    mlp: list[int]
    objective: str = "manual"
    trials: int = 0
    score: float | None = None
    baseline: float | None = None  # the same objective for plain decoding (no skip)
    beats_plain: bool | None = None
    note: str = ""
    created: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))

    @property
    def skip(self) -> SkipSet:
        return SkipSet.of(self.attn, self.mlp)


def model_key(lm: LoadedModel | str) -> str:
    """A file-name-safe key for a model (or a model source name)."""
    source = lm if isinstance(lm, str) else lm.source
    return re.sub(r"[^A-Za-z0-9_.-]+", "--", source).strip("-") or "model"


def user_profile_dir() -> Path:
    """Where searches save profiles (`SELFSPEC_DATA_DIR/profiles`), read at call time."""
    return Path(os.environ.get("SELFSPEC_DATA_DIR", "data")) / "profiles"


def profile_path(lm: LoadedModel | str, user: bool = True) -> Path:
    return (user_profile_dir() if user else SHIPPED) / f"{model_key(lm)}.skip.json"


def load_profile(lm: LoadedModel, path: str | Path | None = None) -> SkipProfile:
    """The given profile, else the user's own for this model, else the shipped one."""
    candidates = [Path(path)] if path else [profile_path(lm), profile_path(lm, user=False)]
    for p in candidates:
        if p.is_file():
            try:
                profile = SkipProfile(**json.loads(p.read_text()))
            except (ValueError, TypeError) as exc:
                raise BadInputError(f"The skip profile {p} is malformed: {exc}") from exc
            if profile.model != model_key(lm) or profile.n_layers != lm.engine.cfg.n_layers:
                raise BadInputError(
                    f"The skip profile {p} was made for '{profile.model}' "
                    f"({profile.n_layers} layers), not for '{model_key(lm)}' "
                    f"({lm.engine.cfg.n_layers} layers). Run `python -m selfspec search "
                    f"--model {lm.source}` to make one for this model."
                )
            profile.skip.check(lm.engine.cfg.n_layers)
            return profile
        if path:
            raise BadInputError(f"No skip profile at {p}.")
    raise BadInputError(
        f"No skip profile for '{model_key(lm)}'. Run `python -m selfspec search --model "
        f"{lm.source}` to find the layers to skip."
    )


def save_profile(profile: SkipProfile, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(profile), indent=2))
    tmp.replace(path)
    return path


def stamp() -> str:
    """A file-name-safe UTC time, so that every search or training writes a new file."""
    return datetime.now(UTC).strftime("%Y%m%d-%H%M%S")


def new_profile_path(lm: LoadedModel) -> Path:
    """A fresh file in the profiles folder for a search's result (not yet active)."""
    return user_profile_dir() / f"{model_key(lm)}.{stamp()}.skip.json"


def keep_versioned(active: Path, suffix: str) -> Path | None:
    """Copy the file at `active` (named `...{suffix}`) to a versioned name beside it before
    it is replaced; None when there is none."""
    if not active.is_file():
        return None
    kept = active.with_name(active.name.removesuffix(suffix) + f".{stamp()}.replaced{suffix}")
    shutil.copyfile(active, kept)
    return kept


@dataclass(frozen=True)
class Activated:
    """What making a file active did."""

    changed: bool  # False: it was the active file already
    kept: Path | None = None  # where the file it replaced is kept (None: there was none)


def profile_files() -> list[Path]:
    """Every profile in the user's folder, by name."""
    folder = user_profile_dir()
    return sorted(folder.glob("*.skip.json")) if folder.is_dir() else []


def use_profile(lm: LoadedModel, name: str) -> Activated:
    """Make the profile file `name` of the profiles folder the active one for `lm`. The
    file must be made for this model (`load_profile` checks it, raising `BadInputError`)."""
    chosen = user_profile_dir() / Path(name).name  # a name in the folder, never a path
    load_profile(lm, chosen)
    active = profile_path(lm)
    if chosen.resolve() == active.resolve():
        return Activated(False)
    data = chosen.read_bytes()
    kept = keep_versioned(active, ".skip.json")
    active.write_bytes(data)
    return Activated(True, kept)


def restore_shipped_profile(lm: LoadedModel) -> Activated:
    """Make the package's profile active again by removing the user's (kept under a
    versioned name). `BadInputError` when none ships for `lm`."""
    if not profile_path(lm, user=False).is_file():
        raise BadInputError(f"No profile ships with the package for {lm.name}.")
    active = profile_path(lm)
    kept = keep_versioned(active, ".skip.json")
    active.unlink(missing_ok=True)
    return Activated(True, kept)


@dataclass(frozen=True)
class Installed:
    """What `install_if_better` did: whether the candidate is now active, and why."""

    installed: bool
    new: SkipProfile
    old: SkipProfile | None  # the active profile before (None: there was none)
    comparable: bool  # both scored on the same objective


def install_if_better(lm: LoadedModel, candidate: Path) -> Installed:
    """Make a searched profile active only if it scores higher than the active one on the
    same objective (or there is none); otherwise leave it in the folder."""
    new = load_profile(lm, candidate)
    try:
        old = load_profile(lm)
    except BadInputError:
        old = None
    comparable = (
        old is not None
        and old.objective == new.objective
        and old.score is not None
        and new.score is not None
    )
    better = old is None or (comparable and new.score > old.score)
    if better:
        keep_versioned(profile_path(lm), ".skip.json")
        profile_path(lm).write_bytes(candidate.read_bytes())
    return Installed(better, new, old, comparable)
