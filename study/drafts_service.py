"""Rejected quiz drafts: read them with the reasons they failed, and keep one once edited.

A model's draft that failed a check is often close to a good card (a wrong key, a
distractor the note does not rule out, an answer phrased too long). Each generation run
stores its rejected drafts with their reasons (``study.quiz_service``); here the user
reads them and keeps one after editing it. The user's edit is trusted as any card edit
is: checked for form (``study.cards_service.check_edit``), not by the model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from db import Card, Database, QuizRun
from study.cards_service import CardView, card_view, check_edit
from study.errors import StudyError
from study.notes_service import user_note
from study.quiz.cards import CardKind

__all__ = ["EDITED_SUFFIX", "RejectedDraft", "keep_draft", "rejected_drafts"]

EDITED_SUFFIX = " (rejected draft, kept after your edit)"
"""Added to the generating model's name on a kept draft, so its origin stays visible."""


@dataclass(frozen=True, slots=True)
class RejectedDraft:
    """One draft of a run that failed a check; ``index`` names it within the run."""

    run_id: int
    index: int
    kind: CardKind
    question: str
    answer: str
    choices: tuple[str, ...]
    reasons: tuple[str, ...]


def _drafts(run: QuizRun) -> list[dict]:
    return list((run.extra or {}).get("rejected") or [])


def rejected_drafts(db: Database, user_id: int, note_id: int) -> list[RejectedDraft]:
    """The not yet kept drafts of the note's latest run that has any (newest run first)."""
    with db.read() as session:
        user_note(session, user_id, note_id)
        runs = session.scalars(
            select(QuizRun)
            .where(QuizRun.user_id == user_id, QuizRun.note_id == note_id)
            .order_by(QuizRun.id.desc())
        )
        for run in runs:
            drafts = [
                RejectedDraft(
                    run_id=run.id,
                    index=i,
                    kind=CardKind(d["kind"]),
                    question=d["question"],
                    answer=d["answer"],
                    choices=tuple(d.get("choices") or ()),
                    reasons=tuple(d.get("reasons") or ()),
                )
                for i, d in enumerate(_drafts(run))
                if not d.get("kept_card")
            ]
            if drafts:
                return drafts
    return []


def keep_draft(
    db: Database,
    user_id: int,
    run_id: int,
    index: int,
    *,
    question: str,
    answer: str,
    choices: Sequence[str] = (),
) -> CardView:
    """Store draft ``index`` of run ``run_id`` as a card of its note, with the user's text.

    Raises ``StudyError`` for an unknown run or draft (or another user's), a draft
    already kept, or a note deleted meanwhile; ``InvalidNoteError`` for an ill-formed
    edit. Nothing is stored when it raises.
    """

    def work(session: Session) -> CardView:
        # Locked: two tabs keeping the same draft at once store one card.
        run = session.scalar(select(QuizRun).where(QuizRun.id == run_id).with_for_update())
        drafts = _drafts(run) if run is not None and run.user_id == user_id else []
        if not 0 <= index < len(drafts):
            raise StudyError(f"draft {index} of generation run {run_id} not found for this user")
        draft = drafts[index]
        if draft.get("kept_card"):
            raise StudyError(f"that draft was already kept as card {draft['kept_card']}")
        if run.note_id is None:
            raise StudyError("the note of that draft was deleted")
        user_note(session, user_id, run.note_id)
        kind = CardKind(draft["kind"])
        text, key = question.strip(), answer.strip()
        options = [c.strip() for c in choices if c.strip()] if kind is CardKind.MCQ else []
        check_edit(kind, text, key, options)
        card = Card(
            user_id=user_id,
            note_id=run.note_id,
            kind=kind.value,
            question=text,
            answer=key,
            choices=options or None,
            gen_model=f"{run.model or 'model'}{EDITED_SUFFIX}"[:300],
            gen_method=run.method,
            gen_tokens_per_s=run.tokens_per_s,
        )
        session.add(card)
        session.flush()
        drafts[index] = {**draft, "kept_card": card.id}
        run.extra = {**run.extra, "rejected": drafts}  # a new dict: JSON changes are seen
        return card_view(card)

    return db.write(work)
