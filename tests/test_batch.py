"""POST /bot-requests/batch: per-item results, idempotent retries, limits."""

import asyncio

from bson import ObjectId

from botrequests.storage import db
from tests.factories import record, request_body, seed_world


def item(world: dict, **extra) -> dict:
    return request_body(world, **{"response": {"ok": True}, **extra})


async def test_batch_mixed_items_each_answered_bad_ones_not_written(client, raw):
    world = await seed_world(client)
    original = await record(client, world)
    gone = str(ObjectId())
    items = [
        item(world),
        item(world, bot=gone),
        item(world, success="maybe"),
        item(world, originalRequest=original["id"]),
        item(world, images=[world["image"]["id"], gone]),
        "not an object",
        item(world, inputs={"colour": "Red"}),
        item(world, originalRequest=gone),
    ]
    response = await client.post("/bot-requests/batch", json={"items": items})
    assert response.status_code == 200, response.text
    body = response.json()
    statuses = [answer["status"] for answer in body["items"]]
    assert statuses == [
        "created",
        "error",
        "error",
        "created",
        "error",
        "error",
        "error",
        "error",
    ]
    assert (body["created"], body["existing"], body["failed"]) == (2, 0, 6)
    errors = {
        answer["index"]: answer["errors"][0] for answer in body["items"] if "errors" in answer
    }
    assert errors[1] == {"index": 1, "field": "bot", "reason": f"bot {gone} does not exist"}
    assert errors[2]["field"] == "success"
    assert errors[4] == {"index": 4, "field": "images.1", "reason": f"file {gone} does not exist"}
    assert errors[6]["field"] == "inputs.colour"
    assert errors[7]["field"] == "originalRequest"
    assert await raw.botrequests.count_documents({}) == 3  # the original and two created
    followup = body["items"][3]["id"]
    stored = await raw.botrequests.find_one({"_id": ObjectId(original["id"])})
    assert stored["relatedRequests"] == [ObjectId(followup)]
    created = (await client.get(f"/bot-requests/{body['items'][0]['id']}")).json()
    assert created["credits"] == 10
    assert created["bot"]["slug"] == "hellow_world_bot"


async def test_batch_retry_with_request_keys_writes_each_once(client, raw):
    world = await seed_world(client)
    items = [item(world, requestKey=f"k{i}") for i in range(5)] + [item(world)]
    first = (await client.post("/bot-requests/batch", json={"items": items})).json()
    assert first["created"] == 6
    retry = (await client.post("/bot-requests/batch", json={"items": items})).json()
    assert [a["status"] for a in retry["items"]] == ["existing"] * 5 + ["created"]
    assert [a["id"] for a in retry["items"][:5]] == [a["id"] for a in first["items"][:5]]
    assert await raw.botrequests.count_documents({}) == 7
    assert await raw.botrequests.count_documents({"requestKey": "k3"}) == 1


async def test_batch_concurrent_retries_store_each_key_once(client, raw):
    world = await seed_world(client)
    items = [item(world, requestKey=f"c{i}") for i in range(20)]
    answers = await asyncio.gather(
        *(client.post("/bot-requests/batch", json={"items": items}) for _ in range(3))
    )
    assert all(answer.status_code == 200 for answer in answers)
    assert await raw.botrequests.count_documents({}) == 20
    ids = {a["id"] for answer in answers for a in answer.json()["items"]}
    assert len(ids) == 20


async def test_batch_request_key_repeated_within_batch_is_an_item_error(client, raw):
    world = await seed_world(client)
    body = (
        await client.post(
            "/bot-requests/batch",
            json={"items": [item(world, requestKey="same"), item(world, requestKey="same")]},
        )
    ).json()
    assert [a["status"] for a in body["items"]] == ["created", "error"]
    assert body["items"][1]["errors"][0]["field"] == "requestKey"


async def test_batch_single_post_duplicate_request_key_409(client):
    world = await seed_world(client)
    await record(client, world, requestKey="once")
    again = await client.post("/bot-requests", json=item(world, requestKey="once"))
    assert again.status_code == 409


async def test_batch_1000_items_constant_round_trips(client, raw):
    world = await seed_world(client)
    items = [item(world, images=[world["image"]["id"]], sessionKey=f"s{i}") for i in range(1000)]
    with db.count_round_trips() as counter:
        response = await client.post("/bot-requests/batch", json={"items": items})
    assert response.json()["created"] == 1000
    assert await raw.botrequests.count_documents({}) == 1000
    # keys, bots, users, organizations, files, invoices, originals, insert_many
    assert counter.count <= 8


async def test_batch_over_limit_413_and_empty_ok(client, raw):
    world = await seed_world(client)
    response = await client.post("/bot-requests/batch", json={"items": [item(world)] * 1001})
    assert response.status_code == 413
    assert "at most 1000" in response.json()["detail"]
    assert await raw.botrequests.count_documents({}) == 0
    empty = await client.post("/bot-requests/batch", json={"items": []})
    assert empty.json() == {"items": [], "created": 0, "existing": 0, "failed": 0}
    bad = await client.post("/bot-requests/batch", json=[item(world)])
    assert bad.status_code == 422


async def test_batch_stores_the_same_document_as_a_single_post(client, raw):
    world = await seed_world(client)
    original = await record(client, world)
    body = item(
        world,
        images=[world["image"]["id"]],
        originalRequest=original["id"],
        invoice=world["invoice"]["id"],
        sessionKey="s",
        isAggregation=False,
        prompt="p",
        requestKey="one",
        response={"a": None, "b": [1, {"c": None}]},
    )
    single = (await client.post("/bot-requests", json=body)).json()
    batched = (
        await client.post("/bot-requests/batch", json={"items": [{**body, "requestKey": "two"}]})
    ).json()["items"][0]
    one = await raw.botrequests.find_one({"_id": ObjectId(single["id"])})
    two = await raw.botrequests.find_one({"_id": ObjectId(batched["id"])})
    assert list(one) == list(two)
    for key in one:
        if key not in ("_id", "createdAt", "updatedAt", "requestKey"):
            assert one[key] == two[key], key
        assert type(one[key]) is type(two[key]), key
