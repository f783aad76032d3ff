"""Job runs as claims in the database: one run per trigger, never two at once, and a
visible death.

Why in the database and not in the scheduler: APScheduler 3 locks only between the
threads of one process, and every app replica or worker may run a scheduler. So before a
job does anything, :func:`claim` inserts its ``JobRun`` row (status ``running``) in one
transaction that holds a lock named after the job instance (``db.locks``), after
checking that

* no run answered the same trigger yet (two processes firing the 03:00 trigger store
  one run; the unique constraint on ``(instance, trigger_at)`` backs this up), and
* no run of the instance holds a live lease (a run on demand waits for no one, but never
  runs beside a scheduled one).

While the job works, :func:`holding_lease` renews the lease from a thread. A process
that dies stops renewing; the next claim (the next trigger) finds the lease expired,
marks that run ``died`` and runs the job again. The run is closed by :func:`finish`.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from db import Database, JobRun, utcnow
from db.locks import transaction_lock

__all__ = [
    "DEFAULT_LEASE",
    "Claim",
    "claim",
    "finish",
    "holding_lease",
    "instance_name",
    "owner_name",
    "shown_status",
]

DEFAULT_LEASE = timedelta(seconds=60)
"""How long a run stays claimed without renewal; renewed every third of it."""


@dataclass(frozen=True, slots=True)
class Claim:
    """The outcome of :func:`claim`: a run id to work under, or why there is none."""

    run_id: int | None
    reason: str = ""


def instance_name(job: str, user_id: int | None) -> str:
    """What must not run twice at once: the job, or the job for one user."""
    return job if user_id is None else f"{job}:user={user_id}"


def owner_name() -> str:
    """This process, as shown on the runs it claims (host and pid)."""
    return f"{socket.gethostname()}:{os.getpid()}"


def shown_status(run: JobRun, now: datetime | None = None) -> str:
    """The run's status for people: a ``running`` run whose lease expired has ``died``."""
    now = now or utcnow()
    if run.status == "running" and run.lease_until is not None and run.lease_until < now:
        return "died"
    return run.status


def claim(
    db: Database,
    job: str,
    *,
    user_id: int | None = None,
    trigger_at: datetime | None = None,
    lease: timedelta = DEFAULT_LEASE,
) -> Claim:
    """Record a run of ``job`` as started, or say why it must not run now."""
    instance = instance_name(job, user_id)

    def work(session: Session) -> Claim:
        transaction_lock(session, f"job:{instance}")
        now = utcnow()
        if trigger_at is not None:
            done = session.scalar(
                select(JobRun.id).where(
                    JobRun.instance == instance, JobRun.trigger_at == trigger_at
                )
            )
            if done is not None:
                return Claim(None, f"run {done} already answered the trigger of {trigger_at}")
        for run in session.scalars(
            select(JobRun).where(JobRun.instance == instance, JobRun.status == "running")
        ):
            if shown_status(run, now) == "running":
                return Claim(None, f"run {run.id} is still running in {run.owner}")
            run.status = "died"
            run.finished_at = run.lease_until
            run.error = f"its process ({run.owner}) stopped renewing its lease"
        run = JobRun(
            job=job,
            instance=instance,
            user_id=user_id,
            status="running",
            trigger_at=trigger_at,
            owner=owner_name(),
            started_at=now,
            lease_until=now + lease,
            detail={},
        )
        session.add(run)
        session.flush()
        return Claim(run.id)

    try:
        return db.write(work)
    except IntegrityError:
        return Claim(None, f"another process claimed the trigger of {trigger_at} first")


def _renew(db: Database, run_id: int, lease: timedelta) -> None:
    def work(session: Session) -> None:
        run = session.get(JobRun, run_id)
        if run is not None and run.status == "running":
            run.lease_until = utcnow() + lease

    db.write(work)


@contextlib.contextmanager
def holding_lease(db: Database, run_id: int, lease: timedelta = DEFAULT_LEASE) -> Iterator[None]:
    """Renew the run's lease every third of ``lease`` while the body runs."""
    stop = threading.Event()

    def renew() -> None:
        while not stop.wait(lease.total_seconds() / 3):
            with contextlib.suppress(Exception):  # a missed renewal is retried next time
                _renew(db, run_id, lease)

    thread = threading.Thread(target=renew, name=f"lease-{run_id}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def finish(db: Database, run_id: int, error: str | None, detail: dict[str, Any]) -> None:
    """Close the run as ``ok`` or ``failed`` (with ``error``) and drop its lease."""

    def work(session: Session) -> None:
        run = session.get(JobRun, run_id)
        run.status = "failed" if error else "ok"
        run.error = error
        run.detail = detail
        run.finished_at = utcnow()
        run.lease_until = None

    db.write(work)
