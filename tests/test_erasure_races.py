"""Erasure and retention while clients keep writing (issue 27, findings 2 and 3): after an
erasure answers `finishedAt`, nothing of the person is stored, and no feedback names a
request that was deleted, whatever was written meanwhile."""

import asyncio
import itertools
import random
from datetime import UTC, datetime, timedelta

from bson import ObjectId

from botrequests import erasure, retention
from tests.setup_writes import insert_all

WRITERS = 6
MOST_WRITES = 3000  # per writer: bounded even if the erasure never ended
# What a write racing an erasure or a sweep may be answered: done, or refused because the
# user or the request is gone (422 reference check, 404, 409 erased meanwhile).
RACING_ANSWERS = {200, 201, 404, 409, 422}


async def _world(client) -> dict:
    org = (await client.post("/organizations", json={"name": "O"})).json()["id"]

    async def user(name: str) -> str:
        made = await client.post("/users", json={"name": name, "organization": org})
        return made.json()["id"]

    bot = (await client.post("/bots", json={"name": "B", "slug": "b"})).json()["id"]
    return {"org": org, "erased": await user("Erased"), "other": await user("Other"), "bot": bot}


async def _orphan_feedback(raw) -> int:
    """Feedback whose request is not stored (read in full: the test's data is small)."""
    requests = {doc["_id"] async for doc in raw.botrequests.find({}, {"_id": 1})}
    return sum([doc["request"] not in requests async for doc in raw.feedback.find({})])


async def _remains(raw, world: dict) -> dict[str, int]:
    user = ObjectId(world["erased"])
    return {
        "requests": await raw.botrequests.count_documents({"createdBy": user}),
        "feedback given": await raw.feedback.count_documents({"by": user}),
        "files": await raw.files.count_documents({"createdBy": user}),
        "user": await raw.users.count_documents({"_id": user}),
        "orphan feedback": await _orphan_feedback(raw),
    }


async def test_erasure_finishes_with_nothing_left_while_writers_run(client, raw):
    world = await _world(client)
    body = {"bot": world["bot"], "organization": world["org"], "success": True}
    mine: list[str] = []  # the erased user's requests, as they are made
    theirs: list[str] = []
    for who, into in ((world["erased"], mine), (world["other"], theirs)):
        for _ in range(20):
            made = await client.post(
                "/bot-requests", json={**body, "createdBy": who, "response": {"n": 1}}
            )
            into.append(made.json()["id"])
    done = asyncio.Event()
    answers: list[int] = []
    rng = random.Random(27)

    async def writer(number: int) -> None:
        for step in range(MOST_WRITES):
            if done.is_set() and step > 20:
                return
            kind = (number + step) % 6
            target = rng.choice(mine)
            if kind == 0:
                sent = await client.post(
                    "/bot-requests",
                    json={**body, "createdBy": world["erased"], "response": {"n": step}},
                )
                if sent.status_code == 201:
                    mine.append(sent.json()["id"])
            elif kind == 1:  # a follow-up of the person's request, by the person
                sent = await client.post(
                    "/bot-requests",
                    json={
                        **body,
                        "createdBy": world["erased"],
                        "originalRequest": target,
                        "response": {"n": step},
                    },
                )
            elif kind == 2:  # someone else's feedback on the person's request
                sent = await client.post(
                    f"/bot-requests/{target}/feedback", json={"score": 1, "by": world["other"]}
                )
            elif kind == 3:  # the person's feedback on someone else's request
                sent = await client.post(
                    f"/bot-requests/{rng.choice(theirs)}/feedback",
                    json={"score": -1, "by": world["erased"]},
                )
            elif kind == 4:
                sent = await client.post(
                    "/bot-requests/batch",
                    json={"items": [{**body, "createdBy": world["erased"], "response": {}}] * 3},
                )
            else:
                sent = await client.post(
                    "/files",
                    json={"fileName": "f", "s3Key": f"k{step}", "createdBy": world["erased"]},
                )
            answers.append(sent.status_code)

    writers = [asyncio.create_task(writer(n)) for n in range(WRITERS)]
    while len(answers) < 60:  # the writers are under way
        await asyncio.sleep(0.01)
    erased = await client.post(
        f"/organizations/{world['org']}/erasures", json={"user": world["erased"]}
    )
    assert erased.status_code == 201, erased.text
    assert erased.json()["finishedAt"]
    at_finish = await _remains(raw, world)
    done.set()
    await asyncio.gather(*writers)
    assert at_finish == dict.fromkeys(at_finish, 0), at_finish
    assert await _remains(raw, world) == dict.fromkeys(at_finish, 0)
    assert set(answers) <= RACING_ANSWERS, set(answers)
    # Someone else's requests stay, with none of the person's feedback on them.
    assert await raw.botrequests.count_documents({"createdBy": ObjectId(world["other"])}) == 20


async def test_erasure_write_that_lands_late_removes_itself(client, raw, monkeypatch):
    """A write slower than SETTLE_SECONDS between its reference check and its insert may
    land after the erasure's last pass: it checks again, deletes what it wrote, 409."""
    from botrequests import batch, ingest, records

    world = await _world(client)
    user = ObjectId(world["erased"])

    def then_erased(check):  # the user passes the check, then an erasure deletes them
        async def checked(*args, **kwargs):
            result = await check(*args, **kwargs)
            await raw.users.delete_many({"_id": user})
            return result

        return checked

    monkeypatch.setattr(erasure, "clock", lambda: float("-inf"))  # every write is slow
    monkeypatch.setattr(ingest, "check", then_erased(ingest.check))
    monkeypatch.setattr(batch, "check", then_erased(batch.check))
    monkeypatch.setattr(records, "require", then_erased(records.require))
    body = {"bot": world["bot"], "organization": world["org"], "success": True, "response": {}}
    single = await client.post("/bot-requests", json={**body, "createdBy": world["erased"]})
    assert single.status_code == 409, single.text
    assert "was erased" in single.json()["detail"]
    await raw.users.insert_one({"_id": user, "name": "E", "organization": ObjectId(world["org"])})
    both = [{**body, "createdBy": world["erased"]}, {**body, "createdBy": world["other"]}]
    answer = (await client.post("/bot-requests/batch", json={"items": both})).json()
    assert [item["status"] for item in answer["items"]] == ["error", "created"]
    assert "was erased" in answer["items"][0]["errors"][0]["reason"]
    await raw.users.insert_one({"_id": user, "name": "E", "organization": ObjectId(world["org"])})
    file = await client.post(
        "/files", json={"fileName": "f", "s3Key": "k", "createdBy": world["erased"]}
    )
    assert file.status_code == 409, file.text
    assert await _remains(raw, world) == dict.fromkeys(await _remains(raw, world), 0)
    assert await raw.botrequests.count_documents({}) == 1  # the batch's other item


async def test_retention_leaves_no_feedback_while_feedback_is_written(client, raw):
    org = (await client.post("/organizations", json={"name": "R", "retentionDays": 30})).json()
    bot = (await client.post("/bots", json={"name": "B", "slug": "b"})).json()["id"]
    old = datetime.now(UTC) - timedelta(days=60)
    ids = [ObjectId() for _ in range(retention.SWEEP_BATCH * 2 + 100)]
    await insert_all(
        raw.botrequests,
        [
            {
                "_id": oid,
                "bot": ObjectId(bot),
                "organization": ObjectId(org["id"]),
                "ip": "10.0.0.1",
                "success": True,
                "response": {},
                "createdAt": old,
                "updatedAt": old,
                "__v": 0,
            }
            for oid in ids
        ],
    )
    done = asyncio.Event()
    answers: list[int] = []
    targets = itertools.cycle(reversed(ids))  # the last batch is deleted last

    async def writer() -> None:
        for step in range(MOST_WRITES):
            if done.is_set() and step > 10:
                return
            sent = await client.post(f"/bot-requests/{next(targets)}/feedback", json={"score": 1})
            answers.append(sent.status_code)

    writers = [asyncio.create_task(writer()) for _ in range(WRITERS)]
    while len(answers) < 30:
        await asyncio.sleep(0.01)
    swept = await retention.sweep()
    orphans = await _orphan_feedback(raw)
    done.set()
    await asyncio.gather(*writers)
    assert [p.requests for p in swept] == [len(ids)]
    assert orphans == 0
    assert await _orphan_feedback(raw) == 0
    assert await raw.feedback.count_documents({}) == 0
    assert set(answers) <= RACING_ANSWERS
    assert await raw.deletions.count_documents({}) == 0
