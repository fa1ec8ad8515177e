"""Follow-up threads: `$graphLookup` up to the root, then down from it, then population.

A thread costs a constant number of round trips whatever its depth or breadth: one
aggregation up (the chain of `originalRequest`s), one down (every follow-up of the root,
any branch), and the population queries. `originalRequest` is the source of truth;
`relatedRequests` is never followed, so a damaged one cannot mislead a lookup.

Data written by other applications can be wrong. `$graphLookup` never visits a document
twice, so cycles terminate; a cycle has no natural root, so its oldest member is taken and
the answer says `"cycle": true`. A parent that does not exist makes the topmost request
reached the root. Past the depth cap the answer is cut and says `"truncated": true`.
"""

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from beanie import PydanticObjectId
from bson import ObjectId

from botrequests import cursors, feedback, populate
from botrequests.auth import scoped, visible
from botrequests.documents import BotRequest, reader
from botrequests.errors import InvalidInput, not_found
from botrequests.serialize import dump
from botrequests.storage import db


def _graph(start_with: str, from_field: str, to_field: str, max_depth: int) -> dict[str, Any]:
    return {
        "$graphLookup": {
            "from": BotRequest.get_collection_name(),
            "startWith": start_with,
            "connectFromField": from_field,
            "connectToField": to_field,
            "as": "linked",
            "maxDepth": max_depth,
            "depthField": "level",
        }
    }


def _created(raw: dict[str, Any]) -> datetime:
    value = raw.get("createdAt")
    if not isinstance(value, datetime):
        return cursors.EPOCH
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _order(raw: dict[str, Any]) -> tuple[datetime, str]:
    return _created(raw), str(raw["_id"])


@dataclass
class Ancestry:
    """The path from a request up to its thread's root: `path[0]` is the request."""

    path: list[dict[str, Any]]
    root: dict[str, Any]
    truncated: bool = False
    cycle: bool = False
    chain: list[dict[str, Any]] = field(default_factory=list)  # root → request


async def ancestry(request_id: PydanticObjectId, max_depth: int) -> Ancestry:
    """One aggregation: the request and up to `max_depth + 1` ancestors (one more than
    served, to tell a cut chain from a complete one)."""
    found = await db.aggregate(
        BotRequest,
        [
            {"$match": scoped(BotRequest, {"_id": request_id})},
            _graph("$originalRequest", "originalRequest", "_id", max_depth),
        ],
    )
    if not found:
        raise not_found("bot request", request_id)
    start = found[0]
    # mongomock leaves `as` out when `startWith` is missing; MongoDB gives [].
    # Another organization's request is, to this tenant, a parent that does not exist.
    by_id = {raw["_id"]: raw for raw in start.pop("linked", []) if visible(raw)}
    by_id.setdefault(start["_id"], start)
    path, seen = [start], {start["_id"]}
    cycle_from: int | None = None
    truncated = False
    current = start
    while True:
        parent = current.get("originalRequest")
        if parent is None:
            break
        if parent in seen:
            cycle_from = next(i for i, raw in enumerate(path) if raw["_id"] == parent)
            break
        if parent not in by_id:  # a dangling parent, or one beyond the cap
            break
        if len(path) > max_depth:
            truncated = True
            break
        current = by_id[parent]
        path.append(current)
        seen.add(parent)
    if cycle_from is not None:
        root = min(path[cycle_from:], key=_order)
        index = next(i for i, raw in enumerate(path) if raw["_id"] == root["_id"])
        chain = list(reversed(path[: index + 1]))
    else:
        root = path[-1]
        chain = list(reversed(path))
    for raw in path:
        raw.pop("level", None)
    return Ancestry(path, root, truncated, cycle_from is not None, chain)


@dataclass
class Page:
    """One page of a thread's follow-ups, in (depth, createdAt, _id) order."""

    members: list[tuple[int, dict[str, Any]]]
    deeper: bool  # something lies below the depth cap
    more: bool  # more follow-ups after this page


async def descendants(
    root: dict[str, Any], max_depth: int, limit: int, after: tuple | None = None
) -> Page:
    """One aggregation: up to `limit` follow-ups below `root` (after the cursor position
    `after`), in order, with their depth. `$graphLookup` collects the thread on the server
    (one more level than served, to tell a cut thread); `$unwind` right after it turns the
    array into documents (so no 16 MB result), and only a page of them comes back."""
    match: dict[str, Any] = {"_id": {"$ne": root["_id"]}}  # reached again via a cycle
    if after is not None:
        match = {"$and": [match, _after(*after)]}
    found = await db.aggregate(
        BotRequest,
        [
            {"$match": {"_id": root["_id"]}},
            _graph("$_id", "_id", "originalRequest", max_depth),
            {"$project": {"linked": 1}},
            {"$unwind": "$linked"},
            {"$replaceRoot": {"newRoot": "$linked"}},
            {"$match": scoped(BotRequest, match)},
            {"$sort": {"level": 1, "createdAt": 1, "_id": 1}},
            {"$limit": limit + 1},
        ],
    )
    members, deeper = [], False
    for raw in found:
        depth = int(raw.pop("level")) + 1
        if depth > max_depth:  # sorted by depth: the rest lie below the cap too
            deeper = True
            break
        members.append((depth, raw))
    more = len(members) > limit
    return Page(members[:limit], deeper, more)


def _after(level: int, created: datetime | None, last_id: ObjectId) -> dict[str, Any]:
    """What sorts after (level, createdAt, _id) in ascending order (a missing createdAt
    sorts first, as MongoDB sorts null before dates)."""
    if created is None:
        same_level = [{"createdAt": {"$ne": None}}, {"createdAt": None, "_id": {"$gt": last_id}}]
    else:
        same_level = [
            {"createdAt": {"$gt": created}},
            {"createdAt": created, "_id": {"$gt": last_id}},
        ]
    return {"$or": [{"level": {"$gt": level}}, *({"level": level, **c} for c in same_level)]}


def _parse(raw: dict[str, Any]) -> BotRequest:
    return reader(BotRequest).model_validate({k: v for k, v in raw.items() if k != "level"})


def encode_cursor(root: dict[str, Any], depth: int, raw: dict[str, Any]) -> str:
    created = raw.get("createdAt")
    moment = cursors.to_ms(created) if isinstance(created, datetime) else None
    data = {"r": str(root["_id"]), "l": depth - 1, "t": moment, "i": str(raw["_id"])}
    return cursors.encode(data)


def _read_position(data: dict[str, Any]) -> tuple[ObjectId, tuple]:
    level, moment = data["l"], data["t"]
    if not isinstance(level, int):
        raise ValueError("not a cursor")
    created = None if moment is None else cursors.from_ms(moment)
    return ObjectId(str(data["r"])), (level, created, ObjectId(str(data["i"])))


def decode_cursor(cursor: str) -> tuple[ObjectId, tuple]:
    """(root id, (level, createdAt, _id)); 422 for anything else."""
    return cursors.decode(cursor, _read_position, "thread cursor")


async def thread(
    request_id: PydanticObjectId,
    scope: Literal["thread", "chain"],
    paths: tuple[str, ...],
    max_depth: int,
    limit: int,
    cursor: str | None = None,
) -> dict[str, Any]:
    """The thread (or, with `scope="chain"`, the path root → request) a request belongs
    to, each item the request as GET serves it beside its `depth` and feedback summary,
    ordered by depth, createdAt, id.
    At most `limit` requests per answer; `next` continues after the last one."""
    up = await ancestry(request_id, max_depth)
    truncated, following = up.truncated, None
    if scope == "chain":
        if cursor is not None:
            raise InvalidInput(["query", "cursor"], "a chain is answered whole: no cursor")
        members = list(enumerate(up.chain))
    else:
        after = None
        if cursor is not None:
            root_id, after = decode_cursor(cursor)
            if root_id != up.root["_id"]:
                raise InvalidInput(["query", "cursor"], "this cursor belongs to another thread")
        first = [(0, up.root)] if after is None else []
        page = await descendants(up.root, max_depth, limit - len(first), after)
        members = first + page.members
        truncated = truncated or page.deeper or page.more
        if page.more:
            following = encode_cursor(up.root, *members[-1])
    docs = [_parse(raw) for _, raw in members]
    found, scores = await asyncio.gather(
        populate.lookups(docs, paths),  # no paths: no query
        feedback.summaries([doc.id for doc in docs]),
    )
    # What the service computes sits beside the record, never among its keys: a Mongoose
    # application may store a `depth` or `feedback` of its own.
    items = [
        {
            "request": populate.apply(dump(doc), found),
            "depth": depth,
            "feedback": scores.get(doc.id, _NO_FEEDBACK),
        }
        for (depth, _), doc in zip(members, docs, strict=True)
    ]
    return {
        "root": str(up.root["_id"]),
        "scope": scope,
        "items": items,
        "totals": _totals(docs, scores),
        "truncated": truncated,
        "cycle": up.cycle,
        "next": following,
    }


_NO_FEEDBACK = {"count": 0, "averageScore": None}


def _totals(docs: list[BotRequest], scores: dict[Any, dict[str, Any]]) -> dict[str, Any]:
    """Sums over the requests of this answer: tokens, cost, latency, feedback."""
    usage = [doc.usage or {} for doc in docs]

    def total(field: str) -> float | int:
        return sum(item.get(field) or 0 for item in usage)

    given = [summary for summary in scores.values() if summary["count"]]
    count = sum(summary["count"] for summary in given)
    score = sum(summary["averageScore"] * summary["count"] for summary in given)
    return {
        "requests": len(docs),
        "totalTokens": total("totalTokens"),
        "cost": round(total("cost"), 6),
        "latencyMs": round(total("latencyMs"), 3),
        "feedback": {
            "count": count,
            "averageScore": round(score / count, 4) if count else None,
        },
    }
