"""Fixes to mongomock itself, for the embedded backend (installed when `embedded.py` is
imported): same results, without the quadratic work mongomock does in the operations the
service relies on. Each falls back to mongomock's own code for forms it does not handle.

- unique indexes with a `partialFilterExpression`: checked only for documents the index
  holds (mongomock scanned the collection on every insert);
- `$unwind` of a top-level array: no deep copy of the whole document per element;
- `$graphLookup`: an index of the foreign collection built once per stage, instead of a
  collection scan for every document reached;
- a find by `_id` (`{_id: x}`, `{_id: {$in: [...]}}`, or either inside a top-level `$and`,
  as a tenant-scoped lookup is): the documents taken from mongomock's store by key, as
  MongoDB's `_id` index would, instead of a scan of the collection (every GET by id and
  every population lookup is one);
- `find_by_keys`: such a find without mongomock's cursor, for the embedded backend's
  inline reads: the documents the key finds, filtered, projected (whole, or top-level
  fields included) and copied with dates made UTC-aware in one pass (mongomock copies
  each document twice);
- the copy of every document a find returns: immutable values (strings, numbers,
  ObjectIds, dates) are shared, not passed one by one through `copy.copy` (a page of 100
  spent a sixth of its time there).
"""

import copy
import itertools
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import mongomock
from beanie import PydanticObjectId
from bson import Decimal128, Int64, ObjectId
from mongomock import aggregate as mongomock_aggregate
from mongomock import collection as mongomock_collection
from mongomock import filtering as mongomock_filtering
from mongomock.collection import Collection
from mongomock.filtering import filter_applies
from mongomock.helpers import get_value_by_dot, patch_datetime_awareness_in_document
from mongomock.store import CollectionStore, DatabaseStore, ServerStore
from pymongo.errors import DuplicateKeyError

from botrequests.storage import mongomock_deadline, mongomock_keys, mongomock_match

# mongomock's internals these fixes replace or read, on the versions pyproject.toml pins
# (the fixes were written against mongomock 4.3). Checked before anything is patched: on
# another version that moved one, the embedded backend refuses to start and says which,
# instead of silently running mongomock's slow paths or failing later in a query.
PATCHED = {
    "$unwind": mongomock_aggregate._PIPELINE_HANDLERS,
    "$graphLookup": mongomock_aggregate._PIPELINE_HANDLERS,
    "$lookup": mongomock_aggregate._PIPELINE_HANDLERS,
}
REQUIRED = [
    (mongomock_aggregate, "_PIPELINE_HANDLERS"),
    (mongomock_aggregate, "_parse_expression"),
    (mongomock_aggregate, "_recursive_get"),
    (mongomock_collection, "_copy_field"),
    (Collection, "_iter_documents"),
    (Collection, "_ensure_uniques"),
    # durable.py: what a write touches, and where the data is to load and write through.
    (CollectionStore, "__setitem__"),
    (CollectionStore, "__delitem__"),
    (CollectionStore, "drop"),
    (CollectionStore, "create_index"),
    (CollectionStore, "drop_index"),
    (CollectionStore, "create"),
    (ServerStore, "__getitem__"),
    # mongomock_match.py and mongomock_pipeline.py: what they answer as mongomock does.
    (mongomock_aggregate, "process_pipeline"),
    (mongomock_filtering, "NOTHING"),
    (mongomock_filtering, "TYPE_MAP"),
    (mongomock_filtering, "_RE_TYPES"),
    (mongomock_filtering, "filter_applies"),
    (Collection, "_update"),  # mongomock_keys: every update and replace goes through it
]
# What a collection's store holds (instance attributes, read on a throwaway one).
STORE_ATTRIBUTES = ("_documents", "indexes", "is_empty")


class MongomockChanged(RuntimeError):
    """The installed mongomock lacks an internal the embedded backend's fixes rely on."""


def check_internals() -> None:
    import importlib.metadata

    version = importlib.metadata.version("mongomock")
    missing = [f"{owner.__name__}.{name}" for owner, name in REQUIRED if not hasattr(owner, name)]
    missing += [f"pipeline stage {stage}" for stage, table in PATCHED.items() if stage not in table]
    store = CollectionStore("check")
    missing += [f"CollectionStore.{name}" for name in STORE_ATTRIBUTES if not hasattr(store, name)]
    for owner, name in (
        (ServerStore(), "_databases"),
        (DatabaseStore(), "_collections"),
        (mongomock.MongoClient(), "_store"),
    ):
        if not hasattr(owner, name):
            missing.append(f"{type(owner).__name__}.{name}")
    if missing:
        raise MongomockChanged(
            f"mongomock {version} lacks {', '.join(missing)}: the embedded backend's fixes "
            "(botrequests/storage/mongomock_fixes.py) are written for the versions pyproject.toml "
            "pins; install those (pip install -e .)"
        )


check_internals()


def partial_aware_uniques(collection: Any) -> None:
    """mongomock checks a unique index with a `partialFilterExpression` by scanning the
    collection on every insert, even for a document the filter leaves out of the index,
    which made each insert O(collection). Check only documents the index holds."""
    if getattr(collection, "_partial_aware_uniques", False):
        return

    def ensure_uniques(new_data: dict) -> None:
        # An update that changes none of a unique index's fields leaves its entry as it
        # was, unique already (mongomock would query for each index, per document).
        changing = mongomock_keys.update_changes(collection)
        for index in collection._store.indexes.values():
            if not index.get("unique"):
                continue
            partial = index.get("partialFilterExpression")
            if changing is not None and _untouched(index, partial, changing):
                continue
            if partial is not None and not filter_applies(partial, new_data):
                continue
            values = {}
            for key, _ in index["key"]:
                try:
                    values[key] = get_value_by_dot(new_data, key)
                except KeyError:
                    values[key] = None
            if index.get("sparse") and set(values.values()) == {None}:
                continue
            query = values if partial is None else {"$and": [partial, values]}
            if len(list(itertools.islice(collection._iter_documents(query), 2))) > 1:
                raise DuplicateKeyError(
                    "E11000 duplicate key error",
                    11000,
                    {"keyPattern": dict(index["key"]), "keyValue": values},
                )

    collection._ensure_uniques = ensure_uniques
    collection._partial_aware_uniques = True


def _untouched(index: dict, partial: Any, changing: frozenset[str]) -> bool:
    """Whether none of the fields that place a document in `index` is in `changing`."""
    if partial is not None and not (
        isinstance(partial, dict) and all(isinstance(k, str) and k[:1] != "$" for k in partial)
    ):
        return False
    fields = {field for field, _ in index["key"]} | set(partial or ())
    return not any(
        field == changed or field.startswith(changed + ".") or changed.startswith(field + ".")
        for field in fields
        for changed in changing
    )


_SLOW_UNWIND = mongomock_aggregate._PIPELINE_HANDLERS["$unwind"]


def _unwind(in_collection: list[dict], database: Any, options: Any) -> list[dict]:
    """`$unwind` of a top-level array without copying the rest of the document for every
    element: mongomock deep-copies the whole document (the array included) per element,
    quadratic in the array (a thread of 500 took 7 s in its `$unwind` alone). The same
    result; other forms go to mongomock's own."""
    path = options if isinstance(options, str) else None
    if path is None or not path.startswith("$") or "." in path:
        return _SLOW_UNWIND(in_collection, database, options)
    field = path[1:]
    unwound = []
    for doc in in_collection:
        values = doc.get(field)
        if values is None or values == []:
            continue
        rest = {key: value for key, value in doc.items() if key != field}
        for item in values if isinstance(values, list) else [values]:
            unwound.append({**copy.deepcopy(rest), field: item})
    return unwound


mongomock_aggregate._PIPELINE_HANDLERS["$unwind"] = _unwind

_SLOW_GRAPH_LOOKUP = mongomock_aggregate._PIPELINE_HANDLERS["$graphLookup"]
_GRAPH_OPTIONS = {"from", "startWith", "connectFromField", "connectToField", "as"}
_GRAPH_OPTIONAL = {"maxDepth", "depthField", "restrictSearchWithMatch"}


def _graph_lookup(in_collection: list[dict], database: Any, options: dict) -> list[dict]:
    """`$graphLookup` over an index of the foreign collection built once per stage:
    mongomock runs a collection scan for every document it reaches (a chain of 1 000 took
    15 s; a thread of 1 000 in one level, seconds). The same documents, depths and
    traversal (each document once, `maxDepth`, `restrictSearchWithMatch`); other forms
    (dotted or unknown options) go to mongomock's own."""
    to_field = options.get("connectToField")
    if (
        not _GRAPH_OPTIONS <= set(options) <= _GRAPH_OPTIONS | _GRAPH_OPTIONAL
        or not isinstance(to_field, str)
        or "." in to_field
        or "." in str(options.get("as"))
    ):
        return _SLOW_GRAPH_LOOKUP(in_collection, database, options)
    foreign = database.get_collection(options["from"])
    stored = foreign._store._documents
    built: list[dict[Any, list[dict]]] = []

    def index() -> dict[Any, list[dict]]:
        """The foreign collection by `connectToField`, built on first need."""
        if not built:
            by_value: dict[Any, list[dict]] = {}
            for doc in foreign._store.documents:
                value = doc.get(to_field)
                for key in value if isinstance(value, list) else [value]:
                    by_value.setdefault(key, []).append(doc)
            built.append(by_value)
        return built[0]

    def holding(value: Any) -> list[dict]:
        """The documents whose `connectToField` is (or holds) `value`, in store order:
        by key for `_id`, from the equality index of a declared field (mongomock_keys),
        else from the index built here."""
        if to_field == "_id":
            doc = stored.get(value)
            return [] if doc is None else [doc]
        found = mongomock_keys.documents(foreign, {to_field: value})
        if found is None:
            return index().get(value, [])
        return [
            doc
            for doc in found
            if (value in held if isinstance(held := doc.get(to_field), list) else held == value)
        ]

    try:
        if to_field != "_id" and not mongomock_keys.indexes_field(foreign, to_field):
            index()  # not indexed: built now, so that an unhashable value shows here
    except TypeError:  # an unhashable value: mongomock's own way
        return _SLOW_GRAPH_LOOKUP(in_collection, database, options)
    restrict = options.get("restrictSearchWithMatch") or {}
    depth_field = options.get("depthField")
    max_depth = options.get("maxDepth")
    from_path = options["connectFromField"].split(".")

    def matches(values: Any, depth: int, seen: set) -> list[dict]:
        found = []
        for value in values if isinstance(values, list) else [values]:
            try:
                candidates = holding(value)
            except TypeError:
                candidates = []
            for candidate in candidates:
                if candidate["_id"] in seen or not filter_applies(restrict, candidate):
                    continue
                seen.add(candidate["_id"])
                match = copy.deepcopy(candidate)
                if depth_field is not None:
                    match[depth_field] = depth
                found.append(match)
        return found

    out = copy.deepcopy(in_collection)
    for doc in out:
        try:
            start = mongomock_aggregate._parse_expression(options["startWith"], doc)
        except KeyError:
            continue  # as mongomock: no `as` field when startWith is missing
        seen: set = set()
        depth = 0
        level = doc[options["as"]] = matches(start, depth, seen)
        while level and (max_depth is None or depth < max_depth):
            depth += 1
            following = []
            for match in level:
                for target in mongomock_aggregate._recursive_get(match, from_path):
                    following += matches(target, depth, seen)
            doc[options["as"]] += following
            level = following
    return out


mongomock_aggregate._PIPELINE_HANDLERS["$graphLookup"] = _graph_lookup


_SLOW_ITER = Collection._iter_documents
_MISSING = object()


def _ids_named(query: Any) -> list | None:
    """The `_id` values a filter is limited to, when it says so plainly; else None."""
    if not isinstance(query, dict):
        return None
    value = query.get("_id", _MISSING)
    if value is not _MISSING:
        if isinstance(value, dict):
            wanted = value.get("$in") if set(value) == {"$in"} else None
            return list(wanted) if isinstance(wanted, list | tuple) else None
        # Plain equality on a value an _id can be (a regex or an operator: the slow way).
        return [value] if isinstance(value, ObjectId | str | int) else None
    for clause in query.get("$and", ()) if isinstance(query.get("$and"), list) else ():
        ids = _ids_named(clause)
        if ids is not None:
            return ids
    return None


def iter_documents(self: Collection, query: Any) -> Any:
    ids = _ids_named(query)
    if self._store.is_empty:
        return _SLOW_ITER(self, query)  # which validates the filter
    if ids is None:
        # A scan with the filter compiled (mongomock_match), the deadline checked as it
        # goes when the call has one (QUERY_TIMEOUT_MS).
        test = mongomock_match.compile_filter(query)
        # The candidates of an equality on an indexed field (mongomock_keys), else all.
        documents = mongomock_keys.documents(self, query)
        if documents is None:
            documents = list(self._store.documents)
        if mongomock_deadline.active():
            return mongomock_deadline.scan(documents, test)
        return (document for document in documents if test(document))
    stored = self._store._documents
    found: dict[Any, dict] = {}
    for value in ids:
        try:
            document = stored.get(value)
        except TypeError:  # unhashable: not an _id mongomock could hold; the slow way
            return _SLOW_ITER(self, query)
        if document is not None:
            found[value] = document
    # The whole filter still applies to what the key found (the tenant's clause, say).
    test = mongomock_match.compile_filter(query)
    return (document for document in found.values() if test(document))


Collection._iter_documents = iter_documents


# Values a copy may share: none of them can be changed in place.
_IMMUTABLE = frozenset({str, int, float, bool, type(None), ObjectId, datetime, bytes, Int64})
# Beanie's ObjectId, which what the service writes holds until a restart reads it back as
# bson's: `copy.copy` of one costs more than copying the rest of its document.
_IMMUTABLE |= {Decimal128, PydanticObjectId}


def _copy_field(value: Any, container: Any) -> Any:
    """mongomock's `_copy_field` (a deep copy of a document for the caller), sharing
    immutable values instead of copying each."""
    kind = type(value)
    if kind in _IMMUTABLE:
        return value
    if kind is dict or isinstance(value, dict):
        new = container()
        for key, item in value.items():
            new[key] = _copy_field(item, container)
        return new
    if isinstance(value, list):
        return [_copy_field(item, container) for item in value]
    if isinstance(value, ObjectId):  # a subclass: as immutable as bson's own
        return value
    return copy.copy(value)


mongomock_collection._copy_field = _copy_field


def _aware_copy(value: Any) -> Any:
    """`_copy_field` and mongomock's `make_datetime_timezone_aware_in_document` in one
    pass: what a cursor of a tz-aware client returns."""
    kind = type(value)
    if kind is dict:
        return _aware_dict(value)
    if kind is datetime:
        return value.replace(tzinfo=UTC)
    if kind in _IMMUTABLE:
        return value
    if isinstance(value, dict):
        return _aware_dict(value)
    if isinstance(value, list | tuple):
        return [_aware_copy(item) for item in value]
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC)
    if isinstance(value, ObjectId):  # a subclass: as immutable as bson's own
        return value
    return copy.copy(value)


def _aware_dict(value: dict) -> dict:
    # Every document a read returns is copied here: the common values without a call.
    out = {}
    for key, item in value.items():
        kind = type(item)
        if kind is datetime:
            out[key] = item.replace(tzinfo=UTC)
        elif kind in _IMMUTABLE:
            out[key] = item
        elif kind is dict:
            out[key] = _aware_dict(item)
        elif kind is list:
            out[key] = [_aware_copy(element) for element in item]
        else:
            out[key] = _aware_copy(item)
    return out


@dataclass(frozen=True)
class KeyedFind:
    """A find by `_id`, parsed: `documents()` reads it (the caller holds the lock)."""

    collection: Collection
    query: dict
    ids: list
    fields: frozenset[str] | None  # the top-level fields included besides `_id`; None: all

    def documents(self) -> list[dict]:
        copy_one = _aware_copy if self.collection.codec_options.tz_aware else _copy_field_plain
        fields = self.fields
        if fields is None:
            return [copy_one(stored) for stored in self.collection._iter_documents(self.query)]
        # `_id` last, as mongomock's projection puts it (MongoDB: first; nothing served
        # depends on where it is).
        return [
            {
                **{key: copy_one(value) for key, value in stored.items() if key in fields},
                "_id": stored["_id"],
            }
            for stored in self.collection._iter_documents(self.query)
        ]


def _copy_field_plain(value: Any) -> Any:
    return _copy_field(value, dict)


def find_by_keys(collection: Collection, query: Any, projection: Any) -> KeyedFind | None:
    """`collection.find(query, projection)` as a `KeyedFind` when the filter names its
    `_id`s and the projection is none or includes top-level fields (`_id` with them);
    else None (the caller uses a cursor). Reads nothing: safe without the lock."""
    ids = _ids_named(query)
    if ids is None:
        return None
    fields: frozenset[str] | None = None
    if projection:
        if not isinstance(projection, dict) or projection.get("_id", 1) in (0, False):
            return None
        if not all(
            value in (1, True) and "." not in key and not key.startswith("$")
            for key, value in projection.items()
        ):
            return None
        fields = frozenset(projection) - {"_id"}
    # As mongomock's cursor does with a filter: dates in it compared as stored.
    return KeyedFind(collection, patch_datetime_awareness_in_document(query), ids, fields)
