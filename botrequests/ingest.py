"""Recording a bot request (`create`), and the steps a batch shares (`batch.py`).

Both check every reference of every item with one query per referenced collection, check
and normalise `inputs` against the bot's definitions, render the bot's `promptTemplate`
when no `prompt` is given, store the bot's `creditCost` as `credits`, insert, and then
attach follow-ups to their originals.

Write order for a follow-up: the new request is inserted first (its `originalRequest` is
the source of truth, and thread lookups follow it), then its id is `$addToSet` into the
original's `relatedRequests`. A crash in between leaves a request the thread lookup
already finds and a `relatedRequests` one short, which `botrequests repair-threads`
rebuilds; the other order could leave `relatedRequests` naming a request never written.
"""

import asyncio
import ipaddress
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from beanie import PydanticObjectId
from pymongo.errors import DuplicateKeyError

from botrequests import erasure, populate, prompts
from botrequests.auth import owned, scoped
from botrequests.documents import VERSION_BUMP, Bot, BotRequest, File
from botrequests.errors import Conflict, InvalidInput
from botrequests.records import missing_ids
from botrequests.schemas import BotRequestCreate
from botrequests.serialize import dump
from botrequests.storage import db
from botrequests.timeutil import now

_LABELS = {
    "bot": "bot",
    "createdBy": "user",
    "organization": "organization",
    "invoice": "invoice",
    "images": "file",
}


@dataclass
class Item:
    """One request being recorded: its document, or why it cannot be."""

    doc: BotRequest | None
    errors: list[dict[str, Any]] = field(default_factory=list)


def build(body: BotRequestCreate, client_ip: str | None, loc: list) -> Item:
    fields = owned(body.model_dump(exclude_unset=True))
    if "ip" not in fields:
        if not client_ip:
            return Item(None, [item_error([*loc, "ip"], "no ip given and no client address")])
        # The client's address passes the body's rule too, whatever its source (a proxy's
        # X-Forwarded-For, trusted only from FORWARDED_ALLOW_IPS).
        address = client_address(client_ip)
        if address is None:
            shown = client_ip[:60]
            why = f"no ip given, and the client address {shown!r} is not an IP address"
            return Item(None, [item_error([*loc, "ip"], why)])
        fields["ip"] = address
    moment = now()
    # The body was validated field by field already: construct, don't validate again.
    doc = BotRequest.model_construct(
        id=PydanticObjectId(),
        images=fields.pop("images", []),
        success=fields.pop("success"),
        relatedRequests=[],
        **fields,
        createdAt=moment,
        updatedAt=moment,
        __v=0,
    )
    return Item(doc)


def client_address(text: str) -> str | None:
    """The client's address in the form the body's `ip` is stored, or None if it is not
    an IP address."""
    if len(text) > 64:
        return None
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


def item_error(loc: list, msg: str) -> dict[str, Any]:
    return {"loc": loc, "msg": msg, "type": "value_error"}


async def check(items: list[Item], locs: list[list]) -> dict[str, dict]:
    """Check every item's references, inputs and prompt; one query per referenced
    collection for all items together. Returns the populated records found, so that the
    answer to a single POST is built without reading them again."""
    docs = [item.doc for item in items if item.doc is not None]
    paths = ("createdBy", "organization", "images", "invoice")
    bot_ids = populate.ref_ids(docs, "bot")
    found, bots, originals = await asyncio.gather(
        populate.lookups(docs, paths),
        Bot.find(scoped(Bot, {"_id": {"$in": bot_ids}}), batch_size=len(bot_ids) + 1).to_list()
        if bot_ids
        else _none(),
        missing_ids(BotRequest, populate.ref_ids(docs, "originalRequest")),
    )
    bots_by_id = {str(bot.id): bot for bot in bots}
    found["bot"] = {key: populate.bot_summary(bot) for key, bot in bots_by_id.items()}
    file_refs: list[tuple[Item, list, str]] = []
    definitions_of: dict[Any, list[dict[str, Any]] | None] = {}
    for item, loc in zip(items, locs, strict=True):
        doc = item.doc
        if doc is None:
            continue
        for path in ("bot", *paths):
            value = getattr(doc, path)
            values = value if isinstance(value, list) else [value]
            for index, ref in enumerate(values):
                if ref is not None and str(ref) not in found[path]:
                    where = [*loc, path, index] if isinstance(value, list) else [*loc, path]
                    item.errors.append(item_error(where, f"{_LABELS[path]} {ref} does not exist"))
        if doc.originalRequest in originals:
            item.errors.append(
                item_error(
                    [*loc, "originalRequest"],
                    f"bot request {doc.originalRequest} does not exist",
                )
            )
        bot = bots_by_id.get(str(doc.bot))
        if bot is None:
            continue
        if bot.id not in definitions_of:  # once per bot, not per item of a batch
            definitions_of[bot.id] = (
                [i.model_dump(exclude_unset=True) for i in bot.inputs]
                if bot.inputs is not None
                else None
            )
        definitions = definitions_of[bot.id]
        inputs, problems, files = prompts.normalise(definitions, doc.inputs, [*loc, "inputs"])
        item.errors += [p.as_detail() for p in problems]
        file_refs += [(item, [*loc, "inputs"], file_id) for file_id in files]
        if doc.inputs is not None or inputs:
            doc.inputs = inputs
        if doc.prompt is None and bot.promptTemplate and not problems:
            try:
                doc.prompt = prompts.render(bot.promptTemplate, inputs)
            except prompts.PromptTooLong as exc:
                item.errors.append(item_error([*loc, "inputs"], str(exc)))
        if bot.creditCost is not None:
            doc.credits = bot.creditCost
    if file_refs:
        missing = await missing_ids(File, list({PydanticObjectId(ref) for _, _, ref in file_refs}))
        for item, loc, ref in file_refs:
            if PydanticObjectId(ref) in missing:
                item.errors.append(item_error(loc, f"file {ref} does not exist"))
    return found


async def _none() -> list:
    return []


async def attach_followups(docs: list[Any], only_missing: bool = False) -> None:
    """One atomic `$addToSet` per original (never read-modify-write), all in one round
    trip, moving its
    `updatedAt` as Mongoose's timestamps do on any update. With `only_missing` (a retry
    of requests already stored) an original that lists them all is left untouched."""
    by_original: dict[PydanticObjectId, list[PydanticObjectId]] = defaultdict(list)
    for doc in docs:
        if doc.originalRequest is not None:
            by_original[doc.originalRequest].append(doc.id)

    def target(original: PydanticObjectId, followups: list[PydanticObjectId]) -> dict:
        if not only_missing:
            return {"_id": original}
        # `{relatedRequests: {$ne: x}}` holds when the list lacks x: any one lacking.
        return {"_id": original, "$or": [{"relatedRequests": {"$ne": f}} for f in followups]}

    moment = now()
    updates = [
        (
            target(original, followups),
            {
                "$addToSet": {"relatedRequests": {"$each": followups}},
                "$set": {"updatedAt": moment},
                "$inc": VERSION_BUMP,
            },
        )
        for original, followups in by_original.items()
    ]
    if updates:  # one round trip for every original of a batch (or an export's thread)
        await db.update_each(BotRequest, updates)


# What an answer to a write-only (`ingest`) key holds besides the fields it sent: the ids
# and times the write made. Never a record it may not read: not a populated reference,
# not the prompt or credits taken from the bot.
RECEIPT_KEYS = frozenset({"id", "createdAt", "updatedAt"})


def receipt(stored: dict[str, Any], sent: set[str]) -> dict[str, Any]:
    """The answer to an `ingest` key: of the stored request (references as ids), the
    fields its body set, and the id and times made, in stored order."""
    keep = sent | RECEIPT_KEYS
    return {key: value for key, value in stored.items() if key in keep}


async def create(
    body: BotRequestCreate, client_ip: str | None, populated: bool = True
) -> dict[str, Any]:
    """Record one interaction and return it populated (422 with every problem found);
    with `populated` false (a write-only key), its receipt."""
    item = build(body, client_ip, ["body"])
    checked_at = erasure.clock()
    found = await check([item], [["body"]]) if item.doc else {}
    if item.errors or item.doc is None:
        raise InvalidInput.many(item.errors)
    if await _insert_once(item.doc):
        # A retry of a request already recorded: finish what the first attempt may not
        # have (its attachment to the original), then say which request it is.
        stored = (await stored_with_keys([item.doc])).get(key_of(item.doc))
        if stored is None:
            raise Conflict(f"requestKey {item.doc.requestKey!r} is being recorded; try again")
        await attach_followups([stored], only_missing=True)
        raise Conflict(
            f"requestKey {item.doc.requestKey!r} was already recorded as {stored.id}",
            existing=str(stored.id),
        )
    if await erasure.landed_late(checked_at, [item.doc.createdBy]):
        await db.delete_many(BotRequest, {"_id": item.doc.id})
        raise Conflict(erasure.ERASED.format(user=item.doc.createdBy))
    await attach_followups([item.doc])
    if not populated:
        return receipt(dump(item.doc), set(body.model_fields_set) | {"ip"})
    return populate.apply(dump(item.doc), found)


async def _insert_once(doc: BotRequest) -> bool:
    """Insert; True when its `requestKey` is already stored. A duplicate of its own `_id`
    is the driver retrying an insert whose first attempt went through (the id was made
    here, so the stored request is this one): recorded once, as asked."""
    try:
        await doc.insert()
    except DuplicateKeyError as exc:
        # Without a requestKey only `_id` is unique for it (the key's index is partial).
        return not (doc.requestKey is None or duplicate_of_id(exc.details))
    return False


def duplicate_of_id(details: dict | None) -> bool:
    """Whether a duplicate-key error is on `_id` (not on the requestKey index)."""
    details = details or {}
    pattern = details.get("keyPattern") or {}
    if pattern:
        return list(pattern) == ["_id"]
    return "_id_" in str(details.get("errmsg", "")) or list(details.get("keyValue") or {}) == [
        "_id"
    ]


def key_of(doc: BotRequest) -> tuple | None:
    """A request's idempotency key: unique within its organization."""
    return None if doc.requestKey is None else (doc.organization, doc.requestKey)


async def stored_with_keys(docs: list[BotRequest]) -> dict[tuple, "Stored"]:
    """The stored requests that hold the keys of `docs` (one query), by key."""
    wanted: dict[Any, set[str]] = defaultdict(set)
    for doc in docs:
        if doc.requestKey is not None:
            wanted[doc.organization].add(doc.requestKey)
    if not wanted:
        return {}
    clauses = [
        {"organization": org, "requestKey": {"$in": sorted(keys)}} for org, keys in wanted.items()
    ]
    query = scoped(BotRequest, clauses[0] if len(clauses) == 1 else {"$or": clauses})
    most = sum(len(keys) for keys in wanted.values())
    rows = await BotRequest.find(query, batch_size=most + 1).project(Stored).to_list()
    return {(row.organization, row.requestKey): row for row in rows}


class Stored(populate.Projection):
    """What a retry needs of a stored request: its id, key and original."""

    organization: PydanticObjectId | None = None
    requestKey: str
    originalRequest: PydanticObjectId | None = None
