"""Ten playground users at once: requests queue one at a time with a visible position,
and none fails. Tiny model and few tokens, so the test measures queueing, not speed."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from gradio_client import Client

from tests.app_helpers import Served, serve_app, user_headers

USERS = 10


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Served:
    with serve_app(tmp_path_factory.mktemp("load")) as served:
        yield served


def test_ten_concurrent_playground_users_queue_and_all_finish(served: Served) -> None:
    clients = [
        Client(served.url, headers=user_headers(f"user{i}"), verbose=False) for i in range(USERS)
    ]
    started = time.perf_counter()
    jobs = [
        c.submit("tiny-llama", f"Hello {i}", [], 16, 0.0, api_name="/playground_run")
        for i, c in enumerate(clients)
    ]
    ranks: set[int] = set()
    with ThreadPoolExecutor(USERS) as pool:
        results = list(pool.map(lambda job: _watch(job, ranks), jobs))
    elapsed = time.perf_counter() - started
    assert all("Done" in status for status, *_ in results)
    assert max(ranks, default=0) >= 1  # someone waited behind another request and saw it
    print(
        f"{USERS} concurrent playground runs finished in {elapsed:.1f} s; highest queue position seen {max(ranks)}"
    )


def _watch(job, ranks: set[int]) -> tuple:  # noqa: ANN001 - a gradio_client Job
    while not job.done():
        rank = job.status().rank
        if rank is not None:
            ranks.add(rank)
        time.sleep(0.02)
    return job.result()
