"""Both directions against the real Mongoose (issue 15), on the wire lane's server: what
Mongoose writes the service serves exactly as Mongoose's own `toJSON`, and what the
service writes Mongoose finds, validates, populates to the same JSON and saves.

Mongoose runs in Node (tests/mongoose/peer.js, the seed's schemas), once per pinned
version (`tests/mongoose_peer.py`). Without Node the tests skip and say why.
"""

import json
from pathlib import Path
from typing import Any

import pytest
from bson import ObjectId, json_util

from tests import mongoose_peer
from tests.factories import record, seed_world
from tests.setup_writes import insert_all

pytestmark = pytest.mark.realmongo
FIXTURES = Path(__file__).parent / "data" / "mongoose"


@pytest.fixture(params=mongoose_peer.VERSIONS, ids=lambda v: f"mongoose-{v}")
def mongoose(request, app):
    """Run operations with one Mongoose version against the lane's database."""
    version = request.param
    try:
        mongoose_peer.install(version)
    except mongoose_peer.PeerUnavailable as exc:
        pytest.skip(str(exc))
    settings = app.state.settings
    base, _, query = settings.mongodb_uri.partition("?")
    uri = f"{base.rstrip('/')}/{settings.mongodb_database}" + (f"?{query}" if query else "")

    def run(*ops: dict[str, Any]) -> list[Any]:
        return mongoose_peer.run(version, uri, list(ops))

    return run


def oid(value: str) -> dict[str, str]:
    return {"$oid": value}


def ordered(value: Any) -> Any:
    """JSON compared key by key in order (1 and 1.0 equal, as JSON numbers are)."""
    if isinstance(value, dict):
        return [(key, ordered(item)) for key, item in value.items()]
    if isinstance(value, list):
        return [ordered(item) for item in value]
    return value


async def served(client, identifier: str, **params: str) -> dict[str, Any]:
    response = await client.get(f"/bot-requests/{identifier}", params=params)
    assert response.status_code == 200, response.text
    return response.json()


async def load_raw(raw, lines: dict[str, list[dict]]) -> None:
    for name, docs in lines.items():
        await insert_all(raw[name], docs)


async def test_mongoose_written_requests_served_as_mongoose_serves_them(client, raw, mongoose):
    # What a Mongoose database holds: the fixtures (extra fields, `__v`, a stored null),
    # an older document laden with nulls and missing arrays, one whose invoice is gone.
    for path in sorted(FIXTURES.glob("*.json")):
        docs = [json_util.loads(line) for line in path.read_text().splitlines() if line]
        await insert_all(raw[path.stem], docs)
    bot, user, org = (
        "64880aac2f5e4553ddac6eaf",
        "64483f3290c195691be41d57",
        "644853d690c195691be42075",
    )
    older, orphan = ObjectId(), ObjectId()
    await insert_all(
        raw.botrequests,
        [
            {
                "_id": older,
                "success": True,
                "bot": ObjectId(bot),
                "ip": "10.0.0.1",
                "response": {"text": "hi", "usage": {}, "steps": [{}]},
                "inputs": {},
                "prompt": None,
                "invoice": None,
                "clientInfo": {"os": "linux", "flags": {}},
                "__v": 0,
            },
            {
                "_id": orphan,
                "images": [],
                "success": True,
                "relatedRequests": [],
                "bot": ObjectId(bot),
                "ip": "10.0.0.2",
                "response": {"text": "ok"},
                "invoice": ObjectId(),  # deleted since
                "__v": 0,
            },
        ],
    )
    # Mongoose itself: a new request, and a follow-up by create + push + save.
    made, followup = mongoose(
        {
            "op": "create",
            "doc": {
                "bot": oid(bot),
                "createdBy": oid(user),
                "organization": oid(org),
                "success": True,
                "ip": "::1",
                "inputs": {"color": "Teal"},
                "response": {"message": "made by Mongoose", "usage": {"tokens": 3}},
                "prompt": "Say hello in teal",
            },
        },
        {
            "op": "followup",
            "id": oid("649bc73858b7391cbaa555ff"),
            "doc": {"bot": oid(bot), "success": False, "ip": "::1", "response": {"e": 1}},
        },
    )
    ids = [
        "649bc73858b7391cbaa555ff",
        "649bc7f958b7391cbaa5561a",
        "649bc81558b7391cbaa55624",
        str(older),
        str(orphan),
        made["id"],
        followup["id"],
    ]
    theirs = mongoose(
        *({"op": "json", "id": oid(i)} for i in ids),
        *({"op": "json", "id": oid(i), "populate": False} for i in ids),
    )
    populated, bare = theirs[: len(ids)], theirs[len(ids) :]
    for identifier, want, want_bare in zip(ids, populated, bare, strict=True):
        got = await served(client, identifier)
        if identifier == str(orphan):
            # The one deviation (docs/concepts/records.md): a reference to a deleted record
            # stays its id.
            stored = await raw.botrequests.find_one({"_id": orphan})
            assert want["invoice"] is None
            assert got["invoice"] == str(stored["invoice"])
            want = {**want, "invoice": got["invoice"]}
        assert ordered(got) == ordered(want), (identifier, got, want)
        assert ordered(await served(client, identifier, populate="none")) == ordered(want_bare)
    # A thread across both writers: each member exactly as Mongoose serves it, and beside
    # it its depth and feedback summary (the service's own collection, not a Mongoose field).
    thread = (await client.get(f"/bot-requests/{followup['id']}/thread")).json()
    assert [item["request"]["id"] for item in thread["items"]] == [ids[0], followup["id"]]
    for item in thread["items"]:
        assert list(item) == ["request", "depth", "feedback"]
        assert item["feedback"] == {"count": 0, "averageScore": None}
        assert ordered(item["request"]) == ordered(populated[ids.index(item["request"]["id"])])
        assert item["depth"] == (0 if item["request"]["id"] == ids[0] else 1)


async def test_thread_keeps_a_mongoose_request_own_feedback_and_depth(client, mongoose):
    """An application storing `feedback` and `depth` of its own on a request: a thread
    answer serves them as Mongoose does, and the service's values beside them."""
    world = await seed_world(client)
    own = {
        "bot": oid(world["bot"]["id"]),
        "createdBy": oid(world["user"]["id"]),
        "organization": oid(world["org"]["id"]),
        "success": True,
        "ip": "::1",
        "response": {"message": "rated"},
    }
    (root,) = mongoose(
        {
            "op": "create",
            "model": "RatedBotRequest",
            "doc": {**own, "feedback": {"rating": 5, "note": "kept"}, "depth": 7},
        }
    )
    (follow,) = mongoose(
        {
            "op": "followup",
            "model": "RatedBotRequest",
            "id": oid(root["id"]),
            "doc": {**own, "feedback": {"rating": 1, "note": "mine"}, "depth": 0},
        }
    )
    given = await client.post(f"/bot-requests/{follow['id']}/feedback", json={"score": -1})
    assert given.status_code == 201, given.text
    theirs = mongoose(
        *({"op": "json", "model": "RatedBotRequest", "id": oid(r["id"])} for r in (root, follow))
    )
    assert theirs[0]["feedback"] == {"rating": 5, "note": "kept"}
    assert theirs[0]["depth"] == 7
    for scope in ("thread", "chain"):
        answer = await client.get(f"/bot-requests/{follow['id']}/thread", params={"scope": scope})
        assert answer.status_code == 200, answer.text
        items = answer.json()["items"]
        assert [ordered(item["request"]) for item in items] == [ordered(t) for t in theirs]
        assert [item["depth"] for item in items] == [0, 1]
        assert [item["feedback"] for item in items] == [
            {"count": 0, "averageScore": None},
            {"count": 1, "averageScore": -1.0},
        ]
    # The single read, too, is what Mongoose serves: nothing computed added or replaced.
    for made, want in zip((root, follow), theirs, strict=True):
        assert ordered(await served(client, made["id"])) == ordered(want)


async def test_service_written_records_found_validated_and_populated_by_mongoose(
    client, raw, mongoose
):
    world = await seed_world(client)
    original = await record(client, world, response={"message": "Hellow word"})
    # usage, metadata and tags are fields outside Mongoose's schema: it keeps and serves them.
    follow = await record(
        client,
        world,
        originalRequest=original["id"],
        response={"n": 1},
        usage={"model": "m", "promptTokens": 1, "completionTokens": 2, "cost": 0.5},
        metadata={"tier": "pro", "n": 3},
        tags=["a", "b"],
    )
    patched = await client.patch(
        f"/bot-requests/{follow['id']}",
        json={"images": [world["image"]["id"]], "invoice": world["invoice"]["id"]},
    )
    assert patched.status_code == 200
    bot = await client.patch(
        f"/bots/{world['bot']['id']}",
        json={
            "inputs": [
                {"name": "color", "inputType": "text"},
                {"name": "tone", "inputType": "text"},
            ]
        },
    )
    assert bot.status_code == 200
    checks = mongoose(
        *(
            {"op": "validate", "model": model, "id": oid(world[key]["id"])}
            for model, key in [
                ("Organization", "org"),
                ("User", "user"),
                ("Bot", "bot"),
                ("File", "image"),
                ("Invoice", "invoice"),
            ]
        ),
        {"op": "validate", "id": oid(original["id"])},
        {"op": "validate", "id": oid(follow["id"])},
        {"op": "json", "id": oid(original["id"])},
        {"op": "json", "id": oid(follow["id"])},
        {"op": "json", "model": "Bot", "id": oid(world["bot"]["id"])},
    )
    for check in checks[:7]:
        assert check == {"found": True, "errors": []}
    assert ordered(await served(client, original["id"])) == ordered(checks[7])
    assert ordered(await served(client, follow["id"])) == ordered(checks[8])
    assert ordered((await client.get(f"/bots/{world['bot']['id']}")).json()) == ordered(checks[9])


async def test_stale_mongoose_document_cannot_overwrite_an_array_the_service_changed(
    client, raw, mongoose
):
    """__v moves wherever the service changes an array: a Mongoose document loaded before
    then fails to save that array (VersionError) instead of silently undoing the change."""
    world = await seed_world(client)
    original = await record(client, world)
    before, before_bot = mongoose(
        {"op": "raw", "id": oid(original["id"])},
        {"op": "raw", "model": "Bot", "id": oid(world["bot"]["id"])},
    )
    # Not stale yet: Mongoose saves an array change as usual.
    fresh = mongoose({"op": "stale-save", "snapshot": before, "path": "images", "value": []})
    assert fresh == [{"saved": True}]
    snapshot = mongoose({"op": "raw", "id": oid(original["id"])})[0]
    await record(client, world, originalRequest=original["id"])  # the service: $addToSet
    image = world["image"]["id"]
    await client.patch(f"/bot-requests/{original['id']}", json={"images": [image]})
    await client.patch(f"/bots/{world['bot']['id']}", json={"inputs": []})
    # Each stale save rewrites the array with something else than its snapshot held.
    other = oid(str(ObjectId()))
    stale = mongoose(
        {"op": "stale-save", "snapshot": snapshot, "path": "relatedRequests", "value": [other]},
        {"op": "stale-save", "snapshot": snapshot, "path": "images", "value": [other]},
        {
            "op": "stale-save",
            "model": "Bot",
            "snapshot": before_bot,
            "path": "inputs",
            "value": [{"name": "x", "inputType": "text"}],
        },
    )
    assert stale == [{"saved": False, "error": "VersionError"}] * 3
    stored = await raw.botrequests.find_one({"_id": ObjectId(original["id"])})
    assert len(stored["relatedRequests"]) == 1
    assert [str(i) for i in stored["images"]] == [image]


async def test_mongoose_save_of_a_service_written_request_is_served(client, raw, mongoose):
    world = await seed_world(client)
    made = await record(client, world, response={"message": "hi"})
    saved = mongoose(
        {
            "op": "set-and-save",
            "id": oid(made["id"]),
            "set": {"prompt": "edited by Mongoose", "images": [oid(world["image"]["id"])]},
        },
        {"op": "json", "id": oid(made["id"])},
    )
    assert saved[0]["v"] == 1  # Mongoose moved __v: it rewrote an array
    got = await served(client, made["id"])
    assert got["prompt"] == "edited by Mongoose"
    assert got["images"][0]["id"] == world["image"]["id"]
    assert ordered(got) == ordered(saved[1])
    assert json.dumps(got)  # plain JSON, served without error
