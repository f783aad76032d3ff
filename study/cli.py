"""Subcommands ``jobs``, ``worker``, ``export`` and ``import`` of ``python -m study``.

Each ``add_*`` function is listed in ``study.__main__.COMMANDS``. Services are imported
inside the handlers so that ``python -m study evaluate`` does not pay for them.
"""

from __future__ import annotations

import argparse

from db import default_url

__all__ = ["add_export", "add_import", "add_jobs", "add_worker"]


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
    run_now.add_argument("--user", help="prepare-questions for this user only (default: all)")
    run_now.set_defaults(func=_run_jobs_now)
    listing = actions.add_parser("list", help="show the users' job times and recent runs")
    listing.add_argument("--db", help="database URL")
    listing.set_defaults(func=_run_jobs_list)


def _run_jobs_now(args: argparse.Namespace) -> int:
    from study.jobs import run_job

    url = args.db or default_url()
    user = _user_id(url, args.user) if args.user else None
    reports = run_job(args.name, url, user)
    for report in reports:
        print(report.describe())
    if not reports:
        print(f"{args.name}: no users yet, nothing to do")
    return 0 if all(report.ok for report in reports) else 1


def _run_jobs_list(args: argparse.Namespace) -> int:
    from sqlalchemy import select

    from db import User, UserSettings
    from study.job_runs import shown_status
    from study.jobs import database, recent_job_runs

    db = database(args.db or default_url())
    with db.read() as session:
        times = session.execute(
            select(User.name, UserSettings.daily_job_time)
            .join(UserSettings, UserSettings.user_id == User.id)
            .order_by(User.name)
        ).all()
    print("refit-memory       every 6 hours from 00:00 UTC")
    for name, hhmm in times:
        print(f"prepare-questions  daily at {hhmm} UTC for {name}")
    runs = recent_job_runs(db, limit=10)
    if runs:
        print("recent runs:")
    for run in runs:
        print(
            f"  {run.started_at:%Y-%m-%d %H:%M} {run.instance:28} {shown_status(run):7} "
            f"{run.owner or ''} {run.error or ''}"
        )
    return 0


def add_worker(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "worker",
        help="run the scheduled jobs (for app replicas started with SELFSPEC_JOBS=off)",
        description="Run the background jobs on their schedules until stopped (SIGTERM or "
        "Ctrl-C). Safe beside other runners: every run is claimed in the database first.",
    )
    parser.add_argument("--db", help="database URL (default: $DATABASE_URL or ./data/study.db)")
    parser.set_defaults(func=_run_worker)


def _run_worker(args: argparse.Namespace) -> int:
    import signal
    import threading

    from db.engine import safe_url
    from study.runner import shutdown_runner, start_runner

    url = args.db or default_url()
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    runner = start_runner(url)
    print(f"worker: running the jobs on {safe_url(url)} ({len(runner.next_runs())} scheduled)")
    print("worker: stop with SIGTERM or Ctrl-C", flush=True)
    stop.wait()
    shutdown_runner(wait=True)
    print("worker: stopped", flush=True)
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
    parser.add_argument(
        "--on-duplicate",
        choices=["refuse", "skip", "replace", "keep-both"],
        default="refuse",
        help="notes whose title you already have: refuse the import (default), skip them, "
        "replace their text (cards kept) or keep both",
    )
    _db_options(parser)
    parser.set_defaults(func=_run_import)


def _run_import(args: argparse.Namespace) -> int:
    from pathlib import Path

    from study.jobs import database
    from study.markdown_import import read_file
    from study.note_import import import_folder, import_markdown

    url, path = args.db or default_url(), Path(args.path)
    db, user = database(url), _user_id(url, args.user)
    if path.is_dir() and not path.is_symlink():
        result = import_folder(db, user, path, on_duplicate=args.on_duplicate)
    else:
        result = import_markdown(
            db, user, read_file(path), filename=str(path), on_duplicate=args.on_duplicate
        )
    print(result.summary())
    return 0
