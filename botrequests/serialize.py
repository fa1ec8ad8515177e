"""One serializer: any stored document (or projection of one) to Mongoose-style JSON.

What the real Mongoose's `toJSON` gives (the `id` virtual, no `__v`, no `_id`; checked
against Mongoose 8 and 9 in tests/test_mongoose_peer.py):
- keys in stored order, fields outside the schema (`userAgent`) included in their place;
  a field the service `$set` later comes last, as it does for Mongoose;
- a stored `null` is served as `null`; a field the document does not hold is left out,
  except the schema's arrays, which Mongoose hydrates as `[]` (`StoredOrder.ARRAYS_*`);
- empty objects are left out ("minimize"), at the top level and nested in objects, but
  kept inside arrays;
- ObjectIds lower-case hex strings, dates ISO-8601 UTC with milliseconds and `Z`; `id`
  last.
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


# Keys never served: Beanie's own fields, and the stored `_id` (served as `id`) and `__v`.
_INTERNAL = frozenset({"id", "revision_id", "_id", "__v"})


def _minimize(value: Any) -> Any:
    """Mongoose's minimize: drop keys whose value is an empty object, after minimizing
    it (recursively through objects, not into arrays). None when nothing is left."""
    out = {}
    for key, item in value.items():
        if isinstance(item, dict):
            item = _minimize(item)
            if item is None:
                continue
        out[key] = item
    return out or None


def dump(model: BaseModel) -> dict[str, Any]:
    """The served JSON object for one document, embedded document or projection."""
    fields = type(model).model_fields
    by_key = {(info.alias or name): name for name, info in fields.items()}
    extra = model.model_extra or {}
    stored = getattr(model, "_stored_keys", None)
    out: dict[str, Any] = {}
    for array in getattr(model, "ARRAYS_FIRST", ()):
        missing = array not in stored if stored is not None else getattr(model, array) is None
        if missing:
            out[array] = None
    for key in stored or ():
        if key in _INTERNAL:
            continue
        name = by_key.get(key)
        if name is not None:
            out[key] = getattr(model, name)
        elif key in extra:
            out[key] = extra[key]
    # Set since it was read, or built by the service: declared order, nothing null (a
    # null is not stored: Beanie's keep_nulls is off).
    for name in (*fields, *extra):
        if name in out or name in _INTERNAL or (stored is not None and name in stored):
            continue
        if name in model.model_fields_set or name in extra:
            value = getattr(model, name) if name in fields else extra[name]
            if value is not None:
                out[name] = value
    for array in getattr(model, "ARRAYS_LAST", ()):
        if array not in out:
            out[array] = None
    served: dict[str, Any] = {}
    for key, value in out.items():
        if key in (*getattr(model, "ARRAYS_FIRST", ()), *getattr(model, "ARRAYS_LAST", ())):
            value = [] if value is None else value
        value = plain(value)
        if isinstance(value, dict):
            value = _minimize(value)
            if value is None:
                continue
        served[key] = value
    identifier = getattr(model, "id", None)
    if identifier is not None:
        served["id"] = str(identifier)
    return served


def dump_bot(model: BaseModel) -> dict[str, Any]:
    """A bot: like `dump`, with each input's `bot` served as `{"id": ...}` (as Mongoose
    serves an unpopulated self-reference inside a populated bot)."""
    out = dump(model)
    for item in out.get("inputs", ()):
        if isinstance(item.get("bot"), str):
            item["bot"] = {"id": item["bot"]}
    return out
