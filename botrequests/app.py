"""The ASGI app: `botrequests.app:app`. Nothing connects at import time."""

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from botrequests import __version__, db, errors
from botrequests.config import Settings, settings
from botrequests.routes import bot_requests, bots, health, records


def create_app(config: Settings | None = None) -> FastAPI:
    config = config or settings

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        client = db.create_client(config)
        app.state.mongo = client
        app.state.settings = config
        await db.init_db(client, config)
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


logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
app = create_app()
