"""Background jobs on both backends: runs claimed in the database when they start, once
per trigger across processes, never twice at once, a dead run seen and retried, a
failing job recorded while the scheduler keeps going, per-user times that follow the
settings at once."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from db import JobRun, Review, UserSettings, get_or_create_user
from study import jobs, runner
from study.__main__ import main
from study.cards_service import list_cards
from study.errors import UnknownJobError
from study.job_runs import shown_status
from study.notes_service import add_note
from study.reviews import submit_review
from study.settings import update_settings
from tests.study_helpers import T0, add_user_with_cards
from tests.test_quiz_service import BASIC, BODY, Scripted


@pytest.fixture
def url(db_url):
    yield db_url
    runner.shutdown_runner()
    jobs.set_complete_provider(None)


def _job_runs(url: str) -> list[JobRun]:
    with jobs.database(url).read() as session:
        return list(session.scalars(select(JobRun).order_by(JobRun.id)))


def _user(url: str, name: str) -> int:
    return jobs.database(url).write(lambda s: get_or_create_user(s, name).id)


def _wait_for(condition, timeout: float = 30.0) -> None:  # noqa: ANN001 - a callable
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def test_slots_are_the_latest_trigger_at_or_before_now():
    now = datetime(2026, 3, 1, 2, 59, 59, tzinfo=UTC)
    assert runner.daily_slot("03:00", now) == datetime(2026, 2, 28, 3, 0, tzinfo=UTC)
    assert runner.daily_slot("03:00", now + timedelta(seconds=1)) == now + timedelta(seconds=1)
    six = timedelta(hours=6)
    assert runner.every_slot(six, now) == datetime(2026, 3, 1, 0, 0, tzinfo=UTC)


def test_runner_starts_once_and_follows_each_users_job_time_at_once(url):
    ann, bob = _user(url, "ann"), _user(url, "bob")
    update_settings(jobs.database(url), bob, daily_job_time="22:15")
    first = runner.start_runner(url)
    assert runner.start_runner(url) is first and first.scheduler.running
    planned = first.next_runs()
    assert {"refit-memory", f"prepare-questions:user={ann}", f"prepare-questions:user={bob}"} <= (
        planned.keys()
    )
    assert (
        planned[f"prepare-questions:user={ann}"].hour,
        planned[f"prepare-questions:user={ann}"].minute,
    ) == (3, 0)
    assert (
        planned[f"prepare-questions:user={bob}"].hour,
        planned[f"prepare-questions:user={bob}"].minute,
    ) == (22, 15)

    update_settings(jobs.database(url), ann, daily_job_time="04:30")  # what Settings saves
    runner.resync()  # and what the Settings tab calls next
    moved = first.next_runs()[f"prepare-questions:user={ann}"]
    assert (moved.hour, moved.minute) == (4, 30)
    runner.shutdown_runner()
    assert runner.start_runner(url) is not first  # a fresh start after shutdown


def test_prepare_questions_uses_the_provider_and_records_the_run(url):
    db = jobs.database(url)
    user = _user(url, "ann")
    note = add_note(db, user, "Kangaroo", BODY)
    jobs.set_complete_provider(lambda _model: Scripted(*[BASIC] * 10))
    (report,) = jobs.run_job("prepare-questions", url)
    assert report.ok and report.detail == {"notes": 1, "cards": 1, "failed_notes": []}
    assert [c.question for c in list_cards(db, user, note.id)] == [
        "What does Kangaroo draft tokens with?"
    ]
    (run,) = _job_runs(url)
    assert (run.job, run.instance, run.status) == (
        "prepare-questions",
        f"prepare-questions:user={user}",
        "ok",
    )
    assert run.finished_at >= run.started_at and run.lease_until is None


def test_prepare_questions_asks_for_each_users_quiz_writer(url):
    db = jobs.database(url)
    ann, bob = _user(url, "ann"), _user(url, "bob")
    for user in (ann, bob):
        add_note(db, user, "Kangaroo", BODY)
    update_settings(db, bob, quiz_model="bundled")
    asked: list[str | None] = []

    def provider(setting):  # noqa: ANN001, ANN202 - provider
        asked.append(setting)
        return Scripted(*[BASIC] * 10)

    jobs.set_complete_provider(provider)
    jobs.prepare_questions(url, ann)
    jobs.prepare_questions(url, bob)
    assert asked == ["auto", "bundled"]


def test_a_run_is_recorded_when_it_starts_and_never_runs_twice_at_once(url):
    user = _user(url, "ann")
    add_note(jobs.database(url), user, "Kangaroo", BODY)
    inside, release = threading.Event(), threading.Event()

    def slow(_model):  # noqa: ANN001, ANN202 - provider
        inside.set()
        release.wait(30)
        return Scripted(*[BASIC] * 10)

    jobs.set_complete_provider(slow)
    first = threading.Thread(target=jobs.prepare_questions, args=(url, user))
    first.start()
    assert inside.wait(30)
    (running,) = _job_runs(url)
    assert running.status == "running" and running.finished_at is None
    assert running.lease_until > datetime.now(UTC)
    (second,) = jobs.run_job("prepare-questions", url, user)
    assert second.run_id is None and "still running" in second.skipped
    release.set()
    first.join(30)
    assert [r.status for r in _job_runs(url)] == ["ok"]


def test_a_failing_job_is_recorded_and_reviews_are_unaffected(url):
    db = jobs.database(url)
    user, cards = add_user_with_cards(db, "bob", 2)
    submit_review(db, user, cards[0], 3, idempotency_key="k1", at=T0)

    def broken(_model):  # noqa: ANN001, ANN202
        raise RuntimeError("no model here")

    jobs.set_complete_provider(broken)
    (report,) = jobs.run_job("prepare-questions", url)
    assert not report.ok and "no model here" in report.error
    (run,) = _job_runs(url)
    assert (run.status, run.error) == ("failed", "RuntimeError: no model here")
    submit_review(db, user, cards[1], 4, idempotency_key="k2", at=T0)
    with db.read() as session:
        assert session.scalar(select(func.count()).select_from(Review)) == 2


def test_a_failing_scheduled_job_runs_again_at_the_next_trigger(url, monkeypatch):
    _user(url, "ann")

    def broken(*_args):  # noqa: ANN002, ANN202
        raise RuntimeError("refit broke")

    monkeypatch.setattr(jobs, "kept_review_count", broken)
    config = runner.RunnerConfig(refit_every=timedelta(seconds=1), lease=timedelta(seconds=5))
    started = runner.start_runner(url, config)

    def finished() -> list[JobRun]:
        return [r for r in _job_runs(url) if r.job == "refit-memory" and r.status != "running"]

    _wait_for(lambda: len(finished()) >= 2)
    assert started.scheduler.running
    runs = finished()[:2]
    assert [r.status for r in runs] == ["failed", "failed"]
    assert "refit broke" in runs[0].error
    assert runs[0].trigger_at < runs[1].trigger_at  # two triggers, one run each


def test_refit_memory_refits_users_with_enough_new_reviews(url):
    db = jobs.database(url)
    user, cards = add_user_with_cards(db, "cy", 3)
    for i, card in enumerate(cards):
        submit_review(db, user, card, 3, idempotency_key=f"r{i}", at=T0)
    assert jobs.refit_memory(url, min_new_reviews=4).detail["users_refitted"] == []
    report = jobs.refit_memory(url, min_new_reviews=3)
    assert report.ok and report.detail["users_refitted"] == [user]
    with db.read() as session:
        assert session.get(UserSettings, user).fitted_review_count == 3
    assert jobs.refit_memory(url, min_new_reviews=3).detail["users_refitted"] == []


_FIRE_TOGETHER = """
import sys, time
from datetime import datetime
from study import jobs
time.sleep(max(0.0, float(sys.argv[2]) - time.time()))
report = jobs.refit_memory(sys.argv[1], trigger_at=datetime.fromisoformat(sys.argv[3]))
print("ran" if report.run_id else "skipped:", report.skipped or "")
"""


def test_processes_firing_the_same_trigger_run_the_job_once(url):
    """Three replicas whose schedulers fire 06:00 together: one run, two skip."""
    jobs.database(url)
    trigger = datetime(2026, 3, 1, 6, 0, tzinfo=UTC)
    start_at = time.time() + 4
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _FIRE_TOGETHER, url, str(start_at), trigger.isoformat()],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(3)
    ]
    outputs = [proc.communicate(timeout=120)[0] for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0, 0], outputs
    assert sorted(out.split()[0] for out in outputs) == ["ran", "skipped:", "skipped:"], outputs
    runs = _job_runs(url)
    assert [(r.trigger_at, r.status) for r in runs] == [(trigger, "ok")]


_DIE_WHILE_RUNNING = """
import sys, threading
from datetime import datetime, timedelta
from study import jobs
def hang(_model):
    print("inside", flush=True)
    threading.Event().wait()
jobs.set_complete_provider(hang)
jobs.prepare_questions(sys.argv[1], int(sys.argv[2]),
                       trigger_at=datetime.fromisoformat(sys.argv[3]), lease=timedelta(seconds=2))
"""


def test_a_run_whose_process_died_shows_as_died_and_runs_at_the_next_trigger(url):
    db = jobs.database(url)
    user = _user(url, "ann")
    add_note(db, user, "Kangaroo", BODY)
    monday = datetime(2026, 3, 2, 3, 0, tzinfo=UTC)
    proc = subprocess.Popen(
        [sys.executable, "-c", _DIE_WHILE_RUNNING, url, str(user), monday.isoformat()],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout.readline().strip() == "inside"
        (run,) = _job_runs(url)
        assert shown_status(run) == "running"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    _wait_for(lambda: shown_status(_job_runs(url)[0]) == "died", timeout=10)

    jobs.set_complete_provider(lambda _model: Scripted(*[BASIC] * 10))
    again = jobs.prepare_questions(url, user, trigger_at=monday)
    assert again.run_id is None and "already answered" in again.skipped  # one per trigger
    tuesday = monday + timedelta(days=1)
    report = jobs.prepare_questions(url, user, trigger_at=tuesday)
    assert report.ok and report.detail["cards"] == 1
    dead, retried = _job_runs(url)
    assert (dead.status, retried.status, retried.trigger_at) == ("died", "ok", tuesday)
    assert "stopped renewing its lease" in dead.error


def test_cli_run_now_list_and_worker_refuses_a_bad_url(url, capsys):
    _user(url, "ann")
    assert main(["jobs", "run-now", "refit-memory", "--db", url]) == 0
    assert "refit-memory" in capsys.readouterr().out
    assert main(["jobs", "run-now", "prepare-questions", "--db", url, "--user", "ann"]) == 0
    assert "prepare-questions for user" in capsys.readouterr().out
    assert main(["jobs", "list", "--db", url]) == 0
    out = capsys.readouterr().out
    assert "daily at 03:00 UTC for ann" in out and "recent runs" in out
    with pytest.raises(UnknownJobError):
        jobs.run_job("tidy-up", url)
    assert main(["jobs", "run-now", "tidy-up", "--db", url]) == 2
    assert main(["worker", "--db", "postgresql://w:secret@127.0.0.1:1/none"]) == 2
    err = capsys.readouterr().err
    assert "postgresql://w:***@127.0.0.1:1/none" in err and "secret" not in err


def test_worker_process_runs_until_stopped(url):
    proc = subprocess.Popen(
        [sys.executable, "-m", "study", "worker", "--db", url],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout.readline().startswith("worker: running the jobs on")
    finally:
        proc.send_signal(signal.SIGTERM)
    out = proc.communicate(timeout=30)[0]
    assert proc.returncode == 0 and "worker: stopped" in out
