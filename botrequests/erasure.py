"""Erasure of one person's data in an organization (GDPR Art. 17), whatever is written
meanwhile, and the check that writes naming a person make so that none outlives it.

How an erasure finishes while clients keep writing the person's requests, follow-ups and
feedback:

1. The `Erasure` record is written (unfinished): a trace even if the process dies.
2. The user's record is deleted. From then on every write that names the user
   (`createdBy` of a request or a file, `by` of feedback) fails its reference check: 422.
3. Passes delete what is left (their requests with the feedback on them, the feedback they
   gave, their file records) until a pass finds nothing **and** SETTLE_SECONDS have gone
   by since step 2. A write that checked its references before step 2 and landed within
   SETTLE_SECONDS of that check landed before the last pass, which deleted it.
4. A write that took longer than SETTLE_SECONDS between its check and its insert checks
   again after the insert (`landed_late`), and if the user is gone removes what it wrote
   and answers 409: so nothing of the person outlives the erasure.
5. `finishedAt` and the counts are set. Re-running an unfinished erasure finishes it.
"""

import asyncio
import logging
import time
from collections import Counter
from typing import Any

from beanie import PydanticObjectId

from botrequests import retention
from botrequests.documents import Erasure, Feedback, File, User
from botrequests.errors import not_found
from botrequests.storage import db
from botrequests.timeutil import now

log = logging.getLogger("botrequests.erasure")

# Longer than a write takes from its reference check to its insert on a sound service; a
# write slower than this checks again after its insert (step 4 above).
SETTLE_SECONDS = 2.0
ERASED = "user {user} was erased while this was being recorded: nothing of it was kept"


def clock() -> float:
    """The moment a write checks its references (pass it to `landed_late`)."""
    return time.monotonic()


async def landed_late(checked_at: float, users: list[Any]) -> set[Any]:
    """Of the users a write named, those erased since it checked them, if it took longer
    than SETTLE_SECONDS (else none, without a query: the erasure's last pass saw it)."""
    named = {user for user in users if user is not None}
    if not named or time.monotonic() - checked_at <= SETTLE_SECONDS:
        return set()
    rows = await db.find_raw(User, {"_id": {"$in": list(named)}}, {"_id": 1})
    return named - {row["_id"] for row in rows}


async def erase(
    organization: PydanticObjectId, user: PydanticObjectId, requested_by: str
) -> Erasure:
    """Delete every request `user` created in the organization (with its feedback), the
    feedback they gave, the file records they created, and the user; record who asked,
    when and how much (never what). 404 for a user the organization never had."""
    found = await db.find_raw(User, {"_id": user, "organization": organization}, {"_id": 1})
    earlier = await db.count(Erasure, {"organization": organization, "user": user})
    if not found and not earlier:
        raise not_found("user", user)
    record = await Erasure(
        organization=organization, user=user, requestedBy=requested_by, createdAt=now()
    ).insert()
    await retention.finish_interrupted()
    deleted: Counter[str] = Counter(
        users=await db.delete_many(User, {"_id": user, "organization": organization})
    )
    since = time.monotonic()
    while True:
        swept = Counter(
            botrequests=await retention.delete_requests(organization, {"createdBy": user}),
            # Feedback this person gave on any request of the organization.
            feedback=await db.delete_many(Feedback, {"by": user, "organization": organization}),
            files=await db.delete_many(
                File, {"createdBy": user, "organization": {"$in": [organization, None]}}
            ),
        )
        deleted.update(swept)
        waited = time.monotonic() - since
        if not any(swept.values()) and waited >= SETTLE_SECONDS:
            break
        if not any(swept.values()):
            await asyncio.sleep(SETTLE_SECONDS - waited)
    counts = {name: deleted[name] for name in ("botrequests", "feedback", "files", "users")}
    await record.set({"finishedAt": now(), "deleted": counts})
    log.info("erasure %s: user %s of %s, deleted %s", record.id, user, organization, counts)
    return record
