"""Stats (one aggregation pipeline, then one scoped query for the groups' names) and NDJSON
export (constant memory)."""

from collections.abc import AsyncIterator
from typing import Any

import orjson

from botrequests import db, populate
from botrequests.auth import scoped
from botrequests.botrequest_service import NEWEST_FIRST, after, filter_query
from botrequests.documents import Bot, BotRequest, Organization, User
from botrequests.schemas import BotRequestFilters
from botrequests.serialize import plain

# groupBy -> (collection to take {name, id} from, extra fields shown)
_LOOKUPS = {
    "bot": (Bot, ("name", "slug")),
    "organization": (Organization, ("name",)),
    "createdBy": (User, ("name",)),
}


STATS_MAX_GROUPS = 10_000


def stats_pipeline(filters: BotRequestFilters, group_by: str) -> list[dict[str, Any]]:
    key: Any = (
        {"$dateToString": {"format": "%Y-%m-%d", "date": "$createdAt"}}  # UTC dates
        if group_by == "day"
        else f"${group_by}"
    )
    return [
        {"$match": filter_query(filters)},
        {
            "$group": {
                "_id": key,
                "requests": {"$sum": 1},
                "succeeded": {"$sum": {"$cond": [{"$eq": ["$success", True]}, 1, 0]}},
                "credits": {"$sum": {"$ifNull": ["$credits", 0]}},
                "first": {"$min": "$createdAt"},
                "last": {"$max": "$createdAt"},
            }
        },
        {"$sort": {"_id": 1} if group_by == "day" else {"requests": -1, "_id": 1}},
        # One more than served, to tell a cut answer (a session per group can be many).
        {"$limit": STATS_MAX_GROUPS + 1},
    ]


async def _group_names(group_by: str, keys: list[Any]) -> dict[Any, dict[str, Any]]:
    """`{name, …, id}` of each group's record, read like any other read: scoped to the
    caller's organization (a `$lookup` inside the pipeline would look across tenants, and
    the embedded backend has no `$lookup` with a sub-pipeline to scope it)."""
    if group_by not in _LOOKUPS:
        return {}
    model, fields = _LOOKUPS[group_by]
    ids = [key for key in keys if key is not None]
    if not ids:
        return {}
    projection = dict.fromkeys(fields, 1)
    rows = await db.find_raw(
        model, scoped(model, {"_id": {"$in": ids}}), projection, batch_size=len(ids) + 1
    )
    return {
        row["_id"]: {**{f: row[f] for f in fields if row.get(f) is not None}, "id": str(row["_id"])}
        for row in rows
    }


def _group_key(key: Any, group_by: str, names: dict[Any, dict[str, Any]]) -> Any:
    if group_by in _LOOKUPS and key is not None:
        # A record that is gone, or another organization's: its id, as population does.
        return names.get(key, str(key))
    return plain(key)


async def stats(filters: BotRequestFilters, group_by: str) -> dict[str, Any]:
    groups = await db.aggregate(BotRequest, stats_pipeline(filters, group_by))
    truncated = len(groups) > STATS_MAX_GROUPS
    groups = groups[:STATS_MAX_GROUPS]
    names = await _group_names(group_by, [group["_id"] for group in groups])
    items = []
    for group in groups:
        requests, succeeded = group["requests"], group["succeeded"]
        items.append(
            {
                group_by: _group_key(group["_id"], group_by, names),
                "requests": requests,
                "succeeded": succeeded,
                "failed": requests - succeeded,
                "successRate": round(succeeded / requests, 4) if requests else 0.0,
                "credits": group["credits"],
                "first": plain(group.get("first")),
                "last": plain(group.get("last")),
            }
        )
    return {"groupBy": group_by, "items": items, "next": None, "truncated": truncated}


EXPORT_BATCH = 500


async def export_batches(
    filters: BotRequestFilters, paths: tuple[str, ...]
) -> AsyncIterator[bytes]:
    """Every matching request as NDJSON, newest first, read and populated a batch at a
    time (keyset on createdAt, _id), so memory stays flat whatever the count. The first
    batch is read before the first byte is sent, so a database error is still a 503."""
    query = filter_query(filters)

    async def batch(find: dict[str, Any]) -> list[BotRequest]:
        found = BotRequest.find(
            find, max_time_ms=db.query_timeout_ms(), batch_size=EXPORT_BATCH + 1
        )
        return await found.sort(NEWEST_FIRST).limit(EXPORT_BATCH).to_list()

    docs = await batch(query)

    async def lines() -> AsyncIterator[bytes]:
        nonlocal docs
        while docs:
            items = await populate.populate(docs, paths)
            yield b"".join(orjson.dumps(item) + b"\n" for item in items)
            if len(docs) < EXPORT_BATCH:
                return
            last = docs[-1]
            docs = await batch(after(query, last.createdAt, last.id))

    return lines()
