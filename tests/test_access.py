"""Access control, hostile input, database outages and request logs."""

import json
import logging
import socket
from datetime import UTC, datetime
from types import SimpleNamespace

import httpx
import pytest
from bson import ObjectId
from pymongo.errors import ServerSelectionTimeoutError

from botrequests import auth, cli
from botrequests.app import create_app
from botrequests.config import Settings
from botrequests.storage import db
from tests.setup_writes import eventually

ADMIN = {"Authorization": "Bearer admin-secret"}


async def tenant(client, name: str) -> dict:
    org = (await client.post("/organizations", json={"name": name}, headers=ADMIN)).json()
    issued = await client.post(f"/organizations/{org['id']}/api-keys", headers=ADMIN)
    assert issued.status_code == 201, issued.text
    key = issued.json()
    return {"org": org, "key": key, "headers": {"Authorization": f"Bearer {key['key']}"}}


async def records_of(client, who: dict) -> dict:
    h = who["headers"]

    async def post(path: str, body: dict) -> dict:
        response = await client.post(path, json=body, headers=h)
        assert response.status_code == 201, response.text
        return response.json()

    user = await post("/users", {"name": "U"})
    bot = await post("/bots", {"name": "B", "slug": f"bot-{who['org']['id']}"})
    file = await post("/files", {"fileName": "f", "s3Key": "k", "createdBy": user["id"]})
    invoice = await post(
        "/invoices", {"organization": who["org"]["id"], "credits": 1, "status": "open"}
    )
    request = await post(
        "/bot-requests",
        {
            "bot": bot["id"],
            "createdBy": user["id"],
            "images": [file["id"]],
            "invoice": invoice["id"],
            "success": True,
            "response": {"secret": who["org"]["name"]},
            "sessionKey": "s",
        },
    )
    return {
        "users": user,
        "bots": bot,
        "files": file,
        "invoices": invoice,
        "bot-requests": request,
        "organizations": who["org"],
    }


async def test_access_without_or_with_bad_key_401_health_stays_open(client, secured):
    for headers in ({}, {"Authorization": "Bearer br_nope"}, {"Authorization": "Basic x"}):
        response = await client.get("/bot-requests", headers=headers)
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == "Bearer"
    assert (await client.get("/healthz")).status_code == 200
    assert (await client.get("/readyz")).status_code == 200


async def test_access_tenant_isolation_for_every_record_type(client, secured):
    a, b = await tenant(client, "A"), await tenant(client, "B")
    mine = await records_of(client, a)
    theirs = await records_of(client, b)
    for path, record in mine.items():
        own = await client.get(f"/{path}/{record['id']}", headers=a["headers"])
        assert own.status_code == 200, path
        other = await client.get(f"/{path}/{record['id']}", headers=b["headers"])
        assert other.status_code == 404, path  # never 403: that would confirm it exists
    request_id = mine["bot-requests"]["id"]
    for call in (
        client.patch(f"/bot-requests/{request_id}", json={"success": False}, headers=b["headers"]),
        client.get(f"/bot-requests/{request_id}/thread", headers=b["headers"]),
        client.patch(f"/bots/{mine['bots']['id']}", json={"name": "x"}, headers=b["headers"]),
        client.get(f"/bots/{mine['bots']['id']}/prompt-preview", headers=b["headers"]),
    ):
        assert (await call).status_code == 404
    listed = (await client.get("/bot-requests", headers=b["headers"])).json()["items"]
    assert [item["id"] for item in listed] == [theirs["bot-requests"]["id"]]
    spied = await client.get(
        "/bot-requests", params={"organization": a["org"]["id"]}, headers=b["headers"]
    )
    assert spied.json()["items"] == []
    stats = await client.get("/bot-requests/stats?groupBy=organization", headers=b["headers"])
    assert [g["organization"]["id"] for g in stats.json()["items"]] == [b["org"]["id"]]
    export = await client.get("/bot-requests/export", headers=b["headers"])
    assert [json.loads(line)["id"] for line in export.text.splitlines()] == [
        theirs["bot-requests"]["id"]
    ]
    bots = (await client.get("/bots", headers=b["headers"])).json()["items"]
    assert [bot["id"] for bot in bots] == [theirs["bots"]["id"]]


@pytest.mark.parametrize("field", ["bot", "createdBy", "invoice", "images", "originalRequest"])
async def test_access_reference_to_other_organization_rejected(client, raw, secured, field):
    a, b = await tenant(client, "A"), await tenant(client, "B")
    mine, theirs = await records_of(client, a), await records_of(client, b)
    ref = {
        "bot": mine["bots"]["id"],
        "createdBy": mine["users"]["id"],
        "invoice": mine["invoices"]["id"],
        "images": [mine["files"]["id"]],
        "originalRequest": mine["bot-requests"]["id"],
    }[field]
    body = {"bot": theirs["bots"]["id"], "success": True, "response": {}, field: ref}
    before = await raw.botrequests.count_documents({})
    response = await client.post("/bot-requests", json=body, headers=b["headers"])
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"][1] == field
    assert await raw.botrequests.count_documents({}) == before


async def test_access_request_recorded_for_keys_organization_whatever_body_says(
    client, raw, secured
):
    a, b = await tenant(client, "A"), await tenant(client, "B")
    theirs = await records_of(client, b)
    response = await client.post(
        "/bot-requests",
        json={
            "bot": theirs["bots"]["id"],
            "organization": a["org"]["id"],
            "success": True,
            "response": {},
        },
        headers=b["headers"],
    )
    assert response.status_code == 201, response.text
    assert response.json()["organization"]["id"] == b["org"]["id"]
    batch = await client.post(
        "/bot-requests/batch",
        json={
            "items": [
                {
                    "bot": theirs["bots"]["id"],
                    "organization": a["org"]["id"],
                    "success": True,
                    "response": {},
                }
            ]
        },
        headers=b["headers"],
    )
    stored = await raw.botrequests.find_one({"_id": ObjectId(batch.json()["items"][0]["id"])})
    assert stored["organization"] == ObjectId(b["org"]["id"])


async def test_access_only_admin_manages_organizations_and_keys(client, secured):
    a = await tenant(client, "A")
    assert (
        await client.post("/organizations", json={"name": "X"}, headers=a["headers"])
    ).status_code == 403
    issue = await client.post(f"/organizations/{a['org']['id']}/api-keys", headers=a["headers"])
    assert issue.status_code == 403
    assert (await client.post("/organizations", json={"name": "X"})).status_code == 401


async def test_access_revoked_key_stops_working_and_only_hash_is_stored(client, raw, secured):
    a = await tenant(client, "A")
    assert (await client.get("/bot-requests", headers=a["headers"])).status_code == 200
    stored = await raw.apikeys.find_one({"_id": ObjectId(a["key"]["id"])})
    assert a["key"]["key"] not in json.dumps(stored, default=str)
    assert stored["prefix"] == a["key"]["key"][:10]
    url = f"/organizations/{a['org']['id']}/api-keys/{a['key']['id']}"
    assert (await client.delete(url, headers=ADMIN)).status_code == 204
    assert (await client.get("/bot-requests", headers=a["headers"])).status_code == 401
    assert (
        await client.delete(f"/organizations/{a['org']['id']}/api-keys/{ObjectId()}", headers=ADMIN)
    ).status_code == 404


async def test_access_key_revoked_elsewhere_stops_within_the_cache_bound(
    app, client, raw, secured, monkeypatch
):
    """A key revoked by another worker (here: in the database) is trusted by this worker
    for at most KEY_CACHE_SECONDS, then refused; a key never looked up is not cached."""
    app.state.settings = app.state.settings.model_copy(update={"key_cache_seconds": 5})
    # The cache's clock, moved by the test: what counts is how long, not how fast.
    clock = {"now": 1000.0}
    monkeypatch.setattr(auth, "time", SimpleNamespace(monotonic=lambda: clock["now"]))
    a = await tenant(client, "A")
    assert (await client.get("/bot-requests", headers=a["headers"])).status_code == 200
    revoked = {"$set": {"revokedAt": datetime.now(UTC)}}
    await raw.apikeys.update_one({"_id": ObjectId(a["key"]["id"])}, revoked)
    clock["now"] += 4.9
    within = await client.get("/bot-requests", headers=a["headers"])
    assert within.status_code == 200  # this worker looked it up under 5 s ago
    clock["now"] += 0.2
    assert (await client.get("/bot-requests", headers=a["headers"])).status_code == 401
    b = await tenant(client, "B")
    await raw.apikeys.update_one({"_id": ObjectId(b["key"]["id"])}, revoked)
    assert (await client.get("/bot-requests", headers=b["headers"])).status_code == 401


async def test_cli_create_api_key_prints_a_working_key(client, secured, capsys):
    org = (await client.post("/organizations", json={"name": "C"}, headers=ADMIN)).json()
    assert await cli._create_api_key(org["id"]) == 0
    key = capsys.readouterr().out.strip().splitlines()[-1]
    response = await client.get("/bot-requests", headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 200
    assert await cli._create_api_key(str(ObjectId())) == 1
    assert await cli._create_api_key("nope") == 2


def test_docs_show_how_to_authenticate():
    schema = create_app(Settings(_env_file=None)).openapi()
    assert schema["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"


# --- hostile input ------------------------------------------------------------------------


def nested(depth: int) -> str:
    return '{"bot": "x", "success": true, "response": ' + "[" * depth + "]" * depth + "}"


@pytest.mark.parametrize("depth", [40, 100_000])
async def test_hostile_deep_json_422_not_500(client, raw, depth):
    response = await client.post(
        "/bot-requests", content=nested(depth), headers={"content-type": "application/json"}
    )
    assert response.status_code == 422
    assert "nested deeper than 32" in response.json()["detail"][0]["msg"]


async def test_hostile_brackets_inside_strings_do_not_count(client):
    world_bot = str(ObjectId())
    body = {"bot": world_bot, "success": True, "response": {"text": "[" * 1000}}
    response = await client.post("/bot-requests", json=body)
    assert response.status_code == 422  # the bot does not exist; the depth was fine
    assert response.json()["detail"][0]["loc"] == ["body", "bot"]


async def test_hostile_body_over_limit_413(client, raw):
    big = {"bot": str(ObjectId()), "success": True, "response": {"t": "x" * (1024 * 1024)}}
    response = await client.post("/bot-requests", json=big)
    assert response.status_code == 413
    assert await raw.botrequests.count_documents({}) == 0


@pytest.mark.parametrize(
    "response_value",
    [
        {"$set": 1},
        {"a.b": 1},
        {"nul\u0000key": 1},
        {"deep": {"$where": "sleep(1)"}},
        [{"ok": 1}, {"$gt": ""}],
        2**70,
    ],
)
async def test_hostile_keys_and_numbers_in_response_422(client, raw, response_value):
    body = {"bot": str(ObjectId()), "success": True, "response": response_value}
    response = await client.post("/bot-requests", json=body)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"][:2] == ["body", "response"]


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/organizations", {"name": "x" * 201}),
        (
            "/bot-requests",
            {"bot": str(ObjectId()), "success": True, "response": {}, "prompt": "p" * 200_001},
        ),
        (
            "/bot-requests",
            {"bot": str(ObjectId()), "success": True, "response": {}, "sessionKey": "s" * 201},
        ),
    ],
)
async def test_hostile_strings_over_caps_422(client, path, body):
    assert (await client.post(path, json=body)).status_code == 422


async def test_hostile_malformed_json_422(client):
    response = await client.post(
        "/bot-requests", content=b'{"bot": ', headers={"content-type": "application/json"}
    )
    assert response.status_code == 422


# --- database outages ---------------------------------------------------------------------


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def test_outage_service_starts_answers_503_quickly_and_health_stays_up():
    settings = Settings(
        mongodb_uri=f"mongodb://127.0.0.1:{closed_port()}/",
        mongodb_timeout_ms=300,
        BOTREQUESTS_AUTH="off",
        _env_file=None,
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            assert (await client.get("/healthz")).status_code == 200
            assert (await client.get("/readyz")).status_code == 503
            for method, path in [
                ("GET", f"/bot-requests/{ObjectId()}"),
                ("GET", "/bot-requests"),
                ("POST", "/organizations"),
                ("GET", "/bot-requests/stats"),
            ]:
                response = await client.request(method, path, json={"name": "x"})
                assert response.status_code == 503, (path, response.text)
                # Said by the readiness check, which never waits on the database.
                assert response.json() == {
                    "detail": "database unavailable (unreachable (ServerSelectionTimeoutError)); "
                    "try again shortly"
                }


async def test_outage_recovers_by_itself_when_database_comes_back(app, monkeypatch):
    real_init = db.init_db
    calls = {"n": 0}

    async def flaky(client, config):
        calls["n"] += 1
        if calls["n"] == 1:
            raise ServerSelectionTimeoutError("down")
        await real_init(client, config)

    monkeypatch.setattr(db, "init_db", flaky)
    settings = Settings(
        mongodb_uri="mongomock://", mongodb_timeout_ms=100, BOTREQUESTS_AUTH="off", _env_file=None
    )
    other = create_app(settings)
    try:
        async with other.router.lifespan_context(other):
            transport = httpx.ASGITransport(app=other)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                assert (await client.get("/bot-requests")).status_code == 503
                back = await eventually(
                    lambda: client.get("/bot-requests"), lambda r: r.status_code == 200
                )
                assert back.status_code == 200
                assert calls["n"] == 2
    finally:
        # Beanie binds documents globally: bind them back to the session's database.
        await real_init(app.state.mongo, app.state.settings)


# --- logs ---------------------------------------------------------------------------------


async def test_logs_one_structured_line_per_request_without_secrets(client, secured, caplog):
    a = await tenant(client, "A")
    caplog.set_level(logging.INFO, logger="botrequests.access")
    caplog.clear()
    response = await client.post(
        "/bot-requests?populate=bot",
        json={"bot": str(ObjectId()), "success": True, "response": {"pii": "my secret text"}},
        headers={**a["headers"], "X-Request-ID": "req-123"},
    )
    assert response.headers["x-request-id"] == "req-123"
    lines = [r.getMessage() for r in caplog.records if r.name == "botrequests.access"]
    assert len(lines) == 1
    entry = json.loads(lines[0])
    assert entry == {
        "method": "POST",
        "path": "/bot-requests",
        "status": 422,
        "ms": entry["ms"],
        "requestId": "req-123",
    }
    text = caplog.text
    assert a["key"]["key"] not in text
    assert "my secret text" not in text
    fresh = await client.get("/healthz", headers={"X-Request-ID": "bad id with spaces"})
    assert len(fresh.headers["x-request-id"]) == 32
