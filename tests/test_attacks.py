"""Regression tests for what an attacker and an unlucky operator found (issue 13): each
finding has its test here, named after it."""

import asyncio
import base64
import json
import logging
import subprocess
import sys
import time
from datetime import UTC, datetime

import httpx
import pytest
from bson import ObjectId

from botrequests import bodyguard, repair
from botrequests.config import Settings
from botrequests.storage import db
from tests.factories import record, request_body, seed_world, template_bot
from tests.servers import ROOT
from tests.test_access import ADMIN, closed_port, records_of, tenant

MB = 1024 * 1024

# --- 1. the body guard is linear ------------------------------------------------------------

HOSTILE_BODIES = {
    "escaped quotes in an unterminated string": b'"' + b'\\"' * (MB // 2 - 1),
    "a million opening brackets": b"[" * (MB - 1),
    "bracket pairs": b"[]" * (MB // 2 - 1),
    "32-deep nests, repeated": (b"[" * 32 + b"]" * 32) * (MB // 64 - 1),
    "mismatched brackets": b"[}" * (MB // 2 - 1),
    "many short strings": b"[" + b'"a",' * (MB // 4 - 2) + b'"b"]',
    "lone surrogates": b'["' + b"\\ud800" * (MB // 6 - 2) + b'"]',
    "one long number": b"[" + b"1" * (MB - 3) + b"]",
}


@pytest.mark.parametrize("name", list(HOSTILE_BODIES))
def test_body_guard_checks_a_hostile_megabyte_promptly(name):
    body = HOSTILE_BODIES[name]
    started = time.process_time()  # CPU time: other work on the machine does not count
    stripped = bodyguard.strip_strings(body)
    if not bodyguard.depth_exceeds(stripped, 32):
        bodyguard.unstorable(body, stripped)
    # Quadratic took 17.6 s at 64 KB; linear takes well under a second at 1 MiB.
    assert time.process_time() - started < 5, name


async def test_body_guard_escaped_quotes_do_not_freeze_other_requests(client):
    body = b'"' + b'\\"' * (MB // 2 - 8)
    post = asyncio.create_task(
        client.post("/bot-requests", content=body, headers={"content-type": "application/json"})
    )
    started = time.process_time()  # CPU time: other work on the machine does not count
    response = await post
    assert response.status_code == 422
    assert (await client.get("/healthz")).status_code == 200
    assert time.process_time() - started < 5


def test_body_guard_counts_depth_exactly():
    for depth in range(0, 40):
        body = b'{"a": ' * depth + b'"[[[["' + b"}" * depth
        assert bodyguard.depth_exceeds(bodyguard.strip_strings(body), 32) == (depth > 32)
    assert not bodyguard.depth_exceeds(b"[" * 32 + b"]" * 32 + b"[]" * 1000, 32)
    assert bodyguard.depth_exceeds(b"[]" * 1000 + b"[" * 33 + b"]" * 33, 32)


# --- 2. shared bots, and records that change organization ---------------------------------


async def test_shared_bot_changed_only_with_admin_token(client, secured):
    a, b = await tenant(client, "A"), await tenant(client, "B")
    shared = await client.post("/bots", json={"name": "S", "slug": "shared"}, headers=ADMIN)
    assert shared.status_code == 201
    bot_id = shared.json()["id"]
    assert "organization" not in shared.json()
    for change in ({"creditCost": 1000}, {"promptTemplate": "x"}, {"organization": b["org"]["id"]}):
        refused = await client.patch(f"/bots/{bot_id}", json=change, headers=b["headers"])
        assert refused.status_code == 403, refused.text
        assert "admin token" in refused.json()["detail"]
    seen_by_a = await client.get(f"/bots/{bot_id}", headers=a["headers"])
    assert seen_by_a.status_code == 200
    assert seen_by_a.json()["creditCost"] == 0
    by_admin = await client.patch(f"/bots/{bot_id}", json={"creditCost": 5}, headers=ADMIN)
    assert by_admin.status_code == 200
    assert by_admin.json()["creditCost"] == 5


async def test_tenant_key_cannot_move_or_unshare_its_own_bot(client, secured, raw):
    a, b = await tenant(client, "A"), await tenant(client, "B")
    mine = (await records_of(client, b))["bots"]
    for org in (a["org"]["id"], None):
        moved = await client.patch(
            f"/bots/{mine['id']}", json={"organization": org}, headers=b["headers"]
        )
        assert moved.status_code == 403
        assert "another organization" in moved.json()["detail"]
    same = await client.patch(
        f"/bots/{mine['id']}",
        json={"organization": b["org"]["id"], "name": "N"},
        headers=b["headers"],
    )
    assert same.status_code == 200
    stored = await raw.bots.find_one({"_id": ObjectId(mine["id"])})
    assert stored["organization"] == ObjectId(b["org"]["id"])


# --- 3. lookups inside pipelines are scoped --------------------------------------------------


async def test_stats_do_not_name_another_organizations_bot(client, secured, raw):
    a, b = await tenant(client, "A"), await tenant(client, "B")
    theirs = (await records_of(client, a))["bots"]
    # A request of B's naming A's bot (as after a bot moved between organizations).
    await raw.botrequests.insert_one(
        {
            "bot": ObjectId(theirs["id"]),
            "organization": ObjectId(b["org"]["id"]),
            "success": True,
            "createdAt": datetime.now(UTC),
        }
    )
    stats = await client.get("/bot-requests/stats?groupBy=bot", headers=b["headers"])
    assert stats.status_code == 200
    assert [item["bot"] for item in stats.json()["items"]] == [theirs["id"]]  # no name, no slug
    assert "B" not in json.dumps(stats.json()["items"][0]["bot"])
    own = await client.get("/bot-requests/stats?groupBy=bot", headers=a["headers"])
    assert own.json()["items"][0]["bot"]["slug"] == theirs["slug"]


# --- 4. uniqueness is per organization ------------------------------------------------------


async def test_same_slug_in_two_organizations_409_only_within_one(client, secured):
    a, b = await tenant(client, "A"), await tenant(client, "B")
    body = {"name": "Same", "slug": "same-slug"}
    assert (await client.post("/bots", json=body, headers=a["headers"])).status_code == 201
    assert (await client.post("/bots", json=body, headers=b["headers"])).status_code == 201
    again = await client.post("/bots", json=body, headers=a["headers"])
    assert again.status_code == 409
    listed = await client.get("/bots", params={"limit": 1}, headers=b["headers"])
    assert [bot["slug"] for bot in listed.json()["items"]] == ["same-slug"]


async def test_bot_list_pages_through_equal_slugs_once_each(client, secured):
    a = await tenant(client, "A")
    await client.post("/bots", json={"name": "shared", "slug": "dup"}, headers=ADMIN)
    await client.post("/bots", json={"name": "own", "slug": "dup"}, headers=a["headers"])
    await client.post("/bots", json={"name": "own", "slug": "e"}, headers=a["headers"])
    seen, cursor = [], None
    while True:
        params = {"limit": 1, **({"cursor": cursor} if cursor else {})}
        page = (await client.get("/bots", params=params, headers=a["headers"])).json()
        seen += [(bot["slug"], bot["id"]) for bot in page["items"]]
        cursor = page["next"]
        if cursor is None:
            break
    assert [slug for slug, _ in seen] == ["dup", "dup", "e"]
    assert len(set(seen)) == 3


async def test_request_key_cannot_be_learned_or_taken_by_another_organization(client, secured, raw):
    a, b = await tenant(client, "A"), await tenant(client, "B")
    ra, rb = await records_of(client, a), await records_of(client, b)

    async def send(who, records, key):
        body = {"bot": records["bots"]["id"], "success": True, "response": {}, "requestKey": key}
        return await client.post("/bot-requests", json=body, headers=who["headers"])

    # B takes A's future key in advance: A can still record with it.
    assert (await send(b, rb, "order-42")).status_code == 201
    first = await send(a, ra, "order-42")
    assert first.status_code == 201
    # A retry within A is a 409 naming A's own request; B's stays B's.
    again = await send(a, ra, "order-42")
    assert again.status_code == 409
    assert again.json()["existing"] == first.json()["id"]
    batch = await client.post(
        "/bot-requests/batch",
        json={
            "items": [
                {"bot": rb["bots"]["id"], "success": True, "response": {}, "requestKey": "order-42"}
            ]
        },
        headers=b["headers"],
    )
    assert batch.json()["items"][0]["status"] == "existing"
    assert batch.json()["items"][0]["id"] != first.json()["id"]
    assert await raw.botrequests.count_documents({"requestKey": "order-42"}) == 2


async def test_start_up_retires_only_the_services_old_global_indexes(app, raw, caplog):
    await raw.botrequests.create_index("requestKey", unique=True, sparse=True)
    await raw.bots.create_index("slug", unique=True)
    caplog.set_level(logging.INFO, logger="botrequests.db")
    try:
        await db.init_db(app.state.mongo, app.state.settings)
        assert "requestKey_1" not in await raw.botrequests.index_information()
        assert "organization_1_requestKey_1" in await raw.botrequests.index_information()
        assert "slug_1" in await raw.bots.index_information()  # maybe the Mongoose app's
        assert "db.bots.dropIndex('slug_1')" in caplog.text
    finally:
        await raw.bots.drop_index("slug_1")


# --- 5. answers that were 500s --------------------------------------------------------------


def _cursor(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "data",
    [
        {"t": 1, "i": "zzz", "q": "x"},
        {"t": 10**30, "i": str(ObjectId()), "q": "x"},
        {"t": "1", "i": str(ObjectId()), "q": "x"},
        [1, 2],
        {"t": 1},
    ],
)
async def test_malformed_cursor_422(client, data):
    response = await client.get("/bot-requests", params={"cursor": _cursor(data)})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["query", "cursor"]


@pytest.mark.parametrize("path", ["/bot-requests", "/bot-requests/stats", "/bot-requests/export"])
@pytest.mark.parametrize(
    ("name", "value"), [("from", "0001-01-01T00:00:00+14:00"), ("to", "9999-12-31T23:59:59-14:00")]
)
async def test_dates_out_of_range_422(client, path, name, value):
    response = await client.get(path, params={name: value})
    assert response.status_code == 422, response.text
    assert "out of range" in response.text


async def test_extreme_but_valid_dates_are_served(client):
    response = await client.get(
        "/bot-requests", params={"from": "0001-01-01T14:00:00+14:00", "to": "9999-12-31T00:00:00Z"}
    )
    assert response.status_code == 200


async def test_cursor_keeps_milliseconds_exactly_after_2038(client, raw):
    world = await seed_world(client)
    moments = [datetime(2038, 1, 19, 3, 14, 8, ms * 1000, tzinfo=UTC) for ms in (1, 2, 3, 999)]
    for moment in moments:
        await raw.botrequests.insert_one(
            {"bot": ObjectId(world["bot"]["id"]), "success": True, "createdAt": moment}
        )
    seen, cursor = [], None
    while True:
        params = {"limit": 1, "populate": "none", **({"cursor": cursor} if cursor else {})}
        page = (await client.get("/bot-requests", params=params)).json()
        seen += [item["createdAt"] for item in page["items"]]
        cursor = page["next"]
        if cursor is None:
            break
    assert (
        seen == [m.isoformat(timespec="milliseconds").replace("+00:00", "Z") for m in moments][::-1]
    )


LONE_SURROGATE = '"\\ud800"'


async def _post_raw(client, method: str, path: str, text: str) -> httpx.Response:
    return await client.request(
        method, path, content=text.encode(), headers={"content-type": "application/json"}
    )


async def test_lone_surrogate_in_any_body_422_naming_the_field(client, raw):
    world = await seed_world(client)
    body = json.dumps(request_body(world, response={"text": "SURROGATE"}))
    created = await _post_raw(
        client, "POST", "/bot-requests", body.replace('"SURROGATE"', LONE_SURROGATE)
    )
    assert created.status_code == 422
    assert created.json()["detail"][0]["loc"] == ["body", "response", "text"]
    assert "surrogate" in created.json()["detail"][0]["msg"]
    org = await _post_raw(client, "POST", "/organizations", '{"name": ' + LONE_SURROGATE + "}")
    assert org.status_code == 422
    assert org.json()["detail"][0]["loc"] == ["body", "name"]
    key = await _post_raw(client, "POST", "/organizations", '{"\\udc00": 1}')
    assert key.status_code == 422
    assert "key" in key.json()["detail"][0]["msg"]
    done = await record(client, world)
    patched = await _post_raw(
        client, "PATCH", f"/bot-requests/{done['id']}", '{"response": ' + LONE_SURROGATE + "}"
    )
    assert patched.status_code == 422
    assert patched.json()["detail"][0]["loc"] == ["body", "response"]
    # A proper pair is text: accepted.
    pair = await _post_raw(client, "POST", "/organizations", '{"name": "\\ud83d\\ude00"}')
    assert pair.status_code == 201
    assert pair.json()["name"] == "\U0001f600"


async def test_lone_surrogate_in_batch_item_writes_nothing(client, raw):
    world = await seed_world(client)
    items = [request_body(world) for _ in range(3)] + [request_body(world, inputs="X")]
    text = json.dumps({"items": items}).replace('"X"', '{"color": ' + LONE_SURROGATE + "}")
    response = await _post_raw(client, "POST", "/bot-requests/batch", text)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "items", 3, "inputs", "color"]
    assert await raw.botrequests.count_documents({}) == 0


@pytest.mark.parametrize(
    ("literal", "reason"),
    [
        ("NaN", "not a JSON number"),
        ("Infinity", "not a JSON number"),
        ("-Infinity", "not a JSON number"),
        ("1e400", "out of range"),
        ("-1.5e999", "out of range"),
        ("9" * 5000, "out of range"),
        ("-" + "9" * 20, "out of range"),
    ],
)
async def test_non_finite_and_huge_numbers_422_naming_the_field(client, raw, literal, reason):
    world = await seed_world(client)
    body = json.dumps(request_body(world, response={"usage": {"cost": 0}}))
    text = body.replace('"cost": 0', f'"cost": {literal}')
    response = await _post_raw(client, "POST", "/bot-requests", text)
    assert response.status_code == 422, response.text
    detail = response.json()["detail"][0]
    assert detail["loc"] == ["body", "response", "usage", "cost"]
    assert reason in detail["msg"]
    assert await raw.botrequests.count_documents({}) == 0


async def test_non_finite_number_in_inputs_is_never_rendered(client, raw):
    world = await seed_world(client)
    bot = await template_bot(client, "n", [{"name": "n", "inputType": "number"}], "value {n}")
    body = json.dumps(request_body(world, bot=bot, inputs={"n": 1}))
    response = await _post_raw(client, "POST", "/bot-requests", body.replace('"n": 1', '"n": NaN'))
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "inputs", "n"]
    preview = await client.get(f"/bots/{bot}/prompt-preview", params={"inputs": '{"n": NaN}'})
    assert preview.status_code == 422


async def test_large_but_safe_numbers_still_accepted(client):
    world = await seed_world(client)
    response = await client.post(
        "/bot-requests",
        json=request_body(world, response={"big": 2**62, "small": 1 - 2**63, "f": 1.5e300}),
    )
    assert response.status_code == 201
    assert response.json()["response"] == {"big": 2**62, "small": 1 - 2**63, "f": 1.5e300}


# --- 6. a retry finishes what the first attempt left undone -----------------------------


async def test_batch_retry_with_request_keys_attaches_followups_the_first_attempt_did_not(
    client, raw
):
    world = await seed_world(client)
    root = await record(client, world)
    items = [request_body(world, originalRequest=root["id"], requestKey=f"f{i}") for i in range(6)]
    first = await client.post("/bot-requests/batch", json={"items": items})
    ids = [item["id"] for item in first.json()["items"]]
    # A crash between the inserts and the attachment: the original lists none of them.
    await raw.botrequests.update_one(
        {"_id": ObjectId(root["id"])}, {"$set": {"relatedRequests": []}}
    )
    retry = await client.post("/bot-requests/batch", json={"items": items})
    assert [item["status"] for item in retry.json()["items"]] == ["existing"] * 6
    assert [item["id"] for item in retry.json()["items"]] == ids
    stored = await raw.botrequests.find_one({"_id": ObjectId(root["id"])})
    assert sorted(map(str, stored["relatedRequests"])) == sorted(ids)
    # Nothing missing: a further retry leaves the original alone.
    before = stored["updatedAt"]
    await client.post("/bot-requests/batch", json={"items": items})
    after = await raw.botrequests.find_one({"_id": ObjectId(root["id"])})
    assert after["updatedAt"] == before
    assert len(after["relatedRequests"]) == 6


async def test_single_post_retry_409_names_request_and_attaches_it(client, raw):
    world = await seed_world(client)
    root = await record(client, world)
    body = request_body(world, originalRequest=root["id"], requestKey="once")
    first = await client.post("/bot-requests", json=body)
    await raw.botrequests.update_one(
        {"_id": ObjectId(root["id"])}, {"$set": {"relatedRequests": []}}
    )
    again = await client.post("/bot-requests", json=body)
    assert again.status_code == 409
    assert again.json()["existing"] == first.json()["id"]
    assert first.json()["id"] in again.json()["detail"]
    stored = await raw.botrequests.find_one({"_id": ObjectId(root["id"])})
    assert [str(i) for i in stored["relatedRequests"]] == [first.json()["id"]]
    assert await raw.botrequests.count_documents({"requestKey": "once"}) == 1


# --- 7. MONGODB_URI options win -----------------------------------------------------------


def test_uri_options_override_the_services_default_timeouts():
    given = Settings(
        mongodb_uri="mongodb://127.0.0.1:1/?socketTimeoutMS=120000&connecttimeoutms=7000",
        _env_file=None,
    )
    assert db.client_defaults(given) == {"serverSelectionTimeoutMS": 3000}
    plain = Settings(mongodb_uri="mongodb://127.0.0.1:1/", _env_file=None)
    assert db.client_defaults(plain) == {
        "serverSelectionTimeoutMS": 3000,
        "connectTimeoutMS": 3000,
        "socketTimeoutMS": 15_000,
    }


async def test_uri_socket_timeout_reaches_the_client():
    settings = Settings(mongodb_uri="mongodb://127.0.0.1:1/?socketTimeoutMS=120000", _env_file=None)
    client = db.create_client(settings)
    try:
        assert client.options.pool_options.socket_timeout == 120
        assert client.options.server_selection_timeout == 3
    finally:
        client.close()


# --- 8. repair-threads: bounded batches, progress, a one-line failure ---------------------


async def test_repair_threads_works_in_batches_with_progress(client, raw):
    world = await seed_world(client)
    root = await record(client, world)
    kids = [await record(client, world, originalRequest=root["id"]) for _ in range(12)]
    await raw.botrequests.update_one(
        {"_id": ObjectId(root["id"])},
        {"$set": {"relatedRequests": [ObjectId(kids[0]["id"])] * 3 + [ObjectId()]}},
    )
    seen = []
    repairs = await repair.repair_related_requests(
        lambda done, total, changed: seen.append((done, total, changed)), batch=5
    )
    assert [r.id for r in repairs] == [root["id"]]
    assert seen == [(5, 13, 1), (10, 13, 1), (13, 13, 1)]
    stored = await raw.botrequests.find_one({"_id": ObjectId(root["id"])})
    assert sorted(map(str, stored["relatedRequests"])) == sorted(k["id"] for k in kids)
    assert await repair.repair_related_requests(batch=5) == []


def test_repair_threads_database_failure_is_one_line_and_exit_1():
    env = {
        "PATH": "/usr/bin:/bin",
        "MONGODB_URI": f"mongodb://127.0.0.1:{closed_port()}/",
        "MONGODB_TIMEOUT_MS": "300",
    }
    done = subprocess.run(
        [sys.executable, "-m", "botrequests", "repair-threads"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith("botrequests")]
    assert len(lines) == 1
    assert "database error: ServerSelectionTimeoutError" in lines[0]
    assert "safe to re-run" in lines[0]
