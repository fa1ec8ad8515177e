"""The ASGI app: `botrequests.app:app`. Nothing connects at import time."""

import asyncio
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import Depends, FastAPI, Request
from pymongo.errors import ConnectionFailure

from botrequests import __version__, auth, db, errors, importer
from botrequests import records as record_service
from botrequests.config import Settings, settings
from botrequests.documents import ApiKey, Organization
from botrequests.errors import Unavailable
from botrequests.middleware import Guard
from botrequests.responses import ERROR_RESPONSES
from botrequests.routes import bot_requests, bots, health, keys, records, ui

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
        ready = await _start_database(app, client, config)
        if ready and config.import_paths and config.embedded:
            paths = [Path(p) for p in config.import_paths.split(os.pathsep) if p]
            try:
                report = await importer.load(paths)
            except importer.ImportFileError as exc:
                log.error("import failed, nothing loaded from that file: %s", exc)
                raise
            for line in report.lines():
                log.info("import: %s", line)
        if ready:
            await _bootstrap_development_key(config)
        try:
            yield
        finally:
            retry = getattr(app.state, "db_retry", None)
            if retry is not None:
                retry.cancel()
            db.close_client(client)

    app = FastAPI(
        title="botrequests",
        version=__version__,
        description="The record of every interaction between AI bots and their users.",
        lifespan=lifespan,
    )
    errors.install(app)
    app.add_middleware(
        Guard,
        max_body_bytes=(config or settings).max_body_bytes,
        max_json_depth=(config or settings).max_json_depth,
    )
    app.include_router(health.router)
    app.include_router(ui.router)
    app.mount("/ui/static", ui.assets, name="ui-static")
    data = [Depends(auth.principal), Depends(_database_ready)]
    for router in (records.router, keys.router, bots.router, bot_requests.router):
        app.include_router(router, dependencies=data, responses=ERROR_RESPONSES)
    return app


async def _database_ready(request: Request) -> None:
    if not request.app.state.db_ready:
        raise Unavailable("database unavailable, try again shortly")


async def _start_database(app: FastAPI, client: object, config: Settings) -> bool:
    """Bind Beanie and create indexes. If the database cannot be reached the service still
    starts (data endpoints answer 503, /readyz too) and keeps retrying in the background,
    so it recovers by itself when the database comes back."""
    app.state.db_ready = False
    try:
        await db.init_db(client, config)
    except (ConnectionFailure, OSError) as exc:
        log.error("database unreachable at start-up (%s); retrying", type(exc).__name__)

        async def retry() -> None:
            while True:
                await asyncio.sleep(max(config.mongodb_timeout_ms / 1000, 1))
                try:
                    await db.init_db(client, config)
                except (ConnectionFailure, OSError):
                    continue
                app.state.db_ready = True
                log.info("database reachable again")
                return

        app.state.db_retry = asyncio.create_task(retry())
        return False
    app.state.db_ready = True
    return True


async def _bootstrap_development_key(config: Settings) -> None:
    """On the embedded backend with access control on, make a development organization
    and key and print them, so that the first command of the README just works."""
    if not (config.embedded and config.auth_enabled):
        return
    if await ApiKey.find_one({}) is not None:
        return
    org = await Organization(**record_service.stamped({"name": "Development"})).insert()
    _, key = await auth.issue_key(org.id)
    log.warning(
        "embedded backend, access control on: development organization %s, API key %s "
        "(send 'Authorization: Bearer <key>'; BOTREQUESTS_AUTH=off turns access control off)",
        org.id,
        key,
    )


app = create_app()
