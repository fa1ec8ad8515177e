"""Recording bot requests and reading them back populated, through the HTTP API."""

import json
import re
from pathlib import Path
from typing import Any

import pytest
from bson import ObjectId

from botrequests.storage import db
from tests.factories import post, record, seed_world

SEED = json.loads((Path(__file__).parent / "data" / "seed_example.json").read_text())
ISO_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
HEX_ID = re.compile(r"^[0-9a-f]{24}$")


def shape(value: Any) -> Any:
    """The value with ids and timestamps replaced by placeholders; key order kept."""
    if isinstance(value, dict):
        return {key: shape(item) for key, item in value.items()}
    if isinstance(value, list):
        return [shape(item) for item in value]
    if isinstance(value, str) and HEX_ID.match(value):
        return "<id>"
    if isinstance(value, str) and ISO_MS.match(value):
        return "<time>"
    return value


async def test_read_seed_example_matches_seed_json_key_by_key(client):
    world = await seed_world(client)
    created = await record(client, world, success=False, response={})
    patched = await client.patch(
        f"/bot-requests/{created['id']}",
        json={
            "success": True,
            "response": {"message": "Hellow word"},
            "images": [world["image"]["id"]],
        },
    )
    assert patched.status_code == 200, patched.text
    served = (await client.get(f"/bot-requests/{created['id']}")).json()

    # `credits` (the bot's price when the request was recorded) is the one key added to the
    # seed's shape; everything else is the seed's, in the seed's order.
    assert served.pop("credits") == 10
    assert json.dumps(shape(served)) == json.dumps(shape(SEED))
    assert served["bot"]["id"] == world["bot"]["id"]
    assert served["bot"]["inputs"][0]["bot"] == {"id": world["bot"]["id"]}
    assert served["images"][0]["id"] == world["image"]["id"]
    assert served["createdBy"] == {"name": "John Doe", "id": world["user"]["id"]}


async def test_patch_moves_updated_at_never_created_at(client):
    world = await seed_world(client)
    created = await record(client, world, success=False, response={})
    response = await client.patch(f"/bot-requests/{created['id']}", json={"success": True})
    body = response.json()
    assert body["createdAt"] == created["createdAt"]
    assert body["updatedAt"] > created["updatedAt"]
    assert body["success"] is True


async def test_patch_empty_body_changes_nothing(client):
    world = await seed_world(client)
    created = await record(client, world)
    response = await client.patch(f"/bot-requests/{created['id']}", json={})
    assert response.status_code == 200
    assert response.json() == created


async def test_patch_null_invoice_clears_it_and_null_response_is_rejected(client, raw):
    world = await seed_world(client)
    created = await record(client, world, invoice=world["invoice"]["id"])
    assert created["invoice"]["status"] == "paid"
    cleared = await client.patch(f"/bot-requests/{created['id']}", json={"invoice": None})
    assert "invoice" not in cleared.json()
    assert "invoice" not in await raw.botrequests.find_one({"_id": ObjectId(created["id"])})
    rejected = await client.patch(f"/bot-requests/{created['id']}", json={"response": None})
    assert rejected.status_code == 422


async def test_patch_dangling_image_rejected_and_nothing_written(client, raw):
    world = await seed_world(client)
    created = await record(client, world)
    missing = str(ObjectId())
    response = await client.patch(
        f"/bot-requests/{created['id']}", json={"images": [world["image"]["id"], missing]}
    )
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "images", 1]
    stored = await raw.botrequests.find_one({"_id": ObjectId(created["id"])})
    assert stored["images"] == []


@pytest.mark.parametrize(
    "field", ["bot", "createdBy", "organization", "invoice", "originalRequest"]
)
async def test_create_dangling_reference_rejected_naming_field(client, raw, field):
    world = await seed_world(client)
    missing = str(ObjectId())
    response = await client.post(
        "/bot-requests",
        json={"bot": world["bot"]["id"], "success": True, "response": {}, field: missing},
    )
    assert response.status_code == 422
    detail = response.json()["detail"][0]
    assert detail["loc"] == ["body", field]
    assert missing in detail["msg"]
    assert await raw.botrequests.count_documents({}) == 0


async def test_create_dangling_image_rejected_naming_index(client, raw):
    world = await seed_world(client)
    response = await client.post(
        "/bot-requests",
        json={
            "bot": world["bot"]["id"],
            "success": True,
            "response": {},
            "images": [world["image"]["id"], str(ObjectId())],
        },
    )
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "images", 1]
    assert await raw.botrequests.count_documents({}) == 0


@pytest.mark.parametrize(
    ("change", "loc"),
    [
        ({"bot": "64880aac2f5e4553ddac6ea"}, ["body", "bot"]),
        ({"bot": "zz880aac2f5e4553ddac6eaf"}, ["body", "bot"]),
        ({"bot": 12}, ["body", "bot"]),
        ({"createdBy": {"$ne": None}}, ["body", "createdBy"]),
        ({"images": ["nope"]}, ["body", "images", 0]),
        ({"ip": "300.1.1.1"}, ["body", "ip"]),
        ({"ip": "localhost"}, ["body", "ip"]),
        ({"success": None}, ["body", "success"]),
        ({"success": "maybe"}, ["body", "success"]),
        ({"response": None}, ["body", "response"]),
        ({"inputs": {"$where": "1"}}, ["body", "inputs"]),
        ({"inputs": {"a.b": 1}}, ["body", "inputs"]),
        ({"id": "64880aac2f5e4553ddac6eaf"}, ["body", "id"]),
        ({"createdAt": "2020-01-01T00:00:00Z"}, ["body", "createdAt"]),
        ({"relatedRequests": []}, ["body", "relatedRequests"]),
        ({"__v": 3}, ["body", "__v"]),
    ],
)
async def test_create_bad_input_rejected_naming_field(client, raw, change, loc):
    world = await seed_world(client)
    body = {"bot": world["bot"]["id"], "success": True, "response": {"ok": 1}, **change}
    response = await client.post("/bot-requests", json=body)
    assert response.status_code == 422, response.text
    assert [tuple(d["loc"][: len(loc)]) for d in response.json()["detail"]] == [tuple(loc)]
    assert await raw.botrequests.count_documents({}) == 0


@pytest.mark.parametrize("missing", ["success", "response", "bot"])
async def test_create_required_field_missing_rejected(client, missing):
    world = await seed_world(client)
    body = {"bot": world["bot"]["id"], "success": True, "response": {}}
    del body[missing]
    response = await client.post("/bot-requests", json=body)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", missing]


async def test_create_without_ip_takes_client_address(client):
    world = await seed_world(client)
    response = await client.post(
        "/bot-requests", json={"bot": world["bot"]["id"], "success": True, "response": "ok"}
    )
    assert response.status_code == 201
    assert response.json()["ip"] == "203.0.113.7"
    assert response.json()["response"] == "ok"


async def test_create_accepts_upper_case_ids_and_serves_lower_case(client):
    world = await seed_world(client)
    response = await client.post(
        "/bot-requests",
        json={"bot": world["bot"]["id"].upper(), "success": True, "response": {}, "ip": "::1"},
    )
    assert response.status_code == 201
    assert response.json()["bot"]["id"] == world["bot"]["id"]
    again = await client.get(f"/bot-requests/{response.json()['id'].upper()}")
    assert again.status_code == 200


async def test_read_malformed_id_422_unknown_id_404(client):
    assert (await client.get("/bot-requests/not-an-id")).status_code == 422
    response = await client.get(f"/bot-requests/{ObjectId()}")
    assert response.status_code == 404
    assert "not found" in response.json()["detail"]


async def test_read_populate_param_picks_paths(client):
    world = await seed_world(client)
    created = await record(client, world, images=[world["image"]["id"]])
    url = f"/bot-requests/{created['id']}"

    raw_ids = (await client.get(url, params={"populate": "none"})).json()
    assert raw_ids["bot"] == world["bot"]["id"]
    assert raw_ids["images"] == [world["image"]["id"]]
    assert (await client.get(url, params={"populate": ""})).json() == raw_ids

    some = (await client.get(url, params={"populate": "createdBy,images"})).json()
    assert some["createdBy"] == {"name": "John Doe", "id": world["user"]["id"]}
    assert some["images"][0]["fileName"] == world["image"]["fileName"]
    assert some["bot"] == world["bot"]["id"]

    unknown = await client.get(url, params={"populate": "bot,secrets"})
    assert unknown.status_code == 422
    assert "secrets" in unknown.json()["detail"][0]["msg"]


async def test_read_dangling_references_served_as_id_strings(client, raw):
    gone = {name: ObjectId() for name in ("bot", "createdBy", "organization", "invoice", "img")}
    doc_id = ObjectId()
    await raw.botrequests.insert_one(
        {
            "_id": doc_id,
            "images": [gone["img"]],
            "success": True,
            "bot": gone["bot"],
            "createdBy": gone["createdBy"],
            "organization": gone["organization"],
            "invoice": gone["invoice"],
            "ip": "1.2.3.4",
            "response": {},
        }
    )
    served = (await client.get(f"/bot-requests/{doc_id}")).json()
    assert served["bot"] == str(gone["bot"])
    assert served["createdBy"] == str(gone["createdBy"])
    assert served["organization"] == str(gone["organization"])
    assert served["invoice"] == str(gone["invoice"])
    assert served["images"] == [str(gone["img"])]
    assert "createdAt" not in served  # nothing invented for what the document lacks


async def test_create_stores_mongoose_shaped_document(client, raw):
    world = await seed_world(client)
    created = await record(client, world, images=[world["image"]["id"]], sessionKey="s-1")
    stored = await raw.botrequests.find_one({"_id": ObjectId(created["id"])})
    assert list(stored)[0] == "_id"
    assert stored["__v"] == 0
    for ref in ("bot", "createdBy", "organization"):
        assert isinstance(stored[ref], ObjectId)
    assert all(isinstance(item, ObjectId) for item in stored["images"])
    assert stored["relatedRequests"] == []
    assert stored["createdAt"].microsecond % 1000 == 0
    assert not {"revision_id", "_class_id", "id"} & set(stored)
    bot = await raw.bots.find_one({"_id": ObjectId(world["bot"]["id"])})
    assert isinstance(bot["inputs"][0]["_id"], ObjectId)
    assert bot["inputs"][0]["bot"] == bot["_id"]


async def test_list_pages_newest_first_with_cursor(client):
    world = await seed_world(client)
    made = [await record(client, world, sessionKey=f"s{i}") for i in range(7)]
    seen, cursor = [], None
    while True:
        params = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        page = (await client.get("/bot-requests", params=params)).json()
        seen += [item["id"] for item in page["items"]]
        cursor = page["next"]
        if cursor is None:
            break
    assert seen == [item["id"] for item in reversed(made)]


@pytest.mark.parametrize("cursor", ["garbage", "eyJ0IjogMX0", "bm90IGpzb24", "e30"])
async def test_list_tampered_cursor_422(client, cursor):
    response = await client.get("/bot-requests", params={"cursor": cursor})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["query", "cursor"]


async def test_list_limit_out_of_range_422(client):
    assert (await client.get("/bot-requests", params={"limit": 0})).status_code == 422
    assert (await client.get("/bot-requests", params={"limit": 501})).status_code == 422


async def _page_round_trips(client, size: int) -> int:
    with db.count_round_trips() as counter:
        response = await client.get("/bot-requests", params={"limit": size})
    assert len(response.json()["items"]) == size
    return counter.count


async def test_list_populated_page_round_trips_do_not_grow_with_page(client):
    world = await seed_world(client)
    bots = [
        await post(client, "/bots", {"name": f"b{i}", "slug": f"b{i}", "creditCost": i})
        for i in range(5)
    ]
    images = [
        await post(client, "/files", {"fileName": f"f{i}", "s3Key": f"k{i}"}) for i in range(5)
    ]
    for i in range(100):
        await record(
            client,
            world,
            bot=bots[i % 5]["id"],
            inputs={},
            images=[images[i % 5]["id"]],
            invoice=world["invoice"]["id"],
        )
    small = await _page_round_trips(client, 10)
    large = await _page_round_trips(client, 100)
    assert small == large
    assert large <= 6  # the page, then one `$in` query per referenced collection
