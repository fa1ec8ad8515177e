"""The embedded backend's newest-first finds (botrequests/storage/mongomock_newest.py) walk their
index and answer exactly what mongomock's own find answers, on random data, through
inserts, deletes, updates that keep the order and updates that move it."""

import random
from datetime import UTC, datetime, timedelta

from bson import ObjectId

from botrequests.storage import mongomock_newest
from botrequests.storage.embedded import EmbeddedClient, _NewestFind

SORT = mongomock_newest.SORT
T0 = datetime(2024, 1, 1, tzinfo=UTC)


def document(rng: random.Random, bots: list[ObjectId]) -> dict:
    doc = {
        "_id": ObjectId(),
        "bot": rng.choice(bots),
        "success": rng.random() < 0.5,
        "tags": rng.sample(["a", "b", "c"], rng.randrange(3)),
    }
    chance = rng.random()
    if chance < 0.1:
        pass  # no createdAt: sorts after every date, newest first
    elif chance < 0.15:
        doc["createdAt"] = None
    else:
        doc["createdAt"] = T0 + timedelta(seconds=rng.randrange(60))  # many ties
    return doc


def query(rng: random.Random, bots: list[ObjectId], stored: list[dict]) -> dict:
    found = rng.choice(
        [
            {},
            {"bot": rng.choice(bots)},
            {"success": False},
            {"tags": "a"},
            {"$and": [{"bot": rng.choice(bots)}, {"success": True}]},
        ]
    )
    dated = [doc for doc in stored if doc.get("createdAt")]
    if dated and rng.random() < 0.5:  # a page after a cursor, as the service asks for one
        pivot = rng.choice(dated)
        moment, last = pivot["createdAt"], pivot["_id"]
        keyset = {
            "$or": [{"createdAt": {"$lt": moment}}, {"createdAt": moment, "_id": {"$lt": last}}]
        }
        found = {"$and": [found, keyset]} if found else keyset
    return found


async def test_newest_first_walk_answers_as_mongomock_on_random_data():
    rng = random.Random(11)
    collection = EmbeddedClient(tz_aware=True).get_database("walk").get_collection("requests")
    bots = [ObjectId() for _ in range(3)]
    stored = [document(rng, bots) for _ in range(400)]
    await collection.insert_many([dict(doc) for doc in stored])
    compared = 0
    for step in range(40):
        change = step % 6
        if change == 0:
            doc = document(rng, bots)
            await collection.insert_one(dict(doc))
            stored.append(doc)
        elif change == 1:
            await collection.delete_many({"bot": rng.choice(bots), "success": True, "tags": "b"})
        elif change == 2:
            await collection.update_many({"success": False}, {"$set": {"seen": step}})
        elif change == 3:  # moves a document in the order: the index is rebuilt
            target = rng.choice(stored)["_id"]
            moved = T0 + timedelta(seconds=rng.randrange(60))
            await collection.update_one({"_id": target}, {"$set": {"createdAt": moved}})
        elif change == 4:
            batch = [document(rng, bots) for _ in range(30)]
            await collection.insert_many([dict(doc) for doc in batch])
            stored.extend(batch)
        else:
            await collection.delete_one({"_id": rng.choice(stored)["_id"]})
        current = list(collection._sync().find({}))
        for _ in range(8):
            wanted, limit = query(rng, bots, current), rng.choice([0, 1, 7, 51])
            cursor = collection.find(wanted, sort=SORT, limit=limit)
            assert isinstance(cursor, _NewestFind)
            got = await cursor.to_list(length=None)
            plain = list(collection._sync().find(wanted, sort=SORT, limit=limit))
            assert got == plain, (step, wanted, limit)
            compared += 1
    assert compared == 320


async def test_newest_first_walk_stops_when_the_page_is_full(monkeypatch):
    """A page of 50 reads about 50 documents, not the collection."""
    from mongomock import filtering

    collection = EmbeddedClient(tz_aware=True).get_database("walk").get_collection("stop")
    await collection.insert_many(
        [{"_id": ObjectId(), "createdAt": T0 + timedelta(seconds=i), "n": i} for i in range(5000)]
    )
    await collection.find({}, sort=SORT, limit=1).to_list(length=None)  # the index built
    calls = {"n": 0}
    plain = mongomock_newest.filter_applies

    def counted(*args, **kwargs):
        calls["n"] += 1
        return plain(*args, **kwargs)

    monkeypatch.setattr(mongomock_newest, "filter_applies", counted)
    page = await collection.find({"n": {"$gte": 0}}, sort=SORT, limit=50).to_list(length=None)
    assert [doc["n"] for doc in page] == list(range(4999, 4949, -1))
    assert calls["n"] == 50
    assert filtering.filter_applies is not counted


async def test_newest_first_walk_leaves_unorderable_data_to_mongomock():
    collection = EmbeddedClient(tz_aware=True).get_database("walk").get_collection("odd")
    await collection.insert_many(
        [{"_id": ObjectId(), "createdAt": "2024-01-01"}, {"_id": 7, "createdAt": T0}]
    )
    got = await collection.find({}, sort=SORT, limit=5).to_list(length=None)
    assert got == list(collection._sync().find({}, sort=SORT, limit=5))
