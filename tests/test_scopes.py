"""Key scopes (issue 17): every operation of the OpenAPI document, called with a key of
each scope, is refused (403 naming the scope it needs) exactly when the document says."""

import pytest
from bson import ObjectId

from botrequests import cli
from tests.test_access import ADMIN

SCOPES = ("ingest", "read", "full")


async def keys_of_every_scope(client) -> tuple[dict, dict[str, dict]]:
    org = (await client.post("/organizations", json={"name": "Scoped"}, headers=ADMIN)).json()
    headers = {}
    for scope in SCOPES:
        issued = await client.post(
            f"/organizations/{org['id']}/api-keys", json={"scope": scope}, headers=ADMIN
        )
        assert issued.status_code == 201, issued.text
        assert issued.json()["scope"] == scope
        headers[scope] = {"Authorization": f"Bearer {issued.json()['key']}"}
    return org, headers


async def test_scope_matrix_over_every_operation(app, client, secured):
    org, headers = await keys_of_every_scope(client)
    schema = (await client.get("/openapi.json")).json()
    walked = 0
    for path, operations in schema["paths"].items():
        if path.startswith(("/healthz", "/readyz", "/ui")):
            continue
        for method, operation in operations.items():
            allowed = operation["x-scopes"]
            assert f"API key scopes: {', '.join(allowed) or 'none'}" in operation["description"]
            url = path.replace("{id}", org["id"] if "organizations" in path else str(ObjectId()))
            url = url.replace("{key_id}", str(ObjectId()))
            for scope in SCOPES:
                response = await client.request(
                    method.upper(), url, json={}, headers=headers[scope]
                )
                refused = response.status_code == 403 and "scope" in response.text
                if scope in allowed:
                    assert not refused, (method, path, scope, response.text)
                elif allowed:
                    assert refused, (method, path, scope, response.status_code, response.text)
                    # (OTLP's receiver answers a google.rpc.Status: its `message`.)
                    said = response.json().get("detail") or response.json()["message"]
                    assert " or ".join(f"'{s}'" for s in allowed) in said
                else:  # the admin token's
                    assert response.status_code == 403, (method, path, scope)
                walked += 1
    assert walked >= 3 * 20


async def test_ingest_key_records_and_patches_but_reads_nothing(client, secured):
    org, headers = await keys_of_every_scope(client)
    bot = await client.post("/bots", json={"name": "B", "slug": "b"}, headers=headers["full"])
    assert bot.status_code == 201
    body = {"bot": bot.json()["id"], "success": True, "response": {"ok": 1}, "ip": "10.0.0.1"}
    made = await client.post("/bot-requests", json=body, headers=headers["ingest"])
    assert made.status_code == 201, made.text
    patched = await client.patch(
        f"/bot-requests/{made.json()['id']}", json={"success": False}, headers=headers["ingest"]
    )
    assert patched.status_code == 200
    for path in (f"/bot-requests/{made.json()['id']}", "/bot-requests", "/bots"):
        denied = await client.get(path, headers=headers["ingest"])
        assert denied.status_code == 403
        assert "needs 'read' or 'full'" in denied.json()["detail"]
    assert (await client.get("/bot-requests", headers=headers["read"])).status_code == 200
    written = await client.post("/bot-requests", json={}, headers=headers["read"])
    assert written.status_code == 403
    assert "needs 'ingest' or 'full'" in written.json()["detail"]
    del org


async def test_key_list_shows_scope_prefix_and_last_use_never_the_key(client, raw, secured):
    org, headers = await keys_of_every_scope(client)
    assert (await client.get("/bot-requests", headers=headers["read"])).status_code == 200
    listed = await client.get(f"/organizations/{org['id']}/api-keys", headers=ADMIN)
    assert listed.status_code == 200
    items = listed.json()["items"]
    assert [item["scope"] for item in items] == list(SCOPES)
    used = {item["scope"]: "lastUsedAt" in item for item in items}
    assert used == {"ingest": False, "read": True, "full": False}
    for item, scope in zip(items, SCOPES, strict=True):
        assert headers[scope]["Authorization"].split()[1] not in listed.text
        assert headers[scope]["Authorization"].split()[1].startswith(item["prefix"])
    # A key made before scopes existed (no `scope` stored) is a full key.
    await raw.apikeys.update_many({}, {"$unset": {"scope": 1}})
    again = (await client.get(f"/organizations/{org['id']}/api-keys", headers=ADMIN)).json()
    assert {item["scope"] for item in again["items"]} == {"full"}
    bad = await client.post(
        f"/organizations/{org['id']}/api-keys", json={"scope": "admin"}, headers=ADMIN
    )
    assert bad.status_code == 422


@pytest.mark.parametrize("scope", SCOPES)
async def test_cli_create_api_key_with_scope(client, raw, secured, capsys, scope):
    org = (await client.post("/organizations", json={"name": "C"}, headers=ADMIN)).json()
    assert await cli._create_api_key(org["id"], scope) == 0
    assert f"API key ({scope})" in capsys.readouterr().out
    stored = await raw.apikeys.find_one({"organization": ObjectId(org["id"])})
    assert stored["scope"] == scope
