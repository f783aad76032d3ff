"""App configuration from environment variables, read once at start-up.

Everything a host changes (model, data folder, port, hosting mode, password) is an
environment variable so that the same image runs locally, in Docker and on Spaces.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

__all__ = ["AppConfig", "ConfigError", "DEFAULT_ALLOWED_MODELS", "JOB_MODES"]

# Models a hosted instance may load besides the default one: small enough for a 2-vCPU
# Space. A host widens this with SELFSPEC_ALLOWED_MODELS (comma-separated ids).
DEFAULT_ALLOWED_MODELS = (
    "HuggingFaceTB/SmolLM2-135M-Instruct",
    "HuggingFaceTB/SmolLM2-360M-Instruct",
)


JOB_MODES = ("inline", "off")
"""SELFSPEC_JOBS: ``inline`` runs the scheduled jobs in the app process (one process, the
default); ``off`` leaves them to ``python -m study worker`` (several app replicas)."""


class ConfigError(ValueError):
    """A configuration that must not start; the message says which variable to change."""


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


PORT_VARIABLES = ("SELFSPEC_PORT", "GRADIO_SERVER_PORT", "PORT")
"""Where the port may be set, first found wins: ours, Gradio's convention, a host's."""


def _port() -> int:
    for name in PORT_VARIABLES:
        value = os.environ.get(name, "").strip()
        if value:
            if not value.isdigit() or not 0 < int(value) < 65536:
                raise ConfigError(f"{name}={value!r}: a port is a number from 1 to 65535.")
            return int(value)
    return 7860


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
    jobs: str = "inline"
    max_queue: int = 20
    device: str = "auto"
    dtype: str = "auto"
    extra: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.test_user_header and (self.hosted or self.on_spaces):
            raise ConfigError(
                "SELFSPEC_TEST_USER_HEADER is set on a hosted instance (SPACE_ID or "
                "SELFSPEC_HOSTED): it would let anyone pick any user with a request header. "
                "Unset it; it is for local tests only."
            )
        if self.jobs not in JOB_MODES:
            raise ConfigError(
                f"SELFSPEC_JOBS={self.jobs!r}: use 'inline' (jobs in this process) or 'off' "
                "(jobs in `python -m study worker`)"
            )

    @classmethod
    def from_env(cls) -> AppConfig:
        allowed = os.environ.get("SELFSPEC_ALLOWED_MODELS")
        on_spaces = bool(os.environ.get("SPACE_ID"))
        return cls(
            default_model=os.environ.get("SELFSPEC_MODEL", "bundled"),
            host=os.environ.get("SELFSPEC_HOST", "127.0.0.1"),
            port=_port(),
            hosted=_flag("SELFSPEC_HOSTED") or on_spaces,
            on_spaces=on_spaces,
            password=os.environ.get("SELFSPEC_PASSWORD") or None,
            allowed_models=tuple(m.strip() for m in allowed.split(",") if m.strip())
            if allowed
            else DEFAULT_ALLOWED_MODELS,
            test_user_header=_flag("SELFSPEC_TEST_USER_HEADER"),
            jobs=os.environ.get("SELFSPEC_JOBS", "inline").strip().lower(),
            max_queue=int(os.environ.get("SELFSPEC_MAX_QUEUE", "20")),
            device=os.environ.get("SELFSPEC_DEVICE", "auto"),
            dtype=os.environ.get("SELFSPEC_DTYPE", "auto"),
        )
