"""Database events run side by side, and beside a model event that is still running.

The queue groups are set in ``ui.queues``; these tests fail when a rating waits for
another user's rating or for the model, as it did when every event ran one at a time.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from gradio_client import Client

import ui.review
from tests.app_helpers import add_cards, serve_app, user_headers
from ui.app import build_demo
from ui.queues import DB_CONCURRENCY

MEET_TIMEOUT_S = 10


def test_two_users_ratings_run_at_once_while_the_model_is_busy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with serve_app(tmp_path) as served:
        model_busy, release_model = threading.Event(), threading.Event()
        real_get = served.ctx.models.get

        def held_get(source: str | None):  # noqa: ANN202 - the pool's own return type
            model_busy.set()
            release_model.wait(60)
            return real_get(source)

        # Both ratings must be inside submit_review together to pass the barrier: if the
        # queue ran them one at a time, the first would wait alone and the barrier break.
        meeting = threading.Barrier(2, timeout=MEET_TIMEOUT_S)
        real_submit = ui.review.submit_review

        def submit_together(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
            meeting.wait()
            return real_submit(*args, **kwargs)

        monkeypatch.setattr(served.ctx.models, "get", held_get)
        monkeypatch.setattr(ui.review, "submit_review", submit_together)
        users = ["ann", "bob"]
        for name in users:
            add_cards(served.ctx, name, [("Q?", "A")])
        clients = [Client(served.url, headers=user_headers(n), verbose=False) for n in users]
        runner = Client(served.url, headers=user_headers("cat"), verbose=False)
        model_job = runner.submit("tiny-llama", "Hello", [], 4, 0.0, api_name="/playground_run")
        try:
            assert model_busy.wait(30), "the model event did not start"
            keys = [c.predict(api_name="/review_start")[0] for c in clients]
            with ThreadPoolExecutor(2) as pool:
                results = list(
                    pool.map(
                        lambda ck: ck[0].predict("3 · Good", ck[1], api_name="/review_rate"),
                        zip(clients, keys, strict=True),
                    )
                )
            assert all("Recorded" in result[-1] for result in results)
            assert not model_job.done()  # the ratings did not wait for the model
        finally:
            release_model.set()
        model_job.result(timeout=60)


def test_database_events_share_the_db_group_and_model_events_run_alone(tmp_path: Path) -> None:
    with serve_app(tmp_path) as served:
        groups = {f.api_name: (f.concurrency_id, f.concurrency_limit)
                  for f in build_demo(served.ctx).fns.values()}  # fmt: skip
    for name in ("review_start", "review_rate", "review_undo", "notes_save", "save_settings"):
        assert groups[name] == ("db", DB_CONCURRENCY), name
    for name in ("playground_run", "notes_generate", "tune_search", "tune_train"):
        assert groups[name] == ("model", 1), name
    assert DB_CONCURRENCY > 1
