"""Models shared by every session: loaded lazily, once per process, behind a lock.

Loading the bundled model takes seconds and hundreds of MB, so sessions share one copy.
Besides the default model at most one other is kept, so a hosted instance cannot be made
to hold many models at once.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

from selfspec import LoadedModel, SelfSpecError, load_model
from selfspec.loading import BUNDLED, TINY_MODELS, hub_reachable, preferred_dtype
from selfspec.model_packages import MODEL_PACKAGES, installed_models
from ui.config import AppConfig

__all__ = ["ModelChoice", "ModelPool", "model_label"]


@dataclass(frozen=True)
class ModelChoice:
    """The model a request gets, and a message when it is not the one asked for."""

    model: LoadedModel
    notice: str | None = None


class ModelPool:
    """The process-wide model cache with the app's rules for which ids may be loaded."""

    def __init__(self, config: AppConfig) -> None:
        self.config = config
        self._lock = threading.Lock()
        self._models: dict[str, LoadedModel] = {}
        self._preload: threading.Thread | None = None
        self.preload_error: str | None = None

    def preload(self) -> None:
        """Load the default model in a background thread, once, so that the first visitor
        does not pay for it; ``/healthz`` says when it is ready (or why it failed)."""
        if self._preload is not None:
            return

        def work() -> None:
            try:
                self.default()
            except Exception as exc:  # noqa: BLE001 - reported by /healthz, raised on use
                self.preload_error = str(exc)

        self._preload = threading.Thread(target=work, daemon=True, name="model-preload")
        self._preload.start()

    @property
    def default_loaded(self) -> bool:
        return self.config.default_model in self._models

    def choices(self) -> list[tuple[str, str]]:
        """(label, model id) pairs offered in the dropdown (others may be typed where
        allowed): the default, the bundled model, and the installed model packages, each
        labelled with its licence where it has one of its own."""
        names = [self.config.default_model]
        if self.config.hosted:
            names += list(self.config.allowed_models)
        else:
            names += [BUNDLED, *installed_models()]
        return [(model_label(name), name) for name in dict.fromkeys(names)]

    def default(self) -> LoadedModel:
        return self._load(self.config.default_model)

    def get(self, source: str | None) -> ModelChoice:
        """The model for ``source``, or the default with a message saying why not."""
        source = (source or "").strip() or self.config.default_model
        if source == self.config.default_model:
            return ModelChoice(self.default())
        refusal = self._refusal(source)
        if refusal:
            return ModelChoice(self.default(), f"{refusal} Using {self.config.default_model}.")
        try:
            return ModelChoice(self._load(source))
        except SelfSpecError as exc:
            return ModelChoice(self.default(), f"{exc} Using {self.config.default_model}.")

    def _refusal(self, source: str) -> str | None:
        if self.config.hosted and source not in self.config.allowed_models:
            return f"'{source}' is not on this server's list of allowed models."
        if source in (BUNDLED, *TINY_MODELS, *MODEL_PACKAGES) or Path(source).expanduser().is_dir():
            return None
        if "/" not in source:
            return f"'{source}' is not a known model name or a Hugging Face id (owner/name)."
        if not hub_reachable():
            return f"The Hugging Face hub is not reachable, so '{source}' cannot be downloaded."
        return None

    def _load(self, source: str) -> LoadedModel:
        with self._lock:
            if source not in self._models:
                keep = {k: v for k, v in self._models.items() if k == self.config.default_model}
                dtype = preferred_dtype(source, self.config.dtype, self.config.device)
                keep[source] = load_model(source, self.config.device, dtype)
                self._models = keep
            return self._models[source]


def model_label(name: str) -> str:
    """A model name as the dropdowns show it: with its licence where it has one of its own."""
    package = MODEL_PACKAGES.get(name)
    return f"{name} ({package.licence})" if package else name
