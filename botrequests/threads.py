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

from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from beanie import PydanticObjectId
from beanie.operators import AddToSet, Pull

from botrequests import db, populate
from botrequests.auth import scoped, visible
from botrequests.documents import BotRequest
from botrequests.errors import not_found
from botrequests.serialize import dump

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


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
        return _EPOCH
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


async def descendants(root: dict[str, Any], max_depth: int) -> tuple[list[dict], bool]:
    """One aggregation: every follow-up below `root` to `max_depth` levels, with its depth;
    whether anything lay deeper."""
    found = await db.aggregate(
        BotRequest,
        [
            {"$match": {"_id": root["_id"]}},
            _graph("$_id", "_id", "originalRequest", max_depth),
            {"$project": {"linked": 1}},
        ],
    )
    linked = found[0].get("linked", []) if found else []
    members, truncated = [], False
    for raw in linked:
        depth = int(raw.pop("level")) + 1
        if raw["_id"] == root["_id"] or not visible(raw):
            continue  # reached again through a cycle, or another organization's
        if depth > max_depth:
            truncated = True
            continue
        members.append((depth, raw))
    return [raw | {"level": depth} for depth, raw in members], truncated


def _parse(raw: dict[str, Any]) -> BotRequest:
    return BotRequest.model_validate({k: v for k, v in raw.items() if k != "level"})


async def thread(
    request_id: PydanticObjectId,
    scope: Literal["thread", "chain"],
    paths: tuple[str, ...],
    max_depth: int,
) -> dict[str, Any]:
    """The thread (or, with `scope="chain"`, the path root → request) a request belongs
    to, each request populated and carrying its `depth`, ordered by depth, createdAt, id."""
    up = await ancestry(request_id, max_depth)
    truncated = up.truncated
    if scope == "chain":
        members = [(depth, raw) for depth, raw in enumerate(up.chain)]
    else:
        below, cut = await descendants(up.root, max_depth)
        truncated = truncated or cut
        members = [(0, up.root)] + [(raw.pop("level"), raw) for raw in below]
        members.sort(key=lambda item: (item[0], *_order(item[1])))
    docs = [_parse(raw) for _, raw in members]
    found = await populate.lookups(docs, paths) if paths else {}
    requests = [
        populate.apply(dump(doc), found) | {"depth": depth}
        for (depth, _), doc in zip(members, docs, strict=True)
    ]
    return {
        "root": str(up.root["_id"]),
        "scope": scope,
        "requests": requests,
        "truncated": truncated,
        "cycle": up.cycle,
    }


# --- repair -----------------------------------------------------------------------------


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
            batch_size=batch,
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
        await query.update(Pull({"relatedRequests": {"$in": removed + duplicated}}))
    if added or duplicated:
        await query.update(AddToSet({"relatedRequests": {"$each": added + duplicated}}))
    return Repair(
        str(holder["_id"]),
        [str(i) for i in added],
        [str(i) for i in removed],
        [str(i) for i in duplicated],
    )
