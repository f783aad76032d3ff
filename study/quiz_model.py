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

The bundled model cuts clozes instead of writing cards (``study.quiz.cut_cloze``): it
misses the card format nearly every time, but its scores still pick good blanks.

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
from typing import TYPE_CHECKING

from selfspec.loading import BUNDLED
from selfspec.methods import FAST_METHOD, unavailable
from selfspec.model_packages import MODEL_PACKAGES, PackageFinder, find_package, installed_models
from study.quiz.generate import Complete

if TYPE_CHECKING:
    from selfspec import Completion, LoadedModel

__all__ = [
    "AUTO",
    "METHOD_RANKING",
    "QUIZ_MAX_NEW_TOKENS",
    "CUTTING_MODELS",
    "ClozeCutter",
    "ModelWriter",
    "QuizWriter",
    "best_quiz_model",
    "bind_writer",
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


CUTTING_MODELS = frozenset({BUNDLED})
"""Models that cut clozes from the note instead of writing cards (too small to follow
the card format: docs/study.md)."""


@dataclass(frozen=True, slots=True)
class QuizWriter:
    """The model and method that write cards; ``notice`` says why it is not the one asked for."""

    model: str
    method: str
    notice: str | None = None

    @property
    def cuts_clozes(self) -> bool:
        return self.model in CUTTING_MODELS

    def describe(self) -> str:
        if self.cuts_clozes:
            return f"{self.model}, cutting clozes from the note: its scores pick the blank"
        return f"{self.model} with `{self.method}`"


@dataclass(frozen=True, slots=True)
class ModelWriter:
    """A loaded model as quiz generation calls it (``study.quiz.generate.Complete``)."""

    lm: LoadedModel
    method: str
    max_new_tokens: int = QUIZ_MAX_NEW_TOKENS

    def __call__(
        self, prompt: str, *, temperature: float = 0.0, seed: int | None = None
    ) -> Completion:
        import selfspec

        return selfspec.complete(
            self.lm,
            prompt,
            method=self.method,
            max_new_tokens=self.max_new_tokens,
            temperature=temperature,
            seed=seed,
        )


@dataclass(frozen=True, slots=True)
class ClozeCutter(ModelWriter):
    """A writer that also scores replies, so generation cuts clozes with it
    (``study.quiz.cut_cloze.Scorer``)."""

    @property
    def model_name(self) -> str:
        return self.lm.name

    def score(self, prompt: str, replies: list[str]) -> list[float]:
        import selfspec

        return selfspec.score_replies(self.lm, prompt, replies)


def bind_writer(lm: LoadedModel, writer: QuizWriter) -> ModelWriter:
    """``writer`` on the loaded model: a cutter for a model of :data:`CUTTING_MODELS`."""
    kind = ClozeCutter if writer.cuts_clozes else ModelWriter
    return kind(lm, writer.method, QUIZ_MAX_NEW_TOKENS)


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
    with _load_lock:
        model = _loaded(writer.model)
    return bind_writer(model, writer)


@functools.cache
def _loaded(source: str):  # noqa: ANN202 - a selfspec.LoadedModel, imported lazily
    import selfspec
    from selfspec.loading import preferred_dtype

    return selfspec.load_model(source, dtype=preferred_dtype(source))
