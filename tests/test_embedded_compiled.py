"""The embedded backend's compiled filters (botrequests/storage/mongomock_match.py) and
pipelines (botrequests/storage/mongomock_pipeline.py) answer exactly what mongomock's own
code answers, on random data with every type a field may hold, and the service's own
pipelines run compiled: mongomock's evaluator is not called."""

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import mongomock
import pytest
from bson import ObjectId
from mongomock import aggregate as mongomock_aggregate
from mongomock import filtering

from botrequests import analytics
from botrequests.schemas import BotRequestFilters
from botrequests.storage import db, mongomock_match, mongomock_pipeline
from botrequests.storage.embedded import EmbeddedClient

T0 = datetime(2025, 3, 1)
OIDS = [ObjectId() for _ in range(3)]
SCALARS = [None, 0, 1, 2, 1.0, 2.5, True, False, "a", "b", "", OIDS[0], OIDS[1], T0]
SCALARS.append(T0 + timedelta(days=1))


def value(rng: random.Random, depth: int = 0) -> Any:
    chance = rng.random()
    if depth < 2 and chance < 0.15:
        return [value(rng, depth + 1) for _ in range(rng.randrange(3))]
    if depth < 2 and chance < 0.25:
        return {key: value(rng, depth + 1) for key in rng.sample(["x", "y"], rng.randrange(3))}
    return rng.choice(SCALARS)


def document(rng: random.Random) -> dict:
    doc: dict[str, Any] = {"_id": ObjectId()}
    for field in ("a", "b", "c"):
        if rng.random() < 0.8:
            doc[field] = value(rng)
    return doc


def condition(rng: random.Random) -> Any:
    pick = rng.randrange(12)
    if pick == 0:
        return rng.choice(SCALARS)
    if pick == 1:
        return {"$in": rng.sample(SCALARS, rng.randrange(1, 4))}
    if pick == 2:
        return {"$all": rng.sample(SCALARS, rng.randrange(0, 3))}
    if pick == 3:
        return {"$eq": rng.choice(SCALARS)}
    if pick == 4:
        return {rng.choice(["$gt", "$gte", "$lt", "$lte"]): rng.choice(SCALARS[1:])}
    if pick == 5:
        return {"$gte": rng.choice([0, 1, T0, "a"]), "$lt": rng.choice([2, 3.5, T0, "b"])}
    if pick == 6:
        return {"$type": rng.choice(["string", "bool", "date", "objectId", "array", "number"])}
    if pick == 7:
        return {"$exists": rng.random() < 0.5}
    if pick == 8:
        return {"$ne": rng.choice(SCALARS)}  # left to mongomock
    if pick == 9:
        return {"$in": [rng.choice(SCALARS), [1, 2]]}
    if pick == 10:
        return {"x": rng.choice(SCALARS)}  # a document: left to mongomock
    return [rng.choice(SCALARS)]


def query(rng: random.Random, depth: int = 0) -> dict:
    found: dict[str, Any] = {}
    for _ in range(rng.randrange(1, 3)):
        pick = rng.random()
        if depth < 2 and pick < 0.15:
            found[rng.choice(["$and", "$or"])] = [query(rng, depth + 1) for _ in range(2)]
        else:
            field = rng.choice(["a", "b", "c", "a.x", "b.y", "a.x.y", "missing"])
            found[field] = condition(rng)
    return found


def answer(function: Any, *args: Any) -> Any:
    try:
        return function(*args)
    except Exception as error:  # the same error, raised the same way
        return type(error)


def test_compiled_filter_answers_as_mongomock_on_random_data():
    rng = random.Random(5)
    documents = [document(rng) for _ in range(60)]
    compared = 0
    for _ in range(1500):
        spec = query(rng)
        compiled = mongomock_match.compile_filter(spec)
        for doc in documents:
            assert answer(compiled, doc) == answer(filtering.filter_applies, spec, doc), (
                spec,
                doc,
            )
            compared += 1
    assert compared == 90_000


def test_compiled_filter_of_the_service_shapes_leaves_nothing_to_mongomock(monkeypatch):
    calls = []
    monkeypatch.setattr(mongomock_match, "filter_applies", lambda *a: calls.append(a))
    org, bot = ObjectId(), ObjectId()
    spec = {
        "$and": [
            {
                "organization": org,
                "bot": bot,
                "success": False,
                "tags": {"$all": ["a", "b"]},
                "usage.model": "m",
                "usage.latencyMs": {"$gte": 10, "$lte": 90},
                "metadata.tier": {"$in": ["2", 2]},
                "createdAt": {"$gte": T0, "$lt": T0 + timedelta(days=1)},
            },
            {"$or": [{"createdAt": {"$lt": T0}}, {"createdAt": T0, "_id": {"$lt": OIDS[0]}}]},
        ]
    }
    doc = {
        "organization": org,
        "bot": bot,
        "success": False,
        "tags": ["b", "a"],
        "usage": {"model": "m", "latencyMs": 50},
        "metadata": {"tier": 2},
        "createdAt": T0,
        "_id": ObjectId.from_datetime(datetime(2000, 1, 1)),  # before OIDS[0]
    }
    assert mongomock_match.compile_filter(spec)(doc) is True
    assert mongomock_match.compile_filter(spec)({**doc, "success": True}) is False
    assert calls == []


def requests_and_feedback(rng: random.Random, size: int, odd: bool) -> tuple[list, list]:
    """Requests of two organizations over 3 bots, models, tags, sessions, and feedback on
    some (a few of another organization); with `odd`, values of unexpected types too."""
    orgs, bots = [ObjectId(), ObjectId()], [ObjectId() for _ in range(3)]
    requests, feedback = [], []
    for n in range(size):
        usage: Any = {
            "model": rng.choice(["m1", "m2", None]),
            "totalTokens": rng.randrange(100),
            "cost": rng.random() / 7,
            "latencyMs": rng.random() * 1000,
        }
        for field in list(usage):
            if rng.random() < 0.2:
                del usage[field]
        doc: dict[str, Any] = {
            "_id": ObjectId(),
            "organization": orgs[n % 3 == 0],
            "bot": rng.choice(bots),
            "success": rng.random() < 0.7,
            "tags": rng.sample(["x", "y", "z"], rng.randrange(4)),
            "createdAt": T0 + timedelta(hours=rng.randrange(200), milliseconds=rng.randrange(999)),
            "credits": rng.randrange(5),
            "sessionKey": rng.choice(["s1", "s2", "s3"]),
        }
        if rng.random() < 0.9:
            doc["usage"] = usage
        if rng.random() < 0.1:
            del doc["tags"]
        if odd and rng.random() < 0.1:
            doc[rng.choice(["credits", "success", "tags"])] = rng.choice(["7", 1.5, None, True])
        if odd and rng.random() < 0.05:
            doc["usage"] = [usage]  # an array on a dotted path: mongomock's own way
        requests.append(doc)
        for _ in range(rng.choice([0, 0, 0, 1, 2, 3])):
            feedback.append(
                {
                    "_id": ObjectId(),
                    "request": doc["_id"],
                    "organization": doc["organization"] if rng.random() < 0.9 else ObjectId(),
                    **({"score": rng.choice([-1, 0, 0.5, 1])} if rng.random() < 0.9 else {}),
                    "createdAt": doc["createdAt"],
                }
            )
    return requests, feedback


@pytest.fixture(autouse=True)
def _embedded_pipelines(monkeypatch):
    """The stats pipeline as the service builds it for the embedded backend (no
    `$percentile`), whichever lane's app started last (`db.percentiles()` is theirs)."""
    monkeypatch.setitem(db._limits, "percentiles", False)


def pipelines(rng: random.Random, org: ObjectId) -> list[list[dict]]:
    found = []
    for group_by in ("bot", "day", "tag", "model", "createdBy", "sessionKey", "organization"):
        filters = rng.choice(
            [
                {},
                {"success": False},
                {"tag": ["x"]},
                {"minLatencyMs": 100, "maxLatencyMs": 800},
                {"from": T0 + timedelta(hours=50)},
            ]
        )
        query = analytics.filter_query(BotRequestFilters.model_validate(filters))
        stats = analytics.stats_pipeline(BotRequestFilters.model_validate(filters), group_by)
        stats[0] = {"$match": {"$and": [query, {"organization": org}]}}
        found.append(stats)
    found.append(
        [
            {"$match": {"organization": org, "sessionKey": {"$type": "string"}}},
            {
                "$group": {
                    "_id": "$sessionKey",
                    "requests": {"$sum": 1},
                    "last": {"$max": "$createdAt"},
                }
            },
            {"$sort": {"last": -1, "_id": 1}},
            {"$limit": 2},
        ]
    )
    return found


def plain_dates(value: Any) -> Any:
    """mongomock leaves the dates of joined documents naive; the compiled path answers
    every date as the tz-aware client asks. Compared as instants."""
    if isinstance(value, dict):
        return {key: plain_dates(item) for key, item in value.items()}
    if isinstance(value, list):
        return [plain_dates(item) for item in value]
    if isinstance(value, datetime) and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


@pytest.mark.parametrize("odd", [False, True], ids=["service-data", "odd-values"])
def test_compiled_pipeline_answers_as_mongomock_on_random_data(odd, monkeypatch):
    rng = random.Random(8 + odd)
    compared = 0
    for round_ in range(6):
        database = mongomock.MongoClient(tz_aware=True).db
        requests, feedback = requests_and_feedback(rng, rng.randrange(0, 120), odd)
        if requests:
            database.botrequests.insert_many(requests)
        if feedback:
            database.feedback.insert_many(feedback)
        org = requests[0]["organization"] if requests else ObjectId()
        for pipeline in pipelines(rng, org):
            fast = mongomock_pipeline.aggregate(database.botrequests, pipeline)
            slow = list(database.botrequests.aggregate(pipeline))
            assert plain_dates(fast) == plain_dates(slow), (round_, pipeline)
            compared += 1
    assert compared == 6 * 8


def test_service_pipelines_run_compiled_without_mongomock_evaluator(monkeypatch):
    rng = random.Random(3)
    database = mongomock.MongoClient(tz_aware=True).db
    requests, feedback = requests_and_feedback(rng, 200, odd=False)
    database.botrequests.insert_many(requests)
    database.feedback.insert_many(feedback)
    expected = {
        index: list(database.botrequests.aggregate(pipeline))
        for index, pipeline in enumerate(pipelines(random.Random(1), requests[0]["organization"]))
    }

    def refused(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("mongomock's own code ran")

    monkeypatch.setattr(mongomock_aggregate, "_parse_expression", refused)
    monkeypatch.setattr(mongomock_match, "filter_applies", refused)
    monkeypatch.setattr(mongomock_pipeline, "_by_mongomock", refused)
    for index, pipeline in enumerate(pipelines(random.Random(1), requests[0]["organization"])):
        answered = mongomock_pipeline.aggregate(database.botrequests, pipeline)
        assert plain_dates(answered) == plain_dates(expected[index])
        assert answered  # each of these pipelines finds something in this data


def test_uncompiled_pipeline_reads_only_what_its_first_match_finds(monkeypatch):
    """A stage the compiler does not know (`$project` here): mongomock runs the pipeline,
    on the documents the first `$match` finds by key, not on a copy of the collection."""
    database = mongomock.MongoClient(tz_aware=True).db
    database.things.insert_many([{"_id": n, "v": n} for n in range(1000)])
    walked = []
    plain = mongomock.collection.Collection.find

    def counted(self: Any, *args: Any, **kwargs: Any) -> Any:
        found = list(plain(self, *args, **kwargs))
        walked.append(len(found))
        return iter(found)

    monkeypatch.setattr(mongomock.collection.Collection, "find", counted)
    pipeline = [{"$match": {"_id": {"$in": [3, 5]}}}, {"$project": {"w": "$v"}}]
    assert mongomock_pipeline.aggregate(database.things, pipeline) == [
        {"_id": 3, "w": 3},
        {"_id": 5, "w": 5},
    ]
    assert walked == [2]


async def test_embedded_stats_answer_as_mongomock_through_the_client():
    """Through the embedded client's `aggregate` (what the service calls): the compiled
    answer, equal to mongomock's."""
    rng = random.Random(2)
    client = EmbeddedClient(tz_aware=True)
    collection = client.get_database("compiled").get_collection("botrequests")
    requests, feedback = requests_and_feedback(rng, 150, odd=False)
    await collection.insert_many(requests)
    await client.get_database("compiled").get_collection("feedback").insert_many(feedback)
    pipeline = pipelines(random.Random(4), requests[0]["organization"])[0]
    served = await collection.aggregate(pipeline, maxTimeMS=60_000).to_list(None)
    sync = collection._sync()
    assert plain_dates(served) == plain_dates(list(sync.aggregate(pipeline)))
    assert sum(group["requests"] for group in served) > 0


async def test_stats_of_requests_recorded_through_the_api_run_compiled(client, app, monkeypatch):
    """What the service stores holds Beanie's ObjectId subclass in memory: its stats, and
    a thread's, still run compiled, never mongomock's evaluator (which at 100 000 requests
    ran past QUERY_TIMEOUT_MS)."""
    if not app.state.settings.embedded:
        pytest.skip("about the embedded backend")
    from tests.factories import record, seed_world

    world = await seed_world(client)
    made = [
        await record(client, world, tags=["a"] if n % 2 else None, sessionKey=f"s{n % 3}")
        for n in range(12)
    ]
    for request in made[:4]:
        sent = await client.post(f"/bot-requests/{request['id']}/feedback", json={"score": 1})
        assert sent.status_code == 201

    def refused(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("mongomock's own pipeline ran")

    monkeypatch.setattr(mongomock_aggregate, "_parse_expression", refused)
    monkeypatch.setattr(mongomock_pipeline, "_by_mongomock", refused)
    for group_by in ("bot", "day", "tag", "model", "sessionKey"):
        answer = await client.get("/bot-requests/stats", params={"groupBy": group_by})
        assert answer.status_code == 200, answer.text
        assert sum(item["requests"] for item in answer.json()["items"]) >= 12
        assert sum(item["feedback"]["count"] for item in answer.json()["items"]) >= 4


def test_compiled_in_compares_each_value_once_not_with_every_value(monkeypatch):
    """A population's `$in` of n ids over n documents: about n comparisons (a set), not
    n² (a list tested by `==`)."""
    ids = [ObjectId() for _ in range(200)]
    test = mongomock_match.compile_filter({"ref": {"$in": ids}})
    calls = {"n": 0}
    plain = ObjectId.__eq__

    def counted(self: ObjectId, other: Any) -> Any:
        calls["n"] += 1
        return plain(self, other)

    monkeypatch.setattr(ObjectId, "__eq__", counted)
    assert all(test({"ref": identifier}) for identifier in ids)
    assert not test({"ref": ObjectId()})
    assert calls["n"] <= 2 * len(ids)


def test_compiled_stage_source_holds_no_pipeline_value(monkeypatch):
    """Field names and constants reach the written-out stage functions as bound names,
    never as text: a name made of quotes, newlines and code is only a name."""
    from botrequests.storage import mongomock_source

    written: list[str] = []
    plain = mongomock_source.Source.function

    def kept(self: Any, name: str, arguments: str) -> Any:
        written.append("\n".join(self.lines))
        return plain(self, name, arguments)

    monkeypatch.setattr(mongomock_source.Source, "function", kept)
    odd = "a'\"); raise SystemExit #\n"
    database = mongomock.MongoClient(tz_aware=True).db
    database.things.insert_many([{"_id": n, odd: n % 3, "v": n} for n in range(30)])
    pipeline = [
        {"$addFields": {"w": {"$cond": [{"$lte": ["$v", 10]}, odd, {"$ifNull": ["$x", 1.5]}]}}},
        {"$group": {"_id": f"${odd}", "n": {"$sum": "$v"}, "w": {"$first": "$w"}}},
    ]
    assert mongomock_pipeline.aggregate(database.things, pipeline) == list(
        database.things.aggregate(pipeline)
    )
    assert len(written) == 2
    assert all("SystemExit" not in text and "1.5" not in text for text in written)
