"""Service functions for bot requests: record the outcome later, filtered pages."""

import hashlib
import math
from datetime import datetime
from typing import Any

from beanie.operators import Inc, Set, Unset
from bson import ObjectId

from botrequests import cursors, feedback, populate, search
from botrequests.auth import scoped
from botrequests.cursors import NEWEST_FIRST, after
from botrequests.documents import VERSION_BUMP, BotRequest, reader
from botrequests.errors import InvalidInput
from botrequests.records import update_returning
from botrequests.schemas import BotRequestFilters, BotRequestUpdate
from botrequests.storage import db
from botrequests.timeutil import later_than


def _references_missing(found: dict[str, dict], doc: BotRequest) -> None:
    """422 naming the first body reference whose record does not exist."""
    for path in found:
        value = getattr(doc, path)
        if value is None:
            continue
        records = found.get(path, {})
        if isinstance(value, list):
            for index, item in enumerate(value):
                if str(item) not in records:
                    raise InvalidInput(["body", path, index], f"file {item} does not exist")
        elif str(value) not in records:
            raise InvalidInput(["body", path], f"{_LABELS[path]} {value} does not exist")


_LABELS = {"bot": "bot", "createdBy": "user", "organization": "organization", "invoice": "invoice"}


# PATCH fields that `null` removes from the stored request.
_CLEARABLE = ("invoice", "usage", "metadata", "tags")


async def update(doc: BotRequest, body: BotRequestUpdate) -> BotRequest:
    """Record the outcome later. An empty body changes nothing (and keeps `updatedAt`)."""
    changes = body.model_dump(exclude_unset=True)
    if not changes:
        return doc
    for required in ("success", "response", "images"):
        if required in changes and changes[required] is None:
            raise InvalidInput(["body", required], "may not be null")
    probe = BotRequest.model_construct(images=body.images, invoice=body.invoice)
    found = await populate.lookups([probe], [p for p in ("images", "invoice") if p in changes])
    _references_missing(found, probe)
    updates = {key: value for key, value in changes.items() if value is not None}
    updates["updatedAt"] = later_than(doc.updatedAt)
    operations: list[Any] = [Set(updates)]
    cleared = {name: 1 for name in _CLEARABLE if name in changes and changes[name] is None}
    if cleared:
        operations.append(Unset(cleared))
    if "images" in updates:
        operations.append(Inc(VERSION_BUMP))
    return await update_returning(BotRequest, doc.id, operations)


# --- pages ------------------------------------------------------------------------------

_FILTER_FIELDS = (
    "bot",
    "createdBy",
    "organization",
    "invoice",
    "originalRequest",
    "success",
    "sessionKey",
    "isAggregation",
)


def filter_query(filters: BotRequestFilters) -> dict[str, Any]:
    """The MongoDB filter for validated query parameters: every value is a typed scalar
    (ObjectId, bool, str, datetime), so nothing a client sends can become an operator."""
    query: dict[str, Any] = {}
    for name in _FILTER_FIELDS:
        value = getattr(filters, name)
        if value is not None:
            query[name] = value
    created: dict[str, datetime] = {}
    if filters.from_ is not None:
        created["$gte"] = filters.from_
    if filters.to is not None:
        created["$lt"] = filters.to
    if created:
        query["createdAt"] = created
    if filters.tag:
        query["tags"] = {"$all": sorted(set(filters.tag))}
    if filters.model is not None:
        query["usage.model"] = filters.model
    latency = {
        op: value
        for op, value in (("$gte", filters.minLatencyMs), ("$lte", filters.maxLatencyMs))
        if value is not None
    }
    if latency:
        query["usage.latencyMs"] = latency
    for key, text in (filters.metadata or {}).items():
        query[f"metadata.{key}"] = {"$in": _as_stored(text)}
    return scoped(BotRequest, query)


def _as_stored(text: str) -> list[Any]:
    """A metadata value from a query string as every type it may be stored as: the text,
    and the number or boolean it spells (`metadata.tier=2` finds 2 and "2")."""
    values: list[Any] = [text]
    if text in ("true", "false"):
        values.append(text == "true")
    else:
        try:
            number = float(text)
        except ValueError:
            return values
        if math.isfinite(number):
            values.append(int(number) if number.is_integer() and abs(number) < 2**53 else number)
    return values


def _fingerprint(query: dict[str, Any]) -> str:
    return hashlib.sha256(repr(sorted(query.items())).encode()).hexdigest()[:12]


def encode_cursor(doc: BotRequest, query: dict[str, Any]) -> str:
    created = cursors.to_ms(doc.createdAt or cursors.EPOCH)
    return cursors.encode({"t": created, "i": str(doc.id), "q": _fingerprint(query)})


def decode_cursor(cursor: str, query: dict[str, Any]) -> tuple[datetime, ObjectId]:
    moment, last_id, fingerprint = cursors.decode(
        cursor, lambda data: (cursors.from_ms(data["t"]), ObjectId(str(data["i"])), data["q"])
    )
    if fingerprint != _fingerprint(query):
        raise InvalidInput(["query", "cursor"], "this cursor belongs to a different query")
    return moment, last_id


async def page(
    filters: BotRequestFilters,
    limit: int,
    cursor: str | None,
    paths: tuple[str, ...],
    with_feedback: bool = False,
) -> dict[str, Any]:
    """A newest-first page, keyset-paginated on (createdAt, _id): inserts made while a
    client pages through land before its cursor, so every request is visited once."""
    query = filter_query(filters)
    wanted = filters.words
    # A search's words are part of what a cursor was made for.
    keyed = {**query, "$search": wanted} if wanted else query
    find = after(query, *decode_cursor(cursor, keyed)) if cursor else query
    if wanted:
        rows = await search.matching(find, wanted, limit + 1)
    else:
        # The whole page in one reply (limit + 1 documents): no getMore. Raw documents,
        # validated by the read twin (no Beanie query builder or document per row).
        rows = await db.find_raw(
            BotRequest, find, {}, batch_size=limit + 1, sort=NEWEST_FIRST, limit=limit + 1,
            timed=True,
        )  # fmt: skip
    read = reader(BotRequest).model_validate
    docs = [read(row) for row in rows]
    more = len(docs) > limit
    docs = docs[:limit]
    items = await populate.populate(docs, paths)
    following = encode_cursor(docs[-1], keyed) if more else None
    answer: dict[str, Any] = {"items": items, "next": following}
    if wanted:
        # Beside the records, never among their keys: the words matched (folded), for
        # highlighting.
        answer["search"] = {"words": wanted}
    if with_feedback:
        scores = await feedback.summaries([doc.id for doc in docs])
        answer["feedback"] = {str(key): value for key, value in scores.items()}
    return answer
