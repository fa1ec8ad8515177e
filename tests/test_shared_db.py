"""Moving in beside another application on its database (issue 21): the indexes it made,
a truthful /readyz, a start-up retry that never dies silently."""

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest
from pymongo import MongoClient
from pymongo.errors import OperationFailure, ServerSelectionTimeoutError

from botrequests import db
from botrequests.app import create_app
from tests.conftest import lane_settings
from tests.wire import wire_server

OTHER_DB = "botrequests_neighbour"


async def _their_indexes(database) -> None:
    """Indexes as the other application left them: each collides with one of ours."""
    # Our organization_1 (non-unique) on users: theirs has the same name, and is unique.
    await database.users.create_index("organization", name="organization_1", unique=True)
    # Our organization_1_slug_1 (unique): the name is theirs, on other keys.
    await database.bots.create_index("slug", name="organization_1_slug_1")
    # Our createdAt_-1__id_-1: the same index under their own name.
    await database.botrequests.create_index([("createdAt", -1), ("_id", -1)], name="recent")


@asynccontextmanager
async def neighbour_app(app, monkeypatch, prepare) -> AsyncIterator[httpx.AsyncClient]:
    """A second app on its own database (`OTHER_DB`), whose client `prepare` gets first."""
    settings = lane_settings(app.state.settings.mongodb_uri).model_copy(
        update={"mongodb_database": OTHER_DB, "mongodb_timeout_ms": 300}
    )
    client = db.create_client(settings)
    await client.drop_database(OTHER_DB)
    await prepare(client[OTHER_DB])
    monkeypatch.setattr(db, "create_client", lambda _settings: client)
    other = create_app(settings)
    try:
        async with other.router.lifespan_context(other):
            transport = httpx.ASGITransport(app=other)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
                http.app = other
                yield http
    finally:
        # Beanie binds documents globally: bind them back to the session's database.
        await db.init_db(app.state.mongo, app.state.settings)


async def test_start_up_copes_with_the_other_applications_indexes(app, monkeypatch, caplog):
    caplog.set_level(logging.INFO, logger="botrequests.db")
    seen = {}

    async def prepare(database):
        await _their_indexes(database)
        seen["users"] = await database.users.index_information()

    async with neighbour_app(app, monkeypatch, prepare) as http:
        ready = await http.get("/readyz")
        assert ready.status_code == 200, ready.text
        assert ready.json()["status"] == "ok"
        reported = "\n".join(ready.json()["indexes"])
        assert "bots.organization_1_slug_1 (the name is taken" in reported
        assert "may share a slug" in reported
        assert "users.organization_1" in reported
        assert "recent" not in reported  # equivalent: nothing is lost, so not a warning
        # Data calls work, and the other application's indexes are as it left them.
        org = await http.post("/organizations", json={"name": "Acme"})
        assert org.status_code == 201
        database = http.app.state.mongo[OTHER_DB]
        assert await database.users.index_information() == seen["users"]
        bots = await database.bots.index_information()
        assert bots["organization_1_slug_1"]["key"] == [("slug", 1)]
        requests = await database.botrequests.index_information()
        assert "createdAt_-1__id_-1" not in requests
        assert "bot_1_createdAt_-1__id_-1" in requests  # the rest were made
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and "indexes" in r.msg]
    assert len(warnings) == 1  # one line names every index and its cost
    assert "organization_1_slug_1" in warnings[0].getMessage()
    assert "the same index exists as recent" in caplog.text


async def test_start_up_reports_a_unique_index_the_data_refuses(app, monkeypatch, caplog):
    """The other application already has two bots with one slug in one organization: the
    unique index cannot be built; the service starts and says what that costs."""
    caplog.set_level(logging.WARNING, logger="botrequests.db")

    async def prepare(database):
        org = (await database.organizations.insert_one({"name": "Acme"})).inserted_id
        for _ in range(2):
            await database.bots.insert_one({"name": "Twin", "slug": "twin", "organization": org})

    async with neighbour_app(app, monkeypatch, prepare) as http:
        ready = await http.get("/readyz")
        assert ready.status_code == 200
        assert any(
            "organization_1_slug_1" in line and "refused" in line
            for line in ready.json()["indexes"]
        )
        assert (await http.get("/bots")).status_code == 200
    assert "may share a slug" in caplog.text


async def test_start_up_retry_survives_any_error_and_readyz_tells_why(app, monkeypatch, caplog):
    """Down at start, then a conflict-like failure on a retry: the retry goes on, says so,
    and /readyz is 503 with the reason until data calls can succeed."""
    caplog.set_level(logging.INFO, logger="botrequests")
    real_init = db.init_db
    calls = {"n": 0}

    async def flaky(client, config):
        calls["n"] += 1
        if calls["n"] == 1:
            raise ServerSelectionTimeoutError("down")
        if calls["n"] == 2:
            raise OperationFailure("Index already exists with a different name", code=85)
        return await real_init(client, config)

    monkeypatch.setattr(db, "init_db", flaky)
    async with neighbour_app(app, monkeypatch, _their_indexes) as http:
        first = await http.get("/readyz")
        assert first.status_code == 503
        assert first.json()["detail"] == "database unreachable (ServerSelectionTimeoutError)"
        assert (await http.get("/bot-requests")).status_code == 503
        for _ in range(100):
            await asyncio.sleep(0.1)
            ready = await http.get("/readyz")
            if ready.status_code == 200:
                break
            assert ready.status_code == 503
            if calls["n"] >= 2:
                assert "OperationFailure" in ready.json()["detail"]
        assert ready.status_code == 200
        assert calls["n"] == 3
        assert (await http.get("/bot-requests")).status_code == 200
        monkeypatch.setattr(db, "init_db", real_init)
    assert "start-up failed: OperationFailure" in caplog.text
    assert "database reachable again: ready" in caplog.text


@pytest.mark.realmongo
async def test_start_up_down_then_up_with_conflicting_indexes(app, caplog):
    """Its own server, with the other application's indexes: stopped before the service
    starts, started again later. The retry creates what it can and reports the rest."""
    caplog.set_level(logging.WARNING, logger="botrequests")
    with wire_server() as server:
        with MongoClient(server.uri) as sync:
            database = sync[OTHER_DB]
            database.users.create_index("organization", name="organization_1", unique=True)
            database.bots.create_index("slug", name="organization_1_slug_1")
        server.stop()
        settings = lane_settings(server.uri).model_copy(
            update={"mongodb_database": OTHER_DB, "mongodb_timeout_ms": 300}
        )
        other = create_app(settings)
        try:
            async with other.router.lifespan_context(other):
                transport = httpx.ASGITransport(app=other)
                async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
                    down = await http.get("/readyz")
                    assert down.status_code == 503
                    assert "unreachable" in down.json()["detail"]
                    server.start()
                    for _ in range(120):
                        ready = await http.get("/readyz")
                        if ready.status_code == 200:
                            break
                        await asyncio.sleep(0.5)
                    assert ready.status_code == 200, ready.text
                    assert any("organization_1_slug_1" in i for i in ready.json()["indexes"])
                    made = await http.post("/organizations", json={"name": "Acme"})
                    assert made.status_code == 201
        finally:
            await db.init_db(app.state.mongo, app.state.settings)
    assert "indexes not created as wanted" in caplog.text
