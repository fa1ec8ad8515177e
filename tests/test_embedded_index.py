"""The embedded backend's newest-first finds (botrequests/storage/mongomock_newest.py) walk their
index and answer exactly what mongomock's own find answers, on random data, through
inserts, deletes, updates that keep the order and updates that move it."""

import random
from datetime import UTC, datetime, timedelta

import pytest
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
    if rng.random() < 0.3:  # a date range, as `from` and `to` ask for one
        low, high = sorted(rng.sample(range(61), 2))
        ranged = {"createdAt": {"$gte": T0 + timedelta(seconds=low)}}
        if rng.random() < 0.7:
            ranged["createdAt"]["$lt" if rng.random() < 0.5 else "$lte"] = T0 + timedelta(
                seconds=high
            )
        found = {"$and": [found, ranged]} if found else ranged
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


def counting_filters(monkeypatch) -> dict:
    """Count the documents tested against a compiled filter, by the walk and by scans
    (the filter as a whole: its clauses, compiled through the same name, are not)."""
    from botrequests.storage import mongomock_match

    calls = {"n": 0}
    plain = mongomock_match.compile_filter
    compiling = [0]

    def compile_counted(spec):
        if compiling[0]:
            return plain(spec)
        compiling[0] += 1
        try:
            test = plain(spec)
        finally:
            compiling[0] -= 1

        def counted(document):
            calls["n"] += 1
            return test(document)

        return counted

    monkeypatch.setattr(mongomock_match, "compile_filter", compile_counted)
    monkeypatch.setattr(mongomock_newest, "compile_filter", compile_counted)
    return calls


async def test_newest_first_walk_stops_when_the_page_is_full(monkeypatch):
    """A page of 50 reads about 50 documents, not the collection."""
    collection = EmbeddedClient(tz_aware=True).get_database("walk").get_collection("stop")
    await collection.insert_many(
        [{"_id": ObjectId(), "createdAt": T0 + timedelta(seconds=i), "n": i} for i in range(5000)]
    )
    await collection.find({}, sort=SORT, limit=1).to_list(length=None)  # the index built
    calls = counting_filters(monkeypatch)
    page = await collection.find({"n": {"$gte": 0}}, sort=SORT, limit=50).to_list(length=None)
    assert [doc["n"] for doc in page] == list(range(4999, 4949, -1))
    assert calls["n"] == 50


async def test_newest_first_walk_starts_at_the_cursor_and_stops_at_from(monkeypatch):
    """A page after a cursor deep in the collection, and a date range in the middle of it,
    read what they return, not what lies newer: an export's pages, read one after the
    other, cost what they hold."""
    collection = EmbeddedClient(tz_aware=True).get_database("walk").get_collection("deep")
    docs = [
        {"_id": ObjectId(), "createdAt": T0 + timedelta(seconds=i), "n": i} for i in range(5000)
    ]
    await collection.insert_many([dict(doc) for doc in docs])
    await collection.find({}, sort=SORT, limit=1).to_list(length=None)  # the index built
    calls = counting_filters(monkeypatch)
    pivot = docs[1000]
    keyset = {
        "$or": [
            {"createdAt": {"$lt": pivot["createdAt"]}},
            {"createdAt": pivot["createdAt"], "_id": {"$lt": pivot["_id"]}},
        ]
    }
    after = {"$and": [{"n": {"$gte": 0}}, keyset]}
    page = await collection.find(after, sort=SORT, limit=50).to_list(length=None)
    assert [doc["n"] for doc in page] == list(range(999, 949, -1))
    assert calls["n"] == 50
    calls["n"] = 0
    window = {
        "createdAt": {"$gte": T0 + timedelta(seconds=2000), "$lt": T0 + timedelta(seconds=2010)}
    }
    page = await collection.find(window, sort=SORT, limit=50).to_list(length=None)
    assert [doc["n"] for doc in page] == list(range(2009, 1999, -1))
    assert calls["n"] <= 11  # the ten in the window, and the one below it that stops the walk
    assert page == list(collection._sync().find(window, sort=SORT, limit=50))


async def test_newest_first_walk_leaves_unorderable_data_to_mongomock():
    collection = EmbeddedClient(tz_aware=True).get_database("walk").get_collection("odd")
    await collection.insert_many(
        [{"_id": ObjectId(), "createdAt": "2024-01-01"}, {"_id": 7, "createdAt": T0}]
    )
    got = await collection.find({}, sort=SORT, limit=5).to_list(length=None)
    assert got == list(collection._sync().find({}, sort=SORT, limit=5))


# --- built at start ---------------------------------------------------------------------


async def test_start_builds_the_indexes_before_the_first_call_and_the_words_after(tmp_path):
    """A start on kept data builds the newest-first and equality indexes before it is
    ready, and the word index in the background; the first search reads that one."""
    from botrequests.documents import BotRequest
    from botrequests.storage import db
    from tests.factories import request_body, seed_world
    from tests.test_durable import Running

    async with Running(tmp_path) as client:
        world = await seed_world(client)
        for n in range(30):
            body = request_body(world, prompt="lion" if n % 3 == 0 else f"zebra {n}")
            assert (await client.post("/bot-requests", json=body)).status_code == 201
    running = Running(tmp_path)
    async with running as client:
        store = db.collection(BotRequest)._sync()._store
        newest = store.__dict__.get("_newest_index")
        held = store.__dict__.get("_field_indexes")
        assert newest is not None
        assert len(newest.keys) == 30
        assert held is not None
        assert {"bot", "organization", "requestKey"} <= set(held.by_field)
        await running.app.state.word_indexes
        built = held.words
        assert built is not None
        assert built.count - built.stale == 30
        answer = await client.get("/bot-requests", params={"q": "lion", "limit": 100})
        assert len(answer.json()["items"]) == 10
        assert store.__dict__["_field_indexes"] is held
        assert held.words is built


def _searched(collection, word: str) -> set:
    """The ids of the stored documents holding `word`, read from each document."""
    from botrequests import words

    found = collection._store._documents.items()
    return {key for key, document in found if word in words.document_words(document)}


def test_word_index_built_in_steps_misses_no_write_made_meanwhile():
    """Inserts, updates, deletes and a document stored again, before and after the step
    that reaches them: the index built in steps finds what a scan finds, and is kept."""
    from botrequests.storage import mongomock_keys

    rng = random.Random(3)
    collection = EmbeddedClient(tz_aware=True).get_database("steps").get_collection("botrequests")
    collection = collection._sync()
    vocabulary = ["lion", "zebra", "yak", "emu"]

    def text() -> str:
        return " ".join(rng.sample(vocabulary, 2))

    collection.insert_many([{"_id": ObjectId(), "prompt": text()} for _ in range(60)])
    ids = [document["_id"] for document in collection.find()]
    for round_ in range(10):  # 50 of the 60 stored at the start: not done yet
        progress = mongomock_keys.build_words(collection, 5)  # None: built
        assert progress is not None, round_
        for _ in range(3):
            action = rng.choice(["insert", "update", "delete", "again"])
            if action == "insert":
                ids.append(collection.insert_one({"prompt": text()}).inserted_id)
            elif action == "update":
                target = rng.choice(ids)
                collection.update_one({"_id": target}, {"$set": {"prompt": text()}})
            elif action == "delete" and len(ids) > 10:
                collection.delete_one({"_id": ids.pop(rng.randrange(len(ids)))})
            else:  # deleted, then stored again under the same id
                target = rng.choice(ids)
                collection.delete_one({"_id": target})
                collection.insert_one({"_id": target, "prompt": f"{text()} round{round_}"})
    while mongomock_keys.build_words(collection, 5) is not None:
        pass
    held = collection._store.__dict__["_field_indexes"]
    built = held.words
    assert built is not None
    assert held.building is None
    for word in [*vocabulary, "round3", "absent"]:
        found = mongomock_keys.word_candidates(collection, [word], None)
        assert _searched(collection, word) <= set(found), word
    assert collection._store.__dict__["_field_indexes"] is held
    assert held.words is built


async def test_read_of_what_the_service_wrote_shares_its_ids_instead_of_copying_each(
    client, app, monkeypatch
):
    """What the service stores holds Beanie's ObjectId subclass until a restart: a read
    shares those ids, as it shares bson's own, instead of `copy.copy`-ing each (which cost
    more than copying the rest of the document); the containers are still copies."""
    if not app.state.settings.embedded:
        pytest.skip("the embedded backend's copies")
    from botrequests.documents import BotRequest
    from botrequests.storage import db, mongomock_fixes
    from tests.factories import record, seed_world

    world = await seed_world(client)
    made = [await record(client, world, tags=["a"]) for _ in range(3)]
    copied = []
    plain_copy = mongomock_fixes.copy.copy
    monkeypatch.setattr(
        mongomock_fixes.copy, "copy", lambda value: copied.append(value) or plain_copy(value)
    )
    page = await client.get("/bot-requests", params={"limit": 3})
    assert [item["id"] for item in page.json()["items"]] == [m["id"] for m in reversed(made)]
    assert copied == []
    rows = await db.find_raw(BotRequest, {}, {}, sort=[("createdAt", -1), ("_id", -1)], limit=1)
    stored = db.collection(BotRequest)._sync()._store._documents[rows[0]["_id"]]
    assert type(stored["bot"]) is not ObjectId  # the subclass, as written
    assert rows[0]["bot"] is stored["bot"]
    assert rows[0]["tags"] == stored["tags"]
    assert rows[0]["tags"] is not stored["tags"]
