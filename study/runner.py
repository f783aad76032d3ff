"""The job runner: one APScheduler 3 ``BackgroundScheduler`` that fires the jobs on time.

Where it runs: inside the app process by default (``SELFSPEC_JOBS=inline``, so ``make
run`` does everything), or in a separate ``python -m study worker`` with the app
replicas set to ``SELFSPEC_JOBS=off``. Whatever the setup, runs are claims in the
database (``study.job_runs``), so several runners firing the same trigger do the work
once.

Why a memory job store and not APScheduler's ``SQLAlchemyJobStore``: APScheduler 3 does
not support two schedulers on one job store, and the schedule is derived data anyway:
``prepare-questions`` runs per user at their ``daily_job_time`` (UTC), ``refit-memory``
at fixed boundaries (every 6 hours from midnight UTC). :meth:`JobRunner.sync` reads the
users' times and re-schedules what changed; it runs every ``sync_every`` and at once
when this process saves a setting (:func:`resync`), so a runner elsewhere follows a
change within ``sync_every``.

Each firing passes the trigger time it answers (the slot: the latest scheduled time at
or before now), which is what makes "once per trigger" checkable across processes.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy import select

from db import User, UserSettings, utcnow
from study import jobs
from study.job_runs import DEFAULT_LEASE

__all__ = [
    "EPOCH",
    "JobRunner",
    "RunnerConfig",
    "current_runner",
    "daily_slot",
    "every_slot",
    "resync",
    "shutdown_runner",
    "start_runner",
]

log = logging.getLogger(__name__)

EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
"""Interval jobs fire at EPOCH + k * period, so every runner agrees on the slots."""
PREPARE_PREFIX = f"{jobs.JobName.PREPARE_QUESTIONS.value}:user="


@dataclass(frozen=True, slots=True)
class RunnerConfig:
    """How often the periodic jobs fire, how quickly runners follow new settings, and
    the lease a run holds (tests shorten them)."""

    refit_every: timedelta = timedelta(hours=6)
    sync_every: timedelta = timedelta(seconds=15)
    lease: timedelta = DEFAULT_LEASE
    misfire_grace: timedelta = timedelta(hours=1)


def daily_slot(hhmm: str, now: datetime) -> datetime:
    """The latest HH:MM (UTC) at or before ``now``: the trigger a daily run answers."""
    hour, minute = (int(part) for part in hhmm.split(":"))
    slot = now.astimezone(UTC).replace(hour=hour, minute=minute, second=0, microsecond=0)
    return slot if slot <= now else slot - timedelta(days=1)


def every_slot(period: timedelta, now: datetime) -> datetime:
    """The latest EPOCH + k * period at or before ``now``."""
    return EPOCH + ((now - EPOCH) // period) * period


def run_prepare(db_url: str, user_id: int, hhmm: str, lease_s: float) -> None:
    """Scheduled ``prepare-questions`` for one user (top-level: APScheduler calls it)."""
    slot = daily_slot(hhmm, utcnow())
    jobs.prepare_questions(db_url, user_id, trigger_at=slot, lease=timedelta(seconds=lease_s))


def run_refit(db_url: str, period_s: float, lease_s: float) -> None:
    """Scheduled ``refit-memory`` (top-level: APScheduler calls it)."""
    slot = every_slot(timedelta(seconds=period_s), utcnow())
    jobs.refit_memory(db_url, trigger_at=slot, lease=timedelta(seconds=lease_s))


class JobRunner:
    """A started scheduler with the jobs of every user registered."""

    def __init__(self, db_url: str, config: RunnerConfig | None = None) -> None:
        self.db_url = db_url
        self.config = config or RunnerConfig()
        self.scheduler = BackgroundScheduler(timezone="UTC")
        self._times: dict[int, str] = {}
        self._sync_lock = threading.Lock()

    def _common(self) -> dict:
        return {
            "replace_existing": True,
            "coalesce": True,
            "max_instances": 1,
            "misfire_grace_time": int(self.config.misfire_grace.total_seconds()),
        }

    def start(self) -> JobRunner:
        """Start the scheduler, register the periodic jobs, then the users' jobs."""
        jobs.database(self.db_url)  # migrate and fail early on a bad URL
        lease_s = self.config.lease.total_seconds()
        period = self.config.refit_every
        self.scheduler.start()
        self.scheduler.add_job(
            run_refit,
            IntervalTrigger(seconds=period.total_seconds(), start_date=EPOCH, timezone="UTC"),
            args=[self.db_url, period.total_seconds(), lease_s],
            id=jobs.JobName.REFIT_MEMORY.value,
            name="Refit memory-model parameters",
            **self._common(),
        )
        self.scheduler.add_job(
            self.sync,
            IntervalTrigger(seconds=self.config.sync_every.total_seconds(), timezone="UTC"),
            id="sync-schedules",
            name="Follow the users' job times",
            **self._common(),
        )
        self.sync()
        return self

    def sync(self) -> None:
        """Add, move or drop each user's ``prepare-questions`` to match their settings."""
        with jobs.database(self.db_url).read() as session:
            wanted = dict(
                session.execute(
                    select(User.id, UserSettings.daily_job_time).join(
                        UserSettings, UserSettings.user_id == User.id
                    )
                ).all()
            )
        with self._sync_lock:
            for user_id in self._times.keys() - wanted.keys():
                self.scheduler.remove_job(f"{PREPARE_PREFIX}{user_id}")
                del self._times[user_id]
            for user_id, hhmm in wanted.items():
                if self._times.get(user_id) != hhmm:
                    self._schedule_user(user_id, hhmm)

    def _schedule_user(self, user_id: int, hhmm: str) -> None:
        hour, minute = (int(part) for part in hhmm.split(":"))
        self.scheduler.add_job(
            run_prepare,
            CronTrigger(hour=hour, minute=minute, timezone="UTC"),
            args=[self.db_url, user_id, hhmm, self.config.lease.total_seconds()],
            id=f"{PREPARE_PREFIX}{user_id}",
            name=f"Prepare tomorrow's questions for user {user_id}",
            **self._common(),
        )
        self._times[user_id] = hhmm
        log.info("prepare-questions for user %s at %s UTC", user_id, hhmm)

    def next_runs(self) -> dict[str, datetime | None]:
        """Job id -> next fire time (for ``jobs list`` and the tests)."""
        return {job.id: job.next_run_time for job in self.scheduler.get_jobs()}

    def shutdown(self, wait: bool = False) -> None:
        if self.scheduler.running:
            self.scheduler.shutdown(wait=wait)


_runner: JobRunner | None = None
_start_lock = threading.Lock()


def start_runner(db_url: str, config: RunnerConfig | None = None) -> JobRunner:
    """Start this process's runner once; later calls return it (a Gradio reload, tests)."""
    global _runner
    with _start_lock:
        if _runner is None:
            _runner = JobRunner(db_url, config).start()
        return _runner


def current_runner() -> JobRunner | None:
    """This process's runner, or None when jobs run elsewhere."""
    return _runner


def resync() -> None:
    """Follow settings changed in this process at once (no-op without a runner here)."""
    runner = _runner
    if runner is not None:
        runner.sync()


def shutdown_runner(wait: bool = False) -> None:
    """Stop this process's runner (at exit, and between tests); safe when not started."""
    global _runner
    with _start_lock:
        runner, _runner = _runner, None
    if runner is not None:
        runner.shutdown(wait=wait)
