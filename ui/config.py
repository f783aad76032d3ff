"""App configuration from environment variables, read once at start-up.

Everything a host changes (model, data folder, port, hosting mode, password) is an
environment variable so that the same image runs locally, in Docker and on Spaces.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

__all__ = ["AppConfig", "DEFAULT_ALLOWED_MODELS"]

# Models a hosted instance may load besides the default one: small enough for a 2-vCPU
# Space. A host widens this with SELFSPEC_ALLOWED_MODELS (comma-separated ids).
DEFAULT_ALLOWED_MODELS = (
    "HuggingFaceTB/SmolLM2-135M-Instruct",
    "HuggingFaceTB/SmolLM2-360M-Instruct",
)


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


@dataclass(frozen=True)
class AppConfig:
    """How this process serves the app."""

    default_model: str = "bundled"
    host: str = "127.0.0.1"
    port: int = 7860
    hosted: bool = False  # restrict model ids to the allow-list
    on_spaces: bool = False  # Hugging Face login scopes the data
    password: str | None = None
    allowed_models: tuple[str, ...] = DEFAULT_ALLOWED_MODELS
    test_user_header: bool = False  # tests simulate signed-in users with a header
    max_queue: int = 20
    device: str = "auto"
    dtype: str = "auto"
    extra: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_env(cls) -> AppConfig:
        allowed = os.environ.get("SELFSPEC_ALLOWED_MODELS")
        on_spaces = bool(os.environ.get("SPACE_ID"))
        return cls(
            default_model=os.environ.get("SELFSPEC_MODEL", "bundled"),
            host=os.environ.get("SELFSPEC_HOST", "127.0.0.1"),
            port=int(os.environ.get("SELFSPEC_PORT", os.environ.get("PORT", "7860"))),
            hosted=_flag("SELFSPEC_HOSTED") or on_spaces,
            on_spaces=on_spaces,
            password=os.environ.get("SELFSPEC_PASSWORD") or None,
            allowed_models=tuple(m.strip() for m in allowed.split(",") if m.strip())
            if allowed
            else DEFAULT_ALLOWED_MODELS,
            test_user_header=_flag("SELFSPEC_TEST_USER_HEADER"),
            max_queue=int(os.environ.get("SELFSPEC_MAX_QUEUE", "20")),
            device=os.environ.get("SELFSPEC_DEVICE", "auto"),
            dtype=os.environ.get("SELFSPEC_DTYPE", "auto"),
        )
