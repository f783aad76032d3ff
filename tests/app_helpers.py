"""Serve the real app (tiny model, temporary database) on a free local port for tests.

The server runs uvicorn in a background thread inside the test process, so tests can
look at the same database the app writes to. Users are simulated with the test header
(``AppConfig.test_user_header``), the way a signed-in Hugging Face profile scopes data.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import uvicorn

from db import get_or_create_user
from study.notes_service import add_note
from ui.app import build_context, create_app, server_config
from ui.config import AppConfig
from ui.context import AppContext
from ui.users import TEST_USER_HEADER

__all__ = ["Served", "serve_app", "add_cards", "free_port", "plot_rows", "user_headers"]


@dataclass(frozen=True)
class Served:
    url: str
    ctx: AppContext


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def serve_app(
    tmp_path: Path, model: str = "tiny-llama", dtype: str = "float32"
) -> Iterator[Served]:
    """The app on http://127.0.0.1:<free port>, stopped on exit (``dtype``: the app's
    SELFSPEC_DTYPE; "auto" serves a model as a user's app would)."""
    port = free_port()
    config = AppConfig(default_model=model, port=port, test_user_header=True, dtype=dtype)
    ctx = build_context(config, db_url=f"sqlite:///{tmp_path / 'app.db'}")
    server = uvicorn.Server(server_config(create_app(ctx), "127.0.0.1", port))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the app did not start within 60 s")
        time.sleep(0.05)
    try:
        yield Served(f"http://127.0.0.1:{port}/", ctx)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        ctx.db.dispose()


def user_headers(name: str) -> dict[str, str]:
    return {TEST_USER_HEADER: name}


def add_cards(
    ctx: AppContext, user: str, questions: list[tuple[str, str]], title: str = "Card note"
) -> list[int]:
    """Basic cards for ``user`` on a new note (as if generated), returning their ids."""
    from db import Card

    uid = ctx.db.write(lambda session: get_or_create_user(session, user).id)
    note = add_note(ctx.db, uid, title, "Speculative decoding drafts tokens and verifies them.")

    def work(session) -> list[int]:  # noqa: ANN001 - test helper
        cards = [
            Card(
                user_id=uid,
                note_id=note.id,
                question=q,
                answer=a,
                kind="mcq" if rest else "basic",
                choices=rest[0] if rest else None,
            )  # fmt: skip
            for q, a, *rest in questions
        ]
        session.add_all(cards)
        session.flush()
        return [c.id for c in cards]

    return ctx.db.write(work)


def plot_rows(output: dict | None) -> list[list]:
    """The data rows of a plot output from gradio_client: a plot value, or an update (the
    app sends updates where it also sets the legend or a hint); [] for no value."""
    if output is None:
        return []
    value = output.get("value", output) if output.get("__type__") == "update" else output
    return [] if value is None else value["data"]
