"""Skip-layer profiles: which sub-layers a model's draft skips, found by the layer search.

A profile is a small JSON file per model. The search writes it to the user's data folder;
a profile for the bundled model ships with the package. `skip` decoding, the benchmark and
the app load the active profile for their model by default.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from selfspec.errors import BadInputError
from selfspec.loading import LoadedModel
from selfspec.model import SkipSet

__all__ = [
    "SkipProfile",
    "profile_path",
    "load_profile",
    "save_profile",
    "model_key",
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
