"""Population: expand a page of bot requests' references, as Mongoose's `populate` does.

One `$in` query per referenced collection for the whole page, run concurrently, so the
number of round trips does not grow with the page (at most 5 on top of the page's own).
A reference whose target is gone stays its id string.
"""

from collections.abc import Iterable, Sequence
from typing import Any

from beanie import Document, PydanticObjectId
from pydantic import BaseModel, ConfigDict, Field

from botrequests.auth import scoped
from botrequests.documents import (
    Bot,
    BotInput,
    BotRequest,
    File,
    Invoice,
    Organization,
    StoredOrder,
    User,
    reader,
)
from botrequests.errors import InvalidInput
from botrequests.serialize import dump, dump_bot
from botrequests.storage import db


class Projection(StoredOrder):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)
    id: PydanticObjectId = Field(alias="_id")


class BotSummary(Projection):
    """`bot` populated: `{creditCost, inputs, name, slug, id}` (the seed's selection)."""

    ARRAYS_LAST = ("inputs",)

    creditCost: int | None = None
    inputs: list[BotInput] | None = None
    name: str | None = None
    slug: str | None = None


class NameOnly(Projection):
    """`createdBy` / `organization` populated: `{name, id}` (never a user's email)."""

    name: str | None = None


PATHS: tuple[str, ...] = ("bot", "createdBy", "organization", "images", "invoice")

# path -> (document class, projection model or None for the whole record, dumper)
_SOURCES: dict[str, tuple[type[Document], type[BaseModel] | None, Any]] = {
    "bot": (Bot, BotSummary, dump_bot),
    "createdBy": (User, NameOnly, dump),
    "organization": (Organization, NameOnly, dump),
    "images": (File, None, dump),
    "invoice": (Invoice, None, dump),
}


def parse_paths(raw: str | None) -> tuple[str, ...]:
    """`?populate=`: absent → every path; empty or `none` → none; else a comma list."""
    if raw is None:
        return PATHS
    raw = raw.strip()
    if raw in ("", "none"):
        return ()
    wanted = tuple(dict.fromkeys(part.strip() for part in raw.split(",") if part.strip()))
    unknown = [path for path in wanted if path not in PATHS]
    if unknown:
        raise InvalidInput(
            ["query", "populate"],
            f"unknown path {unknown[0]!r}; choose from {', '.join(PATHS)} or 'none'",
        )
    return wanted


def ref_ids(docs: Iterable[BotRequest], path: str) -> list[PydanticObjectId]:
    """The distinct ids a page's requests name under `path` (a reference or a list)."""
    found: dict[PydanticObjectId, None] = {}
    for doc in docs:
        value = getattr(doc, path)
        if isinstance(value, list):
            found.update(dict.fromkeys(value))
        elif value is not None:
            found[value] = None
    return list(found)


def _projection(model: type[BaseModel] | None) -> dict[str, int] | None:
    """The stored fields a projection model reads (`_id` included), for the raw find."""
    if model is None:
        return None
    return {(info.alias or name): 1 for name, info in model.model_fields.items()}


_PROJECTIONS = {path: _projection(projection) for path, (_, projection, _) in _SOURCES.items()}


async def lookups(docs: Sequence[BotRequest], paths: Sequence[str]) -> dict[str, dict]:
    """The referenced records of a page, per path, keyed by id string: one `$in` find per
    path, all at once (`db.find_each`), each row validated, then served."""
    wanted = [(p, ref_ids(docs, p)) for p in paths if p in _SOURCES]
    wanted = [(path, ids) for path, ids in wanted if ids]
    found: dict[str, dict] = {path: {} for path in paths if path in _SOURCES}
    if not wanted:
        return found
    jobs = [
        (_SOURCES[path][0], scoped(_SOURCES[path][0], {"_id": {"$in": ids}}), _PROJECTIONS[path])
        for path, ids in wanted
    ]
    for (path, _), rows in zip(wanted, await db.find_each(jobs), strict=True):
        model, projection, dumper = _SOURCES[path]
        validate = (projection or reader(model)).model_validate
        found[path] = {str(row["_id"]): dumper(validate(row)) for row in rows}
    return found


def apply(served: dict[str, Any], found: dict[str, dict]) -> dict[str, Any]:
    """Replace the id strings of one served request with the records found for them."""
    for path, records in found.items():
        value = served.get(path)
        if isinstance(value, list):
            served[path] = [records.get(item, item) for item in value]
        elif value is not None:
            served[path] = records.get(value, value)
    return served


async def populate(docs: Sequence[BotRequest], paths: Sequence[str]) -> list[dict[str, Any]]:
    """Serve a page of bot requests with `paths` expanded."""
    found = await lookups(docs, paths) if paths else {}
    return [apply(dump(doc), found) for doc in docs]


def bot_summary(bot: Bot) -> dict[str, Any]:
    """A whole bot served as population serves it (`{creditCost, inputs, name, slug, id}`)."""
    stored = bot.model_dump(by_alias=True, exclude_unset=True)
    return dump_bot(BotSummary.model_validate(stored))
