"""Newest-first finds on the embedded backend, walked in index order.

mongomock answers `find(query).sort([("createdAt", -1), ("_id", -1)]).limit(n)` — every
page, and every page of an export — by filtering the whole collection and sorting what
matched. Here the collection keeps its `(createdAt, _id)` keys sorted, and such a find
walks them from the newest, filters each document and stops when the page is full: a
page costs what it walks, not the collection.

The keys are maintained on the writes the embedded backend makes (`after_write`): an
insert adds its keys; a delete leaves them, skipped when walked (a key is used only while
its document is stored with that very key), until they are half the index; an update
that may touch `createdAt` or `_id`, an upsert, a replace, a failed write or anything else
drops the index, rebuilt by the next walk. A collection holding a `createdAt` or `_id`
this order cannot compare as MongoDB does (not a date, not an ObjectId) is answered by
mongomock itself. Tests compare every answer with mongomock's own on random data.
"""

import bisect
from datetime import UTC, datetime
from typing import Any

from bson import ObjectId
from mongomock.collection import Collection
from mongomock.helpers import patch_datetime_awareness_in_document

from botrequests.storage import mongomock_deadline, mongomock_keys
from botrequests.storage.mongomock_match import compile_filter, hashable

SORT = [("createdAt", -1), ("_id", -1)]
_CHECK_EVERY = 256
_READS = frozenset(
    {
        "count_documents",
        "create_index",
        "distinct",
        "drop_index",
        "drop_indexes",
        "estimated_document_count",
        "find_one",
        "index_information",
    }
)
_SAFE_OPERATORS = frozenset(
    {"$set", "$unset", "$inc", "$addToSet", "$pull", "$push", "$pullAll", "$min", "$max"}
)


class _Unordered(Exception):
    """A stored value this index cannot order as MongoDB does."""


def _key(document: dict) -> tuple:
    identifier = document.get("_id")
    if not isinstance(identifier, ObjectId):
        raise _Unordered
    created = document.get("createdAt")
    if created is None:  # missing or null: before every date, as MongoDB sorts them
        return (0, 0, identifier)
    if not isinstance(created, datetime):
        raise _Unordered
    if created.tzinfo is not None:
        created = created.astimezone(UTC).replace(tzinfo=None)
    return (1, created, identifier)


class _Index:
    def __init__(self, collection: Collection) -> None:
        self.keys = sorted(_key(document) for document in collection._store.documents)
        self.stale = 0

    def add(self, document: dict) -> None:
        key = _key(document)
        at = bisect.bisect_left(self.keys, key)
        if at == len(self.keys) or self.keys[at] != key:
            self.keys.insert(at, key)


def _index(collection: Collection) -> _Index | None:
    index = collection._store.__dict__.get("_newest_index")
    if index is not None and len(index.keys) - index.stale != len(collection._store):
        index = None  # written to some other way: rebuilt
    if index is None:
        try:
            index = _Index(collection)
        except _Unordered:
            return None
        collection._store.__dict__["_newest_index"] = index
    return index


def prepare(collection: Collection) -> None:
    """Build the collection's index now (at start, before the first walk needs it)."""
    _index(collection)


def _drop(collection: Collection) -> None:
    forget(collection._store)


def forget(store: Any) -> None:
    """Drop a collection's index (kept on its store): rebuilt by the next walk."""
    store.__dict__.pop("_newest_index", None)


def walkable(args: tuple, kwargs: dict) -> dict | None:
    """The filter of a `find(*args, **kwargs)` this module answers (newest first, no
    projection, no skip), else None."""
    sort = kwargs.get("sort")
    if sort is None or [tuple(part) for part in sort] != SORT:
        return None
    projection = args[1] if len(args) > 1 else kwargs.get("projection")
    if projection or kwargs.get("skip") or len(args) > 2:
        return None
    if set(kwargs) - {"filter", "projection", "sort", "limit", "batch_size", "max_time_ms"}:
        return None
    query = args[0] if args else kwargs.get("filter")
    return query if isinstance(query, dict) else ({} if query is None else None)


def find(collection: Collection, query: dict, limit: int) -> list[dict]:
    """What `collection.find(query, sort=SORT, limit=limit)` answers, as mongomock answers
    it (copies, dates made aware as the client asks)."""
    from botrequests.storage.mongomock_fixes import _aware_copy, _copy_field_plain, _ids_named

    index = _index(collection)
    if index is None:
        return list(collection.find(query, sort=SORT, limit=limit))
    spec = patch_datetime_awareness_in_document(query)
    test = compile_filter(spec)
    stored = collection._store._documents
    keys = index.keys
    # The walk starts below the filter's own upper bound on (createdAt, _id) — a cursor's
    # position, a `to` — and stops at its lower bound (`from`): a page after a cursor
    # costs what it walks, however deep (an export reads its pages one after the other).
    copy_one = _aware_copy if collection.codec_options.tz_aware else _copy_field_plain
    # Few candidates from an equality on an indexed field (a session, a user's requests):
    # those, sorted, when that costs less than the walk may (a page of `limit` among k
    # matches of n is found after about n·limit/k keys).
    ids = mongomock_keys.candidates(collection, spec)
    if ids is not None and len(ids) ** 2 < max(limit, 1) * len(keys):
        candidates = mongomock_keys.documents(collection, spec) or []
        matched = sorted((doc for doc in candidates if test(doc)), key=_key, reverse=True)
        return [copy_one(document) for document in matched[: limit or None]]
    # The same for the ids a filter names (a search's candidates, from the word index).
    named = _ids_named(spec)
    if named is not None and len(named) ** 2 < max(limit, 1) * len(keys):
        held = {key: stored[key] for key in named if hashable(key) and key in stored}
        matched = sorted((doc for doc in held.values() if test(doc)), key=_key, reverse=True)
        return [copy_one(document) for document in matched[: limit or None]]
    upper, lower = _bounds(spec)
    start = len(keys) if upper is None else bisect.bisect_left(keys, upper)
    found: list[dict] = []
    for walked, position in enumerate(range(start - 1, -1, -1)):
        if not walked & (_CHECK_EVERY - 1):
            mongomock_deadline.check()
        key = keys[position]
        if lower is not None and key < lower:
            break
        document = stored.get(key[2])
        if document is None or _key(document) != key:
            continue  # deleted, or stored again under another key
        if test(document):
            found.append(document)
            if limit and len(found) >= limit:
                break
    return [copy_one(document) for document in found]


_LAST_ID = ObjectId("f" * 24)


def _bounds(spec: Any) -> tuple[tuple | None, tuple | None]:
    """Keys (of `_key`'s form) no matching document reaches: every match sorts below
    `upper` and at or above `lower` (None: no such bound). Read from the forms the service
    sends — `createdAt` ranges, the keyset cursor's `$or` — in the filter or its `$and`;
    anything else gives no bound, and the filter still decides every document walked."""
    if not isinstance(spec, dict):
        return None, None
    upper, lower = _range(spec.get("createdAt"))
    clauses = spec.get("$and")
    for clause in clauses if isinstance(clauses, list) else ():
        high, low = _bounds(clause)
        upper = high if upper is None or (high is not None and high < upper) else upper
        lower = low if lower is None or (low is not None and low > lower) else lower
    branches = spec.get("$or")
    if isinstance(branches, list) and branches:
        highs = [_cursor_bound(branch) for branch in branches]
        if None not in highs:
            high = max(highs)  # type: ignore[type-var]
            upper = high if upper is None or high < upper else upper
    return upper, lower


def _range(condition: Any) -> tuple[tuple | None, tuple | None]:
    """Bounds of `{"createdAt": condition}`: a date range matches dates only (never null)."""
    if not isinstance(condition, dict):
        if isinstance(condition, datetime):  # equality
            return (1, condition, _LAST_ID, 1), (1, condition)
        return None, None
    upper = lower = None
    for operator, moment in condition.items():
        if not isinstance(moment, datetime) or moment.tzinfo is not None:
            continue
        if operator == "$lt":
            upper = (1, moment)
        elif operator == "$lte":
            upper = (1, moment, _LAST_ID, 1)
        elif operator in ("$gte", "$gt"):
            lower = (1, moment)
    return upper, lower


def _cursor_bound(branch: Any) -> tuple | None:
    """An upper bound of one `$or` branch: a `createdAt` bound, or the cursor's
    `{"createdAt": m, "_id": {"$lt": id}}`."""
    if not isinstance(branch, dict):
        return None
    created, identifier = branch.get("createdAt"), branch.get("_id")
    if (
        set(branch) == {"createdAt", "_id"}
        and isinstance(created, datetime)
        and created.tzinfo is None
        and isinstance(identifier, dict)
        and set(identifier) == {"$lt"}
        and isinstance(identifier["$lt"], ObjectId)
    ):
        return (1, created, identifier["$lt"])
    return _bounds(branch)[0]


def _safe_update(update: Any) -> bool:
    """Whether an update leaves every document's `createdAt` and `_id` as they were."""
    if not isinstance(update, dict) or not update:
        return False
    for operator, fields in update.items():
        if operator not in _SAFE_OPERATORS or not isinstance(fields, dict):
            return False
        for field in fields:
            if field in ("_id", "createdAt") or field.startswith(("createdAt.", "_id.")):
                return False
    return True


def after_write(collection: Collection, name: str, args: tuple, kwargs: dict, result: Any) -> None:
    """Keep the index true after `collection.<name>(*args, **kwargs)` answered `result`."""
    index = collection._store.__dict__.get("_newest_index")
    if index is None or name in _READS:
        return
    stored = collection._store._documents
    try:
        if name == "insert_one":
            index.add(stored[result.inserted_id])
            return
        if name == "insert_many":
            for identifier in result.inserted_ids:
                index.add(stored[identifier])
            return
    except (_Unordered, KeyError):
        _drop(collection)
        return
    if name in ("delete_one", "delete_many"):
        index.stale += result.deleted_count
    elif name == "find_one_and_delete":
        index.stale += result is not None
    elif name in ("update_one", "update_many", "find_one_and_update"):
        update = args[1] if len(args) > 1 else kwargs.get("update")
        if kwargs.get("upsert") or not _safe_update(update):
            _drop(collection)
    else:  # replace, bulk_write, drop, anything not named here
        _drop(collection)
        return
    if index.stale > 1000 and index.stale * 2 > len(index.keys):
        _drop(collection)


def failed_write(collection: Collection) -> None:
    """A write raised: what it did is unknown, so the index is rebuilt."""
    _drop(collection)
