"""Deleting what is no longer kept: an organization's retention (`retentionDays`) and the
erasure of one person's data (GDPR Art. 17), with threads kept consistent.

Requests are deleted in batches of SWEEP_BATCH. For each batch their ids are first taken
out of every `relatedRequests` that lists them (and `__v` moves), then the requests are
deleted: a crash between the two leaves requests no thread lists, which a re-run deletes
(both steps are idempotent). A surviving follow-up whose original was deleted keeps its
`originalRequest` and is served with it as a dangling reference, as today.
"""

import logging
import os
import socket
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from beanie import PydanticObjectId

from botrequests import db
from botrequests.documents import BotRequest, Erasure, Feedback, File, Organization, User
from botrequests.errors import not_found
from botrequests.timeutil import now

log = logging.getLogger("botrequests.retention")

SWEEP_BATCH = 500
LEASE = "retention-sweep"
LEASE_SECONDS = 600  # renewed for each organization swept
_OWNER = f"{socket.gethostname()}:{os.getpid()}"


async def delete_requests(organization: Any, query: dict[str, Any]) -> int:
    """Delete the organization's requests matching `query`, a batch at a time, threads
    repaired first (above). Returns how many were deleted."""
    scoped = {"$and": [query, {"organization": organization}]}
    deleted = 0
    while True:
        rows = await db.find_raw(
            BotRequest, scoped, {"_id": 1}, batch_size=SWEEP_BATCH + 1, limit=SWEEP_BATCH
        )
        ids = [row["_id"] for row in rows]
        if not ids:
            return deleted
        # Their feedback first: a crash after it leaves requests the next run deletes.
        await db.delete_many(Feedback, {"request": {"$in": ids}})
        await db.unlink_related(organization, ids)
        deleted += await db.delete_many(
            BotRequest, {"_id": {"$in": ids}, "organization": organization}
        )
        if len(ids) < SWEEP_BATCH:
            return deleted


@dataclass
class Purged:
    organization: str
    name: str | None
    retention_days: int
    cutoff: datetime
    requests: int
    dry_run: bool

    def line(self) -> str:
        verb = "would delete" if self.dry_run else "deleted"
        return (
            f"{self.organization} ({self.name}): retentionDays {self.retention_days}, "
            f"{verb} {self.requests} request(s) created before {self.cutoff.isoformat()}"
        )


async def purge(
    dry_run: bool = False, moment: datetime | None = None, owner: str = _OWNER
) -> list[Purged]:
    """Apply every organization's retention once: requests created before `moment` less
    `retentionDays` are deleted (or, dry, counted). Requests without `createdAt` are
    never deleted by age."""
    moment = moment or now()
    organizations = await db.find_raw(
        Organization, {"retentionDays": {"$gt": 0}}, {"name": 1, "retentionDays": 1}
    )
    done = []
    for org in organizations:
        cutoff = moment - timedelta(days=org["retentionDays"])
        query = {"createdAt": {"$lt": cutoff}}
        if dry_run:
            count = await db.count(BotRequest, {"$and": [query, {"organization": org["_id"]}]})
        else:
            await _renew(owner)
            count = await delete_requests(org["_id"], query)
        done.append(
            Purged(str(org["_id"]), org.get("name"), org["retentionDays"], cutoff, count, dry_run)
        )
    return done


async def _renew(owner: str) -> None:
    moment = now()
    await db.take_lease(LEASE, owner, moment, moment + timedelta(seconds=LEASE_SECONDS))


async def sweep(moment: datetime | None = None, owner: str = _OWNER) -> list[Purged] | None:
    """`purge`, by one worker at a time (a lease in the database, `owner` naming the
    worker: host and process): None when another worker or command holds it."""
    started = now()
    if not await db.take_lease(LEASE, owner, started, started + timedelta(seconds=LEASE_SECONDS)):
        return None
    try:
        return await purge(moment=moment, owner=owner)
    finally:
        await db.release_lease(LEASE, owner)


async def erase(
    organization: PydanticObjectId, user: PydanticObjectId, requested_by: str
) -> Erasure:
    """Delete every request `user` created in the organization (with its feedback), the
    feedback they gave, the file records they created, and the user; record who asked,
    when and how much (never what). The record is written first, so even a crash leaves a
    trace; re-running finishes the job (each step deletes what is left). 404 for a user
    the organization never had."""
    found = await db.find_raw(User, {"_id": user, "organization": organization}, {"_id": 1})
    earlier = await db.count(Erasure, {"organization": organization, "user": user})
    if not found and not earlier:
        raise not_found("user", user)
    record = await Erasure(
        organization=organization, user=user, requestedBy=requested_by, createdAt=now()
    ).insert()
    deleted = {
        "botrequests": await delete_requests(organization, {"createdBy": user}),
        # Feedback this person gave on any request of the organization.
        "feedback": await db.delete_many(Feedback, {"by": user, "organization": organization}),
        "files": await db.delete_many(
            File, {"createdBy": user, "organization": {"$in": [organization, None]}}
        ),
        "users": await db.delete_many(User, {"_id": user, "organization": organization}),
    }
    await record.set({"finishedAt": now(), "deleted": deleted})
    log.info("erasure %s: user %s of %s, deleted %s", record.id, user, organization, deleted)
    return record
