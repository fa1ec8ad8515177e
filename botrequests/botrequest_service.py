"""Service functions for bot requests: record, read populated, record the outcome, list."""

import base64
import binascii
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
from botrequests.schemas import BotRequestCreate, BotRequestUpdate
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


def encode_cursor(doc: BotRequest) -> str:
    created = doc.createdAt or datetime(1970, 1, 1, tzinfo=UTC)
    raw = json.dumps({"t": int(created.timestamp() * 1000), "i": str(doc.id)})
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, ObjectId]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        data = json.loads(raw)
        moment = datetime.fromtimestamp(int(data["t"]) / 1000, tz=UTC)
        return moment, ObjectId(str(data["i"]))
    except (binascii.Error, ValueError, TypeError, KeyError, OverflowError, OSError) as exc:
        raise InvalidInput(["query", "cursor"], "malformed cursor") from exc


async def page(
    filters: dict[str, Any], limit: int, cursor: str | None, paths: tuple[str, ...]
) -> dict[str, Any]:
    """A newest-first page, keyset-paginated on (createdAt, _id): inserts made while a
    client pages through land before its cursor, so every request is visited once."""
    query = dict(filters)
    if cursor:
        moment, last_id = decode_cursor(cursor)
        query["$or"] = [
            {"createdAt": {"$lt": moment}},
            {"createdAt": moment, "_id": {"$lt": last_id}},
        ]
    docs = (
        await BotRequest.find(query)
        .sort([("createdAt", -1), ("_id", -1)])
        .limit(limit + 1)
        .to_list()
    )
    more = len(docs) > limit
    docs = docs[:limit]
    items = await populate.populate(docs, paths)
    return {"items": items, "next": encode_cursor(docs[-1]) if more else None}
