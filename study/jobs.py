"""Background jobs: prepare tomorrow's questions and refit memory-model parameters.

One APScheduler 3.x ``BackgroundScheduler`` per process, started by
:func:`start_scheduler` (a second call returns the running one, so a Gradio reload
does not start another). Jobs live in a persistent ``SQLAlchemyJobStore`` in the same
database (table ``apscheduler_jobs``) under fixed ids with ``replace_existing=True``,
so restarts update the stored jobs instead of adding copies.

The job store pickles a reference to the job function and its arguments, so the job
functions are top-level callables that take only the database URL. They catch every
error and record the run in ``job_runs`` (``ok`` or ``failed`` with the error): a
failing job never touches reviews and simply runs again at its next time.

The model for ``prepare-questions`` is resolved at run time through a provider
(:func:`set_complete_provider`); the default loads the bundled model once.
"""

from __future__ import annotations

import functools
import logging
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy import func, select

from db import Card, CardState, Database, JobRun, Note, User, UserSettings, init_db, utcnow
from study.errors import UnknownJobError
from study.quiz_service import Complete, QuizRunStatus, generate_for_note
from study.settings import kept_review_count, refit_parameters

__all__ = [
    "JOB_TABLE",
    "JobName",
    "JobReport",
    "PrepareConfig",
    "database",
    "job_store",
    "prepare_questions",
    "recent_job_runs",
    "refit_memory",
    "register_jobs",
    "run_job",
    "set_complete_provider",
    "shutdown_scheduler",
    "start_scheduler",
]

log = logging.getLogger(__name__)

JOB_TABLE = "apscheduler_jobs"
REFIT_MIN_NEW_REVIEWS = 50
"""New kept reviews since the last fit that make a refit worth its time."""
REFIT_EVERY = timedelta(hours=6)


class JobName(StrEnum):
    """The fixed ids of the jobs (also the names ``jobs run-now`` takes)."""

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
    max_attempts: int = 2


@dataclass(frozen=True, slots=True)
class JobReport:
    """What one job run did; also stored as a ``JobRun`` row."""

    job: JobName
    run_id: int
    ok: bool
    error: str | None
    detail: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        state = "ok" if self.ok else f"FAILED: {self.error}"
        return f"{self.job.value} (run {self.run_id}): {state}; {self.detail}"


_databases: dict[str, Database] = {}
_lock = threading.Lock()
_start_lock = threading.Lock()
_scheduler: BackgroundScheduler | None = None
_provider: Callable[[], Complete] | None = None


def database(url: str) -> Database:
    """The process's ``Database`` for ``url`` (opened and migrated once)."""
    with _lock:
        if url not in _databases:
            _databases[url] = init_db(url)
        return _databases[url]


@functools.cache
def _bundled_complete() -> Complete:
    import selfspec

    return functools.partial(selfspec.complete, selfspec.load_model("bundled"), max_new_tokens=160)


def set_complete_provider(provider: Callable[[], Complete] | None) -> None:
    """Set how ``prepare-questions`` gets its model (``None``: the bundled model).

    The app calls this with the model it has loaded, so the job reuses it.
    """
    global _provider
    _provider = provider


def _complete() -> Complete:
    return (_provider or _bundled_complete)()


def _record(db: Database, job: JobName, started: datetime, error: str | None, detail: dict) -> int:
    def work(session: Any) -> int:
        run = JobRun(
            job=job.value,
            status="failed" if error else "ok",
            error=error,
            started_at=started,
            finished_at=utcnow(),
            detail=detail,
        )
        session.add(run)
        session.flush()
        return run.id

    return db.write(work)


def _guarded(job: JobName, db_url: str, body: Callable[[Database], dict[str, Any]]) -> JobReport:
    """Run ``body``, log and record any failure; never raise (the scheduler keeps going)."""
    started = utcnow()
    db = database(db_url)
    error: str | None = None
    detail: dict[str, Any] = {}
    try:
        detail = body(db)
    except Exception as exc:  # noqa: BLE001 - a job failure is recorded, not raised
        log.exception("background job %s failed", job.value)
        error = f"{type(exc).__name__}: {exc}"
        detail = {"traceback": traceback.format_exc(limit=5)}
    run_id = _record(db, job, started, error, detail)
    return JobReport(job=job, run_id=run_id, ok=error is None, error=error, detail=detail)


def _notes_to_prepare(db: Database, config: PrepareConfig) -> list[tuple[int, int]]:
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


def prepare_questions(db_url: str, config: PrepareConfig | None = None) -> JobReport:
    """Job: generate questions ahead for the notes that need them (see PrepareConfig)."""
    config = config or PrepareConfig()

    def body(db: Database) -> dict[str, Any]:
        targets = _notes_to_prepare(db, config)
        if not targets:
            return {"notes": 0, "cards": 0, "failed_notes": []}
        complete = _complete()
        cards, failed = 0, []
        for user_id, note_id in targets:
            summary = generate_for_note(
                db, user_id, note_id, complete, max_attempts=config.max_attempts
            )
            cards += len(summary.card_ids)
            if summary.status is QuizRunStatus.FAILED:
                failed.append(note_id)
        return {"notes": len(targets), "cards": cards, "failed_notes": failed}

    return _guarded(JobName.PREPARE_QUESTIONS, db_url, body)


def refit_memory(db_url: str, min_new_reviews: int = REFIT_MIN_NEW_REVIEWS) -> JobReport:
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
            refit_parameters(db, user_id)
        return {"users_checked": len(users), "users_refitted": due}

    return _guarded(JobName.REFIT_MEMORY, db_url, body)


_JOBS: dict[JobName, Callable[[str], JobReport]] = {
    JobName.PREPARE_QUESTIONS: prepare_questions,
    JobName.REFIT_MEMORY: refit_memory,
}


def run_job(name: str, db_url: str) -> JobReport:
    """Run a job now, in this thread (``python -m study jobs run-now NAME``)."""
    try:
        job = JobName(name)
    except ValueError:
        known = ", ".join(j.value for j in JobName)
        raise UnknownJobError(f"unknown job {name!r}: use one of {known}") from None
    return _JOBS[job](db_url)


def _daily_time(db: Database, user_name: str) -> tuple[int, int]:
    with db.read() as session:
        time_text = session.scalar(
            select(UserSettings.daily_job_time)
            .join(User, User.id == UserSettings.user_id)
            .where(User.name == user_name)
        )
    hour, minute = (time_text or "03:00").split(":")
    return int(hour), int(minute)


def job_store(db: Database) -> SQLAlchemyJobStore:
    """The persistent job store: table ``apscheduler_jobs`` in the app's own database."""
    return SQLAlchemyJobStore(engine=db.engine, tablename=JOB_TABLE)


def register_jobs(scheduler: BackgroundScheduler, db_url: str, *, user_name: str = "local") -> None:
    """Add (or replace) both jobs; the daily time is ``user_name``'s ``daily_job_time``.

    Call again after the user changes the time: ``replace_existing`` updates the job.
    """
    hour, minute = _daily_time(database(db_url), user_name)
    common: dict[str, Any] = {
        "args": [db_url],
        "replace_existing": True,
        "coalesce": True,
        "max_instances": 1,
        "misfire_grace_time": 3600,
    }
    scheduler.add_job(
        prepare_questions,
        CronTrigger(hour=hour, minute=minute, timezone="UTC"),
        id=JobName.PREPARE_QUESTIONS.value,
        name="Prepare tomorrow's questions",
        **common,
    )
    scheduler.add_job(
        refit_memory,
        IntervalTrigger(seconds=int(REFIT_EVERY.total_seconds()), timezone="UTC"),
        id=JobName.REFIT_MEMORY.value,
        name="Refit memory-model parameters",
        **common,
    )


def start_scheduler(db_url: str, *, user_name: str = "local") -> BackgroundScheduler:
    """Start the process's scheduler once and register the jobs; later calls return it."""
    global _scheduler
    with _start_lock:
        if _scheduler is None:
            scheduler = BackgroundScheduler(
                jobstores={"default": job_store(database(db_url))}, timezone="UTC"
            )
            scheduler.start()
            register_jobs(scheduler, db_url, user_name=user_name)
            _scheduler = scheduler
        return _scheduler


def shutdown_scheduler(wait: bool = False) -> None:
    """Stop the process's scheduler (at exit, and between tests); safe when not started."""
    global _scheduler
    with _start_lock:
        scheduler, _scheduler = _scheduler, None
    if scheduler is not None:
        scheduler.shutdown(wait=wait)


def recent_job_runs(db: Database, limit: int = 20) -> list[JobRun]:
    """The latest job runs, newest first (for ``jobs list`` and the app's status panel)."""
    with db.read() as session:
        return list(
            session.scalars(
                select(JobRun).order_by(JobRun.started_at.desc(), JobRun.id.desc()).limit(limit)
            )
        )
