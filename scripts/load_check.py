"""Ten playground users at once on a real model: queueing, latency and responsiveness.

    python scripts/load_check.py [--model bundled] [--users 10] [--tokens 32]

Serves the app (temporary database) on a free port, submits one playground run per
simulated user at the same moment, polls /healthz throughout, and prints the figures the
README states: wall time, per-user latency, highest queue position seen, failures, and
how long /healthz took while the queue was full.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx  # noqa: E402
from gradio_client import Client  # noqa: E402

from tests.app_helpers import serve_app, user_headers  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="bundled")
    p.add_argument("--users", type=int, default=10)
    p.add_argument("--tokens", type=int, default=32)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp, serve_app(Path(tmp), model=args.model) as served:
        clients = [
            Client(served.url, headers=user_headers(f"user{i}"), verbose=False)
            for i in range(args.users)
        ]
        health: list[float] = []
        done = threading.Event()

        def poll_health() -> None:
            while not done.is_set():
                t0 = time.perf_counter()
                httpx.get(served.url + "healthz", timeout=30).raise_for_status()
                health.append(time.perf_counter() - t0)
                time.sleep(0.5)

        threading.Thread(target=poll_health, daemon=True).start()
        started = time.perf_counter()
        jobs = [
            c.submit(
                args.model,
                f"Name {i + 2} fruits.",
                [],
                args.tokens,
                0.0,
                api_name="/playground_run",
            )
            for i, c in enumerate(clients)
        ]
        ranks: set[int] = set()

        def watch(job) -> tuple[float, str]:  # noqa: ANN001 - a gradio_client Job
            while not job.done():
                rank = job.status().rank
                if rank is not None:
                    ranks.add(rank)
                time.sleep(0.05)
            try:
                status = job.result()[0]
            except Exception as exc:  # noqa: BLE001 - counted as a failure below
                status = f"error: {exc}"
            return time.perf_counter() - started, status

        with ThreadPoolExecutor(args.users) as pool:
            results = list(pool.map(watch, jobs))
        done.set()
    latencies = sorted(t for t, _ in results)
    failures = [s for _, s in results if "Done" not in s]
    print(
        f"{args.users} users, model {args.model}, {args.tokens} tokens each (vanilla only): "
        f"all done in {latencies[-1]:.1f} s; per-user latency min {latencies[0]:.1f} s, "
        f"median {statistics.median(latencies):.1f} s, max {latencies[-1]:.1f} s; "
        f"highest queue position {max(ranks, default=0)}; failures {len(failures)}; "
        f"/healthz during the load: median {statistics.median(health) * 1e3:.0f} ms, "
        f"max {max(health) * 1e3:.0f} ms over {len(health)} polls"
    )
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
