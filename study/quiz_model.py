"""Which model writes the quiz cards, with which decoding method, and loading it once.

The app's Generate questions, the prepare-questions job and ``python -m study
quiz-eval`` must agree on the writer, so the choice is made here. A card is only as good
as the model that wrote it (the bundled 135M model mostly misses the format,
docs/study.md), so by default the writer is the largest installed instruction model of
the offline packages (`make models`), and the bundled model only where none is
installed. A base model (Gemma-3-270M) only continues text and does not follow the
card format, so it is never the default. A model the operator named for the app
(``$SELFSPEC_MODEL``, anything but the bundled one) is their choice and is the default
instead; that is also how the tests keep the writer a tiny model.

The method is the first of :data:`METHOD_RANKING` that applies to the model
(``selfspec.methods.unavailable``). Every method of ours is exact, so the method only
changes speed; the ranking is the measured one on the benchmark's quiz prompts
(docs/benchmark.md: prompt lookup is the fastest of ours on the bundled model and on
Qwen2.5-Coder-1.5B, ahead of draft-model with the 0.5B drafting).
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass

from selfspec.loading import BUNDLED
from selfspec.methods import FAST_METHOD, unavailable
from selfspec.model_packages import MODEL_PACKAGES, PackageFinder, find_package, installed_models
from study.quiz.generate import Complete

__all__ = [
    "AUTO",
    "METHOD_RANKING",
    "QUIZ_MAX_NEW_TOKENS",
    "QuizWriter",
    "best_quiz_model",
    "fastest_exact_method",
    "load_writer",
    "operator_model",
    "quiz_model_choices",
    "writer_for",
    "writer_for_setting",
]

AUTO = "auto"
"""The setting that means "the best installed model" (stored as NULL or this word)."""

METHOD_RANKING: tuple[str, ...] = (FAST_METHOD, "draft-model", "vanilla")
"""Exact methods of ours, fastest first on quiz-writing prompts (docs/benchmark.md)."""

QUIZ_MAX_NEW_TOKENS = 160
"""Enough for a multiple-choice card with four options; a card that runs longer is chatter."""


@dataclass(frozen=True, slots=True)
class QuizWriter:
    """The model and method that write cards; ``notice`` says why it is not the one asked for."""

    model: str
    method: str
    notice: str | None = None

    def describe(self) -> str:
        return f"{self.model} with `{self.method}`"


def best_quiz_model(default_model: str = BUNDLED, find: PackageFinder = find_package) -> str:
    """The operator's model if they named one, else the largest installed instruction
    model package, else the bundled model."""
    if default_model != BUNDLED:
        return default_model
    instruct = [MODEL_PACKAGES[n] for n in installed_models(find) if MODEL_PACKAGES[n].instruct]
    return max(instruct, key=lambda m: m.size).name if instruct else BUNDLED


def quiz_model_choices(find: PackageFinder = find_package) -> list[str]:
    """The models a user may pick as their writer: the bundled one and the installed packages."""
    return [BUNDLED, *installed_models(find)]


def fastest_exact_method(source: str, ranking: Sequence[str] = METHOD_RANKING) -> str:
    """The first method of ``ranking`` that applies to ``source`` (``vanilla`` always does)."""
    return next((name for name in ranking if unavailable(name, source) is None), "vanilla")


def writer_for(model: str) -> QuizWriter:
    """``model`` with its fastest exact method (a model named outright, as on the CLI)."""
    return QuizWriter(model, fastest_exact_method(model))


def operator_model() -> str:
    """The model the operator named for this process (``$SELFSPEC_MODEL``; the bundled
    one when unset), as the app's configuration reads it."""
    return os.environ.get("SELFSPEC_MODEL", BUNDLED)


def writer_for_setting(
    setting: str | None, default_model: str = BUNDLED, find: PackageFinder = find_package
) -> QuizWriter:
    """The writer for a user's setting: ``None``/``auto`` is the best installed model; a
    model that is no longer installed falls back to it, with a notice saying so."""
    best = best_quiz_model(default_model, find)
    if setting in (None, "", AUTO) or setting == best:
        return writer_for(best)
    if setting in quiz_model_choices(find):
        return writer_for(setting)
    notice = f"Your quiz model '{setting}' is not installed here; {best} writes the cards."
    return QuizWriter(best, fastest_exact_method(best), notice)


_load_lock = threading.Lock()


def load_writer(writer: QuizWriter) -> Complete:
    """The writer as a completion callable, its model loaded once per process and name.

    For processes without the app's model pool (the worker, ``jobs run-now``,
    ``quiz-eval``); the app binds its own pooled model instead. A lock, because jobs of
    many users start together and transformers' lazy imports are not safe to race.
    """
    import selfspec

    with _load_lock:
        model = _loaded(writer.model)
    return functools.partial(
        selfspec.complete, model, method=writer.method, max_new_tokens=QUIZ_MAX_NEW_TOKENS
    )


@functools.cache
def _loaded(source: str):  # noqa: ANN202 - a selfspec.LoadedModel, imported lazily
    import selfspec
    from selfspec.loading import preferred_dtype

    return selfspec.load_model(source, dtype=preferred_dtype(source))
