"""The embedded backend's equality indexes (botrequests/storage/mongomock_keys.py) answer
exactly what mongomock's scan answers, in the same order, through every kind of write;
and a query on an indexed field reads its candidates, not the collection."""

import random
from datetime import UTC, datetime, timedelta
from typing import Any

from beanie import PydanticObjectId
from bson import ObjectId
from mongomock import filtering

from botrequests.storage import mongomock_keys, mongomock_newest
from botrequests.storage.embedded import EmbeddedClient
from tests.test_embedded_index import counting_filters

T0 = datetime(2025, 1, 1, tzinfo=UTC)
OIDS = [ObjectId() for _ in range(4)]
VALUES: list[Any] = [*OIDS, PydanticObjectId(OIDS[0]), str(OIDS[1]), "a", "b", 1, 1.0]
VALUES += [True, 0, None]


def document(rng: random.Random, identifier: Any = None) -> dict:
    doc: dict[str, Any] = {
        "_id": identifier or ObjectId(),
        "createdAt": T0 + timedelta(seconds=rng.randrange(40)),
    }
    for field in ("bot", "sessionKey", "tags"):
        chance = rng.random()
        if chance < 0.15:
            continue  # missing
        doc[field] = rng.sample(VALUES, rng.randrange(3)) if chance < 0.35 else rng.choice(VALUES)
    if rng.random() < 0.8:
        doc["usage"] = {"model": rng.choice(["m1", "m2", None])}
    return doc


def query(rng: random.Random) -> dict:
    field = rng.choice(["bot", "sessionKey", "tags", "usage.model", "other"])
    value = rng.choice([*VALUES, "m1", "m2"])
    pick = rng.random()
    found: dict = {field: value}
    if pick > 0.8:
        found = {field: {"$in": [value, *rng.sample(VALUES, rng.randrange(3))]}}
    if rng.random() < 0.3:
        found = {"$and": [found, {"bot": rng.choice(VALUES)}]}
    return found


def scanned(collection: Any, spec: dict) -> list:
    """mongomock's own answer: every stored document, in the store's order, tested."""
    return [
        doc["_id"]
        for doc in collection._sync()._store.documents
        if filtering.filter_applies(spec, doc)
    ]


async def test_equality_indexes_answer_as_mongomock_on_random_data():
    rng = random.Random(21)
    collection = EmbeddedClient(tz_aware=True).get_database("keys").get_collection("requests")
    for keys in (["bot", "createdAt"], ["sessionKey"], ["tags"], ["usage.model"]):
        await collection.create_index([(key, 1) for key in keys])
    await collection.insert_many([document(rng) for _ in range(300)])
    compared = 0
    for step in range(60):
        change = step % 8
        stored = list(collection._sync()._store.documents)
        if change == 0:
            await collection.insert_one(document(rng))
        elif change == 1:
            await collection.insert_many([document(rng) for _ in range(10)])
        elif change == 2:
            await collection.delete_many({"bot": rng.choice(VALUES)})
        elif change == 3:  # an indexed field changed: the documents indexed again
            await collection.update_many(
                {"sessionKey": rng.choice(VALUES)}, {"$set": {"sessionKey": rng.choice(VALUES)}}
            )
        elif change == 4:
            await collection.update_one(
                {"_id": rng.choice(stored)["_id"]}, {"$set": {"unrelated": step}}
            )
        elif change == 5:  # deleted, then stored again: at the store's end
            again = rng.choice(stored)["_id"]
            await collection.delete_one({"_id": again})
            await collection.insert_one(document(rng, again))
        elif change == 6:
            target = rng.choice(stored)["_id"]
            await collection.replace_one({"_id": target}, document(rng, target))
        else:
            await collection.update_one(
                {"sessionKey": "never"}, {"$set": {"tags": ["a"]}}, upsert=True
            )
        for _ in range(10):
            spec = query(rng)
            found = await collection.find(spec).to_list(length=None)
            assert [doc["_id"] for doc in found] == scanned(collection, spec), (step, spec)
            limit = rng.choice([1, 5, 50])
            page = await collection.find(spec, sort=mongomock_newest.SORT, limit=limit).to_list(
                length=None
            )
            plain = list(collection._sync().find(spec, sort=mongomock_newest.SORT, limit=limit))
            assert page == plain, (step, spec, limit)
            compared += 1
    assert compared == 600


async def test_query_on_an_indexed_field_reads_its_candidates_only(monkeypatch):
    collection = EmbeddedClient(tz_aware=True).get_database("keys").get_collection("few")
    await collection.create_index([("sessionKey", 1)])
    await collection.create_index(
        [("requestKey", 1)],
        unique=True,
        partialFilterExpression={"requestKey": {"$type": "string"}},
    )
    await collection.insert_many(
        [
            {"_id": ObjectId(), "sessionKey": f"s{n // 10}", "requestKey": f"k{n}"}
            for n in range(5000)
        ]
    )
    await collection.find({"sessionKey": "s0"}).to_list(length=None)  # the indexes built
    calls = counting_filters(monkeypatch)
    found = await collection.find({"sessionKey": "s42"}).to_list(length=None)
    assert len(found) == 10
    assert calls["n"] == 10
    calls["n"] = 0
    page = await collection.find(
        {"sessionKey": "s7"}, sort=mongomock_newest.SORT, limit=50
    ).to_list(length=None)
    assert len(page) == 10
    assert calls["n"] == 10
    calls["n"] = 0
    # A keyed insert's uniqueness check reads the documents holding that key, not all.
    await collection.insert_one({"_id": ObjectId(), "sessionKey": "x", "requestKey": "new"})
    assert calls["n"] <= 5  # (of 5 001 stored)
    assert mongomock_keys.candidates(collection._sync(), {"requestKey": "new"}) is not None


def test_graph_lookup_by_the_indexes_answers_as_mongomock_on_random_threads():
    """`$graphLookup` over `_id` (ancestors) and over the indexed `originalRequest`
    (follow-ups) finds its documents by key, through links rewritten in place, and
    answers what mongomock's own stage answers."""
    import copy

    import mongomock

    from botrequests.storage import mongomock_fixes

    rng = random.Random(9)
    compared = 0
    for _ in range(12):
        database = mongomock.MongoClient().db
        database.requests.create_index([("originalRequest", 1)])
        ids = [ObjectId() for _ in range(rng.randrange(1, 60))]
        database.requests.insert_many(
            [
                {
                    "_id": identifier,
                    "n": n,
                    **({"originalRequest": rng.choice(ids)} if n and rng.random() < 0.9 else {}),
                }
                for n, identifier in enumerate(ids)
            ]
        )
        for _ in range(3):  # links moved and cut in place: indexed again
            database.requests.update_many(
                {"originalRequest": rng.choice(ids)},
                {"$set": {"originalRequest": rng.choice(ids)}},
            )
            database.requests.update_one(
                {"_id": rng.choice(ids)}, {"$unset": {"originalRequest": 1}}
            )
        start = [dict(doc) for doc in database.requests.find({"_id": rng.choice(ids)})]
        for start_with, from_field, to_field in (
            ("$originalRequest", "originalRequest", "_id"),
            ("$_id", "_id", "originalRequest"),
        ):
            options = {
                "from": "requests",
                "startWith": start_with,
                "connectFromField": from_field,
                "connectToField": to_field,
                "as": "linked",
                "depthField": "level",
                **({"maxDepth": rng.randrange(5)} if rng.random() < 0.5 else {}),
                **({"restrictSearchWithMatch": {"n": {"$gte": 3}}} if rng.random() < 0.3 else {}),
            }
            fast = mongomock_fixes._graph_lookup(copy.deepcopy(start), database, options)
            slow = mongomock_fixes._SLOW_GRAPH_LOOKUP(copy.deepcopy(start), database, options)
            assert fast == slow, options
            compared += 1
    assert compared == 24


async def test_update_of_one_indexed_field_checks_only_what_it_changes(monkeypatch):
    """A follow-up's `$addToSet` on `relatedRequests` (an indexed field) neither scans for
    uniqueness nor loses the other indexes; an update that changes a unique key still
    meets its index."""
    from pymongo.errors import DuplicateKeyError

    collection = EmbeddedClient(tz_aware=True).get_database("keys").get_collection("linked")
    await collection.create_index([("relatedRequests", 1)])
    await collection.create_index(
        [("organization", 1), ("requestKey", 1)],
        unique=True,
        partialFilterExpression={"requestKey": {"$type": "string"}},
    )
    ids = [ObjectId() for _ in range(3000)]
    await collection.insert_many(
        [{"_id": i, "organization": 1, "requestKey": f"k{n}"} for n, i in enumerate(ids)]
    )
    await collection.find({"requestKey": "k0"}).to_list(length=None)  # the indexes built
    calls = counting_filters(monkeypatch)
    for n in range(100):
        await collection.update_one(
            {"_id": ids[n]}, {"$addToSet": {"relatedRequests": {"$each": [ids[n + 1]]}}}
        )
    assert calls["n"] <= 2 * 100  # each reads its own document, not the 3 000
    linked = await collection.find({"relatedRequests": ids[5]}).to_list(length=None)
    assert [doc["_id"] for doc in linked] == [ids[4]]
    try:
        await collection.update_one({"_id": ids[1]}, {"$set": {"requestKey": "k0"}})
    except DuplicateKeyError:
        pass
    else:
        raise AssertionError("a duplicate requestKey was written")
    assert (await collection.find_one({"_id": ids[1]}))["requestKey"] == "k1"
