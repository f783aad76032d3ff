"""Entry point (also the Spaces app file): build the app from the environment and serve it.

Environment: SELFSPEC_MODEL (default model, `bundled`), SELFSPEC_HOST and SELFSPEC_PORT
or GRADIO_SERVER_PORT or PORT (127.0.0.1:7860), SELFSPEC_DATA_DIR or DATABASE_URL (database), SELFSPEC_HOSTED=1
(model allow-list), SELFSPEC_PASSWORD (password login), SPACE_ID (Hugging Face login),
SELFSPEC_JOBS=inline|off (scheduled jobs here, or in `python -m study worker`).
See docs/app.md and docs/scale.md.
"""

import sys

import uvicorn

from db import DatabaseUnavailableError
from ui.app import build_context, create_app, server_config
from ui.config import ConfigError
from ui.jobs import start_jobs


def main() -> None:
    try:
        ctx = build_context()
    except (ConfigError, DatabaseUnavailableError) as error:
        sys.exit(f"selfspec lab did not start: {error}")
    start_jobs(ctx)
    app = create_app(ctx)
    print(f"selfspec lab on http://{ctx.config.host}:{ctx.config.port}", flush=True)
    uvicorn.Server(server_config(app, ctx.config.host, ctx.config.port)).run()


if __name__ == "__main__":
    main()
