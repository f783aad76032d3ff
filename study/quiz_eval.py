"""``python -m study quiz-eval``: generate for each note of a folder and report the yield.

Why a command of its own: whether quizzes are worth reviewing is a measured claim. It
runs the same ``generate_cards`` as the app on notes the project has not seen, and
writes every stored card next to every rejection reason, so a reader can judge the
cards and anyone can rerun it on their own notes. Nothing is written to a database.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from study.markdown_import import NoteDraft, import_folder
from study.quiz.generate import Complete, Rejection, generate_cards
from study.quiz.recorder import record_calls

__all__ = ["NoteYield", "QuizEval", "quiz_eval"]

_DETAIL = re.compile(r"\(.*?\)|'.*?'|\d+(?:\.\d+)?")


@dataclass(frozen=True)
class NoteYield:
    """One note's run: the cards stored, the reasons for each rejection, calls and time."""

    title: str
    cards: list[dict[str, Any]]
    rejections: list[Rejection]
    model_calls: int
    seconds: float


@dataclass(frozen=True)
class QuizEval:
    """The whole report: per note, and the totals a target is judged on."""

    notes: list[NoteYield]
    model: str
    settings: dict[str, Any]
    method: str | None = None
    tokens_per_s: float | None = None
    """The mean decoding speed of every model call (cards and meaning checks)."""

    def as_dict(self) -> dict[str, Any]:
        cards = sum(len(n.cards) for n in self.notes)
        seconds = sum(n.seconds for n in self.notes)
        # Grouped by the reason with its particulars (quoted text, numbers) left out.
        reasons = Counter(_DETAIL.sub("…", r.reason) for n in self.notes for r in n.rejections)
        return {
            "model": self.model,
            "method": self.method,
            "tokens_per_s": round(self.tokens_per_s, 2) if self.tokens_per_s else None,
            "settings": self.settings,
            "notes": len(self.notes),
            "cards": cards,
            "notes_with_2_or_more_cards": sum(len(n.cards) >= 2 for n in self.notes),
            "share_of_notes_with_2_or_more_cards": (
                round(sum(len(n.cards) >= 2 for n in self.notes) / len(self.notes), 3)
                if self.notes
                else 0.0
            ),
            "seconds": round(seconds, 1),
            "seconds_per_card": round(seconds / cards, 1) if cards else None,
            "model_calls": sum(n.model_calls for n in self.notes),
            "rejection_reasons": dict(reasons.most_common()),
            "per_note": [
                {
                    "title": n.title,
                    "cards": n.cards,
                    "model_calls": n.model_calls,
                    "seconds": round(n.seconds, 1),
                    "rejections": [str(r) for r in n.rejections],
                }
                for n in self.notes
            ],
            "judge": "for each card: correct? grounded in the note? unambiguous to a reader?",
        }


def quiz_eval(
    notes: Sequence[NoteDraft] | Path,
    complete: Complete,
    *,
    max_attempts: int = 3,
    check_meaning: bool = True,
    progress: Callable[[str], None] | None = None,
) -> QuizEval:
    """Generate cards for every note (a folder is imported first) and collect the yield.

    ``check_meaning`` asks the same model each card's question over its excerpt, as the
    app does; its calls are not counted in ``model_calls`` but are in the time and the
    speed. The report names the model and method that answered and their mean speed.
    """
    drafts = import_folder(notes) if isinstance(notes, Path) else list(notes)
    results: list[NoteYield] = []
    recorder = record_calls(complete)
    for draft in drafts:
        started = time.perf_counter()
        outcome = generate_cards(
            draft, recorder, max_attempts=max_attempts, reader=recorder if check_meaning else None
        )
        seconds = time.perf_counter() - started
        results.append(
            NoteYield(
                title=draft.title,
                cards=[
                    {
                        "kind": g.card.kind.value,
                        "question": g.card.question,
                        "answer": g.card.answer,
                        "choices": list(g.card.choices),
                        "attempt": g.attempt,
                        "method": g.method,
                        "tokens_per_s": g.tokens_per_s,
                    }
                    for g in outcome.cards
                ],
                rejections=outcome.rejections,
                model_calls=outcome.attempts,
                seconds=seconds,
            )
        )
        if progress:
            progress(f"{draft.title[:50]}: {len(outcome.cards)} card(s), {seconds:.0f} s")
    return QuizEval(
        results,
        recorder.model() or "",
        {"max_attempts": max_attempts, "check_meaning": check_meaning},
        method=recorder.method(),
        tokens_per_s=recorder.tokens_per_s(),
    )
