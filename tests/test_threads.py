"""Follow-up threads: consistent chains, one-query lookups, damaged data."""

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from bson import ObjectId

from botrequests import repair
from botrequests.storage import db
from tests.factories import record, seed_world
from tests.setup_writes import insert_all

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def raw_request(oid: ObjectId, parent: ObjectId | None, minute: int, **extra) -> dict:
    doc = {
        "_id": oid,
        "images": [],
        "success": True,
        "relatedRequests": [],
        "bot": ObjectId(),
        "ip": "10.0.0.1",
        "response": {"n": minute},
        "createdAt": T0 + timedelta(minutes=minute),
        "updatedAt": T0 + timedelta(minutes=minute),
        "__v": 0,
        **extra,
    }
    if parent is not None:
        doc["originalRequest"] = parent
    return doc


async def insert_chain(raw, depth: int) -> list[ObjectId]:
    """A straight chain of `depth + 1` requests written into the collection."""
    ids = [ObjectId() for _ in range(depth + 1)]
    docs = [
        raw_request(oid, ids[i - 1] if i else None, i, relatedRequests=ids[i + 1 : i + 2])
        for i, oid in enumerate(ids)
    ]
    await insert_all(raw.botrequests, docs)
    return ids


async def make_tree(client):
    """root ─ a ─ a1
    │    └ a2 ─ a2x
    └ b"""
    world = await seed_world(client)
    made = {"root": await record(client, world)}
    for name, parent in [("a", "root"), ("b", "root"), ("a1", "a"), ("a2", "a"), ("a2x", "a2")]:
        made[name] = await record(client, world, originalRequest=made[parent]["id"])
    return made


async def test_thread_same_set_from_root_leaf_and_middle(client):
    made = await make_tree(client)
    answers = []
    for start in ("root", "a2", "a2x", "b"):
        response = await client.get(f"/bot-requests/{made[start]['id']}/thread")
        assert response.status_code == 200
        answers.append(response.json())
    for answer in answers:
        assert answer["root"] == made["root"]["id"]
        assert answer["truncated"] is False
        assert answer["cycle"] is False
        assert [r["request"]["id"] for r in answer["items"]] == [
            r["request"]["id"] for r in answers[0]["items"]
        ]
    by_id = {made[name]["id"]: name for name in made}
    order = [(by_id[r["request"]["id"]], r["depth"]) for r in answers[0]["items"]]
    assert order == [("root", 0), ("a", 1), ("b", 1), ("a1", 2), ("a2", 2), ("a2x", 3)]
    first = answers[0]["items"][0]["request"]
    assert first["bot"]["slug"] == "hellow_world_bot"  # populated like any read
    assert sorted(first["relatedRequests"]) == sorted([made["a"]["id"], made["b"]["id"]])


async def test_thread_chain_scope_is_root_to_request_in_order(client):
    made = await make_tree(client)
    response = await client.get(
        f"/bot-requests/{made['a2x']['id']}/thread", params={"scope": "chain", "populate": "none"}
    )
    body = response.json()
    assert [r["request"]["id"] for r in body["items"]] == [
        made[name]["id"] for name in ("root", "a", "a2", "a2x")
    ]
    assert [r["depth"] for r in body["items"]] == [0, 1, 2, 3]
    assert body["items"][0]["request"]["bot"] == made["root"]["bot"]["id"]


async def test_create_followup_updates_original_related_requests_and_updated_at(client, raw):
    world = await seed_world(client)
    original = await record(client, world)
    followup = await record(client, world, originalRequest=original["id"])
    assert followup["originalRequest"] == original["id"]
    again = (await client.get(f"/bot-requests/{original['id']}")).json()
    assert again["relatedRequests"] == [followup["id"]]
    assert again["updatedAt"] >= followup["createdAt"]
    assert again["createdAt"] == original["createdAt"]


async def test_create_50_concurrent_followups_all_attached(client, raw):
    world = await seed_world(client)
    original = await record(client, world)
    made = await asyncio.gather(
        *(record(client, world, originalRequest=original["id"]) for _ in range(50))
    )
    stored = await raw.botrequests.find_one({"_id": ObjectId(original["id"])})
    assert sorted(map(str, stored["relatedRequests"])) == sorted(r["id"] for r in made)
    thread = (await client.get(f"/bot-requests/{original['id']}/thread")).json()
    assert len(thread["items"]) == 51


async def test_thread_of_chain_depth_500_from_both_ends(client, raw):
    ids = await insert_chain(raw, 500)
    for start in (ids[0], ids[250], ids[-1]):
        body = (
            await client.get(f"/bot-requests/{start}/thread", params={"populate": "none"})
        ).json()
        assert body["root"] == str(ids[0])
        assert [r["request"]["id"] for r in body["items"]] == [str(i) for i in ids]
        assert body["items"][-1]["depth"] == 500
        assert body["truncated"] is False
    chain = (await client.get(f"/bot-requests/{ids[300]}/thread", params={"scope": "chain"})).json()
    assert [r["request"]["id"] for r in chain["items"]] == [str(i) for i in ids[:301]]


async def _thread_round_trips(client, start: ObjectId) -> int:
    with db.count_round_trips() as counter:
        response = await client.get(f"/bot-requests/{start}/thread")
    assert response.status_code == 200
    return counter.count


async def test_thread_round_trips_constant_as_depth_grows(client, raw):
    world = await seed_world(client)
    short = await insert_chain(raw, 3)
    long = await insert_chain(raw, 300)
    bot = ObjectId(world["bot"]["id"])
    await raw.botrequests.update_many({}, {"$set": {"bot": bot}})
    small = await _thread_round_trips(client, short[-1])
    large = await _thread_round_trips(client, long[150])
    assert small == large
    assert large <= 8  # up, down, feedback, and one query per referenced collection


async def test_thread_wide_branches(client, raw):
    root = ObjectId()
    children = [ObjectId() for _ in range(200)]
    grandchildren = [ObjectId() for _ in range(200)]
    await insert_all(
        raw.botrequests,
        [raw_request(root, None, 0)]
        + [raw_request(c, root, 1 + i) for i, c in enumerate(children)]
        + [raw_request(g, children[i], 300 + i) for i, g in enumerate(grandchildren)],
    )
    body = (
        await client.get(f"/bot-requests/{grandchildren[7]}/thread", params={"populate": "none"})
    ).json()
    assert len(body["items"]) == 401
    assert [r["depth"] for r in body["items"]] == [0] + [1] * 200 + [2] * 200


async def test_thread_cycle_takes_oldest_member_and_says_so(client, raw):
    a, b, c, tail = ObjectId(), ObjectId(), ObjectId(), ObjectId()
    await insert_all(
        raw.botrequests,
        [
            raw_request(a, c, 5),  # a follows up c
            raw_request(b, a, 3),  # the oldest member of the cycle a → c → b → a
            raw_request(c, b, 7),
            raw_request(tail, c, 9),
        ],
    )
    for start in (a, b, c, tail):
        response = await client.get(f"/bot-requests/{start}/thread", params={"populate": "none"})
        assert response.status_code == 200
        body = response.json()
        assert body["cycle"] is True
        assert body["root"] == str(b)
        assert sorted(r["request"]["id"] for r in body["items"]) == sorted(
            map(str, (a, b, c, tail))
        )
        assert body["items"][0]["request"]["id"] == str(b)
    chain = (await client.get(f"/bot-requests/{tail}/thread", params={"scope": "chain"})).json()
    assert [r["request"]["id"] for r in chain["items"]] == [str(b), str(c), str(tail)]


async def test_thread_self_cycle_and_dangling_parent(client, raw):
    alone, orphan, child = ObjectId(), ObjectId(), ObjectId()
    await insert_all(
        raw.botrequests,
        [
            raw_request(alone, alone, 1),
            raw_request(orphan, ObjectId(), 2),  # its parent was never written
            raw_request(child, orphan, 3, relatedRequests=[alone, alone]),
        ],
    )
    body = (await client.get(f"/bot-requests/{alone}/thread")).json()
    assert body["cycle"] is True
    assert [r["request"]["id"] for r in body["items"]] == [str(alone)]
    body = (await client.get(f"/bot-requests/{child}/thread")).json()
    assert body["root"] == str(orphan)
    assert [r["request"]["id"] for r in body["items"]] == [str(orphan), str(child)]
    assert body["cycle"] is False


async def test_thread_past_depth_cap_is_truncated(app, client, raw):
    ids = await insert_chain(raw, 10)
    original = app.state.settings
    app.state.settings = original.model_copy(update={"thread_max_depth": 4})
    try:
        down = (await client.get(f"/bot-requests/{ids[0]}/thread")).json()
        up = (await client.get(f"/bot-requests/{ids[10]}/thread")).json()
    finally:
        app.state.settings = original
    assert down["truncated"] is True
    assert [r["request"]["id"] for r in down["items"]] == [str(i) for i in ids[:5]]
    assert up["truncated"] is True
    assert up["root"] == str(ids[6])  # the topmost request within 4 levels of ids[10]
    assert up["items"][-1]["depth"] == 4


async def test_thread_unknown_id_404_malformed_422(client):
    assert (await client.get(f"/bot-requests/{ObjectId()}/thread")).status_code == 404
    assert (await client.get("/bot-requests/xyz/thread")).status_code == 422
    made = await client.get(f"/bot-requests/{ObjectId()}/thread", params={"scope": "all"})
    assert made.status_code == 422


async def test_repair_threads_rebuilds_related_requests_idempotently(client, raw):
    parent, kid1, kid2, stray = ObjectId(), ObjectId(), ObjectId(), ObjectId()
    await insert_all(
        raw.botrequests,
        [
            # missing kid2 (a crash between the two writes), a stray id and a duplicate
            raw_request(parent, None, 0, relatedRequests=[kid1, stray, kid1], userAgent="x"),
            raw_request(kid1, parent, 1),
            raw_request(kid2, parent, 2),
        ],
    )
    repairs = await repair.repair_related_requests()
    assert len(repairs) == 1
    assert repairs[0].id == str(parent)
    assert repairs[0].added == [str(kid2)]
    assert repairs[0].removed == [str(stray)]
    assert repairs[0].deduplicated == [str(kid1)]
    stored = await raw.botrequests.find_one({"_id": parent})
    assert sorted(stored["relatedRequests"]) == sorted([kid1, kid2])
    assert stored["userAgent"] == "x"
    assert stored["__v"] == 2  # the array changed twice ($pull, then $addToSet)
    assert await repair.repair_related_requests() == []


@pytest.mark.parametrize("scope", ["thread", "chain"])
async def test_thread_after_crash_between_writes_still_complete(client, raw, scope):
    """The follow-up was written but the `$addToSet` never ran: readers see it anyway."""
    parent, kid = ObjectId(), ObjectId()
    await insert_all(raw.botrequests, [raw_request(parent, None, 0), raw_request(kid, parent, 1)])
    body = (await client.get(f"/bot-requests/{kid}/thread", params={"scope": scope})).json()
    assert [r["request"]["id"] for r in body["items"]] == [str(parent), str(kid)]
