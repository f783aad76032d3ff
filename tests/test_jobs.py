"""Background jobs: one scheduler per process, fixed ids in the DB job store, run-now,
and a failing job that is recorded without touching reviews."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select, text

from db import JobRun, Review, UserSettings, get_or_create_user
from study import jobs
from study.__main__ import main
from study.cards_service import list_cards
from study.errors import UnknownJobError
from study.notes_service import add_note
from study.reviews import submit_review
from tests.study_helpers import T0, add_user_with_cards
from tests.test_quiz_service import BASIC, BODY, Scripted


@pytest.fixture
def url(tmp_path):
    yield f"sqlite:///{tmp_path / 'jobs.db'}"
    jobs.shutdown_scheduler()
    jobs.set_complete_provider(None)


def _job_runs(url: str) -> list[JobRun]:
    with jobs.database(url).read() as session:
        return list(session.scalars(select(JobRun).order_by(JobRun.id)))


def test_scheduler_starts_once_with_fixed_job_ids_in_the_database(url):
    first = jobs.start_scheduler(url)
    assert jobs.start_scheduler(url) is first and first.running
    assert {job.id for job in first.get_jobs()} == {"prepare-questions", "refit-memory"}
    jobs.register_jobs(first, url)  # re-registering replaces, never duplicates
    with jobs.database(url).read() as session:
        ids = session.execute(text("SELECT id FROM apscheduler_jobs ORDER BY id")).scalars()
        assert list(ids) == ["prepare-questions", "refit-memory"]
    jobs.shutdown_scheduler()
    assert jobs.start_scheduler(url) is not first  # a fresh start after shutdown


def test_prepare_questions_uses_the_provider_and_records_the_run(url):
    db = jobs.database(url)
    user = db.write(lambda s: get_or_create_user(s, "ann").id)
    note = add_note(db, user, "Kangaroo", BODY)
    jobs.set_complete_provider(lambda: Scripted(*[BASIC] * 10))
    report = jobs.run_job("prepare-questions", url)
    assert report.ok and report.detail == {"notes": 1, "cards": 1, "failed_notes": []}
    assert [c.question for c in list_cards(db, user, note.id)] == [
        "What does Kangaroo draft tokens with?"
    ]
    assert [(r.job, r.status) for r in _job_runs(url)] == [("prepare-questions", "ok")]


def test_a_failing_job_is_recorded_and_reviews_are_unaffected(url):
    db = jobs.database(url)
    user, cards = add_user_with_cards(db, "bob", 2)
    submit_review(db, user, cards[0], 3, idempotency_key="k1", at=T0)

    def broken():  # noqa: ANN202
        raise RuntimeError("no model here")

    jobs.set_complete_provider(broken)
    report = jobs.run_job("prepare-questions", url)
    assert not report.ok and "no model here" in report.error
    (run,) = _job_runs(url)
    assert (run.status, run.error) == ("failed", "RuntimeError: no model here")
    submit_review(db, user, cards[1], 4, idempotency_key="k2", at=T0)
    with db.read() as session:
        assert session.scalar(select(func.count()).select_from(Review)) == 2


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


def test_cli_run_now_and_list(url, capsys):
    assert main(["jobs", "run-now", "refit-memory", "--db", url]) == 0
    assert "refit-memory" in capsys.readouterr().out
    assert main(["jobs", "list", "--db", url]) == 0
    out = capsys.readouterr().out
    assert "prepare-questions" in out and "recent runs" in out
    with pytest.raises(UnknownJobError):
        jobs.run_job("tidy-up", url)
    assert main(["jobs", "run-now", "tidy-up", "--db", url]) == 2
