"""Scale-out check: PostgreSQL, two app processes and one worker, N users reviewing at once.

    python scripts/scale_check.py [--users 50] [--cards 20] [--think-ms 1000] \
        [--app-jobs inline|off] [--out docs/scale/scale-check.json]

Starts a throwaway PostgreSQL (``db.pg_local``, default durability), two ``app.py``
processes (tiny model, test-user header) and one ``python -m study worker``, all on that
database. Each simulated user, over the app's API (``gradio_client``), saves a job time
in Settings, adds and edits a note, starts a review session and rates each of its cards
(every tenth rating sent twice, like a double click), pausing ``--think-ms`` between
requests; users alternate between the two app processes. Every user's job time is the
same minute shortly ahead, so all three job runners (the apps too, with ``--app-jobs
inline``) fire ``prepare-questions`` for every user at that trigger.

Reports throughput, p50/p95 latency of a rating, runs per (job instance, trigger)
(must be 1), and lost or doubled reviews (must be 0), and writes them as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
from gradio_client import Client  # noqa: E402
from sqlalchemy import func, select  # noqa: E402

from db import Card, CardState, JobRun, Note, Review, User, init_db, utcnow  # noqa: E402
from db.pg_local import LocalPostgres  # noqa: E402
from ui.users import TEST_USER_HEADER  # noqa: E402

RATE_LABEL = "3 · Good"


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def seed(url: str, users: int, cards: int) -> None:
    """Users (already seeded, so no seed notes) with one note of ``cards`` new cards each."""
    db = init_db(url)

    def work(session) -> None:  # noqa: ANN001
        for index in range(users):
            user = User(name=f"user{index:02d}", seeded_at=utcnow())
            session.add(user)
            session.flush()
            note = Note(user_id=user.id, title="Scale note", body="Drafts are verified.", tags=[])
            session.add(note)
            session.flush()
            session.add_all(
                Card(user_id=user.id, note_id=note.id, question=f"Q{i}?", answer=f"A{i}")
                for i in range(cards)
            )

    db.write(work)
    db.dispose()


def start_processes(url: str, ports: list[int], app_jobs: str, log_dir: Path) -> list:
    env = {**os.environ, "DATABASE_URL": url, "SELFSPEC_MODEL": "tiny-llama",
           "SELFSPEC_TEST_USER_HEADER": "1", "SELFSPEC_JOBS": app_jobs,
           "SELFSPEC_DTYPE": "float32", "SELFSPEC_MAX_QUEUE": "200"}  # fmt: skip
    procs = []
    for port in ports:
        log = (log_dir / f"app-{port}.log").open("w")
        procs.append(subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, stdout=log,
                                      stderr=subprocess.STDOUT, env={**env, "SELFSPEC_PORT": str(port)}))  # fmt: skip
    log = (log_dir / "worker.log").open("w")
    procs.append(subprocess.Popen([sys.executable, "-m", "study", "worker"], cwd=ROOT,
                                  stdout=log, stderr=subprocess.STDOUT, env=env))  # fmt: skip
    for port in ports:
        deadline = time.monotonic() + 180
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).json()["db_ok"]:
                    break
            except (httpx.HTTPError, ValueError):
                pass
            if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                raise RuntimeError(f"app on port {port} did not start; see {log_dir}")
            time.sleep(0.5)
    return procs


def connect(index: int, base: str) -> Client:
    """User ``index``'s API client (made before the timed part: it fetches the config)."""
    return Client(base, headers={TEST_USER_HEADER: f"user{index:02d}"}, verbose=False)


def drive_user(client: Client, job_time: str, cards: int, think: float) -> dict:
    """One user's session; returns rating latencies and what the client saw."""
    seen = {"latencies": [], "recorded": 0, "duplicates_seen": 0, "errors": []}
    try:
        assert (
            client.predict("ebbinghaus", 0.9, 20, job_time, api_name="/save_settings") == "Saved."
        )
        note_id, *_ = client.predict(None, "My note", "first text", "", "", "", "",
                                     api_name="/notes_save")  # fmt: skip
        time.sleep(think)
        client.predict(note_id, "My note", "edited text", "", "t", "", "",
                       api_name="/notes_save")  # fmt: skip
        key, *_ = client.predict(api_name="/review_start")
        for number in range(cards):
            time.sleep(think)
            started = time.perf_counter()
            result = client.predict(RATE_LABEL, key, api_name="/review_rate")
            seen["latencies"].append(time.perf_counter() - started)
            seen["recorded"] += "Recorded" in result[-1]
            if number % 10 == 9:  # a double click on the same card: must count once
                again = client.predict(RATE_LABEL, key, api_name="/review_rate")
                seen["duplicates_seen"] += "already recorded" in again[-1]
            key = result[0]
    except Exception as error:  # noqa: BLE001 - reported in the summary
        seen["errors"].append(f"{type(error).__name__}: {error}")
    return seen


def database_figures(url: str, users: int, cards: int, trigger: datetime) -> dict:
    db = init_db(url, upgrade=False)
    with db.read() as session:
        reviews = session.scalar(select(func.count()).select_from(Review))
        per_card = session.execute(
            select(Review.card_id, func.count()).group_by(Review.card_id)
        ).all()
        reps = session.execute(select(CardState.reps, func.count()).group_by(CardState.reps)).all()
        runs = session.execute(
            select(JobRun.instance, JobRun.trigger_at, func.count(), func.min(JobRun.status))
            .where(JobRun.trigger_at.is_not(None))
            .group_by(JobRun.instance, JobRun.trigger_at)
        ).all()
        errors = session.scalars(
            select(JobRun.error).where(JobRun.status == "failed").distinct()
        ).all()
        owners = session.execute(select(JobRun.owner, func.count()).group_by(JobRun.owner)).all()
    db.dispose()
    at_trigger = [r for r in runs if r[1] == trigger]
    return {
        "reviews_stored": reviews,
        "reviews_expected": users * cards,
        "cards_reviewed": len(per_card),
        "cards_with_more_than_one_review": sum(1 for _, n in per_card if n > 1),
        "card_states_by_reps": {str(k): v for k, v in reps},
        "prepare_instances_run_at_trigger": len(at_trigger),
        "runs_per_trigger": sorted({n for _, _, n, _ in runs}),
        "run_statuses": sorted({s for *_, s in runs}),
        "runs_by_owner": {o or "?": n for o, n in owners},
        "failed_run_errors": [e[:300] for e in errors],
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--users", type=int, default=50)
    p.add_argument("--cards", type=int, default=20)
    p.add_argument("--think-ms", type=int, default=1000)
    p.add_argument("--app-jobs", choices=["inline", "off"], default="inline")
    p.add_argument("--out", type=Path, default=ROOT / "docs/scale/scale-check.json")
    args = p.parse_args()
    server = LocalPostgres.start(durable=True)
    procs: list = []
    try:
        url = server.create_database("scale")
        seed(url, args.users, args.cards)
        ports = [_free_port(), _free_port()]
        log_dir = server.folder / "logs"
        log_dir.mkdir()
        procs = start_processes(url, ports, args.app_jobs, log_dir)
        trigger = (utcnow() + timedelta(seconds=100)).replace(second=0, microsecond=0)
        trigger += timedelta(minutes=1)
        print(f"processes up; every user's job time is {trigger:%H:%M} UTC", flush=True)
        clients = [connect(i, f"http://127.0.0.1:{ports[i % 2]}/") for i in range(args.users)]
        started = time.perf_counter()
        with ThreadPoolExecutor(args.users) as pool:
            results = list(pool.map(
                lambda c: drive_user(c, f"{trigger:%H:%M}", args.cards, args.think_ms / 1000),
                clients,
            ))  # fmt: skip
        elapsed = time.perf_counter() - started
        wait = (trigger - datetime.now(UTC)).total_seconds() + 30
        if wait > 0:
            print(f"waiting {wait:.0f} s for the job trigger", flush=True)
            time.sleep(wait)
        figures = database_figures(url, args.users, args.cards, trigger)
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()  # a job still generating questions holds the exit
                proc.wait(30)
        server.stop()
    latencies = sorted(t for r in results for t in r["latencies"])
    recorded = sum(r["recorded"] for r in results)
    report = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
        "settings": vars(args) | {"out": str(args.out), "postgresql": "durable (fsync on)"},
        "ratings": len(latencies),
        "ratings_per_s": round(len(latencies) / elapsed, 1),
        "elapsed_s": round(elapsed, 1),
        "rating_p50_ms": round(1000 * statistics.median(latencies), 1) if latencies else None,
        "rating_p95_ms": round(1000 * latencies[int(0.95 * (len(latencies) - 1))], 1)
        if latencies
        else None,
        "rating_max_ms": round(1000 * latencies[-1], 1) if latencies else None,
        "recorded_seen_by_clients": recorded,
        "double_clicks_counted_once": sum(r["duplicates_seen"] for r in results),
        "errors": [e for r in results for e in r["errors"]],
        "lost_reviews": recorded - figures["reviews_stored"]
        if recorded >= figures["reviews_stored"]
        else 0,
        "doubled_reviews": figures["cards_with_more_than_one_review"],
        **figures,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(report, indent=2))
    ok = (
        not report["errors"]
        and report["lost_reviews"] == 0
        and report["doubled_reviews"] == 0
        and figures["reviews_stored"] == figures["reviews_expected"]
        and figures["runs_per_trigger"] == [1]
        and figures["prepare_instances_run_at_trigger"] == args.users
    )
    print("scale check:", "PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
