"""Recording a batch of bot requests: per item its id or its errors, one bad item never
stopping the others. Validation, reference checks and follow-up attachment are those of
a single request (`ingest.py`), done once for the whole batch: one query per referenced
collection, one unordered `insert_many`, one `$addToSet` per original.
"""

import asyncio
from datetime import datetime
from typing import Any

from pydantic import ValidationError
from pymongo.errors import BulkWriteError

from botrequests import erasure
from botrequests.documents import BotRequest
from botrequests.ingest import (
    Item,
    Stored,
    attach_followups,
    build,
    check,
    duplicate_of_id,
    item_error,
    key_of,
    stored_with_keys,
)
from botrequests.schemas import BotRequestCreate
from botrequests.storage import db


async def create_batch(
    bodies: list[Any],
    client_ip: str | None,
    created_at: list[datetime] | None = None,
    follows: dict[int, int] | None = None,
) -> dict[str, Any]:
    """Record many interactions: per item its id or its errors; one bad item does not stop
    the others. Items with a `requestKey` already stored answer that request's id
    (`"status": "existing"`), so a retried batch writes each item once.

    For spans (otlp/receiver.py): `created_at` gives each item's time, and `follows` makes
    item i a follow-up of an earlier item j of the same batch (`{i: j}`)."""
    items: list[Item] = []
    for index, raw in enumerate(bodies):
        try:
            body = BotRequestCreate.model_validate(raw)
        except ValidationError as exc:
            errors = [
                item_error([index, *error["loc"]], error["msg"])
                for error in exc.errors(include_url=False)
            ]
            items.append(Item(None, errors))
            continue
        item = build(body, client_ip, [index])
        if created_at is not None and item.doc is not None:
            item.doc.createdAt = created_at[index]
        items.append(item)
    keyed = [item.doc for item in items if item.doc and item.doc.requestKey]
    existing = await stored_with_keys(keyed)
    seen_keys: set[tuple] = set()
    for index, item in enumerate(items):
        key = key_of(item.doc) if item.doc else None
        if key is not None and key in seen_keys and key not in existing:
            item.errors.append(item_error([index, "requestKey"], "requestKey repeated in batch"))
        if key is not None:
            seen_keys.add(key)
    fresh = [
        (index, item)
        for index, item in enumerate(items)
        if item.doc is not None and not item.errors and key_of(item.doc) not in existing
    ]
    checked_at = erasure.clock()
    await check([item for _, item in fresh], [[index] for index, _ in fresh])
    if follows:
        _follow_in_batch(items, follows, existing)
    to_insert = [(index, item) for index, item in fresh if not item.errors]
    raced = await _insert_many(to_insert)
    await _undo_erased(to_insert, checked_at)
    if raced:
        existing |= await stored_with_keys(raced)
        if follows:
            await _refollow_raced(items, raced, existing)
    written = [item.doc for _, item in to_insert if not item.errors and item.doc]
    # Items answered "existing" are finished exactly as created ones: a first attempt
    # that stored them but died (or timed out) before attaching them gets that done now.
    await asyncio.gather(
        attach_followups(written), attach_followups(list(existing.values()), only_missing=True)
    )
    return _batch_answer(items, existing)


def _follow_in_batch(items: list[Item], follows: dict[int, int], existing: dict) -> None:
    """Item i follows item j (an earlier one of the batch): j's stored id when j was
    recorded before (a retry), j's new id when j is written now, else (j refused) whatever
    j itself follows. Set after the references are checked: j is not stored yet."""
    for index in sorted(follows):
        doc, target = items[index].doc, items[follows[index]]
        if doc is None or target.doc is None:
            continue
        key = key_of(target.doc)
        if key is not None and key in existing:
            doc.originalRequest = existing[key].id
        elif not target.errors:
            doc.originalRequest = target.doc.id
        else:
            doc.originalRequest = target.doc.originalRequest


async def _refollow_raced(items: list[Item], raced: list[BotRequest], existing: dict) -> None:
    """Follow-ups written naming an item that a concurrent retry stored first (its new id
    was never written): they now name the stored one (one write for all)."""
    moved = {doc.id: existing[key_of(doc)].id for doc in raced if key_of(doc) in existing}
    followers = [
        item.doc
        for item in items
        if item.doc is not None and not item.errors and item.doc.originalRequest in moved
    ]
    for doc in followers:
        doc.originalRequest = moved[doc.originalRequest]
    if followers:
        await db.update_each(
            BotRequest,
            [({"_id": d.id}, {"$set": {"originalRequest": d.originalRequest}}) for d in followers],
        )


async def _insert_many(items: list[tuple[int, Item]]) -> list[BotRequest]:
    """One unordered `insert_many`; an item whose `requestKey` was written meanwhile (a
    concurrent retry) is a duplicate-key error for that item alone. Returns those."""
    if not items:
        return []
    # pydantic's own (compiled) dump of each document rather than Beanie's Python encoder:
    # the same stored document (same keys, order and BSON types; tests/test_batch.py
    # compares them) at half the cost, which is most of a batch's time per item.
    stored = [
        item.doc.model_dump(by_alias=True, exclude_none=True) for _, item in items if item.doc
    ]
    try:
        await db.insert_raw(BotRequest, stored)
    except BulkWriteError as exc:
        raced = []
        for error in exc.details.get("writeErrors", []):
            index, item = items[error["index"]]
            if error.get("code") == 11000 and duplicate_of_id(error):
                # The driver retried the insert after its first attempt went through:
                # this item is stored (its id was made here).
                continue
            if error.get("code") == 11000 and item.doc and item.doc.requestKey:
                raced.append(item.doc)
                # Answered "existing" when the key is this organization's (a racing
                # retry); otherwise this error stands.
                item.errors.append(
                    {"loc": [index, "requestKey"], "msg": "requestKey already used", "type": "dup"}
                )
            else:
                item.errors.append(item_error([index], error.get("errmsg", "write failed")))
        return raced
    return []


async def _undo_erased(items: list[tuple[int, Item]], checked_at: float) -> None:
    """Items naming a user erased while the batch was written (erasure.py, step 4): what
    they wrote is deleted and each answers why."""
    written = [(index, item) for index, item in items if item.doc and not item.errors]
    gone = await erasure.landed_late(checked_at, [item.doc.createdBy for _, item in written])
    if not gone:
        return
    undone = [(index, item) for index, item in written if item.doc.createdBy in gone]
    await db.delete_many(BotRequest, {"_id": {"$in": [item.doc.id for _, item in undone]}})
    for index, item in undone:
        reason = erasure.ERASED.format(user=item.doc.createdBy)
        item.errors.append(item_error([index, "createdBy"], reason))


def _batch_answer(items: list[Item], existing: dict[tuple, "Stored"]) -> dict[str, Any]:
    out, counts = [], {"created": 0, "existing": 0, "failed": 0}
    for index, item in enumerate(items):
        key = key_of(item.doc) if item.doc else None
        if (
            key is not None
            and key in existing
            and (not item.errors or item.errors[0].get("type") == "dup")
        ):
            out.append({"index": index, "status": "existing", "id": str(existing[key].id)})
            counts["existing"] += 1
        elif item.errors or item.doc is None:
            errors = [
                {"index": index, "field": _field(e["loc"]), "reason": e["msg"]} for e in item.errors
            ]
            out.append({"index": index, "status": "error", "errors": errors})
            counts["failed"] += 1
        else:
            out.append({"index": index, "status": "created", "id": str(item.doc.id)})
            counts["created"] += 1
    return {"items": out, **counts}


def _field(loc: list) -> str:
    """`[3, "images", 1]` → `images.1` (the item index is given on its own)."""
    return ".".join(str(part) for part in loc[1:])
