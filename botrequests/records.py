"""Service functions for organizations, users, files, invoices and bots."""

import re
from typing import Any, TypeVar

from beanie import Document, PydanticObjectId, UpdateResponse
from beanie.operators import Inc, Set, Unset
from bson import ObjectId
from pydantic import BaseModel, Field, TypeAdapter, ValidationError

from botrequests import erasure, prompts
from botrequests.auth import may_change, owned, scoped
from botrequests.documents import VERSION_BUMP, Bot, File, Invoice, Organization, User
from botrequests.errors import Conflict, InvalidInput, not_found
from botrequests.schemas import (
    BotCreate,
    BotInputCreate,
    BotUpdate,
    FileCreate,
    InvoiceCreate,
    OrganizationCreate,
    OrganizationUpdate,
    SafeObject,
    UserCreate,
)
from botrequests.storage import db
from botrequests.timeutil import later_than, now

SafeInputs = TypeAdapter(SafeObject)

LABELS: dict[type[Document], str] = {
    Organization: "organization",
    User: "user",
    Bot: "bot",
    File: "file",
    Invoice: "invoice",
}


T = TypeVar("T", bound=Document)


class _IdOnly(BaseModel):
    id: PydanticObjectId = Field(alias="_id")


async def get_or_404(model: type[T], identifier: PydanticObjectId) -> T:
    """The record, or 404 — also when it belongs to another organization (never 403,
    which would confirm it exists)."""
    found = await model.find_one(scoped(model, {"_id": identifier}))
    if found is None:
        raise not_found(LABELS.get(model, "record"), identifier)
    return found


async def missing_ids(model: type[Document], ids: list[PydanticObjectId]) -> set[PydanticObjectId]:
    """Which of `ids` name no record (one query, whatever the count)."""
    if not ids:
        return set()
    query = scoped(model, {"_id": {"$in": ids}})
    rows = await model.find(query, batch_size=len(ids) + 1).project(_IdOnly).to_list()
    return set(ids) - {row.id for row in rows}


async def require(model: type[Document], identifier: PydanticObjectId | None, loc: str) -> None:
    """422 naming the body field when a reference points at nothing."""
    if identifier is not None and await missing_ids(model, [identifier]):
        raise InvalidInput(["body", loc], f"{LABELS[model]} {identifier} does not exist")


def stamped(fields: dict[str, Any]) -> dict[str, Any]:
    """A new record's fields as Mongoose writes them: `_id` first, timestamps, `__v: 0`."""
    moment = now()
    return {
        "id": fields.pop("id", None) or PydanticObjectId(),
        **fields,
        "createdAt": moment,
        "updatedAt": moment,
        "__v": 0,
    }


async def create_organization(body: OrganizationCreate) -> Organization:
    # Admin only (routes): a tenant key cannot create organizations.
    return await Organization(**stamped(body.model_dump(exclude_none=True))).insert()


async def update_organization(org: Organization, body: OrganizationUpdate) -> Organization:
    """Admin only (routes): rename, or set / clear `retentionDays`."""
    changes = body.model_dump(exclude_unset=True)
    if not changes:
        return org
    if "name" in changes and changes["name"] is None:
        raise InvalidInput(["body", "name"], "may not be null")
    updates = {key: value for key, value in changes.items() if value is not None}
    updates["updatedAt"] = later_than(org.updatedAt)
    operations: list[Any] = [Set(updates)]
    if "retentionDays" in changes and changes["retentionDays"] is None:
        operations.append(Unset({"retentionDays": 1}))
    return await update_returning(Organization, org.id, operations)


async def create_user(body: UserCreate) -> User:
    fields = owned(body.model_dump(exclude_unset=True))
    await require(Organization, fields.get("organization"), "organization")
    return await User(**stamped(fields)).insert()


async def create_file(body: FileCreate) -> File:
    fields = owned(body.model_dump(exclude_unset=True))
    checked_at = erasure.clock()
    await require(User, body.createdBy, "createdBy")
    await require(Organization, fields.get("organization"), "organization")
    record = await File(**stamped(fields)).insert()
    if await erasure.landed_late(checked_at, [body.createdBy]):  # erasure.py, step 4
        await db.delete_many(File, {"_id": record.id})
        raise Conflict(erasure.ERASED.format(user=body.createdBy))
    return record


async def create_invoice(body: InvoiceCreate) -> Invoice:
    fields = owned(body.model_dump(exclude_unset=True))
    await require(Organization, fields["organization"], "organization")
    return await Invoice(**stamped(fields)).insert()


def _stored_inputs(
    bot_id: ObjectId, inputs: list[BotInputCreate], previous: list | None = None
) -> list[dict[str, Any]]:
    """Input definitions as Mongoose embeds them: each with its own `_id` and its `bot`.
    An input keeps its `_id` across a PATCH when its name is unchanged."""
    kept = {item.name: item.id for item in previous or [] if item.id is not None}
    stored = []
    for item in inputs:
        fields = item.model_dump(exclude_unset=True)
        stored.append({"_id": kept.get(item.name) or ObjectId(), **_input_order(fields, bot_id)})
    return stored


def _input_order(fields: dict[str, Any], bot_id: ObjectId) -> dict[str, Any]:
    # Mongoose's order for an input definition: `bot` sits after `step`.
    order = ("inputGroup", "inputType", "step", "bot", "label", "name", "defaultValue")
    rest = ("placeholder", "required", "options")
    merged = {**fields, "bot": bot_id}
    return {key: merged[key] for key in (*order, *rest) if key in merged}


def _check_bot(inputs: list[dict[str, Any]], template: str | None) -> None:
    problems = prompts.check_definitions(inputs, template)
    if problems:
        raise InvalidInput.many([p.as_detail() for p in problems])


def bot_cursor(bot: Bot) -> str:
    # A slug is unique within an organization only (a tenant also sees the shared bots),
    # so the cursor is the last (slug, id).
    return f"{bot.slug}.{bot.id}"


def containing(text: str, fields: tuple[str, ...]) -> dict[str, Any]:
    """Any of `fields` contains `text`, case-insensitively. The text is escaped, so it is
    matched as it is (no pattern from a client ever reaches the regex engine)."""
    pattern = {"$regex": re.escape(text), "$options": "i"}
    return {"$or": [{field: pattern} for field in fields]}


async def list_bots(
    limit: int, after: str | None, text: str | None = None
) -> tuple[list[Bot], bool]:
    """A page of bots by slug, then id (`after`: a `bot_cursor`), those whose name or slug
    contains `text` if given; whether more."""
    parts: list[dict[str, Any]] = [containing(text, ("name", "slug"))] if text else []
    if after:
        slug, last_id = after.rsplit(".", 1)
        parts.append(
            {"$or": [{"slug": {"$gt": slug}}, {"slug": slug, "_id": {"$gt": ObjectId(last_id)}}]}
        )
    query: dict[str, Any] = {"$and": parts} if parts else {}
    found = Bot.find(scoped(Bot, query), batch_size=limit + 1).sort([("slug", 1), ("_id", 1)])
    bots = await found.limit(limit + 1).to_list()
    return bots[:limit], len(bots) > limit


async def create_bot(body: BotCreate) -> Bot:
    _check_bot([i.model_dump() for i in body.inputs], body.promptTemplate)
    fields = owned(body.model_dump(exclude_unset=True, exclude={"inputs"}))
    await require(Organization, fields.get("organization"), "organization")
    bot_id = PydanticObjectId()
    fields["creditCost"] = body.creditCost
    fields["inputs"] = _stored_inputs(bot_id, body.inputs)
    return await Bot(**stamped({"id": bot_id, **fields})).insert()


async def update_bot(bot: Bot, body: BotUpdate) -> Bot:
    changes = body.model_dump(exclude_unset=True)
    may_change(bot.organization, changes, "bot")
    if not changes:
        return bot
    for required in ("name", "slug", "creditCost", "inputs"):
        if required in changes and changes[required] is None:
            raise InvalidInput(["body", required], "may not be null")
    if "inputs" in changes or changes.get("promptTemplate") is not None:
        inputs = (
            [i.model_dump() for i in body.inputs or []]
            if "inputs" in changes
            else [i.model_dump() for i in bot.inputs or [] if i.name and i.inputType]
        )
        template = changes.get("promptTemplate", bot.promptTemplate)
        if "inputs" in changes or template is not None:
            _check_bot(inputs, template)
    await require(Organization, changes.get("organization"), "organization")
    cleared = {key: 1 for key, value in changes.items() if value is None}
    updates = {key: value for key, value in changes.items() if value is not None}
    if "inputs" in updates:
        updates["inputs"] = _stored_inputs(bot.id, body.inputs or [], bot.inputs)
    updates["updatedAt"] = later_than(bot.updatedAt)
    operations: list[Any] = [Set(updates)]
    if cleared:
        operations.append(Unset(cleared))
    if "inputs" in updates:
        operations.append(Inc(VERSION_BUMP))
    return await update_returning(Bot, bot.id, operations)


async def update_returning(
    model: type[T], identifier: PydanticObjectId, operations: list[Any]
) -> T:
    """Apply `$set` / `$unset` / `$addToSet` operations and read the result back in the
    same round trip (findAndModify): never a whole-document replace."""
    updated = await model.find_one(model.id == identifier).update(
        *operations, response_type=UpdateResponse.NEW_DOCUMENT
    )
    if updated is None:
        raise not_found(LABELS.get(model, "record"), identifier)
    return updated


async def prompt_preview(bot: Bot, raw_inputs: str) -> dict[str, Any]:
    """Validate inputs as POST /bot-requests would and render the bot's template."""
    loc: list[str | int] = ["query", "inputs"]
    try:
        given = SafeInputs.validate_json(raw_inputs)
    except ValidationError as exc:
        reason = exc.errors()[0]["msg"]
        raise InvalidInput(loc, f"must be a JSON object of input values: {reason}") from None
    definitions = (
        [i.model_dump(exclude_unset=True) for i in bot.inputs] if bot.inputs is not None else None
    )
    inputs, problems, files = prompts.normalise(definitions, given, loc)
    details = [p.as_detail() for p in problems]
    missing = await missing_ids(File, list({PydanticObjectId(f) for f in files}))
    details += [
        {"loc": loc, "msg": f"file {f} does not exist", "type": "value_error"}
        for f in files
        if PydanticObjectId(f) in missing
    ]
    if details:
        raise InvalidInput.many(details)
    try:
        prompt = prompts.render(bot.promptTemplate, inputs) if bot.promptTemplate else None
    except prompts.PromptTooLong as exc:
        raise InvalidInput(loc, str(exc)) from None
    return {"prompt": prompt, "inputs": inputs}


async def find_users(text: str | None, limit: int) -> list[User]:
    """Users whose name contains `text` (all when empty), by name; this tenant's only."""
    query = containing(text, ("name",)) if text else {}
    found = User.find(scoped(User, query), batch_size=limit).sort([("name", 1), ("_id", 1)])
    return await found.limit(limit).to_list()
