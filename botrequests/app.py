"""The ASGI app: `botrequests.app:app`. Nothing connects at import time."""

import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI

from botrequests import __version__, db, errors, importer
from botrequests.config import Settings
from botrequests.routes import bot_requests, bots, health, records

log = logging.getLogger("botrequests")


def create_app(config: Settings | None = None) -> FastAPI:
    """The app; with no `config` it reads its settings at start-up (not at import)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        nonlocal config
        config = config or Settings()
        client = db.create_client(config)
        app.state.mongo = client
        app.state.settings = config
        await db.init_db(client, config)
        if config.import_paths and config.embedded:
            paths = [Path(p) for p in config.import_paths.split(os.pathsep) if p]
            try:
                report = await importer.load(paths)
            except importer.ImportFileError as exc:
                log.error("import failed, nothing loaded from that file: %s", exc)
                raise
            for line in report.lines():
                log.info("import: %s", line)
        try:
            yield
        finally:
            db.close_client(client)

    app = FastAPI(
        title="botrequests",
        version=__version__,
        description="The record of every interaction between AI bots and their users.",
        lifespan=lifespan,
    )
    errors.install(app)
    app.include_router(health.router)
    app.include_router(records.router)
    app.include_router(bots.router)
    app.include_router(bot_requests.router)
    return app


app = create_app()
