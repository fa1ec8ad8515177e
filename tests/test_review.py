"""Regression tests for the second attack review (issue 27): each finding has its tests
here, or in the module named beside it (erasure and retention races:
tests/test_erasure_races.py; slow clients: tests/test_slow_clients.py)."""

import asyncio
import copy
import csv
import io
import json
import random
from datetime import timedelta

import httpx
import pytest
from bson import ObjectId

from botrequests import analytics, cli, importer, retention
from botrequests import documents as auth_documents
from botrequests.schemas import ExportQuery
from botrequests.storage import db
from botrequests.timeutil import now
from tests.setup_writes import insert_all
from tests.test_access import ADMIN, records_of
from tests.test_scopes import keys_of_every_scope

# --- 1. an ingest key's writes answer what it sent, never what it may not read ------------


async def test_ingest_key_write_answers_only_what_it_sent(client, secured):
    org, headers = await keys_of_every_scope(client)
    full = headers["full"]
    mine = await records_of(client, {"org": org, "headers": full})
    bot = await client.post(
        "/bots",
        json={
            "name": "Secret bot",
            "slug": "t",
            "creditCost": 7,
            "promptTemplate": "Say {x}",
            "inputs": [{"inputType": "text", "label": "X", "name": "x"}],
        },
        headers=full,
    )
    body = {
        "bot": bot.json()["id"],
        "createdBy": mine["users"]["id"],
        "images": [mine["files"]["id"]],
        "invoice": mine["invoices"]["id"],
        "inputs": {"x": "hi"},
        "success": True,
        "response": {"text": "hello"},
    }
    made = await client.post("/bot-requests", json=body, headers=headers["ingest"])
    assert made.status_code == 201, made.text
    answer = made.json()
    assert set(answer) == {*body, "ip", "id", "createdAt", "updatedAt"}
    for path in ("bot", "createdBy", "invoice"):
        assert answer[path] == body[path]  # ids, never the records they name
    assert answer["images"] == body["images"]
    for secret in ("Secret bot", "Say", "creditCost", "fileName", '"credits"', '"name"'):
        assert secret not in made.text
    # The full key reads what was stored: the prompt and credits came from the bot.
    stored = (await client.get(f"/bot-requests/{answer['id']}", headers=full)).json()
    assert stored["prompt"] == "Say hi"
    assert stored["credits"] == 7


async def test_ingest_key_patch_answers_no_stored_content(client, secured):
    org, headers = await keys_of_every_scope(client)
    theirs = await records_of(client, {"org": org, "headers": headers["full"]})
    target = theirs["bot-requests"]["id"]
    for change in ({}, {"success": False}):
        patched = await client.patch(
            f"/bot-requests/{target}", json=change, headers=headers["ingest"]
        )
        assert patched.status_code == 200, patched.text
        assert set(patched.json()) == {*change, "id", "createdAt", "updatedAt"}
        assert org["name"] not in patched.text
        assert "secret" not in patched.text
    # A full key's PATCH answers the populated request, as before.
    again = await client.patch(f"/bot-requests/{target}", json={}, headers=headers["full"])
    assert again.json()["response"] == {"secret": org["name"]}


# --- 11. CSV cells: formulas behind characters a spreadsheet skips ------------------------

HIDDEN_FORMULAS = [
    "=1+1",
    "\x00=1+1",
    " =1+1",
    "\n=1+1",
    "\u200b=1+1",
    "\ufeff@SUM(A1)",
    "\u00a0\u200d+1",
    "\t-1",
]


def test_csv_cell_neutralises_formulas_after_unseen_characters():
    fields = ("userName", "botName", "sessionKey", "model", "tags")
    for text in HIDDEN_FORMULAS:
        item = {
            "id": "x",
            "bot": {"id": "b", "name": text},
            "createdBy": {"id": "u", "name": text},
            "sessionKey": text,
            "usage": {"model": text},
            "tags": [text],
            "success": True,
        }
        text_out = analytics.csv_rows([item], header=True).decode()
        row = next(csv.DictReader(io.StringIO(text_out)))
        for field in fields:
            assert row[field].startswith("'"), (field, text)
            assert row[field][1:] == text.replace("\r\n", "\n"), (field, text)
        assert row["success"] == "true"
    for harmless in ("hello", " x", "\u200bx=1", "a=b", ""):
        assert analytics._cell(harmless) == harmless


async def test_export_csv_neutralises_hidden_formula_in_session_key(client):
    from tests.factories import record, seed_world

    world = await seed_world(client)
    made = await record(client, world, sessionKey="\u200b=HYPERLINK(1)")
    rows = list(
        csv.DictReader(
            io.StringIO((await client.get("/bot-requests/export", params={"format": "csv"})).text)
        )
    )
    assert [row["sessionKey"] for row in rows if row["id"] == made["id"]] == [
        "'\u200b=HYPERLINK(1)"
    ]


# --- 5. one organization's retentionDays never stops retention for the others -------------


async def test_purge_skips_an_unusable_retention_and_sweeps_the_others(raw, capsys):
    from tests.test_retention import request

    good, huge, text = ObjectId(), ObjectId(), ObjectId()
    await insert_all(
        raw.organizations,
        [
            {"_id": huge, "name": "Huge", "retentionDays": 10**6},  # timedelta overflows
            {"_id": text, "name": "Text", "retentionDays": 1.5},
            {"_id": good, "name": "Good", "retentionDays": 30},
        ],
    )
    await insert_all(raw.botrequests, [request(org, 60) for org in (good, huge, text)])
    assert await cli._purge(dry_run=True) == 1
    assert await cli._purge(dry_run=False) == 1
    out = capsys.readouterr()
    assert "(Huge): skipped: retentionDays 1000000 is not a whole number" in out.out
    assert "(Text): skipped" in out.out
    assert "(Good): retentionDays 30, deleted 1 request(s)" in out.out
    assert "Traceback" not in out.err
    assert await raw.botrequests.count_documents({"organization": good}) == 0
    assert await raw.botrequests.count_documents({}) == 2


# --- 9. a dead holder of the sweep's lease blocks the others briefly ----------------------


async def test_sweep_lease_is_short_and_renewed_while_the_sweep_works(raw, monkeypatch):
    assert retention.LEASE_SECONDS <= 60
    assert retention.RENEW_SECONDS < retention.LEASE_SECONDS / 2
    renewals: list = []
    real_take = db.take_lease

    async def counted(name, owner, moment, until):
        renewals.append(until - moment)
        return await real_take(name, owner, moment, until)

    enough = asyncio.Event()

    async def slow_purge(dry_run=False, moment=None):
        # Works until the lease has been renewed three times (no wall-clock bound).
        while len(renewals) < 4:
            await asyncio.sleep(0.01)
        enough.set()
        return []

    monkeypatch.setattr(db, "take_lease", counted)
    monkeypatch.setattr(retention, "purge", slow_purge)
    monkeypatch.setattr(retention, "RENEW_SECONDS", 0.02)
    assert await retention.sweep(owner="worker") == []
    assert enough.is_set()
    assert all(held == timedelta(seconds=retention.LEASE_SECONDS) for held in renewals)
    assert await raw.leases.count_documents({}) == 0  # released


async def test_sweep_after_a_killed_holder_waits_only_for_its_short_lease(raw):
    # What a killed `purge` leaves: its lease, as renewed last.
    start = now()
    until = start + timedelta(seconds=retention.LEASE_SECONDS)
    assert await db.take_lease(retention.LEASE, "killed:1", start, until)
    assert await retention.sweep(owner="worker") is None
    stored = await raw.leases.find_one({"_id": retention.LEASE})
    assert stored["until"] - start <= timedelta(seconds=60)
    # Once it has expired, the next sweep takes over.
    await raw.leases.update_one(
        {"_id": retention.LEASE}, {"$set": {"until": start - timedelta(seconds=1)}}
    )
    assert await retention.sweep(owner="worker") is not None


# --- 10. hostile import files are refused before anything is written ----------------------


def _write(path, docs: list[str]) -> None:
    path.write_text("\n".join(docs) + "\n")


async def test_import_refuses_a_repeated_id_before_writing(raw, tmp_path):
    first, second = str(ObjectId()), str(ObjectId())
    _write(tmp_path / "users.json", [
        json.dumps({"_id": {"$oid": first}, "name": "A"}),
        json.dumps({"_id": {"$oid": second}, "name": "B"}),
        json.dumps({"_id": {"$oid": first}, "name": "A again"}),
    ])  # fmt: skip
    with pytest.raises(
        importer.ImportFileError, match=r"users.json:3: _id: the same _id as line 1"
    ):
        await importer.load([tmp_path / "users.json"])
    other = tmp_path / "more"
    other.mkdir()
    _write(tmp_path / "bots.json", [json.dumps({"_id": {"$oid": first}, "name": "x", "slug": "x"})])
    _write(other / "bots.json", [json.dumps({"_id": {"$oid": first}, "name": "y", "slug": "y"})])
    with pytest.raises(importer.ImportFileError, match=r"more/bots.json:1: _id: the same _id as"):
        await importer.load([tmp_path / "bots.json", other / "bots.json"])
    assert await raw.users.count_documents({}) == 0
    assert await raw.bots.count_documents({}) == 0


async def test_import_refuses_timestamps_that_are_not_dates(raw, tmp_path, client):
    org = str(ObjectId())
    good = {"bot": {"$oid": str(ObjectId())}, "organization": {"$oid": org}, "ip": "1.1.1.1",
            "success": True, "response": {}}  # fmt: skip
    _write(tmp_path / "botrequests.json", [
        json.dumps({**good, "createdAt": {"$date": "2024-01-01T00:00:00Z"}}),
        json.dumps({**good, "createdAt": {"$timestamp": {"t": 1700000000, "i": 1}}}),
        json.dumps({**good, "updatedAt": "yesterday"}),
    ])  # fmt: skip
    with pytest.raises(importer.ImportFileError) as refused:
        await importer.load([tmp_path / "botrequests.json"])
    assert "botrequests.json:2: createdAt: must be a date" in str(refused.value)
    assert "a BSON Timestamp" in str(refused.value)
    assert "botrequests.json:3: updatedAt: must be a date" in str(refused.value)
    _write(tmp_path / "organizations.json", [
        json.dumps({"_id": {"$oid": org}, "name": "O", "retentionDays": 800000})
    ])  # fmt: skip
    with pytest.raises(importer.ImportFileError, match="retentionDays: must be a whole number"):
        await importer.load([tmp_path / "organizations.json"])
    assert await raw.botrequests.count_documents({}) == 0
    assert await raw.organizations.count_documents({}) == 0
    assert (await client.get("/bot-requests")).status_code == 200


# --- 4. one tenant's stats cannot stall the embedded backend: a linear, scoped join --------


def test_embedded_lookup_answers_as_mongomock_does_on_random_data():
    import mongomock

    from botrequests.storage import mongomock_lookup

    rng = random.Random(4)
    for _ in range(30):
        database = mongomock.MongoClient().db
        values = [None, 1, 2, 3, "a", ObjectId(), [1, 2], [], ["a", 3]]
        database.left.insert_many(
            [{"_id": n, **({"k": rng.choice(values)} if rng.random() < 0.8 else {})}
             for n in range(rng.randint(1, 15))]
        )  # fmt: skip
        database.right.insert_many(
            [{"_id": n, **({"f": rng.choice(values)} if rng.random() < 0.8 else {}), "x": n}
             for n in range(rng.randint(1, 15))]
        )  # fmt: skip
        stage = {"from": "right", "localField": "k", "foreignField": "f", "as": "joined"}
        left = list(database.left.find())
        fast = mongomock_lookup._lookup(copy.deepcopy(left), database, stage)
        slow = mongomock_lookup._SLOW_LOOKUP(copy.deepcopy(left), database, stage)
        assert fast == slow


async def test_stats_by_tag_joins_feedback_once_per_request_and_in_scope(client, raw, monkeypatch):
    from botrequests.storage import mongomock_lookup
    from tests.factories import record, seed_world

    world = await seed_world(client)
    tags = [f"t{n}" for n in range(20)]
    made = [await record(client, world, tags=tags) for _ in range(30)]
    for request in made[:10]:
        sent = await client.post(f"/bot-requests/{request['id']}/feedback", json={"score": 1})
        assert sent.status_code == 201
    # Feedback naming one of these requests but another organization's (as a forged or
    # stray row would): never joined.
    await raw.feedback.insert_one(
        {"request": ObjectId(made[0]["id"]), "organization": ObjectId(), "score": -1}
    )

    def refused(*args, **kwargs):
        raise AssertionError("the stats' join took mongomock's per-document find")

    monkeypatch.setattr(mongomock_lookup, "_SLOW_LOOKUP", refused)
    answer = await client.get("/bot-requests/stats", params={"groupBy": "tag"})
    assert answer.status_code == 200, answer.text
    items = answer.json()["items"]
    assert [item["tag"] for item in items] == sorted(tags)
    for item in items:
        assert item["requests"] == 30
        assert item["feedback"] == {"count": 10, "averageScore": 1.0}


# --- 7. a forwarded address is checked as the body's ip is ---------------------------------


@pytest.mark.parametrize("address", ["<script>alert(1)</script>", "x" * 5010, "=1+1"])
async def test_client_address_that_is_not_an_ip_is_refused(app, address):
    from tests.factories import request_body, seed_world

    transport = httpx.ASGITransport(app=app, client=(address, 1))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        world = await seed_world(http)
        body = {k: v for k, v in request_body(world).items() if k != "ip"}
        refused = await http.post("/bot-requests", json=body)
        assert refused.status_code == 422
        assert refused.json()["detail"][0]["loc"] == ["body", "ip"]
        batch = await http.post("/bot-requests/batch", json={"items": [body]})
        assert batch.json()["items"][0]["status"] == "error"
        assert (await http.get("/bot-requests")).json()["items"] == []


def test_serve_trusts_forwarded_headers_only_from_forwarded_allow_ips(monkeypatch):
    import uvicorn

    from botrequests import serving
    from tests.servers import free_port

    given: dict = {}

    def run(server: uvicorn.Server, sockets: list) -> None:
        given.update(vars(server.config), sockets=sockets)
        server.started = True

    monkeypatch.setattr(uvicorn.Server, "run", run)
    monkeypatch.setenv("MONGODB_URI", "mongomock://")
    assert cli.main(["serve", "--port", str(free_port())]) == 0
    assert given["proxy_headers"] is False
    assert given["http"] is serving.PROTOCOL
    assert given["limit_concurrency"] == serving.settings.max_connections
    assert len(given["sockets"]) == 1  # bound before the app starts
    monkeypatch.setattr(serving.settings, "forwarded_allow_ips", "10.0.0.5")
    assert cli.main(["serve", "--port", str(free_port())]) == 0
    assert given["proxy_headers"] is True
    assert given["forwarded_allow_ips"] == "10.0.0.5"


# --- 8. key lookups: no scan for an unknown token, one "last use" write ------------------


async def test_unknown_tokens_are_not_a_scan_of_the_keys(client, secured, raw, monkeypatch, lane):
    from botrequests.storage import mongomock_fixes

    org = (await client.post("/organizations", json={"name": "K"}, headers=ADMIN)).json()
    for _ in range(20):
        await client.post(f"/organizations/{org['id']}/api-keys", headers=ADMIN)
    scans: list[str] = []
    real = mongomock_fixes._SLOW_ITER

    def counted(self, query):
        scans.append(self.name)
        return real(self, query)

    monkeypatch.setattr(mongomock_fixes, "_SLOW_ITER", counted)
    for token in ("br_" + "A" * 43, "br_short", "not-a-key"):
        denied = await client.get("/bot-requests", headers={"Authorization": f"Bearer {token}"})
        assert denied.status_code == 401
    assert "apikeys" not in scans


async def test_concurrent_first_uses_of_a_key_write_last_use_once(
    client, secured, raw, monkeypatch
):
    org = (await client.post("/organizations", json={"name": "K"}, headers=ADMIN)).json()
    key = (await client.post(f"/organizations/{org['id']}/api-keys", headers=ADMIN)).json()
    headers = {"Authorization": f"Bearer {key['key']}"}
    writes: list = []
    keys = db.collection(auth_documents.ApiKey)
    real = type(keys).update_one

    async def counted(self, *args, **kwargs):
        if self.name == "apikeys":
            writes.append(args)
        return await real(self, *args, **kwargs)

    monkeypatch.setattr(type(keys), "update_one", counted)
    answers = await asyncio.gather(
        *(client.get("/bot-requests", headers=headers) for _ in range(40))
    )
    assert {answer.status_code for answer in answers} == {200}
    assert len(writes) == 1
    stored = await raw.apikeys.find_one({"_id": ObjectId(key["id"])})
    assert stored["lastUsedAt"] is not None


# --- 12. a retried insert is recorded once; concurrent exports are capped ----------------


async def test_insert_the_driver_retried_after_it_went_through_is_recorded_once(
    client, raw, monkeypatch
):
    from botrequests.documents import BotRequest
    from tests.factories import request_body, seed_world

    world = await seed_world(client)
    real = BotRequest.insert

    async def twice(self, *args, **kwargs):  # the first attempt went through, unanswered
        await real(self, *args, **kwargs)
        return await real(self, *args, **kwargs)

    monkeypatch.setattr(BotRequest, "insert", twice)
    made = await client.post("/bot-requests", json=request_body(world))
    assert made.status_code == 201, made.text
    assert await raw.botrequests.count_documents({}) == 1


async def test_exports_past_the_limit_are_told_to_retry(client, app):
    from tests.factories import record, seed_world

    world = await seed_world(client)
    await record(client, world)
    most = app.state.settings.export_max_concurrent
    streams = [await analytics.export_batches(ExportQuery(), (), most=most) for _ in range(most)]
    refused = await client.get("/bot-requests/export")
    assert refused.status_code == 429
    assert refused.headers["retry-after"] == str(analytics.EXPORT_RETRY_AFTER_S)
    for stream in streams:
        assert b"".join([chunk async for chunk in stream])
    assert (await client.get("/bot-requests/export")).status_code == 200
