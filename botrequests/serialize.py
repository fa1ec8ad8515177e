"""One serializer: any stored document (or projection of one) to Mongoose-style JSON.

Mongoose's `toJSON` with the `id` virtual: `_id` becomes `id` (last key), ObjectIds are
lower-case hex strings, dates ISO-8601 UTC with milliseconds and `Z`, `__v` and unknown
fields are not served, and a field the document does not hold (or holds as `null`) is left
out. Only the keys stored in the document (`model_fields_set`) are served: nothing is
invented from defaults.
"""

from datetime import UTC, datetime
from typing import Any

from bson import ObjectId
from pydantic import BaseModel


def iso(value: datetime) -> str:
    """`2023-06-28T05:38:00.418Z`: UTC, millisecond precision (BSON dates hold no more)."""
    if value.tzinfo is not None:
        value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def plain(value: Any) -> Any:
    """Convert a stored value to JSON-ready Python: ObjectIds and dates to strings."""
    if isinstance(value, BaseModel):
        return dump(value)
    if isinstance(value, ObjectId):
        return str(value)
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


# Fields of Beanie's own that never reach a client.
_INTERNAL = frozenset({"id", "revision_id"})


def dump(model: BaseModel) -> dict[str, Any]:
    """The served JSON object for one document, embedded document or projection."""
    stored = model.model_fields_set
    out: dict[str, Any] = {}
    for name in type(model).model_fields:
        if name in _INTERNAL or name not in stored:
            continue
        value = getattr(model, name)
        if value is None:
            continue
        out[name] = plain(value)
    identifier = getattr(model, "id", None)
    if identifier is not None:
        out["id"] = str(identifier)
    return out


def dump_bot(model: BaseModel) -> dict[str, Any]:
    """A bot: like `dump`, with each input's `bot` served as `{"id": ...}` (as Mongoose
    serves an unpopulated self-reference inside a populated bot)."""
    out = dump(model)
    for item in out.get("inputs", ()):
        if isinstance(item.get("bot"), str):
            item["bot"] = {"id": item["bot"]}
    return out
