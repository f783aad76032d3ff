"""Scale-out check: PostgreSQL, two app processes and one worker, N users reviewing at once.

    python scripts/scale_check.py [--users 50] [--cards 20] [--think-ms 1000] \
        [--app-jobs inline|off] [--rating-client sse|gradio_client] \
        [--out docs/scale/scale-check.json]

Starts a throwaway PostgreSQL (``db.pg_local``, default durability), two ``app.py``
processes (tiny model, test-user header) and one ``python -m study worker``, all on that
database. Each simulated user, over the app's API (``gradio_client``), saves a job time
in Settings and adds and edits a note; then, all together, ``--review-lead-s`` before
the job trigger, starts a review session and rates each of its cards (every tenth rating
sent twice, like a double click). Users alternate between the two app processes and
pause before each request for ``--think-ms`` on average (drawn uniformly from half to
one and a half times that, seeded: people do not click in step). Every user's job time
is the same minute, so all three job runners (the apps too, with ``--app-jobs inline``)
fire ``prepare-questions`` for every user while the reviews are under way.

A rating is timed from the request to its result. ``--rating-client sse`` (default)
sends it the way the browser does: a POST to the queue and the answer read from the
session's event stream as it arrives. ``gradio_client`` times ``Client.predict``, which
adds its own cost: it polls for messages every 50 ms and opens a stream per call.

Reports throughput, p50/p95 latency of a rating (also split into ratings made while
``prepare-questions`` runs and the rest), the CPU time per rating of each part and the
load average (the machine may be shared), runs per (job instance, trigger) (must be 1),
and lost or doubled reviews (must be 0), and writes them as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
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
JOB_WAIT_S = 600  # longest wait for the trigger's job runs to finish


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
                health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).json()
                if health["db_ok"] and health["model_loaded"]:  # the load is over
                    break
            except (httpx.HTTPError, ValueError):
                pass
            if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                raise RuntimeError(f"app on port {port} did not start; see {log_dir}")
            time.sleep(0.5)
    return procs


def cpu_seconds(pid: int, *, children: bool = False) -> float:
    """CPU time (user + system) of process ``pid`` so far, from Linux's /proc; with
    ``children``, also that of its live and reaped children (PostgreSQL's backends)."""

    def ticks(one: int, reaped: bool) -> int:
        try:
            fields = Path(f"/proc/{one}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # it ended meanwhile
            return 0
        return sum(int(f) for f in fields[11 : 15 if reaped else 13])  # utime stime [cu cs]

    total = ticks(pid, children)
    if children:
        for entry in Path("/proc").iterdir():
            stat = entry / "stat"
            if entry.name.isdigit() and stat.exists():
                try:
                    parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
                except (OSError, IndexError, ValueError):
                    continue
                total += ticks(int(entry.name), False) if parent == pid else 0
    return total / os.sysconf("SC_CLK_TCK")


def cpu_now(procs: list, postgres: int) -> dict[str, float]:
    """CPU seconds so far of the apps, the worker, PostgreSQL and this load generator."""
    *apps, worker = procs
    return {"apps": sum(cpu_seconds(p.pid) for p in apps), "worker": cpu_seconds(worker.pid),
            "postgresql": cpu_seconds(postgres, children=True),
            "load_generator": sum(os.times()[:2])}  # fmt: skip


def connect(index: int, base: str) -> Client:
    """User ``index``'s API client (made before the timed part: it fetches the config,
    slow on a busy machine, hence the timeout)."""
    headers = {TEST_USER_HEADER: f"user{index:02d}"}
    return Client(base, headers=headers, verbose=False, httpx_kwargs={"timeout": 120})


def sse_call(client: Client, http: httpx.Client, api_name: str, data: list) -> tuple:
    """Call ``api_name`` as the browser does, in ``client``'s session (which holds the
    review on the server): join the queue, then read the session's event stream until
    the event's result. ``data`` holds None for a State input; the State's slot is
    dropped from the result, as ``Client.predict`` does."""
    joined = http.post("gradio_api/queue/join", json={
        "data": data, "fn_index": client._infer_fn_index(api_name, None), "event_data": None,
        "session_hash": client.session_hash, "trigger_id": None})  # fmt: skip
    joined.raise_for_status()
    event_id = joined.json()["event_id"]
    params = {"session_hash": client.session_hash}
    with http.stream("GET", "gradio_api/queue/data", params=params) as stream:
        for line in stream.iter_lines():
            message = json.loads(line[5:]) if line.startswith("data:") else {}
            if message.get("event_id") == event_id and message["msg"] == "process_completed":
                if not message.get("success"):
                    raise RuntimeError(f"{api_name} failed: {message.get('output')}")
                return tuple(message["output"]["data"][1:])
    raise RuntimeError(f"the event stream ended without the result of {api_name}")


def prepare_user(client: Client, job_time: str, think: float) -> list[str]:
    """A user's untimed steps: save the job time in Settings, add a note and edit it."""
    try:
        saved = client.predict("ebbinghaus", 0.9, 20, job_time, api_name="/save_settings")
        assert saved == "Saved.", saved
        note_id, *_ = client.predict(None, "My note", "first text", "", "", "", "",
                                     api_name="/notes_save")  # fmt: skip
        time.sleep(think)
        client.predict(note_id, "My note", "edited text", "", "t", "", "",
                       api_name="/notes_save")  # fmt: skip
    except Exception as error:  # noqa: BLE001 - reported in the summary
        return [f"{type(error).__name__}: {error}"]
    return []


def review_user(client: Client, cards: int, think: float, seed: int, rating_client: str) -> dict:
    """A user's review session; returns each rating's start time and latency, and what
    the client saw."""
    seen = {"ratings": [], "recorded": 0, "duplicates_seen": 0, "errors": []}
    pause = random.Random(seed)
    http = httpx.Client(base_url=client.src, headers=client.headers, timeout=300)

    def call(api_name: str, *data: str | None) -> tuple:
        if rating_client == "sse":
            return sse_call(client, http, api_name, [*data, None] if data else [])  # State last
        return client.predict(*data, api_name=api_name)

    def rate(key: str) -> tuple:
        return call("/review_rate", RATE_LABEL, key)

    try:
        key, *_ = call("/review_start")
        for number in range(cards):
            time.sleep(think * pause.uniform(0.5, 1.5))
            at, started = time.time(), time.perf_counter()
            result = rate(key)
            seen["ratings"].append((at, time.perf_counter() - started))
            seen["recorded"] += "Recorded" in result[-1]
            if number % 10 == 9:  # a double click on the same card: must count once
                again = rate(key)
                seen["duplicates_seen"] += "already recorded" in again[-1]
            key = result[0]
    except Exception as error:  # noqa: BLE001 - reported in the summary
        seen["errors"].append(f"{type(error).__name__}: {error}")
    finally:
        http.close()
    return seen


def wait_for_runs(url: str, trigger: datetime, expected: int) -> None:
    """Until the trigger's job runs have all started and finished (or JOB_WAIT_S)."""
    db = init_db(url, upgrade=False)
    deadline = time.monotonic() + JOB_WAIT_S
    try:
        while time.monotonic() < deadline:
            with db.read() as session:
                finished = session.scalar(
                    select(func.count()).select_from(JobRun)
                    .where(JobRun.trigger_at == trigger, JobRun.finished_at.is_not(None))
                )  # fmt: skip
            if finished >= expected:
                return
            time.sleep(2)
    finally:
        db.dispose()


def latency_ms(latencies: list[float]) -> dict:
    """p50 / p95 / max of ``latencies`` (seconds) in milliseconds."""
    if not latencies:
        return {"n": 0}
    ordered = sorted(latencies)
    return {"n": len(ordered), "p50_ms": round(1000 * statistics.median(ordered), 1),
            "p95_ms": round(1000 * ordered[int(0.95 * (len(ordered) - 1))], 1),
            "max_ms": round(1000 * ordered[-1], 1)}  # fmt: skip


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
        window = session.execute(
            select(func.min(JobRun.started_at), func.max(JobRun.finished_at))
            .where(JobRun.trigger_at == trigger)
        ).one()  # fmt: skip
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
        "jobs_window": [t.isoformat() if t else None for t in window],
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--users", type=int, default=50)
    p.add_argument("--cards", type=int, default=20)
    p.add_argument("--think-ms", type=int, default=1000)
    p.add_argument("--app-jobs", choices=["inline", "off"], default="inline")
    p.add_argument("--rating-client", choices=["sse", "gradio_client"], default="sse")
    p.add_argument("--review-lead-s", type=int, default=10,
                   help="start the reviews this long before the job trigger")  # fmt: skip
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
        clients = [connect(i, f"http://127.0.0.1:{ports[i % 2]}/") for i in range(args.users)]
        # A minute ahead at least: the worker takes up a saved job time within 15 s.
        trigger = (utcnow() + timedelta(seconds=60)).replace(second=0, microsecond=0)
        trigger += timedelta(minutes=1)
        print(f"clients connected; every user's job time is {trigger:%H:%M} UTC", flush=True)
        think = args.think_ms / 1000
        with ThreadPoolExecutor(args.users) as pool:
            setup_errors = [e for errors in pool.map(
                lambda c: prepare_user(c, f"{trigger:%H:%M}", think), clients) for e in errors]  # fmt: skip
            lead = (trigger - datetime.now(UTC)).total_seconds() - args.review_lead_s
            print(f"settings saved; reviews start in {max(lead, 0):.0f} s", flush=True)
            time.sleep(max(lead, 0))
            postgres = int((server.data / "postmaster.pid").read_text().split()[0])
            cpu_before, started = cpu_now(procs, postgres), time.perf_counter()
            results = list(pool.map(
                lambda i: review_user(clients[i], args.cards, think, i, args.rating_client),
                range(args.users),
            ))  # fmt: skip
        elapsed = time.perf_counter() - started
        cpu = {k: v - cpu_before[k] for k, v in cpu_now(procs, postgres).items()}
        load = os.getloadavg()[0]  # the machine is shared: say how busy it was
        print("reviews done; waiting for the job runs", flush=True)
        wait_for_runs(url, trigger, args.users)
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
    ratings = [rating for r in results for rating in r["ratings"]]
    first, last = (datetime.fromisoformat(t).timestamp() if t else None
                   for t in figures["jobs_window"])  # fmt: skip

    def while_jobs_ran(at: float, seconds: float) -> bool:
        return first is not None and at + seconds >= first and (last is None or at <= last)

    latencies = latency_ms([s for _, s in ratings])
    recorded = sum(r["recorded"] for r in results)
    report = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
        "settings": vars(args)
        | {
            "out": str(args.out),
            "postgresql": "durable (fsync on)",
            "think": "uniform 0.5-1.5 x think_ms, seeded per user",
        },
        "ratings": len(ratings),
        "ratings_per_s": round(len(ratings) / elapsed, 1),
        "elapsed_s": round(elapsed, 1),
        "load_average_1min_after_reviews": round(load, 2),
        "cpu_ms_per_rating_during_reviews": {
            k: round(1000 * v / max(len(ratings), 1), 1) for k, v in cpu.items()
        },
        "rating_p50_ms": latencies.get("p50_ms"),
        "rating_p95_ms": latencies.get("p95_ms"),
        "rating_max_ms": latencies.get("max_ms"),
        "ratings_while_jobs_ran": latency_ms([s for at, s in ratings if while_jobs_ran(at, s)]),
        "ratings_otherwise": latency_ms([s for at, s in ratings if not while_jobs_ran(at, s)]),
        "recorded_seen_by_clients": recorded,
        "double_clicks_counted_once": sum(r["duplicates_seen"] for r in results),
        "errors": setup_errors + [e for r in results for e in r["errors"]],
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
