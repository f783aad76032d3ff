"""Where selfspec keeps what it derives on this machine: converted models, built kernels."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["cache_root"]


def cache_root() -> Path:
    """``SELFSPEC_CACHE_DIR`` if set, else ``~/.cache/selfspec``."""
    return Path(os.environ.get("SELFSPEC_CACHE_DIR") or Path.home() / ".cache" / "selfspec")
