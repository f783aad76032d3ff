"""A model wrapper that remembers every call of a generation run, for its record.

Why: a run's speed is a measured fact that belongs with the run (which model, which
method, how many tokens a second), both in the ``QuizRun`` row the app and the
prepare-questions job store and in ``quiz-eval``'s report. Generation itself only sees
``complete``; wrapping it keeps the loop unaware of the bookkeeping. A writer that cuts
clozes (``study.quiz.cut_cloze.Scorer``) stays one through the wrapper, and the run
records its model with the method ``cut cloze`` (it decodes no text).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from study.quiz.cut_cloze import Scorer
from study.quiz.generate import CUT_METHOD, Complete, Completion

__all__ = ["CallRecorder", "CuttingRecorder", "record_calls"]


def record_calls(complete: Complete) -> CallRecorder:
    """A recorder around ``complete`` that is a :class:`Scorer` when ``complete`` is one."""
    return CuttingRecorder(complete) if isinstance(complete, Scorer) else CallRecorder(complete)


@dataclass(slots=True)
class CallRecorder:
    """Wraps ``complete`` and keeps what each call returned (card writing and meaning
    checks alike: both are the writer's time)."""

    complete: Complete
    calls: list[Completion] = field(default_factory=list)

    def __call__(
        self, prompt: str, *, temperature: float = 0.0, seed: int | None = None
    ) -> Completion:
        completion = self.complete(prompt, temperature=temperature, seed=seed)
        self.calls.append(completion)
        return completion

    def model(self) -> str | None:
        return str(self.calls[-1].model) if self.calls else None

    def method(self) -> str | None:
        return str(self.calls[-1].method) if self.calls else None

    def tokens_per_s(self) -> float | None:
        """The mean decoding speed of the calls (each call's own tokens/s), or None."""
        rates = [float(c.tokens_per_s) for c in self.calls if c.tokens_per_s is not None]
        return sum(rates) / len(rates) if rates else None

    def outputs(self, limit: int) -> list[str]:
        """Each call's text, cut to ``limit`` characters."""
        return [str(c.text)[:limit] for c in self.calls]


@dataclass(slots=True)
class CuttingRecorder(CallRecorder):
    """A recorder around a writer that cuts clozes: scoring passes through unrecorded."""

    @property
    def model_name(self) -> str:
        return self.complete.model_name

    def score(self, prompt: str, replies: list[str]) -> list[float]:
        return self.complete.score(prompt, replies)

    def model(self) -> str | None:
        return self.model_name

    def method(self) -> str | None:
        return CUT_METHOD  # generation never calls a cutter's completion
