"""Deleting what is no longer kept: an organization's retention (`retentionDays`), and the
batched, crash-safe deletion of requests that erasure (`erasure.py`) shares.

Requests are deleted in batches of SWEEP_BATCH. Each batch is first written down (a
`Deletion` naming its ids), then its ids are taken out of every `relatedRequests` that
lists them (and `__v` moves), the requests are deleted, then their feedback, then the
`Deletion`: a crash anywhere leaves the `Deletion`, whose steps (each idempotent) the next
sweep, purge or erasure finishes, so no feedback outlives its request. A surviving
follow-up whose original was deleted keeps its `originalRequest` and is served with it as
a dangling reference, as today.
"""

import asyncio
import contextlib
import logging
import os
import socket
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pymongo.errors import PyMongoError

from botrequests.documents import BotRequest, Deletion, Feedback, Organization
from botrequests.importfile import RETENTION_DAYS
from botrequests.storage import db
from botrequests.timeutil import now

log = logging.getLogger("botrequests.retention")

SWEEP_BATCH = 500
LEASE = "retention-sweep"
# The sweep's lease is short and renewed while the sweep works, so that a holder that died
# (a killed `purge`, a crashed worker) blocks the others for LEASE_SECONDS at most.
LEASE_SECONDS = 30.0
RENEW_SECONDS = 10.0
_OWNER = f"{socket.gethostname()}:{os.getpid()}"


async def delete_requests(organization: Any, query: dict[str, Any]) -> int:
    """Delete the organization's requests matching `query`, a batch at a time (above).
    Returns how many were deleted."""
    scoped = {"$and": [query, {"organization": organization}]}
    deleted = 0
    while True:
        rows = await db.find_raw(
            BotRequest, scoped, {"_id": 1}, batch_size=SWEEP_BATCH + 1, limit=SWEEP_BATCH
        )
        ids = [row["_id"] for row in rows]
        if not ids:
            return deleted
        intent = await Deletion(organization=organization, ids=ids, createdAt=now()).insert()
        deleted += await _delete_batch(intent)
        if len(ids) < SWEEP_BATCH:
            return deleted


async def _delete_batch(intent: Deletion) -> int:
    """The steps of one batch, each idempotent, then the intent that named them: threads
    unlinked, the requests deleted, then their feedback. Feedback comes last: a piece
    written while its request was being deleted is either older than this step (deleted
    here) or finds its request gone and deletes itself (feedback.add)."""
    organization, ids = intent.organization, list(intent.ids)
    await db.unlink_related(organization, ids)
    deleted = await db.delete_many(BotRequest, {"_id": {"$in": ids}, "organization": organization})
    await db.delete_many(Feedback, {"request": {"$in": ids}})
    await db.delete_many(Deletion, {"_id": intent.id})
    return deleted


async def finish_interrupted() -> Counter:
    """Finish the batches a crash interrupted (their intents are still stored); how many
    requests that deleted, per organization."""
    deleted: Counter = Counter()
    while pending := await Deletion.find({}).limit(100).to_list():
        for intent in pending:
            deleted[intent.organization] += await _delete_batch(intent)
    return deleted


@dataclass
class Purged:
    organization: str
    name: str | None
    retention_days: Any
    cutoff: datetime | None
    requests: int
    dry_run: bool
    problem: str | None = None  # why this organization was not swept (others were)

    def line(self) -> str:
        if self.problem is not None:
            return f"{self.organization} ({self.name}): skipped: {self.problem}"
        verb = "would delete" if self.dry_run else "deleted"
        assert self.cutoff is not None
        return (
            f"{self.organization} ({self.name}): retentionDays {self.retention_days}, "
            f"{verb} {self.requests} request(s) created before {self.cutoff.isoformat()}"
        )


async def purge(dry_run: bool = False, moment: datetime | None = None) -> list[Purged]:
    """Apply every organization's retention once: requests created before `moment` less
    `retentionDays` are deleted (or, dry, counted). Requests without `createdAt` are
    never deleted by age."""
    moment = moment or now()
    resumed = Counter() if dry_run else await finish_interrupted()
    organizations = await db.find_raw(
        Organization, {"retentionDays": {"$gt": 0}}, {"name": 1, "retentionDays": 1}
    )
    done = []
    for org in organizations:
        days = org["retentionDays"]
        # A value the API would refuse (stored by another application, or by hand) is
        # that organization's problem alone: reported, and the others are swept.
        low, high = RETENTION_DAYS
        if isinstance(days, bool) or not isinstance(days, int) or not low <= days <= high:
            problem = f"retentionDays {days!r} is not a whole number of days, {low} to {high}"
            done.append(Purged(str(org["_id"]), org.get("name"), days, None, 0, dry_run, problem))
            log.warning("retention: %s", done[-1].line())
            continue
        cutoff = moment - timedelta(days=days)
        query = {"createdAt": {"$lt": cutoff}}
        try:
            if dry_run:
                count = await db.count(BotRequest, {"$and": [query, {"organization": org["_id"]}]})
            else:
                count = resumed[org["_id"]] + await delete_requests(org["_id"], query)
        except PyMongoError as exc:
            # This organization's sweep failed (a timeout, say): the next ones still run,
            # and the next sweep finishes it (each step is idempotent).
            problem = f"failed: {type(exc).__name__}: {str(exc)[:200]}"
            done.append(Purged(str(org["_id"]), org.get("name"), days, cutoff, 0, dry_run, problem))
            log.warning("retention: %s", done[-1].line())
            continue
        done.append(Purged(str(org["_id"]), org.get("name"), days, cutoff, count, dry_run))
    return done


async def _hold(owner: str) -> bool:
    """Take or renew the sweep's lease for LEASE_SECONDS; whether `owner` holds it."""
    moment = now()
    return await db.take_lease(LEASE, owner, moment, moment + timedelta(seconds=LEASE_SECONDS))


class LeaseLost(Exception):
    """Another worker took the sweep's lease (this one stalled past LEASE_SECONDS)."""


async def sweep(moment: datetime | None = None, owner: str = _OWNER) -> list[Purged] | None:
    """`purge`, by one worker at a time (a lease in the database, `owner` naming the
    worker: host and process): None when another worker or command holds it. The lease
    is renewed every RENEW_SECONDS while the sweep works; if it was lost meanwhile the
    sweep stops (what it did stays done: each step is idempotent) and LeaseLost says so."""
    if not await _hold(owner):
        return None
    work = asyncio.ensure_future(purge(moment=moment))
    try:
        while True:
            finished, _ = await asyncio.wait({work}, timeout=RENEW_SECONDS)
            if finished:
                return work.result()
            if not await _hold(owner):
                raise LeaseLost("another worker took the retention sweep's lease")
    finally:
        if not work.done():
            work.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await work
        await db.release_lease(LEASE, owner)
