"""Repair of follow-up links: rebuild every `relatedRequests` from the `originalRequest`s
that point at it (`botrequests repair-threads`). `originalRequest` is the source of truth;
`relatedRequests` can fall one short after a crash between a follow-up's two writes.
"""

import logging
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from beanie.operators import AddToSet, Inc, Pull

from botrequests.documents import VERSION_BUMP, BotRequest
from botrequests.storage import db

log = logging.getLogger("botrequests")


@dataclass
class Repair:
    id: str
    added: list[str]
    removed: list[str]
    deduplicated: list[str]


REPAIR_BATCH = 500


async def repair_related_requests(
    progress: Callable[[int, int, int], None] | None = None, batch: int = REPAIR_BATCH
) -> list[Repair]:
    """Rebuild every `relatedRequests` from the `originalRequest`s that point at it.

    Works through the collection in `_id` order, `batch` requests at a time: two bounded
    queries per batch (the requests, then their follow-ups through the `originalRequest`
    index), then an update for each request whose list differs. `progress(checked, total,
    repaired)` is called after each batch. Idempotent, and safe to stop and re-run.
    Uses `$addToSet` / `$pull` of the differences only, so a follow-up attached while the
    repair runs is never lost (a whole-list `$set` could drop it).
    """
    total = await db.count(BotRequest, {})
    repairs: list[Repair] = []
    checked, last_id = 0, None
    while True:
        holders = await db.find_raw(
            BotRequest,
            {"_id": {"$gt": last_id}} if last_id is not None else {},
            {"relatedRequests": 1},
            sort=[("_id", 1)],
            limit=batch,
            batch_size=batch + 1,
        )
        if not holders:
            break
        ids = [holder["_id"] for holder in holders]
        children: dict[Any, set] = defaultdict(set)
        for child in await db.find_raw(
            BotRequest, {"originalRequest": {"$in": ids}}, {"originalRequest": 1}
        ):
            children[child["originalRequest"]].add(child["_id"])
        for holder in holders:
            repair = await _repair_one(holder, children.get(holder["_id"], set()))
            if repair is not None:
                repairs.append(repair)
        checked, last_id = checked + len(holders), ids[-1]
        if progress is not None:
            progress(checked, max(total, checked), len(repairs))
        if len(holders) < batch:
            break
    return repairs


async def _repair_one(holder: dict[str, Any], want: set) -> Repair | None:
    listed = list(holder.get("relatedRequests") or [])
    counts = Counter(listed)
    removed = sorted({item for item in counts if item not in want}, key=str)
    duplicated = sorted({item for item, n in counts.items() if n > 1 and item in want}, key=str)
    added = sorted(want - set(counts), key=str)
    if not (removed or duplicated or added):
        return None
    query = BotRequest.find_one(BotRequest.id == holder["_id"])
    if removed or duplicated:
        # `$pull` takes every copy of a duplicate; `$addToSet` below puts one back.
        await query.update(
            Pull({"relatedRequests": {"$in": removed + duplicated}}), Inc(VERSION_BUMP)
        )
    if added or duplicated:
        await query.update(
            AddToSet({"relatedRequests": {"$each": added + duplicated}}), Inc(VERSION_BUMP)
        )
    return Repair(
        str(holder["_id"]),
        [str(i) for i in added],
        [str(i) for i in removed],
        [str(i) for i in duplicated],
    )


async def after_unclean_stop(client: Any) -> list[Repair]:
    """When the data directory's last process was killed: repair the follow-up links a
    write cut between its two steps may have left one short, and say so in the log."""
    if not db.stopped_uncleanly(client):
        return []
    repairs = await repair_after_crash()
    db.repaired(client)
    log.warning(
        "the data directory was not closed by its last process (a crash or kill -9): "
        "follow-up links checked, %d request(s) repaired%s",
        len(repairs),
        "".join(f"; {fix.id}: added {fix.added}, removed {fix.removed}" for fix in repairs[:5]),
    )
    return repairs


async def repair_after_crash() -> list[Repair]:
    """`repair_related_requests` after an unclean stop of the embedded backend, in one
    linear pass over what its memory holds (the batched walk sorts the whole collection
    once per batch there), then an update for each request whose list differs."""
    links = await db.thread_links(BotRequest)
    children: dict[Any, set] = defaultdict(set)
    for identifier, original, _ in links:
        if original is not None:
            children[original].add(identifier)
    repairs = []
    for identifier, _, listed in links:
        want = children.get(identifier, set())
        if len(listed) != len(want) or set(listed) != want:
            repair = await _repair_one({"_id": identifier, "relatedRequests": listed}, want)
            if repair is not None:
                repairs.append(repair)
    return repairs
