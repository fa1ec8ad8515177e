"""Finding things without ids (the viewer's pickers): bots by name or slug, users by name,
sessions by prefix. Scoped like every read; the text is matched as written."""

import pytest

from tests.test_access import tenant


async def make(client, who: dict, path: str, body: dict) -> dict:
    response = await client.post(path, json=body, headers=who["headers"])
    assert response.status_code == 201, response.text
    return response.json()


async def test_find_bots_users_and_sessions_by_text_only_in_own_organization(client, secured):
    acme, other = await tenant(client, "Acme"), await tenant(client, "Other")
    poet = await make(client, acme, "/bots", {"name": "Sea Poet", "slug": "poet"})
    await make(client, acme, "/bots", {"name": "Helper", "slug": "helper"})
    await make(client, other, "/bots", {"name": "Poet of Other", "slug": "poet"})
    ada = await make(client, acme, "/users", {"name": "Ada Lovelace"})
    await make(client, acme, "/users", {"name": "Grace Hopper"})
    await make(client, other, "/users", {"name": "Ada Other"})
    for who, session in ((acme, "checkout-1"), (acme, "checkout-1"), (acme, "checkout-2")):
        body = {"bot": poet["id"], "success": True, "response": {}, "ip": "10.0.0.1"}
        await make(client, who, "/bot-requests", {**body, "sessionKey": session})
    other_bot = await make(client, other, "/bots", {"name": "O", "slug": "o"})
    body = {"bot": other_bot["id"], "success": True, "response": {}, "ip": "10.0.0.1"}
    await make(client, other, "/bot-requests", {**body, "sessionKey": "checkout-9"})

    def get(path: str, **params):
        return client.get(path, params=params, headers=acme["headers"])

    bots = (await get("/bots", q="POET")).json()["items"]
    assert [bot["id"] for bot in bots] == [poet["id"]]  # by name, any case; not Other's
    assert [b["slug"] for b in (await get("/bots", q="help")).json()["items"]] == ["helper"]
    users = (await get("/users", q="ada")).json()["items"]
    assert [user["id"] for user in users] == [ada["id"]]
    everyone = (await get("/users")).json()["items"]
    assert [user["name"] for user in everyone] == ["Ada Lovelace", "Grace Hopper"]
    found = (await get("/bot-requests/sessions", q="checkout")).json()["items"]
    assert {(s["sessionKey"], s["requests"]) for s in found} == {
        ("checkout-1", 2),
        ("checkout-2", 1),
    }
    assert found[0]["sessionKey"] == "checkout-2"  # most recently active first
    assert (await get("/bot-requests/sessions", q="heckout")).json()["items"] == []  # a prefix


@pytest.mark.parametrize("text", [".*", "(a+)+$", "[", "\\", "$where", "^"])
async def test_find_with_pattern_characters_matches_them_literally(client, text):
    bot = (await client.post("/bots", json={"name": f"odd {text} name", "slug": "odd"})).json()
    await client.post("/bots", json={"name": "plain", "slug": "plain"})
    found = await client.get("/bots", params={"q": text})
    assert found.status_code == 200
    assert [b["id"] for b in found.json()["items"]] == [bot["id"]]
    users = await client.get("/users", params={"q": text})
    assert users.status_code == 200
    assert users.json()["items"] == []
    sessions = await client.get("/bot-requests/sessions", params={"q": text})
    assert sessions.status_code == 200
    assert sessions.json()["items"] == []


async def test_find_with_overlong_text_422(client):
    assert (await client.get("/bots", params={"q": "x" * 101})).status_code == 422
    assert (await client.get("/users", params={"q": "x" * 101})).status_code == 422
    assert (await client.get("/users", params={"limit": 0})).status_code == 422
    long = {"q": "x" * 201}
    assert (await client.get("/bot-requests/sessions", params=long)).status_code == 422


async def test_sessions_say_first_and_last_activity_and_user_named_in_scope(client, secured):
    acme, other = await tenant(client, "Acme"), await tenant(client, "Other")
    bot = await make(client, acme, "/bots", {"name": "B", "slug": "b"})
    ada = await make(client, acme, "/users", {"name": "Ada"})
    made = []
    for _ in range(3):
        body = {"bot": bot["id"], "success": True, "response": {}, "createdBy": ada["id"]}
        made.append(await make(client, acme, "/bot-requests", {**body, "sessionKey": "s-1"}))
    anonymous = {"bot": bot["id"], "success": True, "response": {}, "sessionKey": "s-2"}
    await make(client, acme, "/bot-requests", anonymous)
    other_bot = await make(client, other, "/bots", {"name": "O", "slug": "o"})
    await make(
        client,
        other,
        "/bot-requests",
        {"bot": other_bot["id"], "success": True, "response": {}, "sessionKey": "s-3"},
    )
    answer = await client.get("/bot-requests/sessions", headers=acme["headers"])
    assert answer.status_code == 200
    items = answer.json()["items"]
    assert [item["sessionKey"] for item in items] == ["s-2", "s-1"]  # not Other's s-3
    first = items[1]
    assert first["requests"] == 3
    assert first["first"] == made[0]["createdAt"]
    assert first["last"] == made[-1]["createdAt"]
    assert first["user"] == {"name": "Ada", "id": ada["id"]}
    assert items[0]["user"] is None
