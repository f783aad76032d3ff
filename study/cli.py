"""Subcommands ``jobs``, ``export`` and ``import`` of ``python -m study``.

Each ``add_*`` function is listed in ``study.__main__.COMMANDS``. Services are imported
inside the handlers so that ``python -m study evaluate`` does not pay for them.
"""

from __future__ import annotations

import argparse

from db import default_url

__all__ = ["add_export", "add_import", "add_jobs"]


def _db_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--db", help="database URL (default: $DATABASE_URL or ./data/study.db)")
    parser.add_argument("--user", default="local", help="user name (default: local)")


def _user_id(url: str, name: str) -> int:
    from db import get_or_create_user
    from study.jobs import database

    return database(url).write(lambda session: get_or_create_user(session, name).id)


def add_jobs(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("jobs", help="list or run the background jobs")
    actions = parser.add_subparsers(dest="action", required=True)
    run_now = actions.add_parser("run-now", help="run a job now and print what it did")
    run_now.add_argument("name", help="prepare-questions or refit-memory")
    run_now.add_argument("--db", help="database URL")
    run_now.set_defaults(func=_run_jobs_now)
    listing = actions.add_parser("list", help="show the scheduled jobs and recent runs")
    listing.add_argument("--db", help="database URL")
    listing.set_defaults(func=_run_jobs_list)


def _run_jobs_now(args: argparse.Namespace) -> int:
    from study.jobs import run_job

    report = run_job(args.name, args.db or default_url())
    print(report.describe())
    return 0 if report.ok else 1


def _run_jobs_list(args: argparse.Namespace) -> int:
    from apscheduler.schedulers.background import BackgroundScheduler

    from study.jobs import JobName, database, job_store, recent_job_runs

    db = database(args.db or default_url())
    store = job_store(db)
    store.start(BackgroundScheduler(timezone="UTC"), "default")
    stored = {job.id: job for job in store.get_all_jobs()}
    for name in JobName:
        job = stored.get(name.value)
        when = job.next_run_time.isoformat() if job and job.next_run_time else "not scheduled yet"
        print(f"{name.value:18} next run: {when}")
    runs = recent_job_runs(db, limit=10)
    if runs:
        print("recent runs:")
    for run in runs:
        print(f"  {run.started_at:%Y-%m-%d %H:%M} {run.job:18} {run.status:6} {run.error or ''}")
    return 0


def add_export(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("export", help="export cards (.apkg, CSV) or the review log")
    parser.add_argument("--format", required=True, choices=["apkg", "cards-csv", "reviews-csv"])
    parser.add_argument("--out", required=True, help="file to write")
    _db_options(parser)
    parser.set_defaults(func=_run_export)


def _run_export(args: argparse.Namespace) -> int:
    from study.export_service import export_user_data
    from study.jobs import database

    url = args.db or default_url()
    summary = export_user_data(database(url), _user_id(url, args.user), args.format, args.out)
    print(f"wrote {summary.count} item(s) as {summary.format.value} to {summary.path}")
    return 0


def add_import(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("import", help="import Markdown notes (a file or a folder)")
    parser.add_argument("path", help="a .md file or a folder of them")
    _db_options(parser)
    parser.set_defaults(func=_run_import)


def _run_import(args: argparse.Namespace) -> int:
    from pathlib import Path

    from study.jobs import database
    from study.notes_service import import_markdown

    url = args.db or default_url()
    notes = import_markdown(database(url), _user_id(url, args.user), Path(args.path))
    print(f"imported {len(notes)} note(s): " + ", ".join(n.title for n in notes))
    return 0
