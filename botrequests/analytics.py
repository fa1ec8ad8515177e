"""Stats (one aggregation pipeline per call) and NDJSON export (constant memory)."""

from collections.abc import AsyncIterator
from typing import Any

import orjson

from botrequests import db, populate
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


def stats_pipeline(filters: BotRequestFilters, group_by: str) -> list[dict[str, Any]]:
    key: Any = (
        {"$dateToString": {"format": "%Y-%m-%d", "date": "$createdAt"}}  # UTC dates
        if group_by == "day"
        else f"${group_by}"
    )
    pipeline: list[dict[str, Any]] = [
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
    ]
    if group_by in _LOOKUPS:
        model, fields = _LOOKUPS[group_by]
        pipeline.append(
            {
                "$lookup": {
                    "from": model.get_collection_name(),
                    "localField": "_id",
                    "foreignField": "_id",
                    "as": "ref",
                }
            }
        )
        projection = {f"ref.{field}": 1 for field in fields}
        pipeline.append(
            {
                "$project": {
                    **projection,
                    "ref._id": 1,
                    **dict.fromkeys(("requests", "succeeded", "credits", "first", "last"), 1),
                }
            }
        )
    return pipeline


def _group_key(group: dict[str, Any], group_by: str) -> Any:
    key = group["_id"]
    refs = group.get("ref") or []
    if group_by in _LOOKUPS and key is not None:
        if not refs:
            return str(key)  # the record is gone: its id, as population does
        _, fields = _LOOKUPS[group_by]
        ref = refs[0]
        return {**{f: ref[f] for f in fields if ref.get(f) is not None}, "id": str(key)}
    return plain(key)


async def stats(filters: BotRequestFilters, group_by: str) -> dict[str, Any]:
    groups = await db.aggregate(BotRequest, stats_pipeline(filters, group_by))
    items = []
    for group in groups:
        requests, succeeded = group["requests"], group["succeeded"]
        items.append(
            {
                group_by: _group_key(group, group_by),
                "requests": requests,
                "succeeded": succeeded,
                "failed": requests - succeeded,
                "successRate": round(succeeded / requests, 4) if requests else 0.0,
                "credits": group["credits"],
                "first": plain(group.get("first")),
                "last": plain(group.get("last")),
            }
        )
    return {"groupBy": group_by, "items": items, "next": None}


EXPORT_BATCH = 500


async def export_batches(
    filters: BotRequestFilters, paths: tuple[str, ...]
) -> AsyncIterator[bytes]:
    """Every matching request as NDJSON, newest first, read and populated a batch at a
    time (keyset on createdAt, _id), so memory stays flat whatever the count. The first
    batch is read before the first byte is sent, so a database error is still a 503."""
    query = filter_query(filters)

    async def batch(find: dict[str, Any]) -> list[BotRequest]:
        return await BotRequest.find(find).sort(NEWEST_FIRST).limit(EXPORT_BATCH).to_list()

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
