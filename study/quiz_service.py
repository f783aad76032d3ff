"""Generate review cards for a stored note and keep a record of every attempt.

The model is reached through ``complete(prompt) -> Completion`` (any object with
``.text``, ``.tokens_per_s``, ``.method`` and ``.model``); the real one is
``functools.partial(selfspec.complete, lm)``. The model is slow next to the database,
so the note is read in one short transaction, the model runs outside any transaction,
and the cards that passed are stored together with their ``QuizRun`` record in a
second one: a run leaves either its cards and an ``ok`` record, or a ``failed`` record
with the reason and no card; never part of a card.

:func:`iter_generate_for_note` yields a :class:`QuizProgress` after each card kind, so
the UI can stream progress; :func:`generate_for_note` runs it to the end.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from sqlalchemy import select
from sqlalchemy.orm import Session

from db import Card, Database, record_quiz_run, utcnow
from study.notes_service import user_note
from study.quiz import (
    DEFAULT_RULES,
    CardDraft,
    CardKind,
    GeneratedCard,
    Rules,
    generate_cards,
    similarity,
)
from study.quiz.generate import Complete
from study.quiz.recorder import CallRecorder, record_calls

__all__ = [
    "ALL_KINDS",
    "Complete",
    "QuizProgress",
    "QuizRunStatus",
    "QuizRunSummary",
    "generate_for_note",
    "iter_generate_for_note",
]

ALL_KINDS: tuple[CardKind, ...] = (CardKind.BASIC, CardKind.CLOZE, CardKind.MCQ)
MAX_REASONS_STORED = 40
MAX_OUTPUT_CHARS = 600
MAX_DRAFTS_STORED = 20
"""Rejected drafts kept with a run, for the user to read, edit and keep (``study.drafts_service``)."""


class QuizRunStatus(StrEnum):
    OK = "ok"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class QuizRunSummary:
    """What one generation run stored: the ``QuizRun`` id, its status and the new cards."""

    run_id: int
    note_id: int
    status: QuizRunStatus
    reason: str | None
    attempts: int
    card_ids: tuple[int, ...]
    failures: tuple[str, ...]
    model: str | None
    method: str | None
    tokens_per_s: float | None
    rejected_drafts: int = 0


@dataclass(frozen=True, slots=True)
class QuizProgress:
    """One step of a run: ``done`` of ``total`` kinds finished; ``summary`` on the last step."""

    note_id: int
    kind: CardKind | None
    done: int
    total: int
    cards_so_far: int
    message: str
    summary: QuizRunSummary | None = None


@dataclass(frozen=True, slots=True)
class _NoteText:
    title: str
    body: str


def _load_note(db: Database, user_id: int, note_id: int) -> tuple[_NoteText, list[str], list[str]]:
    """The note, and the questions and answers of its cards."""
    with db.read() as session:
        note = user_note(session, user_id, note_id)
        rows = session.execute(
            select(Card.question, Card.answer).where(Card.note_id == note_id)
        ).all()
        questions, answers = [r.question for r in rows], [r.answer for r in rows]
        return _NoteText(note.title, note.body), questions, answers


def _failure_reason(failures: Sequence[str], error: str | None) -> str:
    if error:
        return f"the model call failed: {error}"
    if not failures:
        return "no card passed the checks"
    shown = "; ".join(failures[-3:])
    return f"no card passed the checks after {len(failures)} problem(s); last: {shown}"


def _draft_record(card: CardDraft, reasons: Sequence[str]) -> dict[str, object]:
    return {
        "kind": card.kind.value,
        "question": card.question,
        "answer": card.answer,
        "choices": list(card.choices),
        "reasons": list(reasons),
    }


def _store(
    db: Database,
    user_id: int,
    note_id: int,
    cards: list[GeneratedCard],
    recorder: CallRecorder,
    failures: list[str],
    rejected: list[tuple[CardDraft, tuple[str, ...]]],
    attempts: int,
    started: datetime,
    error: str | None,
    rules: Rules,
) -> QuizRunSummary:
    def work(session: Session) -> QuizRunSummary:
        user_note(session, user_id, note_id)
        # Another run may have stored cards for this note meanwhile: keep the check honest.
        questions = list(session.scalars(select(Card.question).where(Card.note_id == note_id)))
        rows: list[Card] = []
        dropped = list(failures)
        for generated in cards:
            draft = generated.card
            if any(similarity(draft.question, q) >= rules.duplicate_similarity for q in questions):
                dropped.append(f"{draft.kind.value}: duplicate of a card stored meanwhile")
                continue
            questions.append(draft.question)
            rows.append(
                Card(
                    user_id=user_id,
                    note_id=note_id,
                    kind=draft.kind.value,
                    question=draft.question,
                    answer=draft.answer,
                    choices=list(draft.choices) if draft.kind is CardKind.MCQ else None,
                    gen_model=generated.model,
                    gen_method=generated.method,
                    gen_tokens_per_s=generated.tokens_per_s,
                )
            )
        session.add_all(rows)
        session.flush()
        status = QuizRunStatus.OK if rows else QuizRunStatus.FAILED
        reason = None if rows else _failure_reason(dropped, error)
        run = record_quiz_run(
            session,
            user_id=user_id,
            note_id=note_id,
            status=status.value,
            reason=reason,
            model=recorder.model(),
            method=recorder.method(),
            tokens_per_s=recorder.tokens_per_s(),
            attempts=attempts,
            cards_created=len(rows),
            started_at=started,
            finished_at=utcnow(),
            extra={
                "failures": dropped[:MAX_REASONS_STORED],
                "outputs": recorder.outputs(MAX_OUTPUT_CHARS),
                "rejected": [_draft_record(c, r) for c, r in rejected[:MAX_DRAFTS_STORED]],
            },
        )
        return QuizRunSummary(
            run_id=run.id,
            note_id=note_id,
            status=status,
            reason=reason,
            attempts=attempts,
            card_ids=tuple(row.id for row in rows),
            failures=tuple(dropped),
            model=run.model,
            method=run.method,
            tokens_per_s=run.tokens_per_s,
            rejected_drafts=min(len(rejected), MAX_DRAFTS_STORED),
        )

    return db.write(work)


def iter_generate_for_note(
    db: Database,
    user_id: int,
    note_id: int,
    complete: Complete,
    *,
    kinds: Sequence[CardKind | str] = ALL_KINDS,
    max_attempts: int = 3,
    rules: Rules = DEFAULT_RULES,
    check_meaning: bool = True,
) -> Iterator[QuizProgress]:
    """Generate cards of each kind in ``kinds`` for the note, yielding progress per kind.

    The last item carries the :class:`QuizRunSummary`. Raises ``NoteNotFoundError`` for
    an unknown or another user's note (before any model call). An exception from
    ``complete`` ends the run with a ``failed`` record naming the error and no card.
    ``check_meaning`` has the same model answer each card's question from the note
    before the card is kept (``study.quiz.meaning``). Drafts that failed a check are
    stored with the run and their reasons, so the user can edit and keep them.
    """
    wanted = [CardKind.parse(kind) for kind in kinds]
    if not wanted:
        raise ValueError("ask for at least one card kind")
    note, questions, answers = _load_note(db, user_id, note_id)
    started = utcnow()
    recorder = record_calls(complete)
    cards: list[GeneratedCard] = []
    failures: list[str] = []
    rejected: list[tuple[CardDraft, tuple[str, ...]]] = []
    attempts = 0
    error: str | None = None
    for done, kind in enumerate(wanted, start=1):
        try:
            outcome = generate_cards(
                note,
                recorder,
                kinds=[kind],
                max_attempts=max_attempts,
                existing=questions + [c.card.question for c in cards],
                answers=answers + [c.card.answer for c in cards],
                rules=rules,
                reader=recorder if check_meaning else None,
            )
        except Exception as exc:  # noqa: BLE001 - any model failure becomes a visible record
            attempts = len(recorder.calls)
            error = f"{type(exc).__name__}: {exc}"
            cards = []
            break
        cards.extend(outcome.cards)
        failures.extend(outcome.failures)
        rejected.extend(outcome.rejected_drafts)
        attempts += outcome.attempts
        yield QuizProgress(
            note_id=note_id,
            kind=kind,
            done=done,
            total=len(wanted),
            cards_so_far=len(cards),
            message=f"{kind.value}: {len(outcome.cards)} card(s) after {outcome.attempts} call(s)"
            + _served_as(kind, outcome.cards),
        )
    summary = _store(
        db, user_id, note_id, cards, recorder, failures, rejected, attempts, started, error, rules
    )
    yield QuizProgress(
        note_id=note_id,
        kind=None,
        done=len(wanted),
        total=len(wanted),
        cards_so_far=len(summary.card_ids),
        message=(
            f"stored {len(summary.card_ids)} card(s)"
            if summary.status is QuizRunStatus.OK
            else f"generation failed: {summary.reason}"
        ),
        summary=summary,
    )


def _served_as(kind: CardKind, cards: list[GeneratedCard]) -> str:
    """Names the kind made where the writer made another (a cutter makes clozes only)."""
    made = sorted({c.card.kind.value for c in cards} - {kind.value})
    return f" (made as {', '.join(made)})" if made else ""


def generate_for_note(
    db: Database,
    user_id: int,
    note_id: int,
    complete: Complete,
    *,
    kinds: Sequence[CardKind | str] = ALL_KINDS,
    max_attempts: int = 3,
    rules: Rules = DEFAULT_RULES,
    check_meaning: bool = True,
    on_progress: Callable[[QuizProgress], None] | None = None,
) -> QuizRunSummary:
    """Generate and store cards for one note; see :func:`iter_generate_for_note`."""
    summary: QuizRunSummary | None = None
    for step in iter_generate_for_note(
        db,
        user_id,
        note_id,
        complete,
        kinds=kinds,
        max_attempts=max_attempts,
        rules=rules,
        check_meaning=check_meaning,
    ):
        if on_progress is not None:
            on_progress(step)
        summary = step.summary or summary
    assert summary is not None  # the generator always ends with a summary
    return summary
