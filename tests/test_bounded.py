"""No single request may stall the service (issue 20): input checks linear and bounded,
the event loop free while the embedded database works, thread answers bounded, slow
queries reported as slow."""

import asyncio
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from bson import ObjectId
from pymongo.errors import ExecutionTimeout, NetworkTimeout, ServerSelectionTimeoutError

from botrequests import prompts
from botrequests.storage import db
from tests.factories import record, request_body, seed_world, template_bot
from tests.setup_writes import insert_all

OPTIONS = [str(i) for i in range(1000)]


async def multiselect_bot(client) -> str:
    bot = await client.post(
        "/bots",
        json={
            "name": "Many",
            "slug": "many",
            "inputs": [{"name": "tags", "inputType": "multiselect", "options": OPTIONS}],
            "promptTemplate": "tags: {tags}",
        },
    )
    assert bot.status_code == 201, bot.text
    return bot.json()["id"]


async def test_multiselect_with_a_quarter_million_values_refused_promptly(client, raw):
    world = await seed_world(client)
    bot = await multiselect_bot(client)
    body = request_body(world, bot=bot, inputs={"tags": ["7"] * 250_000})
    started = time.process_time()  # CPU time: other work on the machine does not count
    response = await client.post("/bot-requests", json=body)
    assert time.process_time() - started < 5  # O(values x options) took 5.3 s
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "inputs", "tags"]
    assert "at most 1000 values" in response.json()["detail"][0]["msg"]
    assert await raw.botrequests.count_documents({}) == 0


async def test_multiselect_of_every_option_accepted(client):
    world = await seed_world(client)
    bot = await multiselect_bot(client)
    response = await client.post(
        "/bot-requests", json=request_body(world, bot=bot, inputs={"tags": OPTIONS[::-1]})
    )
    assert response.status_code == 201
    assert response.json()["inputs"]["tags"] == OPTIONS[::-1]


def test_option_checks_are_set_lookups():
    definition = {
        "inputType": "multiselect",
        "options": [{"label": str(i), "value": i} for i in range(1000)],
    }
    values = list(range(1000))
    started = time.process_time()  # CPU time: other work on the machine does not count
    for _ in range(200):  # a batch of 200 such requests
        assert prompts.check_value(definition, values) is None
    assert time.process_time() - started < 5
    assert prompts.check_value(definition, [True]) is not None  # a boolean is not 1
    assert prompts.check_value({**definition, "inputType": "select"}, 999.0) is None
    nested = {"inputType": "select", "options": [{"value": {"a": [1, 2]}}]}
    assert prompts.check_value(nested, {"a": [1, 2]}) is None
    assert prompts.check_value(nested, {"a": [2, 1]}) is not None


def test_file_input_lists_are_bounded():
    definition = {"inputType": "file"}
    assert "at most 100" in prompts.check_value(definition, [str(ObjectId())] * 101)


def test_render_stops_before_building_a_huge_prompt():
    template = "{t}" * 60_000
    started = time.process_time()  # CPU time: other work on the machine does not count
    with pytest.raises(prompts.PromptTooLong):
        prompts.render(template, {"t": "x" * 100_000})
    assert time.process_time() - started < 1
    assert prompts.render("{t}{t}", {"t": "ab"}) == "abab"


async def test_template_that_would_build_a_huge_prompt_422(client, raw):
    world = await seed_world(client)
    bot = await template_bot(client, "echo", [{"name": "t", "inputType": "text"}], "{t}" * 30_000)
    body = request_body(world, bot=bot, inputs={"t": "y" * 100})
    response = await client.post("/bot-requests", json=body)
    assert response.status_code == 422
    assert "over 200000 characters" in response.json()["detail"][0]["msg"]
    batch = await client.post("/bot-requests/batch", json={"items": [body]})
    assert batch.json()["items"][0]["status"] == "error"
    assert await raw.botrequests.count_documents({}) == 0
    preview = await client.get(
        f"/bots/{bot}/prompt-preview", params={"inputs": '{"t": "' + "y" * 100 + '"}'}
    )
    assert preview.status_code == 422


# --- the event loop stays free on the embedded backend ------------------------------------


async def insert_chain(raw, bot: ObjectId, length: int) -> list[ObjectId]:
    ids = [ObjectId() for _ in range(length)]
    start = datetime(2024, 1, 1, tzinfo=UTC)
    await insert_all(
        raw.botrequests,
        [
            {
                "_id": ids[i],
                "bot": bot,
                "success": True,
                "response": {"turn": i},
                **({"originalRequest": ids[i - 1]} if i else {}),
                "createdAt": start + timedelta(seconds=i),
            }
            for i in range(length)
        ],
    )
    return ids


async def test_health_answers_while_a_long_embedded_thread_lookup_runs(
    client, raw, app, monkeypatch
):
    if not app.state.settings.embedded:
        pytest.skip("about the embedded backend's event loop")
    from botrequests.storage import mongomock_pipeline

    world = await seed_world(client)
    ids = await insert_chain(raw, ObjectId(world["bot"]["id"]), 50)
    # A lookup that holds the embedded database (as a scan of a large collection does):
    # the embedded aggregation, blocking wherever it runs, until /healthz has answered. Were
    # it on the event loop, /healthz could not answer before it let go (at the latest
    # after HOLD seconds), and the order of events below would say so.
    original = mongomock_pipeline.aggregate
    inside, release, events = threading.Event(), threading.Event(), []
    hold = 60

    def slow_aggregate(*args, **kwargs):
        inside.set()
        release.wait(hold)
        events.append("lookup let go")
        return original(*args, **kwargs)

    monkeypatch.setattr(mongomock_pipeline, "aggregate", slow_aggregate)
    lookup = asyncio.create_task(
        client.get(f"/bot-requests/{ids[-1]}/thread", params={"populate": "none"})
    )
    assert await asyncio.to_thread(inside.wait, hold)  # the lookup is in the database
    health = await client.get("/healthz")
    events.append("health answered")
    release.set()
    assert health.status_code == 200
    thread = await lookup
    assert events[:2] == ["health answered", "lookup let go"]  # then its other aggregations
    assert thread.status_code == 200
    assert len(thread.json()["items"]) == 50


async def test_embedded_thread_of_a_thousand_is_quick(client, raw, app):
    """The embedded `$graphLookup` follows an index built once per stage, not a scan per
    document reached (a chain of 1 000 took 15 s)."""
    world = await seed_world(client)
    ids = await insert_chain(raw, ObjectId(world["bot"]["id"]), 1000)
    started = time.process_time()  # CPU time (every thread of this process), not the clock's
    thread = await client.get(f"/bot-requests/{ids[500]}/thread", params={"populate": "none"})
    assert time.process_time() - started < 10  # generous: well under a second here
    assert [r["depth"] for r in thread.json()["items"]] == list(range(1000))


# --- thread answers are bounded -------------------------------------------------------------


async def test_thread_over_the_limit_pages_with_next_and_truncated(client, raw):
    world = await seed_world(client)
    root = await record(client, world)
    kids = [await record(client, world, originalRequest=root["id"]) for _ in range(25)]
    for kid in kids[:3]:
        await record(client, world, originalRequest=kid["id"])
    whole = (await client.get(f"/bot-requests/{kids[5]['id']}/thread?populate=none")).json()
    assert len(whole["items"]) == 29
    assert (whole["truncated"], whole["next"]) == (False, None)
    pages, cursor = [], None
    with db.count_round_trips() as counter:
        while True:
            params = {"limit": 10, "populate": "none", **({"cursor": cursor} if cursor else {})}
            response = await client.get(f"/bot-requests/{kids[5]['id']}/thread", params=params)
            assert response.status_code == 200, response.text
            page = response.json()
            pages.append(page)
            cursor = page["next"]
            if cursor is None:
                break
    assert [len(p["items"]) for p in pages] == [10, 10, 9]
    assert [p["truncated"] for p in pages] == [True, True, False]
    assert [r for p in pages for r in p["items"]] == whole["items"]
    # ancestry, one page of descendants and the feedback summaries each (no population)
    assert counter.count <= 3 * 3


async def test_thread_cursor_errors_422(client):
    world = await seed_world(client)
    one = await record(client, world)
    two = await record(client, world)
    for _ in range(3):
        await record(client, world, originalRequest=one["id"])
    first = (await client.get(f"/bot-requests/{one['id']}/thread", params={"limit": 2})).json()
    other = await client.get(f"/bot-requests/{two['id']}/thread", params={"cursor": first["next"]})
    assert other.status_code == 422
    assert "another thread" in other.json()["detail"][0]["msg"]
    bad = await client.get(f"/bot-requests/{one['id']}/thread", params={"cursor": "zzz"})
    assert bad.status_code == 422
    chain = await client.get(
        f"/bot-requests/{one['id']}/thread", params={"scope": "chain", "cursor": first["next"]}
    )
    assert chain.status_code == 422


async def test_thread_limit_capped_by_setting(client, app):
    world = await seed_world(client)
    root = await record(client, world)
    for _ in range(4):
        await record(client, world, originalRequest=root["id"])
    original = app.state.settings
    app.state.settings = original.model_copy(update={"thread_max_members": 3})
    try:
        url = f"/bot-requests/{root['id']}/thread"
        page = (await client.get(url, params={"limit": 100})).json()
    finally:
        app.state.settings = original
    assert len(page["items"]) == 3
    assert page["truncated"] is True
    assert page["next"] is not None


# --- slow is not down -----------------------------------------------------------------------


async def test_embedded_query_past_query_timeout_stopped_504_worker_free(
    client, app, raw, monkeypatch
):
    """On the embedded backend a page, stats or export past QUERY_TIMEOUT_MS is stopped
    inside mongomock's scan (504), as MongoDB's maxTimeMS stops it, and the worker takes
    the next call at once. The deadline's clock moves an hour per reading here."""
    if not app.state.settings.embedded:
        pytest.skip("about the embedded backend (a server stops its own queries)")
    from botrequests.storage import mongomock_deadline

    world = await seed_world(client)
    bot = ObjectId(world["bot"]["id"])
    docs = [
        {"bot": bot, "success": i % 2 == 0, "response": {}, "ip": "10.0.0.1", "tags": ["t"]}
        for i in range(2000)
    ]
    await insert_all(raw.botrequests, docs)
    hours = iter(range(0, 10**9, 3600))
    monkeypatch.setattr(mongomock_deadline, "clock", lambda: float(next(hours)))
    for path, params in [
        ("/bot-requests", {"success": "false"}),
        ("/bot-requests/stats", {"groupBy": "bot"}),
        ("/bot-requests/stats", {"groupBy": "tag"}),
        ("/bot-requests/export", {"success": "false"}),
    ]:
        answer = await client.get(path, params=params)
        assert answer.status_code == 504, (path, params, answer.text)
        assert "did not finish this query in time" in answer.json()["detail"]
        # The worker is free: a write and a read go through (no deadline: no clock read).
        made = await client.post("/bot-requests", json=request_body(world))
        assert made.status_code == 201, made.text
        assert (await client.get(f"/bot-requests/{made.json()['id']}")).status_code == 200
    monkeypatch.setattr(mongomock_deadline, "clock", time.monotonic)
    page = await client.get("/bot-requests", params={"success": "false", "limit": 5})
    assert page.status_code == 200
    assert len(page.json()["items"]) == 5


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (ExecutionTimeout("operation exceeded time limit", 50), 504),
        (NetworkTimeout("timed out"), 504),
        (ServerSelectionTimeoutError("no servers"), 503),
    ],
)
async def test_slow_query_504_outage_503(client, monkeypatch, error, status):
    world = await seed_world(client)
    one = await record(client, world)

    async def failing(*args, **kwargs):
        raise error

    monkeypatch.setattr(db, "aggregate", failing)
    response = await client.get(f"/bot-requests/{one['id']}/thread")
    assert response.status_code == status
    detail = response.json()["detail"]
    assert ("in time" in detail) == (status == 504)
    if status == 503:  # the same words as while start-up waits for the database
        assert detail == (
            "database unavailable (unreachable (ServerSelectionTimeoutError)); try again shortly"
        )


def test_import_array_item_lines_linear():
    from botrequests.importfile import item_lines as _array_item_lines

    text = "[\n" + ",\n".join(f'{{"a": {i}}}' for i in range(200_000)) + "\n]"
    started = time.process_time()  # CPU time: other work on the machine does not count
    lines = _array_item_lines(text)
    assert time.process_time() - started < 5  # counting from the start each time: minutes
    assert lines[:3] == [2, 3, 4]
    assert lines[-1] == 200_001


async def test_stats_answer_bounded_to_the_largest_groups(client, raw, monkeypatch):
    from botrequests import analytics

    world = await seed_world(client)
    bot = ObjectId(world["bot"]["id"])
    await insert_all(
        raw.botrequests,
        [
            {"bot": bot, "success": True, "sessionKey": f"s{i % 7}", "createdAt": datetime.now(UTC)}
            for i in range(7 * 3 + 2)  # s0 and s1 hold 4 requests, the rest 3
        ],
    )
    monkeypatch.setattr(analytics, "STATS_MAX_GROUPS", 2)
    body = (await client.get("/bot-requests/stats", params={"groupBy": "sessionKey"})).json()
    assert [(g["sessionKey"], g["requests"]) for g in body["items"]] == [("s0", 4), ("s1", 4)]
    assert body["truncated"] is True
    monkeypatch.setattr(analytics, "STATS_MAX_GROUPS", 7)
    body = (await client.get("/bot-requests/stats", params={"groupBy": "sessionKey"})).json()
    assert len(body["items"]) == 7
    assert body["truncated"] is False


async def test_embedded_backend_warns_once_when_it_grows_large(app, raw, caplog, monkeypatch):
    if not app.state.settings.embedded:
        pytest.skip("about the embedded backend")
    from botrequests.storage import embedded

    monkeypatch.setattr(embedded, "GROWTH_WARNING_DOCUMENTS", 50)
    monkeypatch.setattr(embedded, "_warned", set())
    caplog.set_level("WARNING", logger="botrequests.db")
    await insert_all(raw.botrequests, [{"n": i} for i in range(40)])
    assert "MONGODB_URI" not in caplog.text
    await insert_all(raw.botrequests, [{"n": i} for i in range(20)])
    await raw.botrequests.insert_one({"n": 99})
    warnings = [r for r in caplog.records if "MONGODB_URI" in r.getMessage()]
    assert len(warnings) == 1
    assert "60 documents in botrequests" in warnings[0].getMessage()


def test_mongomock_fixes_apply_to_the_pinned_version(monkeypatch):
    """mongomock and mongomock-motor are the versions pyproject.toml pins, every fix is in
    place, and a version that moved an internal a fix needs is refused by name."""
    import importlib.metadata
    import tomllib

    import mongomock.collection
    from mongomock import aggregate
    from packaging.requirements import Requirement

    from botrequests.storage import mongomock_fixes, mongomock_lookup

    project = tomllib.loads((Path(__file__).parent.parent / "pyproject.toml").read_text())
    pins = {
        Requirement(d).name: Requirement(d).specifier for d in project["project"]["dependencies"]
    }
    for name in ("mongomock", "mongomock-motor"):
        assert importlib.metadata.version(name) in pins[name], name

    def stage(name: str) -> object:  # under the deadline's wrapper (mongomock_deadline)
        handler = aggregate._PIPELINE_HANDLERS[name]
        return getattr(handler, "__wrapped__", handler)

    assert stage("$unwind") is mongomock_fixes._unwind
    assert stage("$graphLookup") is mongomock_fixes._graph_lookup
    assert stage("$lookup") is mongomock_lookup._lookup
    # The data directory's recording (storage/durable.py) wraps the fixes' own.
    walk = mongomock.collection.Collection._iter_documents
    assert walk.__wrapped__ is mongomock_fixes.iter_documents
    assert mongomock.collection._copy_field is mongomock_fixes._copy_field
    monkeypatch.delattr(aggregate, "_recursive_get")
    with pytest.raises(mongomock_fixes.MongomockChanged, match="_recursive_get"):
        mongomock_fixes.check_internals()


def test_embedded_find_by_id_uses_the_key_and_answers_as_a_scan_would():
    """mongomock_fixes: a find by `_id` takes the documents from the store by key (as
    MongoDB's `_id` index does); every filter gives what mongomock's own scan gives."""
    import mongomock

    from botrequests.storage import mongomock_fixes

    collection = mongomock.MongoClient().db.items
    ids = [ObjectId() for _ in range(50)]
    orgs = [ObjectId(), ObjectId()]
    collection.insert_many(
        [{"_id": oid, "organization": orgs[i % 2], "n": i} for i, oid in enumerate(ids)]
    )
    collection.insert_one({"_id": "text-id", "n": -1})
    filters = [
        {"_id": ids[3]},
        {"_id": "text-id"},
        {"_id": ObjectId()},
        {"_id": {"$in": [ids[1], ids[2], ObjectId(), ids[1]]}},
        {"_id": {"$in": []}},
        {"$and": [{"_id": {"$in": ids[:10]}}, {"organization": orgs[0]}]},
        {"$and": [{"_id": ids[5]}, {"organization": orgs[0]}]},
        {"_id": ids[4], "n": 4},
        {"_id": ids[4], "n": 5},
        {"_id": {"$gt": ids[40]}},
        {"n": {"$lt": 3}},
    ]
    for query in filters:
        fast = sorted(str(d["_id"]) for d in mongomock_fixes.iter_documents(collection, query))
        slow = sorted(str(d["_id"]) for d in mongomock_fixes._SLOW_ITER(collection, query))
        assert fast == slow, query
    assert mongomock_fixes._ids_named({"_id": {"$gt": ids[40]}}) is None  # a scan
    assert mongomock_fixes._ids_named({"$and": [{"n": 1}, {"_id": ids[0]}]}) == [ids[0]]


def test_embedded_find_by_keys_answers_as_the_cursor_does():
    """mongomock_fixes.find_by_keys (the embedded backend's inline read by key) gives what
    mongomock's cursor gives: the same documents, keys in the same order, dates made
    UTC-aware on a tz-aware client, projections of top-level fields; copies, not the
    stored documents. Other projections are left to the cursor."""
    import mongomock

    from botrequests.storage import mongomock_fixes

    ids = [ObjectId() for _ in range(6)]
    org = ObjectId()
    stored = [
        {
            "_id": oid,
            "organization": org if i % 2 else None,
            "name": f"n{i}",
            "inputs": [{"_id": ObjectId(), "options": ["a", {"b": [1, 2]}]}],
            "nested": {"when": datetime(2024, 1, 2, 3, 4, 5, 6000), "empty": {}},
            "createdAt": datetime(2023, 6, 28, 5, 38, 0, 418000),
        }
        for i, oid in enumerate(ids)
    ]
    for tz_aware in (True, False):
        collection = mongomock.MongoClient(tz_aware=tz_aware).db.things
        collection.insert_many([dict(doc) for doc in stored])
        for query in (
            {"_id": ids[1]},
            {"_id": {"$in": [ids[0], ids[3], ObjectId(), ids[0]]}},
            {"$and": [{"_id": {"$in": ids}}, {"organization": {"$in": [org, None]}}]},
            {"$and": [{"_id": {"$in": ids}}, {"organization": org}]},
            {"_id": ObjectId()},
        ):
            for projection in (None, {"name": 1, "_id": 1}, {"inputs": 1, "createdAt": True}):
                keyed = mongomock_fixes.find_by_keys(collection, query, projection)
                assert keyed is not None
                fast = keyed.documents()
                slow = list(collection.find(query, projection))
                assert [list(doc.items()) for doc in fast] == [list(doc.items()) for doc in slow], (
                    query,
                    projection,
                )
                if fast and tz_aware and "createdAt" in fast[0]:
                    assert fast[0]["createdAt"].tzinfo is not None
        found = mongomock_fixes.find_by_keys(collection, {"_id": ids[1]}, None).documents()
        found[0]["inputs"][0]["options"].append("changed")
        found[0]["nested"]["when"] = None
        again = collection.find_one({"_id": ids[1]})
        assert again["inputs"][0]["options"] == ["a", {"b": [1, 2]}]
        assert again["nested"]["when"] is not None
    for query, projection in (
        ({"name": "n1"}, None),  # no key: a scan, the cursor's
        ({"_id": ids[1]}, {"name": 0}),  # an exclusion
        ({"_id": ids[1]}, {"inputs.options": 1}),  # a dotted path
        ({"_id": ids[1]}, {"name": 1, "_id": 0}),
    ):
        assert mongomock_fixes.find_by_keys(collection, query, projection) is None


async def test_embedded_reads_by_key_run_inline_only_while_the_worker_is_free(
    client, app, monkeypatch
):
    """A GET by id reads by key on the loop, with no hop to the embedded database's worker;
    while the worker holds the data (a write under way), the read waits its turn there
    instead of reading beside it."""
    if not app.state.settings.embedded:
        pytest.skip("about the embedded backend's worker")
    from botrequests.storage import embedded

    world = await seed_world(client)
    made = await client.post("/bot-requests", json=request_body(world))
    assert made.status_code == 201
    path = f"/bot-requests/{made.json()['id']}"
    hops = []
    original = embedded.run

    async def counted(function, *args, **kwargs):
        hops.append(function)
        return await original(function, *args, **kwargs)

    monkeypatch.setattr(embedded, "run", counted)
    served = await client.get(path)
    assert served.status_code == 200
    assert served.json()["bot"]["name"] == world["bot"]["name"]  # populated
    assert hops == []

    embedded._LOCK.acquire()  # as the worker does while it writes
    try:
        pending = asyncio.create_task(client.get(path))
        await asyncio.sleep(0.2)
        assert not pending.done(), "read beside a write that holds the data"
    finally:
        embedded._LOCK.release()
    answer = await pending
    assert answer.status_code == 200
    assert answer.json() == served.json()
    # The load queued in the worker; its population, with the worker free again, inline.
    assert len(hops) == 1


async def test_embedded_documents_stored_are_frozen_out_of_the_collector(app, raw, monkeypatch):
    """Past FREEZE_EVERY_DOCUMENTS stored, the cyclic collector runs over what is new and
    freezes it: a later full collection does not walk the stored data."""
    if not app.state.settings.embedded:
        pytest.skip("about the embedded backend")
    import gc

    from botrequests.storage import embedded

    monkeypatch.setattr(embedded, "FREEZE_EVERY_DOCUMENTS", 50)
    monkeypatch.setattr(embedded, "_stored_since_freeze", [0])
    await insert_all(raw.botrequests, [{"n": i, "tags": ["x"]} for i in range(40)])
    first = {id(doc) for doc in raw.botrequests._sync()._store._documents.values()}
    assert not first.isdisjoint(id(tracked) for tracked in gc.get_objects())  # not yet
    frozen = gc.get_freeze_count()
    await insert_all(raw.botrequests, [{"n": i, "tags": ["y"]} for i in range(20)])
    assert gc.get_freeze_count() > frozen
    stored = {id(doc) for doc in raw.botrequests._sync()._store._documents.values()}
    assert stored.isdisjoint(id(tracked) for tracked in gc.get_objects())  # all frozen
