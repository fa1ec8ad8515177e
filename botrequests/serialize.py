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

import functools
from datetime import UTC, datetime
from typing import Any

from bson import ObjectId
from pydantic import BaseModel


def iso(value: datetime) -> str:
    """`2023-06-28T05:38:00.418Z`: UTC, millisecond precision (BSON dates hold no more)."""
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value.isoformat(timespec="milliseconds") + "Z"


def plain(value: Any) -> Any:
    """Convert a stored value to JSON-ready Python: ObjectIds and dates to strings. The
    common types are matched exactly first: this runs for every value served."""
    kind = type(value)
    if kind in _AS_IS:
        return value
    if kind is dict:
        return {key: plain(item) for key, item in value.items()}
    if kind is list:
        return [plain(item) for item in value]
    if isinstance(value, ObjectId):
        return str(value)
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, BaseModel):
        return dump(value)
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [plain(item) for item in value]
    return value


_AS_IS = frozenset({str, int, float, bool, type(None)})


def _field(value: Any) -> Any:
    """A field's served value, with Mongoose's minimize: an object is converted and its
    empty objects dropped, recursively through objects (not into arrays); `_SKIP` when
    nothing is left of it."""
    if type(value) is not dict:
        return plain(value)
    out = {}
    for key, item in value.items():
        item = _field(item)
        if item is not _SKIP:
            out[key] = item
    return out if out else _SKIP


_SKIP = object()

# Keys never served: Beanie's own fields, and the stored `_id` (served as `id`) and `__v`.
_INTERNAL = frozenset({"id", "revision_id", "_id", "__v"})


@functools.cache
def _layout(cls: type[BaseModel]) -> tuple[dict[str, str], tuple[str, ...], tuple[str, ...]]:
    """Per class, once: stored key → field name, and the arrays Mongoose defaults."""
    by_key = {(info.alias or name): name for name, info in cls.model_fields.items()}
    return by_key, getattr(cls, "ARRAYS_FIRST", ()), getattr(cls, "ARRAYS_LAST", ())


def _pairs(model: BaseModel) -> dict[str, Any]:
    """A model's stored keys and values, in the order Mongoose serves them (before
    conversion): defaulted arrays first or last, stored keys in stored order, then what
    was set since it was read (or by the service), in declared order."""
    fields = type(model).model_fields
    by_key, first, last = _layout(type(model))
    extra = model.model_extra or {}
    # Straight from pydantic's private dict: `model._stored_keys` goes through its
    # `__getattr__`, a tenth of the time of serving a page.
    private = getattr(model, "__pydantic_private__", None)
    stored = private.get("_stored_keys") if private else None
    out: dict[str, Any] = {}
    for array in first:
        if (array not in stored) if stored is not None else getattr(model, array) is None:
            out[array] = []
    if stored is not None:
        for key in stored:
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
        if name in extra or name in model.model_fields_set:
            value = extra[name] if name in extra else getattr(model, name)
            if value is not None:
                out[name] = value
    for array in last:
        if out.get(array) is None:
            out[array] = []
    for array in first:
        if out.get(array, ()) is None:
            out[array] = []
    return out


def dump(model: BaseModel) -> dict[str, Any]:
    """The served JSON object for one document, embedded document or projection."""
    served: dict[str, Any] = {}
    for key, value in _pairs(model).items():
        value = _field(value)
        if value is not _SKIP:
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
