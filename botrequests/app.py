"""The ASGI app: `botrequests.app:app`. Nothing connects at import time."""

import asyncio
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import Depends, FastAPI, Request
from pymongo.errors import ConnectionFailure

from botrequests import __version__, auth, errors, importer, repair, retention
from botrequests import records as record_service
from botrequests.config import Settings, settings
from botrequests.documents import ApiKey, Organization
from botrequests.errors import Unavailable, unavailable
from botrequests.middleware import Guard
from botrequests.responses import ERROR_RESPONSES
from botrequests.routes import bot_requests, bots, erasures, health, keys, otlp, records, ui
from botrequests.storage import datadir, db

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
                report = await importer.load(paths, max_depth=config.max_json_depth)
            except importer.ImportFileError as exc:
                log.error("import failed, nothing loaded from that file: %s", exc)
                raise
            for line in report.lines():
                log.info("import: %s", line)
        words = None
        if ready:
            await repair.after_unclean_stop(client)
            await _bootstrap_development_key(config, db.data_directory(client))
            # The embedded backend's indexes, as the data was loaded: the first calls after
            # a start cost what later ones do (the word index follows in the background).
            await db.prepare_indexes(client, config)
            words = app.state.word_indexes = asyncio.create_task(
                db.build_word_indexes(client, config)
            )
        sweeper = None
        if config.retention_sweep_seconds > 0:
            sweeper = asyncio.create_task(_sweep_now_and_then(app, config.retention_sweep_seconds))
        try:
            yield
        finally:
            for task in (getattr(app.state, "db_retry", None), sweeper, words):
                if task is not None:
                    task.cancel()
            db.close_client(client)

    app = FastAPI(
        title="botrequests",
        version=__version__,
        description="The record of every interaction between AI bots and their users.",
        lifespan=lifespan,
        # /docs is served below with Swagger UI's assets from the package, not a CDN.
        docs_url=None,
        redoc_url=None,
    )
    errors.install(app)
    app.add_middleware(
        Guard,
        max_body_bytes=(config or settings).max_body_bytes,
        max_json_depth=(config or settings).max_json_depth,
        body_timeout_seconds=(config or settings).body_timeout_seconds,
    )
    # Routes are matched in order, one by one: the busiest first (bot requests are read and
    # written on every call of a bot product; a GET by id was matched after 35 others).
    data = [Depends(auth.principal), Depends(_database_ready)]
    for router in (bot_requests.router, bots.router, records.router, keys.router, erasures.router):
        app.include_router(router, dependencies=data, responses=ERROR_RESPONSES)
    # Its errors are OTLP's own (`google.rpc.Status`), documented on the route.
    app.include_router(otlp.router, dependencies=data)
    app.include_router(health.router)
    app.include_router(ui.home)
    app.include_router(ui.docs)
    app.include_router(ui.router)
    app.mount("/ui/static", ui.assets, name="ui-static")
    app.openapi = lambda: _openapi_with_scopes(app)  # type: ignore[method-assign]
    return app


def _openapi_with_scopes(app: FastAPI) -> dict:
    """The OpenAPI document, each data operation saying which key scopes may call it
    (`x-scopes`, and a line of its description)."""
    if app.openapi_schema is None:
        schema = FastAPI.openapi(app)
        for path, operations in schema.get("paths", {}).items():
            if path.startswith(("/healthz", "/readyz", "/ui")):
                continue
            for method, operation in operations.items():
                allowed = auth.scopes_for(method.upper(), path)
                if _admin_only(app, method.upper(), path):
                    allowed = ()
                operation["x-scopes"] = list(allowed)
                said = ", ".join(allowed) if allowed else "none (the admin token only)"
                operation["description"] = (
                    operation.get("description", "") + f"\n\nAPI key scopes: {said}."
                ).strip()
        app.openapi_schema = schema
    return app.openapi_schema


def _admin_only(app: FastAPI, method: str, path: str) -> bool:
    """Whether the route at `path` needs the admin token whatever the key's scope."""
    for route in app.routes:
        if getattr(route, "path", None) == path and method in getattr(route, "methods", ()):
            return any(
                dependency.call is auth.admin_only
                for dependency in route.dependant.dependencies  # type: ignore[attr-defined]
            )
    return False


async def _database_ready(request: Request) -> None:
    if not request.app.state.db_ready:
        raise Unavailable(unavailable(request.app.state.db_problem))


async def _start_database(app: FastAPI, client: object, config: Settings) -> bool:
    """Bind Beanie and create indexes. If the database cannot be reached the service still
    starts (data endpoints answer 503, /readyz too) and keeps retrying in the background,
    so it recovers by itself when the database comes back. Any other failure with the
    database reachable (e.g. authentication) stops start-up with that one error."""
    app.state.db_ready = False
    app.state.db_problem = "starting"
    app.state.index_shortfall = []
    try:
        app.state.index_shortfall = await db.init_db(client, config)
    except (ConnectionFailure, OSError) as exc:
        app.state.db_problem = f"unreachable ({type(exc).__name__})"
        log.error("database unreachable at start-up (%s); retrying", type(exc).__name__)
        task = asyncio.create_task(_retry_start(app, client, config))
        task.add_done_callback(_report_retry_end)
        app.state.db_retry = task
        return False
    except Exception as exc:
        log.error("database start-up failed: %s: %s", type(exc).__name__, exc)
        raise
    app.state.db_ready = True
    app.state.db_problem = None
    return True


RETRY_MAX_S = 30.0


async def _retry_start(app: FastAPI, client: object, config: Settings) -> None:
    """Retry start-up until it succeeds, backing off to RETRY_MAX_S. Every failure keeps
    the loop going (an index conflict once ended it silently) and is logged when it
    differs from the last one; /readyz says what is failing meanwhile."""
    delay = max(config.mongodb_timeout_ms / 1000, 1)
    last = None
    while True:
        await asyncio.sleep(delay)
        try:
            app.state.index_shortfall = await db.init_db(client, config)
        except Exception as exc:
            unreachable = isinstance(exc, ConnectionFailure | OSError)
            problem = (
                f"unreachable ({type(exc).__name__})"
                if unreachable
                else f"start-up failed: {type(exc).__name__}: {exc}"[:500]
            )
            app.state.db_problem = problem
            if problem != last:
                log.error("database %s; retrying (every %.0f s at most)", problem, RETRY_MAX_S)
                last = problem
            delay = min(delay * 2, RETRY_MAX_S)
            continue
        app.state.db_problem = None
        app.state.db_ready = True
        log.info("database reachable again: ready")
        return


async def _sweep_now_and_then(app: FastAPI, every: float) -> None:
    """The retention sweep, every `every` seconds (the first after one interval), by
    whichever worker takes the lease; a failure is logged and the next one tried."""
    while True:
        await asyncio.sleep(every)
        if not app.state.db_ready:
            continue
        try:
            swept = await retention.sweep()
        except Exception:
            log.exception("retention sweep failed; trying again in %.0f s", every)
            continue
        for purged in swept or ():
            if purged.requests:
                log.info("retention: %s", purged.line())


def _report_retry_end(task: asyncio.Task) -> None:
    """The retry loop catches every error; this says so if something still ends it."""
    if not task.cancelled() and task.exception() is not None:
        log.critical("database start-up retry stopped: %r", task.exception())


# At most this many imported organizations get a development key each at start-up.
DEV_KEYS_MAX = 20


async def _bootstrap_development_key(config: Settings, directory: Path | None) -> None:
    """On the embedded backend with access control on, issue development keys and print
    them, so that every flow of the docs works with what the log shows: one per
    imported organization (`serve --import`), else one for a new Development
    organization. Kept on disk, the keys are written to the data directory's
    `development-key` (0600) before they exist, and later starts say where they are."""
    if not (config.embedded and config.auth_enabled):
        return
    keys = None if directory is None else directory / datadir.KEY_FILE
    if await ApiKey.find_one({}) is not None:
        if keys is not None and keys.exists():
            log.warning(
                "access control on: the development API key of the first start still works "
                "(unless revoked); it is kept in %s",
                keys,
            )
        return
    orgs = await Organization.find_all().sort("name").limit(DEV_KEYS_MAX + 1).to_list()
    if not orgs:
        orgs = [await Organization(**record_service.stamped({"name": "Development"})).insert()]
    issued = [(org, auth.new_key()) for org in orgs[:DEV_KEYS_MAX]]
    if keys is not None:
        # On disk before the keys are stored: a key that works is never one nobody kept.
        datadir.write_private(keys, "".join(f"{key} {org.id} {org.name}\n" for org, key in issued))
    for org, key in issued:
        await auth.store_key(org.id, key)
        log.warning(
            "embedded backend, access control on: API key %s for organization %r (%s); "
            "send 'Authorization: Bearer <key>' (BOTREQUESTS_AUTH=off turns access control off)%s",
            key,
            org.name,
            org.id,
            f"; kept in {keys}" if keys is not None else "",
        )
    if len(orgs) > DEV_KEYS_MAX:
        log.warning(
            "more organizations than %d: keys for the others through "
            "POST /organizations/{id}/api-keys with BOTREQUESTS_ADMIN_TOKEN",
            DEV_KEYS_MAX,
        )


app = create_app()
