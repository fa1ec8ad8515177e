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
    if value.tzinfo is not None and value.utcoffset():
        value = value.astimezone(UTC)
    # The first 23 characters are the date and time to the millisecond (a year has four
    # digits), without the offset an aware date adds.
    return value.isoformat(timespec="milliseconds")[:23] + "Z"


def plain(value: Any) -> Any:
    """Convert a stored value to JSON-ready Python: ObjectIds and dates to strings. This
    runs for every value served: the converter is looked up by exact type."""
    kind = type(value)
    if kind in _AS_IS:
        return value
    convert = _BY_TYPE.get(kind)
    if convert is None:
        convert = _BY_TYPE[kind] = _converter(kind)
    return convert(value)


def _plain_dict(value: dict) -> dict:
    return {key: plain(item) for key, item in value.items()}


def _plain_list(value: list | tuple) -> list:
    return [plain(item) for item in value]


def _as_is(value: Any) -> Any:
    return value


def _converter(kind: type) -> Any:
    """How `plain` converts a value of this type, found once per type."""
    if issubclass(kind, ObjectId):
        return str
    if issubclass(kind, datetime):
        return iso
    if issubclass(kind, BaseModel):
        return dump
    if issubclass(kind, dict):
        return _plain_dict
    if issubclass(kind, list | tuple):
        return _plain_list
    return _as_is


# The types met so far and their converters: as many entries as there are types.
_BY_TYPE: dict[type, Any] = {}
_AS_IS = frozenset({str, int, float, bool, type(None)})


def _minimized(value: dict) -> Any:
    """An object's served value, with Mongoose's minimize: converted, and its empty
    objects dropped, recursively through objects (not into arrays); `_SKIP` when nothing
    is left of it. The common scalars are kept without a call: this runs for every object
    served."""
    out = {}
    for key, item in value.items():
        kind = type(item)
        if kind in _AS_IS:
            out[key] = item
        elif kind is dict:
            item = _minimized(item)
            if item is not _SKIP:
                out[key] = item
        else:
            out[key] = plain(item)
    return out if out else _SKIP


_SKIP = object()

# Keys never served: Beanie's own fields, and the stored `_id` (served as `id`) and `__v`.
_INTERNAL = frozenset({"id", "revision_id", "_id", "__v"})


@functools.cache
def _layout(
    cls: type[BaseModel],
) -> tuple[dict[str, str], tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    """Per class, once: stored key → field name, the arrays Mongoose defaults, and the
    declared fields in order."""
    by_key = {(info.alias or name): name for name, info in cls.model_fields.items()}
    first, last = getattr(cls, "ARRAYS_FIRST", ()), getattr(cls, "ARRAYS_LAST", ())
    return by_key, first, last, tuple(cls.model_fields)


def _pairs(model: BaseModel) -> dict[str, Any]:
    """A model's stored keys and values, in the order Mongoose serves them (before
    conversion): defaulted arrays first or last, stored keys in stored order, then what
    was set since it was read (or by the service), in declared order."""
    by_key, first, last, fields = _layout(type(model))
    extra = model.__pydantic_extra__ or {}
    values = model.__dict__  # a model's fields, as `getattr` finds them
    # Straight from pydantic's private dict: `model._stored_keys` goes through its
    # `__getattr__`, a tenth of the time of serving a page.
    private = getattr(model, "__pydantic_private__", None)
    stored = private.get("_stored_keys") if private else None
    out: dict[str, Any] = {}
    for array in first:
        if (array not in stored) if stored is not None else values[array] is None:
            out[array] = []
    if stored is not None:
        for key in stored:
            if key in _INTERNAL:
                continue
            name = by_key.get(key)
            if name is not None:
                out[key] = values[name]
            elif key in extra:
                out[key] = extra[key]
    # Set since it was read, or built by the service: declared order, nothing null (a
    # null is not stored: Beanie's keep_nulls is off). A document as it was read has
    # nothing of the kind, which one pass over what it holds tells.
    held = _INTERNAL.union(stored, out) if stored is not None else None
    if held is None or not (held >= model.__pydantic_fields_set__ and held >= extra.keys()):
        for name in (*fields, *extra):
            if name in out or name in _INTERNAL or (stored is not None and name in stored):
                continue
            if name in extra or name in model.__pydantic_fields_set__:
                value = extra[name] if name in extra else values[name]
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
        kind = type(value)  # as `plain` and `_minimized` convert, without a call
        if kind in _AS_IS:
            served[key] = value
        elif kind is dict:
            value = _minimized(value)
            if value is not _SKIP:
                served[key] = value
        else:
            served[key] = plain(value)
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
