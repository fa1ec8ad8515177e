"""Service functions for bot requests: record, read populated, record the outcome, list."""

import base64
import binascii
import hashlib
import json
from datetime import UTC, datetime
from typing import Any

from beanie import PydanticObjectId
from beanie.operators import AddToSet, Set, Unset
from bson import ObjectId

from botrequests import populate
from botrequests.documents import BotRequest
from botrequests.errors import InvalidInput
from botrequests.records import missing_ids, update_returning
from botrequests.schemas import BotRequestCreate, BotRequestFilters, BotRequestUpdate
from botrequests.serialize import dump
from botrequests.timeutil import later_than, now


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


async def create(body: BotRequestCreate, client_ip: str | None) -> dict[str, Any]:
    """Record one interaction and return it populated.

    Write order for a follow-up: the new request is inserted first (its `originalRequest`
    is the source of truth, and thread lookups follow it), then its id is `$addToSet` into
    the original's `relatedRequests`. A crash in between leaves a request the thread lookup
    already finds and a `relatedRequests` one short, which `botrequests repair-threads`
    rebuilds; the other order could leave `relatedRequests` naming a request that was never
    written.
    """
    fields = body.model_dump(exclude_unset=True)
    if "ip" not in fields:
        if not client_ip:
            raise InvalidInput(["body", "ip"], "no ip given and the client address is unknown")
        fields["ip"] = client_ip
    moment = now()
    doc = BotRequest(
        id=PydanticObjectId(),
        images=fields.pop("images", []),
        success=fields.pop("success"),
        relatedRequests=[],
        **fields,
        createdAt=moment,
        updatedAt=moment,
        __v=0,
    )
    # The population lookups double as the existence check of every reference, so the
    # answer is built without reading them again.
    found = await populate.lookups([doc], populate.PATHS)
    _references_missing(found, doc)
    if doc.originalRequest is not None and await missing_ids(BotRequest, [doc.originalRequest]):
        raise InvalidInput(
            ["body", "originalRequest"], f"bot request {doc.originalRequest} does not exist"
        )
    bot = found["bot"][str(doc.bot)]
    if "creditCost" in bot:
        doc.credits = bot["creditCost"]
    await doc.insert()
    if doc.originalRequest is not None:
        await attach_followup(doc.originalRequest, doc.id)
    return populate.apply(dump(doc), found)


async def attach_followup(original: PydanticObjectId, followup: PydanticObjectId) -> None:
    """One atomic `$addToSet` (never read-modify-write), moving the original's `updatedAt`
    as Mongoose's timestamps do on any update."""
    await BotRequest.find_one(BotRequest.id == original).update(
        AddToSet({BotRequest.relatedRequests: followup}), Set({BotRequest.updatedAt: now()})
    )


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
    if "invoice" in changes and changes["invoice"] is None:
        operations.append(Unset({"invoice": 1}))
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
NEWEST_FIRST = [("createdAt", -1), ("_id", -1)]


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
    return query


def _fingerprint(query: dict[str, Any]) -> str:
    return hashlib.sha256(repr(sorted(query.items())).encode()).hexdigest()[:12]


def encode_cursor(doc: BotRequest, query: dict[str, Any]) -> str:
    created = doc.createdAt or datetime(1970, 1, 1, tzinfo=UTC)
    raw = json.dumps(
        {"t": int(created.timestamp() * 1000), "i": str(doc.id), "q": _fingerprint(query)}
    )
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str, query: dict[str, Any]) -> tuple[datetime, ObjectId]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        data = json.loads(raw)
        moment = datetime.fromtimestamp(int(data["t"]) / 1000, tz=UTC)
        last_id, fingerprint = ObjectId(str(data["i"])), data["q"]
    except (binascii.Error, ValueError, TypeError, KeyError, OverflowError, OSError) as exc:
        raise InvalidInput(["query", "cursor"], "malformed cursor") from exc
    if fingerprint != _fingerprint(query):
        raise InvalidInput(["query", "cursor"], "this cursor belongs to a different query")
    return moment, last_id


def after(query: dict[str, Any], moment: datetime, last_id: ObjectId) -> dict[str, Any]:
    """`query` restricted to what sorts after (createdAt, _id) in newest-first order."""
    keyset = {
        "$or": [{"createdAt": {"$lt": moment}}, {"createdAt": moment, "_id": {"$lt": last_id}}]
    }
    return {"$and": [query, keyset]} if query else keyset


async def page(
    filters: BotRequestFilters, limit: int, cursor: str | None, paths: tuple[str, ...]
) -> dict[str, Any]:
    """A newest-first page, keyset-paginated on (createdAt, _id): inserts made while a
    client pages through land before its cursor, so every request is visited once."""
    query = filter_query(filters)
    find = after(query, *decode_cursor(cursor, query)) if cursor else query
    docs = await BotRequest.find(find).sort(NEWEST_FIRST).limit(limit + 1).to_list()
    more = len(docs) > limit
    docs = docs[:limit]
    items = await populate.populate(docs, paths)
    return {"items": items, "next": encode_cursor(docs[-1], query) if more else None}
