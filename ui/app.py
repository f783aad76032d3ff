"""Compose the tabs into one Blocks app and serve it on FastAPI with a health check.

Gradio is mounted on our own FastAPI app (``gr.mount_gradio_app``) so that ``/healthz``
is a plain JSON route next to the UI, and so that tests can serve the same app with
uvicorn on any port.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import gradio as gr
import uvicorn
from fastapi import FastAPI

from db import init_db
from ui import notes as notes_tab
from ui import playground, review, settings_tab, stats, tune
from ui.config import AppConfig
from ui.context import AppContext
from ui.models import ModelPool
from ui.queues import DB_EVENT
from ui.render import CSS

__all__ = ["build_context", "build_demo", "create_app"]

KEYS_JS = (Path(__file__).with_name("keys.js")).read_text()


def build_context(config: AppConfig | None = None, db_url: str | None = None) -> AppContext:
    """Open the database (migrating it) and set up the shared model pool."""
    config = config or AppConfig.from_env()
    return AppContext(config=config, db=init_db(db_url), models=ModelPool(config))


def _check_oauth_installed() -> None:
    """Fail at start, not at the first sign-in, when Spaces login cannot work."""
    missing = [
        name for name in ("itsdangerous", "authlib") if importlib.util.find_spec(name) is None
    ]
    if missing:
        raise RuntimeError(
            f"Hugging Face sign-in (SPACE_ID is set) needs {', '.join(missing)}: install "
            "`gradio[oauth]==6.31.0` (add it to requirements.txt for the Space image)."
        )


def build_demo(ctx: AppContext) -> gr.Blocks:
    """The whole UI; handlers reach the database and models through ``ctx``."""
    if ctx.config.on_spaces:
        _check_oauth_installed()
    with gr.Blocks(title="selfspec lab") as demo:
        with gr.Row():
            gr.Markdown(
                "# selfspec lab\nLossless decoding acceleration, and a study companion for it."
            )
            if ctx.config.on_spaces:
                gr.LoginButton()
        with gr.Tabs():
            with gr.Tab("Playground", id="playground") as tab:
                playground.build(ctx, demo, tab)
            with gr.Tab("Tune", id="tune") as tab:
                tune.build(ctx, tab)
            with gr.Tab("Review", id="review"):
                review.build(ctx)
            with gr.Tab("Notes", id="notes"):
                notes_tab.build(ctx, demo)
            with gr.Tab("Stats", id="stats") as tab:
                stats.build(ctx, tab)
            with gr.Tab("Settings", id="settings"):
                load_settings, settings_fields = settings_tab.build(ctx)
        demo.load(load_settings, None, list(settings_fields), api_visibility="private", **DB_EVENT)
    demo.queue(default_concurrency_limit=1, max_size=ctx.config.max_queue)
    return demo


def create_app(ctx: AppContext) -> FastAPI:
    """FastAPI app serving the UI at ``/`` and ``/healthz``; the default model starts
    loading in the background at once."""
    app = FastAPI()
    ctx.models.preload()

    @app.get("/healthz")
    def healthz() -> dict[str, bool | str | None]:
        return {
            "model_loaded": ctx.models.default_loaded,
            "model_error": ctx.models.preload_error,
            "db_ok": ctx.db_ok(),
        }

    auth = ("user", ctx.config.password) if ctx.config.password else None
    return gr.mount_gradio_app(
        app,
        build_demo(ctx),
        path="/",
        auth=auth,
        auth_message="This instance is password-protected (user name: user).",
        max_file_size=20 * 1024 * 1024,
        css=CSS,
        js=KEYS_JS,
        footer_links=["api", "gradio"],
    )


def server_config(app: FastAPI, host: str, port: int) -> uvicorn.Config:
    """How the app is served, by the entry point and the tests alike. Graceful shutdown is
    bounded: open pages hold their event streams, and on SIGTERM (docker stop, a Spaces
    restart) uvicorn would otherwise wait for them forever."""
    return uvicorn.Config(
        app, host=host, port=port, log_level="warning", timeout_graceful_shutdown=5
    )
