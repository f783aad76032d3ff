"""Start the job runner in the app process when configured to, sharing the loaded model."""

from __future__ import annotations

from study.jobs import set_complete_provider
from study.runner import start_runner
from ui.context import AppContext

__all__ = ["start_jobs"]


def start_jobs(ctx: AppContext) -> bool:
    """Run the scheduled jobs here unless ``SELFSPEC_JOBS=off`` (a worker runs them);
    ``study.runner`` makes a second call a no-op. Returns whether they run here."""
    if ctx.config.jobs == "off":
        return False
    set_complete_provider(ctx.quiz_complete)
    start_runner(ctx.db.engine.url.render_as_string(hide_password=False))
    return True
