"""Retention (`retentionDays`, the sweep, `botrequests purge`) and erasure (issue 17), on
both backends: threads stay consistent, nothing of another organization is touched, and
both are safe to re-run after a crash half-way."""

import asyncio
import time
from datetime import UTC, datetime, timedelta

import pytest
from bson import ObjectId

from botrequests import cli, retention
from botrequests.app import _sweep_now_and_then
from botrequests.documents import BotRequest, File
from botrequests.storage import db
from tests.setup_writes import insert_all
from tests.test_access import ADMIN, tenant

NOW = datetime.now(UTC)


def request(org, created_days_ago: float, **fields) -> dict:
    return {
        "_id": fields.pop("_id", ObjectId()),
        "images": [],
        "success": True,
        "relatedRequests": [],
        "bot": ObjectId(),
        "organization": org,
        "ip": "10.0.0.1",
        "response": {"ok": 1},
        "createdAt": NOW - timedelta(days=created_days_ago),
        "__v": 0,
        **fields,
    }


async def organizations(raw, retention_days: int | None = 30) -> tuple[ObjectId, ObjectId]:
    """Org A (with retention) and org B (without), each with old requests."""
    a, b = ObjectId(), ObjectId()
    await insert_all(
        raw.organizations,
        [
            {
                "_id": a,
                "name": "A",
                **({"retentionDays": retention_days} if retention_days else {}),
            },
            {"_id": b, "name": "B"},
        ],
    )
    return a, b


async def test_retention_deletes_old_requests_and_repairs_threads_both_ways(raw):
    a, b = await organizations(raw)
    old_root, new_follow = ObjectId(), ObjectId()
    new_root, old_follow = ObjectId(), ObjectId()
    await insert_all(
        raw.botrequests,
        [
            # root past the cut-off, follow-up kept: the follow-up keeps its originalRequest
            request(a, 40, _id=old_root, relatedRequests=[new_follow]),
            request(a, 1, _id=new_follow, originalRequest=old_root),
            # the reverse: the root kept loses the deleted follow-up from its list
            request(a, 2, _id=new_root, relatedRequests=[old_follow]),
            request(a, 35, _id=old_follow, originalRequest=new_root),
            request(a, 29),  # inside the window
            request(b, 400),  # another organization, no retention: untouched
            request(a, 400, createdAt=None),  # no date: never deleted by age
        ],
    )
    dry = await retention.purge(dry_run=True)
    assert [(p.organization, p.requests) for p in dry] == [(str(a), 2)]
    assert await raw.botrequests.count_documents({}) == 7
    swept = await retention.sweep()
    assert [(p.organization, p.requests) for p in swept] == [(str(a), 2)]
    assert "deleted 2 request(s)" in swept[0].line()
    left = {doc["_id"]: doc async for doc in raw.botrequests.find({})}
    assert old_root not in left
    assert old_follow not in left
    assert left[new_follow]["originalRequest"] == old_root  # a dangling reference, served
    assert left[new_root]["relatedRequests"] == []
    assert left[new_root]["__v"] == 1  # the array changed: as Mongoose would
    assert sum(1 for doc in left.values() if doc["organization"] == b) == 1
    assert [p.requests for p in await retention.sweep()] == [0]  # nothing left: idempotent


async def test_retention_follow_up_of_deleted_root_is_served_with_its_thread(client, raw):
    a, _ = await organizations(raw)
    root, kept = ObjectId(), ObjectId()
    await insert_all(
        raw.botrequests,
        [
            request(a, 40, _id=root, relatedRequests=[kept]),
            request(a, 1, _id=kept, originalRequest=root),
        ],
    )
    await retention.sweep()
    served = await client.get(f"/bot-requests/{kept}")
    assert served.status_code == 200
    assert served.json()["originalRequest"] == str(root)
    thread = (await client.get(f"/bot-requests/{kept}/thread")).json()
    assert [member["request"]["id"] for member in thread["items"]] == [str(kept)]


async def test_retention_sweeps_racing_run_one_at_a_time(raw):
    a, _ = await organizations(raw)
    await insert_all(raw.botrequests, [request(a, 60) for _ in range(5)])
    moment = datetime.now(UTC)
    assert await db.take_lease(retention.LEASE, "worker-1", moment, moment + timedelta(minutes=5))
    assert await retention.sweep(owner="worker-2") is None  # held by worker-1
    assert await raw.botrequests.count_documents({}) == 5
    await db.release_lease(retention.LEASE, "worker-1")
    first, second = await asyncio.gather(
        retention.sweep(owner="worker-1"), retention.sweep(owner="worker-2")
    )
    ran = [result for result in (first, second) if result is not None]
    assert sum(p.requests for result in ran for p in result) == 5
    assert await raw.botrequests.count_documents({}) == 0
    # An expired lease (a worker that died holding it) is taken over.
    past = datetime.now(UTC) - timedelta(minutes=10)
    assert await db.take_lease(retention.LEASE, "dead-worker", past, past)
    assert await retention.sweep(owner="worker-2") is not None


async def test_retention_crash_between_repair_and_delete_then_rerun(raw, monkeypatch):
    a, _ = await organizations(raw)
    root, old = ObjectId(), ObjectId()
    await insert_all(
        raw.botrequests,
        [
            request(a, 1, _id=root, relatedRequests=[old]),
            request(a, 50, _id=old, originalRequest=root),
        ],
    )
    real = db.delete_many

    async def crash(model, query):
        if model is BotRequest:  # after the repair, before the requests go
            raise ConnectionError("the process died here")
        return await real(model, query)

    monkeypatch.setattr(db, "delete_many", crash)
    with pytest.raises(ConnectionError):
        await retention.sweep(owner="crashing")
    assert (await raw.botrequests.find_one({"_id": root}))["relatedRequests"] == []  # repaired
    assert await raw.botrequests.find_one({"_id": old}) is not None  # not yet deleted
    monkeypatch.setattr(db, "delete_many", real)
    await db.release_lease(retention.LEASE, "crashing")  # or wait for it to expire
    swept = await retention.sweep()
    assert [p.requests for p in swept] == [1]
    assert await raw.botrequests.find_one({"_id": old}) is None
    assert (await raw.botrequests.find_one({"_id": root}))["__v"] == 1  # moved once


async def test_retention_background_sweep_and_purge_command(app, raw, capsys):
    a, _ = await organizations(raw, retention_days=7)
    await insert_all(raw.botrequests, [request(a, 10), request(a, 10), request(a, 1)])
    assert await cli._purge(dry_run=True) == 0
    out = capsys.readouterr().out
    assert "would delete 2 request(s)" in out
    assert "2 request(s) would be deleted" in out
    assert await raw.botrequests.count_documents({}) == 3
    task = asyncio.create_task(_sweep_now_and_then(app, 0.05))
    try:
        deadline = time.monotonic() + 120  # a busy machine's time; tenths of a second idle
        while time.monotonic() < deadline:
            await asyncio.sleep(0.05)
            if await raw.botrequests.count_documents({}) == 1:
                break
    finally:
        task.cancel()
    assert await raw.botrequests.count_documents({}) == 1
    assert await cli._purge(dry_run=False) == 0
    assert "0 request(s) deleted in 1 organization(s)" in capsys.readouterr().out


async def test_retention_days_set_with_the_admin_token_only(client, raw, secured):
    t = await tenant(client, "T")
    url = f"/organizations/{t['org']['id']}"
    refused = await client.patch(url, json={"retentionDays": 30}, headers=t["headers"])
    assert refused.status_code == 403
    done = await client.patch(url, json={"retentionDays": 30}, headers=ADMIN)
    assert done.status_code == 200
    assert done.json()["retentionDays"] == 30
    assert (await client.patch(url, json={"retentionDays": 0}, headers=ADMIN)).status_code == 422
    cleared = await client.patch(url, json={"retentionDays": None}, headers=ADMIN)
    assert "retentionDays" not in cleared.json()
    stored = await raw.organizations.find_one({"_id": ObjectId(t["org"]["id"])})
    assert "retentionDays" not in stored


# --- erasure ------------------------------------------------------------------------------


async def test_erasure_inside_another_users_thread(client, raw, secured):
    t = await tenant(client, "T")
    other = await tenant(client, "Other")
    h = t["headers"]

    async def post(path: str, body: dict, headers: dict = h) -> dict:
        response = await client.post(path, json=body, headers=headers)
        assert response.status_code == 201, response.text
        return response.json()

    alice = await post("/users", {"name": "Alice"})
    bob = await post("/users", {"name": "Bob"})
    bot = await post("/bots", {"name": "B", "slug": "b"})
    photo = await post("/files", {"fileName": "p", "s3Key": "k", "createdBy": alice["id"]})

    def body(user: dict, **extra) -> dict:
        return {"bot": bot["id"], "createdBy": user["id"], "success": True, "response": {}, **extra}

    root = await post("/bot-requests", body(bob))
    hers = await post(
        "/bot-requests", body(alice, originalRequest=root["id"], images=[photo["id"]])
    )
    reply = await post("/bot-requests", body(bob, originalRequest=hers["id"]))
    # Feedback she gave on his request, his on hers, and his on his own.
    await post(f"/bot-requests/{root['id']}/feedback", {"score": 1, "by": alice["id"]})
    await post(f"/bot-requests/{hers['id']}/feedback", {"score": -1, "by": bob["id"]})
    kept = await post(f"/bot-requests/{root['id']}/feedback", {"score": 0.5, "by": bob["id"]})
    # Another organization's records, a user of the same name included: never touched.
    theirs_user = await post("/users", {"name": "Alice"}, other["headers"])
    theirs_bot = await post("/bots", {"name": "B", "slug": "b"}, other["headers"])
    await post(
        "/bot-requests",
        {"bot": theirs_bot["id"], "createdBy": theirs_user["id"], "success": True, "response": {}},
        other["headers"],
    )
    before_other = await raw.botrequests.count_documents(
        {"organization": ObjectId(other["org"]["id"])}
    )

    exported = await client.get(
        "/bot-requests/export", params={"createdBy": alice["id"]}, headers=h
    )
    assert [line for line in exported.text.splitlines() if line]
    assert hers["id"] in exported.text

    url = f"/organizations/{t['org']['id']}/erasures"
    read_key = await client.post(
        f"/organizations/{t['org']['id']}/api-keys", json={"scope": "read"}, headers=ADMIN
    )
    reader = {"Authorization": f"Bearer {read_key.json()['key']}"}
    assert (await client.post(url, json={"user": alice["id"]}, headers=reader)).status_code == 403
    assert (
        await client.post(url, json={"user": alice["id"]}, headers=other["headers"])
    ).status_code == 404  # another organization's key does not see this one
    erased = await client.post(url, json={"user": alice["id"]}, headers=h)
    assert erased.status_code == 201, erased.text
    report = erased.json()
    assert report["deleted"] == {"botrequests": 1, "feedback": 1, "files": 1, "users": 1}
    assert report["requestedBy"].startswith("API key br_")
    assert "Alice" not in erased.text

    assert await raw.botrequests.find_one({"_id": ObjectId(hers["id"])}) is None
    assert await raw.users.find_one({"_id": ObjectId(alice["id"])}) is None
    assert await raw.files.find_one({"_id": ObjectId(photo["id"])}) is None
    kept_root = await raw.botrequests.find_one({"_id": ObjectId(root["id"])})
    assert kept_root["relatedRequests"] == []
    kept_reply = await client.get(f"/bot-requests/{reply['id']}", headers=h)
    assert kept_reply.json()["originalRequest"] == hers["id"]  # dangling, served as its id
    assert await raw.users.find_one({"_id": ObjectId(bob["id"])}) is not None
    left = [str(doc["_id"]) async for doc in raw.feedback.find({})]
    assert left == [kept["id"]]  # hers and the feedback on her request are gone
    assert (
        await raw.botrequests.count_documents({"organization": ObjectId(other["org"]["id"])})
        == before_other
    )
    assert await raw.users.find_one({"_id": ObjectId(theirs_user["id"])}) is not None

    again = await client.post(url, json={"user": alice["id"]}, headers=ADMIN)  # idempotent
    assert again.status_code == 201
    assert again.json()["deleted"] == {"botrequests": 0, "feedback": 0, "files": 0, "users": 0}
    assert again.json()["requestedBy"] == "admin token"
    listed = (await client.get(url, headers=h)).json()["items"]
    assert [item["deleted"]["botrequests"] for item in listed] == [1, 0]
    unknown = await client.post(url, json={"user": str(ObjectId())}, headers=h)
    assert unknown.status_code == 404
    assert (await client.post(url, json={"user": "nope"}, headers=h)).status_code == 422


async def test_erasure_crash_half_way_then_rerun(client, raw, monkeypatch):
    org = (await client.post("/organizations", json={"name": "O"})).json()
    user = (await client.post("/users", json={"name": "U", "organization": org["id"]})).json()
    bot = (await client.post("/bots", json={"name": "B", "slug": "b"})).json()
    for _ in range(3):
        made = await client.post(
            "/bot-requests",
            json={
                "bot": bot["id"],
                "createdBy": user["id"],
                "organization": org["id"],
                "success": True,
                "response": {},
            },
        )
        assert made.status_code == 201
    real = db.delete_many
    calls = {"n": 0}

    async def crash_on_files(model, query):
        calls["n"] += 1
        if model is File:  # after the user, the requests and feedback, before the files
            raise ConnectionError("the process died here")
        return await real(model, query)

    monkeypatch.setattr(db, "delete_many", crash_on_files)
    url = f"/organizations/{org['id']}/erasures"
    try:
        crashed = await client.post(url, json={"user": user["id"]})
        assert crashed.status_code >= 500
    except ConnectionError:
        pass  # the transport passes the app's exception on
    monkeypatch.setattr(db, "delete_many", real)
    assert await raw.botrequests.count_documents({}) == 0
    # The user goes first (writes naming them are refused from then on: erasure.py).
    assert await raw.users.count_documents({"_id": ObjectId(user["id"])}) == 0
    rerun = await client.post(url, json={"user": user["id"]})
    assert rerun.status_code == 201
    assert rerun.json()["deleted"] == {"botrequests": 0, "feedback": 0, "files": 0, "users": 0}
    records = (await client.get(url)).json()["items"]
    assert len(records) == 2
    assert "finishedAt" not in records[0]
