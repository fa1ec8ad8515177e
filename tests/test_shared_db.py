"""Moving in beside another application on its database (issue 21): the indexes it made,
a truthful /readyz, a start-up retry that never dies silently."""

import asyncio
import gc
import logging
import os
import subprocess
import sys
import time
import tracemalloc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from bson import ObjectId
from pymongo import MongoClient
from pymongo.errors import OperationFailure, ServerSelectionTimeoutError

from botrequests import analytics, importer
from botrequests.app import create_app
from botrequests.schemas import ExportQuery
from botrequests.storage import db
from tests.conftest import lane_settings
from tests.factories import seed_world
from tests.setup_writes import insert_all
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
    # One line per start names every index and its cost (the session's database, bound
    # again after, may log its own: a server without text indexes).
    theirs = [r for r in warnings if "users.organization_1" in r.getMessage()]
    assert len(theirs) == 1
    assert "organization_1_slug_1" in theirs[0].getMessage()
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
        deadline = time.monotonic() + 120  # a busy machine's time; a few tenths of a second idle
        while time.monotonic() < deadline:
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
                    deadline = time.monotonic() + 180  # the server's start, on a busy machine
                    while time.monotonic() < deadline:
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


# --- hostile import files ---------------------------------------------------------------------

GOOD_ORG = '{"_id": {"$oid": "649bc73858b7391cbaa555ff"}, "name": "A"}'
GOOD_USER = '{"_id": {"$oid": "649bc73858b7391cbaa55600"}, "name": "U"}'
HOSTILE_LINES = {
    "integer past 64 bits": ('{"name": "B", "n": 123456789012345678901234567890}', "n: integer"),
    "$numberLong out of range": (
        '{"name": "B", "n": {"$numberLong": "99999999999999999999"}}',
        "n: integer out of range",
    ),
    "bad $numberDecimal": (
        '{"name": "B", "n": {"$numberDecimal": "abc"}}',
        "n: not valid Extended JSON",
    ),
    "deep nesting": ('{"name": "B", "n": ' + "[" * 5000 + "]" * 5000 + "}", "nested deeper"),
    "NUL in a key": ('{"name": "B", "a\\u0000b": 1}', "a\\u0000b: a key may not"),
    "lone surrogate": ('{"name": "B\\ud800"}', "name: text holds a lone UTF-16 surrogate"),
    "$date past year 9999": (
        '{"name": "B", "createdAt": {"$date": {"$numberLong": "999999999999999999"}}}',
        "createdAt: not valid Extended JSON",
    ),
    "$date string out of range": (
        '{"name": "B", "createdAt": {"$date": "99999-01-01T00:00:00Z"}}',
        "createdAt: not valid Extended JSON",
    ),
    "NaN": ('{"name": "B", "n": NaN}', "n: NaN is not a JSON number"),
    "operator key": ('{"name": "B", "$where": "sleep(1000)"}', "$where: a key may not"),
    "dotted key": ('{"name": "B", "inputs": {"a.b": 1}}', "inputs.a.b: a key may not"),
    "nested integer": ('{"name": "B", "n": [1, {"m": 99999999999999999999}]}', "n.1.m: integer"),
    "over 16 MiB": ('{"name": "' + "x" * (16 * 1024 * 1024) + '"}', "the document is 16777"),
}


def _write(tmp_path, name: str, text: str):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("case", list(HOSTILE_LINES))
async def test_import_hostile_file_refused_with_file_line_and_field_nothing_loaded(
    tmp_path, raw, case
):
    line, expected = HOSTILE_LINES[case]
    users = _write(tmp_path, "users.json", GOOD_USER + "\n")
    orgs = _write(tmp_path, "organizations.json", f"{GOOD_ORG}\n{line}\n")
    with pytest.raises(importer.ImportFileError) as refused:
        await importer.load([users, orgs])
    message = str(refused.value)
    assert f"organizations.json:2: {expected}" in message, message[:500]
    assert "Traceback" not in message
    assert "nothing was loaded" in message
    assert await raw.users.count_documents({}) == 0  # the good file before it too
    assert await raw.organizations.count_documents({}) == 0


async def test_import_array_file_names_the_item_line_and_field(tmp_path, raw):
    text = '[\n  {"name": "A"},\n  {"name": "B", "n": {"$numberLong": "99999999999999999999"}}\n]'
    path = _write(tmp_path, "organizations.json", text)
    with pytest.raises(importer.ImportFileError, match=r"organizations.json:3: n: integer"):
        await importer.load([path])
    deep = "[" + "[" * 100 + "]" * 100 + "]"
    path = _write(tmp_path, "organizations.json", deep)
    with pytest.raises(importer.ImportFileError, match=r"organizations.json:1: nested deeper"):
        await importer.load([path])
    assert await raw.organizations.count_documents({}) == 0


async def test_import_partial_loads_exactly_the_good_files_and_reports_the_rest(tmp_path, raw):
    users = _write(tmp_path, "users.json", GOOD_USER + "\n")
    orgs = _write(tmp_path, "organizations.json", f"{GOOD_ORG}\n" + '{"name": NaN}\n')
    report = await importer.load([users, orgs], partial=True)
    assert [Path(f.path).name for f in report.files] == ["users.json"]
    assert await raw.users.count_documents({}) == 1
    assert await raw.organizations.count_documents({}) == 0  # not even its good line
    lines = "\n".join(report.lines())
    assert "refused, not loaded: " in lines
    assert "organizations.json:2: name: NaN is not a JSON number" in lines
    assert "1 file(s) refused and not loaded" in lines


def test_import_command_refuses_hostile_files_in_one_message_without_traceback(tmp_path):
    """The command, as an operator runs it: exit 1 and every reason on stderr; with
    --partial, exit 2 and the good file loaded (reported on stdout)."""
    lines = [GOOD_ORG] + [line for line, _ in HOSTILE_LINES.values() if len(line) < 100_000]
    orgs = _write(tmp_path, "organizations.json", "\n".join(lines) + "\n")
    users = _write(tmp_path, "users.json", GOOD_USER + "\n")
    env = {**os.environ, "MONGODB_URI": "", "BOTREQUESTS_AUTH": "off"}
    command = [sys.executable, "-m", "botrequests", "import", str(users), str(orgs)]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    for number in range(2, len(lines) + 1):
        assert f"organizations.json:{number}: " in done.stderr
    assert "nothing was loaded" in done.stderr
    partial = subprocess.run(
        [*command, "--partial"], capture_output=True, text=True, env=env, timeout=120
    )
    assert partial.returncode == 2, partial.stderr
    assert "users.json: 1 inserted" in partial.stdout
    assert "1 file(s) refused and not loaded" in partial.stdout


# --- export memory bounded by bytes ------------------------------------------------------------


async def _export_peak(docs: int, prompt_bytes: int, raw, world) -> tuple[int, int]:
    """Export `docs` requests with prompts of `prompt_bytes` each (module level: httpx's
    ASGI transport would hold the whole body); the traced peak during the export and the
    bytes it streamed."""
    bot = ObjectId(world["bot"]["id"])
    for start in range(0, docs, 8):  # inserted a few at a time: the test's own memory
        await insert_all(
            raw.botrequests,
            [
                {
                    "bot": bot,
                    "success": True,
                    "response": {"i": i},
                    "ip": "10.0.0.1",
                    "prompt": str(i % 10) * prompt_bytes,
                    "createdAt": datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=i),
                }
                for i in range(start, min(docs, start + 8))
            ],
        )
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        lines = await analytics.export_batches(ExportQuery(populate="bot"), ("bot",))
        streamed, count = 0, 0
        async for chunk in lines:
            streamed += len(chunk)
            count += chunk.count(b"\n")
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    assert count == docs
    return peak, streamed


async def test_export_of_large_documents_holds_a_bounded_number_of_bytes(client, raw):
    """48 requests of 1 MiB each (one page of 500 by count): the export streams all 48 MiB
    while holding a few pages' bytes, not the 48 documents at once."""
    world = await seed_world(client)
    peak, streamed = await _export_peak(48, 1024 * 1024, raw, world)
    assert streamed > 48 * 1024 * 1024
    page = analytics.EXPORT_PAGE_BYTES
    # The page read, a driver reply of about a page, the page populated, 1 MiB of output:
    # about 18 MiB embedded and 23 MiB on the wire here; it was 96 and 144 MiB, and grew
    # with every further document up to 500 of them.
    assert peak < 8 * page, f"peak {peak / 2**20:.1f} MiB for pages of {page / 2**20:.0f} MiB"
