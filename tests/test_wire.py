"""Driver and server behaviour the service relies on, pinned in both lanes (and what only a
real server can show: a restart, a stopped server)."""

import asyncio
import time
from datetime import UTC, datetime

import httpx
import pytest
from bson import ObjectId

from botrequests.app import create_app
from botrequests.storage import db
from tests.conftest import lane_settings
from tests.factories import record, request_body, seed_world
from tests.wire import wire_server


async def test_dates_round_trip_at_millisecond_precision(client, raw):
    world = await seed_world(client)
    moments = [
        datetime(2023, 6, 28, 5, 38, 0, 418_000, tzinfo=UTC),
        datetime(1969, 12, 31, 23, 59, 59, 999_000, tzinfo=UTC),
        datetime(2038, 1, 19, 3, 14, 8, 1_000, tzinfo=UTC),
    ]
    ids = []
    for moment in moments:
        result = await raw.botrequests.insert_one(
            {"bot": ObjectId(world["bot"]["id"]), "success": True, "createdAt": moment}
        )
        ids.append(result.inserted_id)
    for identifier, moment in zip(ids, moments, strict=True):
        stored = await raw.botrequests.find_one({"_id": identifier})
        assert stored["createdAt"] == moment
        served = (await client.get(f"/bot-requests/{identifier}?populate=none")).json()
        assert served["createdAt"] == moment.isoformat(timespec="milliseconds")[:23] + "Z"


async def test_unordered_batch_reports_a_raced_duplicate_key_per_item(client, raw):
    world = await seed_world(client)
    items = [request_body(world, requestKey=f"r{i}") for i in range(4)]
    # Two identical batches at once: the unique index refuses each key's second insert,
    # per item, and both answers name the same stored requests.
    first, second = await asyncio.gather(
        client.post("/bot-requests/batch", json={"items": items}),
        client.post("/bot-requests/batch", json={"items": items}),
    )
    ids = [[item.get("id") for item in r.json()["items"]] for r in (first, second)]
    assert ids[0] == ids[1]
    assert await raw.botrequests.count_documents({"requestKey": {"$exists": True}}) == 4


async def test_start_up_again_with_indexes_already_present(app, raw):
    """A second worker, or a restart, finds every index made: start-up succeeds and
    changes nothing."""
    before = await raw.botrequests.index_information()
    second = create_app(lane_settings(app.state.settings.mongodb_uri))
    try:
        async with second.router.lifespan_context(second):
            assert second.state.db_ready is True
            assert await raw.botrequests.index_information() == before
    finally:
        await db.init_db(app.state.mongo, app.state.settings)  # Beanie binds globally


async def test_graph_lookup_stops_at_the_depth_cap(client, raw, app):
    world = await seed_world(client)
    previous = await record(client, world)
    chain = [previous]
    for _ in range(6):
        previous = await record(client, world, originalRequest=previous["id"])
        chain.append(previous)
    original = app.state.settings
    app.state.settings = original.model_copy(update={"thread_max_depth": 3})
    try:
        answer = (await client.get(f"/bot-requests/{chain[0]['id']}/thread")).json()
    finally:
        app.state.settings = original
    assert answer["truncated"] is True
    assert [r["depth"] for r in answer["items"]] == [0, 1, 2, 3]


@pytest.mark.realmongo
async def test_outage_server_stopped_then_started_again(app):
    """Its own server (not the session's): stopped under a running service, then started
    again on the same port and storage. The service answers 503 meanwhile and recovers."""
    with wire_server() as server:
        settings = lane_settings(server.uri).model_copy(update={"mongodb_timeout_ms": 500})
        other = create_app(settings)
        try:
            async with other.router.lifespan_context(other):
                transport = httpx.ASGITransport(app=other)
                async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
                    made = await http.post("/organizations", json={"name": "kept"})
                    assert made.status_code == 201
                    server.stop()
                    down = await http.get(f"/organizations/{made.json()['id']}")
                    assert down.status_code == 503
                    assert (await http.get("/readyz")).status_code == 503
                    assert (await http.get("/healthz")).status_code == 200
                    server.start()
                    deadline = time.monotonic() + 180  # the server's start, on a busy machine
                    while time.monotonic() < deadline:
                        back = await http.get(f"/organizations/{made.json()['id']}")
                        if back.status_code == 200:
                            break
                        await asyncio.sleep(0.2)
                    assert back.status_code == 200
                    assert back.json()["name"] == "kept"
        finally:
            await db.init_db(app.state.mongo, app.state.settings)
