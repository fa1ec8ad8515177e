"""Organizations, users, bots, files and invoices through the HTTP API."""

import pytest
from bson import ObjectId

from tests.factories import post, seed_world

GONE = str(ObjectId())


async def test_create_and_read_each_record_type(client):
    world = await seed_world(client)
    for path, key in [
        ("organizations", "org"),
        ("users", "user"),
        ("bots", "bot"),
        ("files", "image"),
        ("invoices", "invoice"),
    ]:
        response = await client.get(f"/{path}/{world[key]['id']}")
        assert response.status_code == 200
        assert response.json() == world[key]
    assert world["user"]["email"] == "john.doe@example.com"
    assert world["bot"]["creditCost"] == 10


@pytest.mark.parametrize("path", ["organizations", "users", "bots", "files", "invoices"])
async def test_read_unknown_record_404_malformed_422(client, path):
    assert (await client.get(f"/{path}/{ObjectId()}")).status_code == 404
    assert (await client.get(f"/{path}/123")).status_code == 422


async def test_create_bot_defaults_and_duplicate_slug_409(client):
    bot = await post(client, "/bots", {"name": "B", "slug": "b"})
    assert bot["creditCost"] == 0
    assert bot["inputs"] == []
    duplicate = await client.post("/bots", json={"name": "Other", "slug": "b"})
    assert duplicate.status_code == 409
    assert "slug" in duplicate.json()["detail"]


@pytest.mark.parametrize(
    ("path", "body", "loc"),
    [
        ("/users", {"name": "x", "organization": GONE}, ["body", "organization"]),
        ("/files", {"fileName": "f", "s3Key": "k", "createdBy": GONE}, ["body", "createdBy"]),
        (
            "/invoices",
            {"organization": GONE, "credits": 1, "status": "paid"},
            ["body", "organization"],
        ),
        (
            "/invoices",
            {"organization": "x", "credits": 1, "status": "paid"},
            ["body", "organization"],
        ),
        ("/invoices", {"organization": GONE, "credits": -1, "status": "paid"}, ["body", "credits"]),
        ("/invoices", {"organization": GONE, "credits": 1, "status": "lost"}, ["body", "status"]),
        ("/bots", {"name": "n", "slug": "s", "creditCost": 2**70}, ["body", "creditCost"]),
        ("/bots", {"name": "n", "slug": "Bad Slug"}, ["body", "slug"]),
        ("/organizations", {"name": ""}, ["body", "name"]),
        ("/organizations", {"name": "x", "createdAt": "2020-01-01"}, ["body", "createdAt"]),
    ],
)
async def test_create_record_bad_input_422(client, path, body, loc):
    response = await client.post(path, json=body)
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"][: len(loc)] == loc


async def test_patch_bot_keeps_input_ids_and_moves_updated_at(client, raw):
    world = await seed_world(client)
    bot = world["bot"]
    await raw.bots.update_one({"_id": ObjectId(bot["id"])}, {"$set": {"description": "kept"}})
    inputs = [
        {"name": "color", "inputType": "text"},
        {"name": "size", "inputType": "number"},
    ]
    response = await client.patch(f"/bots/{bot['id']}", json={"creditCost": 12, "inputs": inputs})
    assert response.status_code == 200, response.text
    patched = response.json()
    assert patched["creditCost"] == 12
    assert patched["inputs"][0]["id"] == bot["inputs"][0]["id"]
    assert patched["inputs"][1]["bot"] == {"id": bot["id"]}
    assert patched["updatedAt"] > bot["updatedAt"]
    assert patched["createdAt"] == bot["createdAt"]
    stored = await raw.bots.find_one({"_id": ObjectId(bot["id"])})
    assert stored["description"] == "kept"
    assert stored["__v"] == 1  # inputs rewritten: Mongoose's version key moves
    renamed = await client.patch(f"/bots/{bot['id']}", json={"name": "Renamed"})
    assert renamed.status_code == 200
    stored = await raw.bots.find_one({"_id": ObjectId(bot["id"])})
    assert stored["__v"] == 1  # no array changed: it stays


async def test_list_bots_pages_by_slug(client):
    for slug in ("c", "a", "e", "b", "d"):
        await post(client, "/bots", {"name": slug.upper(), "slug": slug})
    first = (await client.get("/bots", params={"limit": 2})).json()
    assert [bot["slug"] for bot in first["items"]] == ["a", "b"]
    second = (await client.get("/bots", params={"limit": 2, "cursor": first["next"]})).json()
    assert [bot["slug"] for bot in second["items"]] == ["c", "d"]
    last = (await client.get("/bots", params={"limit": 2, "cursor": second["next"]})).json()
    assert [bot["slug"] for bot in last["items"]] == ["e"]
    assert last["next"] is None
    assert (await client.get("/bots", params={"cursor": "$gt"})).status_code == 422


async def test_health_and_ready(client):
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    assert (await client.get("/readyz")).status_code == 200
