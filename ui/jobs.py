"""Start the background scheduler once per process, sharing the app's loaded model."""

from __future__ import annotations

from study.jobs import set_complete_provider, start_scheduler
from ui.context import AppContext

__all__ = ["start_jobs"]


def start_jobs(ctx: AppContext) -> None:
    """Register the daily jobs; ``study.jobs`` makes a second call a no-op."""
    set_complete_provider(lambda: ctx.complete)
    start_scheduler(ctx.db.engine.url.render_as_string(hide_password=False))
