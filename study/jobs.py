"""Background jobs: prepare tomorrow's questions and refit memory-model parameters.

Every run is a claim in the database first (``study.job_runs``): recorded as
``running`` when it starts, with a lease its process renews, then closed as ``ok`` or
``failed`` with the error. So a job instance never runs twice at once across processes,
two processes firing one trigger store one run, and a run whose process died shows as
``died`` and runs again at the next trigger. A job catches every error: a failure never
touches reviews, and the scheduler keeps going.

``prepare-questions`` runs per user, at that user's ``daily_job_time``; its duplicate
filter only sees committed questions, so the per-user claim is what keeps two replicas
from writing the same cards. ``refit-memory`` is one instance for all users. When jobs
run is the scheduler's business (``study.runner``); this module only runs them.

The model for ``prepare-questions`` is each user's quiz writer (their setting, by
default the best installed model: ``study.quiz_model``), reached at run time through a
provider (:func:`set_complete_provider`): the app's binds its pooled models; the
default loads the writer once per process and name.
"""

from __future__ import annotations

import logging
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import func, select

from db import Card, CardState, Database, JobRun, Note, User, UserSettings, init_db, utcnow
from study.errors import UnknownJobError
from study.job_runs import DEFAULT_LEASE, claim, finish, holding_lease
from study.quiz_model import load_writer, operator_model, writer_for_setting
from study.quiz_service import Complete, QuizRunStatus, generate_for_note
from study.settings import kept_review_count, read_settings, refit_user

__all__ = [
    "JobName",
    "JobReport",
    "PrepareConfig",
    "database",
    "prepare_questions",
    "quiz_writer",
    "recent_job_runs",
    "refit_memory",
    "run_job",
    "set_complete_provider",
]

log = logging.getLogger(__name__)

REFIT_MIN_NEW_REVIEWS = 50
"""New kept reviews since the last fit that make a refit worth its time."""


class JobName(StrEnum):
    """The fixed names of the jobs (also the names ``jobs run-now`` takes)."""

    PREPARE_QUESTIONS = "prepare-questions"
    REFIT_MEMORY = "refit-memory"


@dataclass(frozen=True, slots=True)
class PrepareConfig:
    """Which notes get questions ahead: fewer cards than ``target_cards``, or cards due
    within ``horizon`` and fewer than ``due_target``; at most ``max_notes`` per run (the
    model is slow on a CPU)."""

    target_cards: int = 3
    due_target: int = 6
    horizon: timedelta = timedelta(days=1)
    max_notes: int = 5
    max_attempts: int = 3  # as Generate questions: at 2, the 1.5B writer's yield fell short


@dataclass(frozen=True, slots=True)
class JobReport:
    """What one job run did (also its ``JobRun`` row); ``run_id`` None: it did not run,
    and ``skipped`` says why (another process has it, or it answered this trigger)."""

    job: JobName
    run_id: int | None
    ok: bool
    error: str | None
    detail: dict[str, Any] = field(default_factory=dict)
    user_id: int | None = None
    skipped: str | None = None

    def describe(self) -> str:
        who = "" if self.user_id is None else f" for user {self.user_id}"
        if self.skipped:
            return f"{self.job.value}{who}: not run: {self.skipped}"
        state = "ok" if self.ok else f"FAILED: {self.error}"
        return f"{self.job.value}{who} (run {self.run_id}): {state}; {self.detail}"


_databases: dict[str, Database] = {}
_lock = threading.Lock()
_provider: Callable[[str | None], Complete] | None = None


def database(url: str) -> Database:
    """The process's ``Database`` for ``url`` (opened and migrated once)."""
    with _lock:
        if url not in _databases:
            _databases[url] = init_db(url)
        return _databases[url]


def quiz_writer(setting: str | None = None) -> Complete:
    """The quiz writer for a user's ``quiz_model`` setting outside the app, loaded once
    per process: ``None`` is the best installed model, or ``$SELFSPEC_MODEL`` where the
    operator named one (``study.quiz_model``)."""
    return load_writer(writer_for_setting(setting, operator_model()))


def set_complete_provider(provider: Callable[[str | None], Complete] | None) -> None:
    """Set how ``prepare-questions`` gets the writer for a user's ``quiz_model`` setting
    (``None``: :func:`quiz_writer`).

    The app calls this with its model pool, so the job reuses the models it has loaded.
    """
    global _provider
    _provider = provider


def _complete(setting: str | None) -> Complete:
    return (_provider or quiz_writer)(setting)


def _guarded(
    job: JobName,
    db_url: str,
    body: Callable[[Database], dict[str, Any]],
    *,
    user_id: int | None = None,
    trigger_at: datetime | None = None,
    lease: timedelta = DEFAULT_LEASE,
) -> JobReport:
    """Claim the run, then run ``body`` under its lease; record any failure, never raise."""
    db = database(db_url)
    claimed = claim(db, job.value, user_id=user_id, trigger_at=trigger_at, lease=lease)
    if claimed.run_id is None:
        log.info("job %s not run: %s", job.value, claimed.reason)
        return JobReport(job, None, True, None, user_id=user_id, skipped=claimed.reason)
    error: str | None = None
    detail: dict[str, Any] = {}
    with holding_lease(db, claimed.run_id, lease):
        try:
            detail = body(db)
        except Exception as exc:  # noqa: BLE001 - a job failure is recorded, not raised
            log.exception("background job %s failed", job.value)
            error = f"{type(exc).__name__}: {exc}"
            detail = {"traceback": traceback.format_exc(limit=5)}
    finish(db, claimed.run_id, error, detail)
    return JobReport(job, claimed.run_id, error is None, error, detail, user_id=user_id)


def _notes_to_prepare(db: Database, config: PrepareConfig, user_id: int) -> list[tuple[int, int]]:
    """(user id, note id) pairs that need questions, notes with cards due soon first."""
    soon = utcnow() + config.horizon
    counts = (
        select(Card.note_id, func.count(Card.id).label("cards")).group_by(Card.note_id).subquery()
    )
    due = (
        select(Card.note_id, func.min(CardState.due).label("next_due"))
        .join(CardState, CardState.card_id == Card.id)
        .group_by(Card.note_id)
        .subquery()
    )
    with db.read() as session:
        rows = session.execute(
            select(Note.user_id, Note.id, func.coalesce(counts.c.cards, 0), due.c.next_due)
            .outerjoin(counts, counts.c.note_id == Note.id)
            .outerjoin(due, due.c.note_id == Note.id)
            .where(Note.user_id == user_id)
            .order_by(Note.id)
        ).all()
    due_soon = [
        (user, note)
        for user, note, cards, next_due in rows
        if next_due is not None and next_due <= soon and cards < config.due_target
    ]
    short = [
        (user, note)
        for user, note, cards, _ in rows
        if cards < config.target_cards and (user, note) not in due_soon
    ]
    return (due_soon + short)[: config.max_notes]


def prepare_questions(
    db_url: str,
    user_id: int,
    config: PrepareConfig | None = None,
    *,
    trigger_at: datetime | None = None,
    lease: timedelta = DEFAULT_LEASE,
) -> JobReport:
    """Job: generate questions ahead for the user's notes that need them (PrepareConfig)."""
    config = config or PrepareConfig()

    def body(db: Database) -> dict[str, Any]:
        targets = _notes_to_prepare(db, config, user_id)
        if not targets:
            return {"notes": 0, "cards": 0, "failed_notes": []}
        complete = _complete(read_settings(db, user_id).quiz_model)
        cards, failed = 0, []
        for owner, note_id in targets:
            summary = generate_for_note(
                db, owner, note_id, complete, max_attempts=config.max_attempts
            )
            cards += len(summary.card_ids)
            if summary.status is QuizRunStatus.FAILED:
                failed.append(note_id)
        return {"notes": len(targets), "cards": cards, "failed_notes": failed}

    return _guarded(
        JobName.PREPARE_QUESTIONS, db_url, body, user_id=user_id, trigger_at=trigger_at, lease=lease
    )


def refit_memory(
    db_url: str,
    min_new_reviews: int = REFIT_MIN_NEW_REVIEWS,
    *,
    trigger_at: datetime | None = None,
    lease: timedelta = DEFAULT_LEASE,
) -> JobReport:
    """Job: refit each user's memory model once ``min_new_reviews`` new reviews arrived."""

    def body(db: Database) -> dict[str, Any]:
        with db.read() as session:
            users = list(session.scalars(select(User.id).order_by(User.id)))
            due = []
            for user_id in users:
                settings = session.get(UserSettings, user_id)
                fitted = settings.fitted_review_count if settings else 0
                if kept_review_count(session, user_id) - fitted >= min_new_reviews:
                    due.append(user_id)
        for user_id in due:
            refit_user(db, user_id)
        return {"users_checked": len(users), "users_refitted": due}

    return _guarded(JobName.REFIT_MEMORY, db_url, body, trigger_at=trigger_at, lease=lease)


def run_job(name: str, db_url: str, user_id: int | None = None) -> list[JobReport]:
    """Run a job now, in this thread (``python -m study jobs run-now NAME``).

    ``prepare-questions`` runs for ``user_id``, or for every user in turn, each under its
    own claim; a user whose scheduled run is going on is skipped, with the reason.
    """
    try:
        job = JobName(name)
    except ValueError:
        known = ", ".join(j.value for j in JobName)
        raise UnknownJobError(f"unknown job {name!r}: use one of {known}") from None
    if job is JobName.REFIT_MEMORY:
        return [refit_memory(db_url)]
    if user_id is None:
        with database(db_url).read() as session:
            users = list(session.scalars(select(User.id).order_by(User.id)))
    else:
        users = [user_id]
    return [prepare_questions(db_url, user) for user in users]


def recent_job_runs(db: Database, limit: int = 20) -> list[JobRun]:
    """The latest job runs, newest first (for ``jobs list`` and the app's status panel)."""
    with db.read() as session:
        return list(
            session.scalars(
                select(JobRun).order_by(JobRun.started_at.desc(), JobRun.id.desc()).limit(limit)
            )
        )
