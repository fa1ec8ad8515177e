"""Filters, keyset pagination, stats and NDJSON export."""

import asyncio
import json
import random
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta

import pytest
from bson import ObjectId

from botrequests import analytics
from botrequests.storage import db
from tests.factories import record, seed_world
from tests.setup_writes import insert_all

T0 = datetime(2024, 3, 1, tzinfo=UTC)


async def generated(raw, count: int = 300, seed: int = 7) -> tuple[list[dict], dict]:
    """`count` requests spread over bots, organizations, users, sessions and days, written
    straight into the collection; returns them with the records they name."""
    rng = random.Random(seed)
    refs = {
        "bots": [{"_id": ObjectId(), "name": f"bot {i}", "slug": f"bot-{i}"} for i in range(3)],
        "organizations": [{"_id": ObjectId(), "name": f"org {i}"} for i in range(2)],
        "users": [{"_id": ObjectId(), "name": f"user {i}"} for i in range(4)],
    }
    for collection, docs in refs.items():
        await insert_all(raw[collection], [dict(doc) for doc in docs])
    docs = []
    for i in range(count):
        bot = rng.choice(refs["bots"])
        docs.append(
            {
                "_id": ObjectId(),
                "bot": bot["_id"],
                "organization": rng.choice(refs["organizations"])["_id"],
                "createdBy": rng.choice(refs["users"])["_id"],
                "success": rng.random() < 0.7,
                "sessionKey": f"s{rng.randrange(5)}",
                "isAggregation": rng.random() < 0.2,
                "credits": rng.randrange(0, 20),
                "response": {},
                "ip": "10.1.1.1",
                "createdAt": T0 + timedelta(hours=i * 3),
            }
        )
    await insert_all(raw.botrequests, [dict(doc) for doc in docs])
    return docs, refs


async def all_pages(client, params: dict) -> list[dict]:
    items, cursor = [], None
    while True:
        query = {
            **params,
            "limit": 37,
            "populate": "none",
            **({"cursor": cursor} if cursor else {}),
        }
        response = await client.get("/bot-requests", params=query)
        assert response.status_code == 200, response.text
        body = response.json()
        items += body["items"]
        cursor = body["next"]
        if not cursor:
            return items


def newest_first(docs: list[dict]) -> list[str]:
    ordered = sorted(docs, key=lambda d: (d["createdAt"], d["_id"]), reverse=True)
    return [str(d["_id"]) for d in ordered]


async def test_list_each_filter_and_combinations_match_hand_filter(client, raw):
    docs, refs = await generated(raw)
    bot, org, user = (
        refs["bots"][1]["_id"],
        refs["organizations"][0]["_id"],
        refs["users"][2]["_id"],
    )
    cases = [
        ({"bot": str(bot)}, lambda d: d["bot"] == bot),
        ({"organization": str(org)}, lambda d: d["organization"] == org),
        ({"createdBy": str(user)}, lambda d: d["createdBy"] == user),
        ({"success": "false"}, lambda d: not d["success"]),
        ({"sessionKey": "s3"}, lambda d: d["sessionKey"] == "s3"),
        ({"isAggregation": "true"}, lambda d: d["isAggregation"]),
        (
            {"from": "2024-03-05T00:00:00Z", "to": "2024-03-09T12:00:00Z"},
            lambda d: T0 + timedelta(days=4) <= d["createdAt"] < T0 + timedelta(days=8.5),
        ),
        (
            {"bot": str(bot), "success": "true", "sessionKey": "s1", "from": "2024-03-10"},
            lambda d: (
                d["bot"] == bot
                and d["success"]
                and d["sessionKey"] == "s1"
                and d["createdAt"] >= T0 + timedelta(days=9)
            ),
        ),
    ]
    for params, keep in cases:
        got = [item["id"] for item in await all_pages(client, params)]
        want = newest_first([d for d in docs if keep(d)])
        assert want, params
        assert got == want, params


async def test_list_filters_by_invoice_and_original_request(client):
    world = await seed_world(client)
    root = await record(client, world)
    kids = [await record(client, world, originalRequest=root["id"]) for _ in range(3)]
    billed = await record(client, world, invoice=world["invoice"]["id"])
    got = (await client.get("/bot-requests", params={"originalRequest": root["id"]})).json()
    assert [i["id"] for i in got["items"]] == [k["id"] for k in reversed(kids)]
    got = (await client.get("/bot-requests", params={"invoice": world["invoice"]["id"]})).json()
    assert [i["id"] for i in got["items"]] == [billed["id"]]
    assert got["items"][0]["invoice"]["status"] == "paid"  # populated as on every read


async def test_list_pagination_visits_each_once_under_concurrent_inserts(client):
    world = await seed_world(client)
    before = [await record(client, world) for _ in range(40)]
    seen, cursor = [], None
    while True:
        params = {"limit": 6, **({"cursor": cursor} if cursor else {})}
        page_call = client.get("/bot-requests", params=params)
        page, _ = await asyncio.gather(page_call, record(client, world))
        body = page.json()
        seen += [item["id"] for item in body["items"]]
        cursor = body["next"]
        if not cursor:
            break
    assert len(seen) == len(set(seen))
    assert {item["id"] for item in before} <= set(seen)


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"bot": "nope"}, "bot"),
        ({"bot": '{"$gt": ""}'}, "bot"),
        ({"bot[$ne]": "x"}, "bot[$ne]"),
        ({"success": "perhaps"}, "success"),
        ({"isAggregation": "2"}, "isAggregation"),
        ({"from": "yesterday"}, "from"),
        ({"limit": "0"}, "limit"),
        ({"limit": "501"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"populate": "bot,$where"}, "populate"),
        ({"cursor": "!!!"}, "cursor"),
    ],
)
async def test_list_bad_query_422_naming_parameter(client, params, field):
    response = await client.get("/bot-requests", params=params)
    assert response.status_code == 422, response.text
    assert field in [str(part) for part in response.json()["detail"][0]["loc"]]


async def test_list_reversed_time_range_422(client):
    response = await client.get(
        "/bot-requests", params={"from": "2024-03-02T00:00:00Z", "to": "2024-03-01T00:00:00Z"}
    )
    assert response.status_code == 422
    assert "before" in json.dumps(response.json())


async def test_list_cursor_from_another_query_422(client):
    world = await seed_world(client)
    for _ in range(3):
        await record(client, world)
    cursor = (await client.get("/bot-requests", params={"limit": 1})).json()["next"]
    other = await client.get(
        "/bot-requests", params={"limit": 1, "cursor": cursor, "success": "true"}
    )
    assert other.status_code == 422
    assert "different query" in other.json()["detail"][0]["msg"]


async def test_create_stores_credits_at_recording_time(client, raw):
    world = await seed_world(client)
    first = await record(client, world)
    await client.patch(f"/bots/{world['bot']['id']}", json={"creditCost": 99})
    second = await record(client, world)
    assert first["credits"] == 10
    assert second["credits"] == 99
    again = (await client.get(f"/bot-requests/{first['id']}")).json()
    assert again["credits"] == 10


@pytest.mark.parametrize("group_by", ["bot", "organization", "createdBy", "sessionKey", "day"])
async def test_stats_match_hand_count(client, raw, group_by):
    docs, refs = await generated(raw)
    since = T0 + timedelta(days=5)
    response = await client.get(
        "/bot-requests/stats", params={"groupBy": group_by, "from": since.isoformat()}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    hand: dict = defaultdict(Counter)
    span: dict = defaultdict(list)
    for doc in docs:
        if doc["createdAt"] < since:
            continue
        key = doc["createdAt"].strftime("%Y-%m-%d") if group_by == "day" else str(doc[group_by])
        hand[key]["requests"] += 1
        hand[key]["succeeded"] += doc["success"]
        hand[key]["credits"] += doc["credits"]
        span[key].append(doc["createdAt"])
    assert len(body["items"]) == len(hand)
    names = {str(d["_id"]): d for docs_ in refs.values() for d in docs_}
    for item in body["items"]:
        key = item[group_by]["id"] if isinstance(item[group_by], dict) else item[group_by]
        want = hand[key]
        assert item["requests"] == want["requests"]
        assert item["succeeded"] == want["succeeded"]
        assert item["failed"] == want["requests"] - want["succeeded"]
        assert item["successRate"] == round(want["succeeded"] / want["requests"], 4)
        assert item["credits"] == want["credits"]
        assert item["first"] == min(span[key]).strftime("%Y-%m-%dT%H:%M:%S.000Z")
        assert item["last"] == max(span[key]).strftime("%Y-%m-%dT%H:%M:%S.000Z")
        if group_by in ("bot", "organization", "createdBy"):
            assert item[group_by]["name"] == names[key]["name"]
        if group_by == "bot":
            assert item["bot"]["slug"] == names[key]["slug"]


async def test_stats_two_round_trips_and_filters_apply(client, raw):
    docs, refs = await generated(raw, count=60)
    bot = refs["bots"][0]["_id"]
    with db.count_round_trips() as counter:
        body = (
            await client.get("/bot-requests/stats", params={"groupBy": "bot", "bot": str(bot)})
        ).json()
    assert counter.count == 2, counter.commands  # the pipeline, then the names (scoped)
    assert [item["bot"]["id"] for item in body["items"]] == [str(bot)]
    assert body["items"][0]["requests"] == sum(d["bot"] == bot for d in docs)


async def test_stats_bad_group_by_422(client):
    response = await client.get("/bot-requests/stats", params={"groupBy": "ip"})
    assert response.status_code == 422


async def test_export_streams_10000_requests_as_ndjson_in_batches(client, raw):
    world = await seed_world(client)
    bot = ObjectId(world["bot"]["id"])
    count = 10_000
    await insert_all(
        raw.botrequests,
        [
            {
                "_id": ObjectId(),
                "bot": bot,
                "success": i % 3 != 0,
                "response": {"i": i},
                "ip": "10.0.0.1",
                "createdAt": T0 + timedelta(seconds=i // 2),  # ties: (createdAt, _id) keyset
            }
            for i in range(count)
        ],
    )
    with db.count_round_trips() as counter:
        async with client.stream("GET", "/bot-requests/export", params={"populate": "bot"}) as r:
            assert r.status_code == 200
            assert r.headers["content-type"].startswith("application/x-ndjson")
            lines = [line async for line in r.aiter_lines() if line]
    assert len(lines) == count
    items = [json.loads(line) for line in lines]
    assert len({item["id"] for item in items}) == count
    assert items[0]["bot"]["slug"] == "hellow_world_bot"
    assert items[0]["createdAt"] >= items[-1]["createdAt"]
    batches = count // analytics.EXPORT_BATCH + 1  # + a small first page to learn sizes
    assert counter.count <= 2 * batches + 2  # one page query and one bot query per batch


async def test_export_filters_apply(client):
    world = await seed_world(client)
    ok = await record(client, world, success=True)
    await record(client, world, success=False)
    response = await client.get("/bot-requests/export", params={"success": "true"})
    lines = [json.loads(line) for line in response.text.splitlines()]
    assert [item["id"] for item in lines] == [ok["id"]]
    bad = await client.get("/bot-requests/export", params={"organization": "x"})
    assert bad.status_code == 422


def _stages(plan: dict) -> list[dict]:
    """Every stage of an explain's winning plan, outermost first."""
    stages, stage = [], plan["queryPlanner"]["winningPlan"]
    stage = stage.get("queryPlan", stage)  # mongod's SBE explain nests it
    while stage:
        stages.append(stage)
        stage = stage.get("inputStage") or (stage.get("inputStages") or [None])[0]
    return stages


@pytest.mark.realmongo
async def test_every_filter_is_served_by_an_index(client, raw, capsys):
    """On a real `mongod`: every filter combination plans an index scan in sort order (no
    COLLSCAN, no in-memory SORT). SecantusDB's planner is simpler (it sorts in memory and
    scans the collection for combinations): there, each single filter must choose its own
    index. The server is told apart by its own `buildInfo`; the test says which ran."""
    await generated(raw, count=50)
    info = await raw.client.admin.command("buildInfo")
    strict = "secantusVersion" not in info
    newest = [("createdAt", -1), ("_id", -1)]
    singles = {
        "createdAt": {},
        "bot": {"bot": ObjectId()},
        "organization": {"organization": ObjectId()},
        "createdBy": {"createdBy": ObjectId()},
        "sessionKey": {"sessionKey": "s1"},
        "invoice": {"invoice": ObjectId()},
        "originalRequest": {"originalRequest": ObjectId()},
    }
    combos = [
        {"organization": ObjectId(), "success": True},
        {"createdBy": ObjectId(), "createdAt": {"$gte": T0}},
        {"sessionKey": "s1", "isAggregation": False},
        {"success": True},
    ]
    for field, query in singles.items():
        stages = _stages(await db.explain_find(raw.botrequests, query, newest))
        scans = [s for s in stages if s["stage"] == "IXSCAN"]
        assert scans, (query, stages)
        assert next(iter(scans[0]["keyPattern"])) == field, (query, scans[0]["keyPattern"])
        if strict:
            assert not any(s["stage"] in ("SORT", "COLLSCAN") for s in stages), (query, stages)
    for query in combos if strict else []:
        stages = _stages(await db.explain_find(raw.botrequests, query, newest))
        names = [s["stage"] for s in stages]
        assert "IXSCAN" in names, (query, names)
        assert "COLLSCAN" not in names, (query, names)
        assert "SORT" not in names, (query, names)
    with capsys.disabled():
        server = f"mongod {info['version']}" if strict else f"SecantusDB {info['secantusVersion']}"
        which = (
            "strict: every filter and combination an index scan in sort order"
            if strict
            else "each single filter chooses its index (in-memory sort allowed; the strict "
            "check runs on a real mongod via TEST_MONGODB_URI)"
        )
        print(f"\n[index check on {server}: {which}]")
