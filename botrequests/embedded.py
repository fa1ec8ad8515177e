"""The embedded backend: mongomock behind Motor's interface, run off the event loop.

mongomock-motor calls mongomock synchronously inside the event loop, so one slow query
(mongomock has no indexes: a thread lookup on a chain of 1 000 took 15 s) stopped every
other caller, `/healthz` included. Here every call that touches the data runs in one
worker thread, one at a time (mongomock is not thread-safe): a slow query delays other
database calls, never the loop, so health checks and requests that need no database
answer at once.

It also makes partial unique indexes work: mongomock's `create_indexes` drops an index's
`partialFilterExpression` (the per-organization `requestKey` index would then collide on
every request without a key), and its uniqueness check scans the whole collection for
documents such an index does not even hold. Part of the database layer: with `db.py`,
the only module that knows the driver.
"""

import asyncio
import copy
import functools
import itertools
import logging
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from mongomock import aggregate as mongomock_aggregate
from mongomock.filtering import filter_applies
from mongomock.helpers import get_value_by_dot
from mongomock_motor import (
    AsyncCursor,
    AsyncLatentCommandCursor,
    AsyncMongoMockClient,
    AsyncMongoMockCollection,
    AsyncMongoMockDatabase,
)
from pymongo.errors import DuplicateKeyError

log = logging.getLogger("botrequests.db")
_WORKER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="embedded-db")
_DONE = object()

# mongomock-motor's async collection methods: each touches the data.
_ASYNC_METHODS = (
    "bulk_write",
    "count_documents",
    "create_index",
    "delete_many",
    "delete_one",
    "distinct",
    "drop",
    "drop_index",
    "drop_indexes",
    "estimated_document_count",
    "find_one",
    "find_one_and_delete",
    "find_one_and_replace",
    "find_one_and_update",
    "index_information",
    "insert_many",
    "insert_one",
    "replace_one",
    "update_many",
    "update_one",
)


async def run(function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run `function` in the embedded database's worker thread."""
    call = functools.partial(function, *args, **kwargs)
    return await asyncio.get_running_loop().run_in_executor(_WORKER, call)


def _private(wrapper: Any, owner: str, name: str) -> Any:
    # mongomock-motor keeps the wrapped object in a name-mangled attribute.
    return wrapper.__dict__[f"_{owner}__{name}"]


class _Cursor(AsyncCursor):
    """A find cursor whose results are computed in the worker thread."""

    def _sync(self) -> Any:
        return _private(self, "AsyncCursor", "cursor")

    async def to_list(self, *args: Any, **kwargs: Any) -> list:
        return await run(list, self._sync())

    async def next(self) -> Any:
        item = await run(next, self._sync(), _DONE)
        if item is _DONE:
            raise StopAsyncIteration
        return item

    __anext__ = next

    def clone(self) -> "_Cursor":
        return _Cursor(self._sync().clone())


class _LatentAggregation(AsyncLatentCommandCursor):
    """mongomock runs a pipeline when `aggregate` is called; this defers it to the first
    read, in the worker thread."""

    def __init__(self, start: Callable[[], Any]) -> None:
        super().__init__(None)
        self._start = start
        self._results: deque | None = None

    async def _all(self) -> deque:
        if self._results is None:
            self._results = deque(await run(lambda: list(self._start())))
        return self._results

    async def to_list(self, *args: Any, **kwargs: Any) -> list:
        results = list(await self._all())
        self._results = deque()
        return results

    async def next(self) -> Any:
        results = await self._all()
        if not results:
            raise StopAsyncIteration
        return results.popleft()

    __anext__ = next


# Past this many documents in one collection a populated read takes ~50 ms or more on
# this backend (it scans; README "How the embedded backend's cost grows"): said once.
GROWTH_WARNING_DOCUMENTS = 12_000
_warned: set[str] = set()


def _warn_when_large(collection: Any) -> None:
    if _warned or len(collection._store) < GROWTH_WARNING_DOCUMENTS:
        return
    _warned.add(collection.name)
    log.warning(
        "the embedded database holds %d documents in %s: it has no indexes, so every read "
        "scans them (a populated read now takes ~50 ms or more, and it grows with the data). "
        "Set MONGODB_URI to a MongoDB server for anything beyond trying the service out",
        len(collection._store),
        collection.name,
    )


def _off_loop(name: str) -> Callable[..., Any]:
    grows = name in ("insert_one", "insert_many")

    async def method(self: "_Collection", *args: Any, **kwargs: Any) -> Any:
        sync = self._sync()

        def call() -> Any:
            result = getattr(sync, name)(*args, **kwargs)
            if grows:
                _warn_when_large(sync)
            return result

        return await run(call)

    method.__name__ = name
    return method


def _partial_aware_uniques(collection: Any) -> None:
    """mongomock checks a unique index with a `partialFilterExpression` by scanning the
    collection on every insert, even for a document the filter leaves out of the index,
    which made each insert O(collection). Check only documents the index holds."""
    if getattr(collection, "_partial_aware_uniques", False):
        return

    def ensure_uniques(new_data: dict) -> None:
        for index in collection._store.indexes.values():
            if not index.get("unique"):
                continue
            partial = index.get("partialFilterExpression")
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
    index: dict[Any, list[dict]] = {}
    try:
        for doc in database.get_collection(options["from"])._store.documents:
            value = doc.get(to_field)
            for key in value if isinstance(value, list) else [value]:
                index.setdefault(key, []).append(doc)
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
                candidates = index.get(value, [])
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


class _Collection(AsyncMongoMockCollection):
    def __init__(self, database: Any, collection: Any) -> None:
        super().__init__(database, collection)
        _partial_aware_uniques(collection)

    def _sync(self) -> Any:
        return _private(self, "AsyncMongoMockCollection", "collection")

    def find(self, *args: Any, **kwargs: Any) -> _Cursor:
        return _Cursor(self._sync().find(*args, **kwargs))

    def aggregate(self, *args: Any, **kwargs: Any) -> _LatentAggregation:
        return _LatentAggregation(functools.partial(self._sync().aggregate, *args, **kwargs))

    async def create_indexes(self, indexes: list[Any], *args: Any, **kwargs: Any) -> list[str]:
        """Every option of each `IndexModel` reaches mongomock (its own `create_indexes`
        drops `partialFilterExpression`)."""

        def create() -> list[str]:
            names = []
            for index in indexes:
                options = {k: v for k, v in index.document.items() if k != "key"}
                names.append(
                    self._sync().create_index(list(index.document["key"].items()), **options)
                )
            return names

        return await run(create)


for _name in _ASYNC_METHODS:
    setattr(_Collection, _name, _off_loop(_name))


class _Database(AsyncMongoMockDatabase):
    def get_collection(self, *args: Any, **kwargs: Any) -> _Collection:
        sync = _private(self, "AsyncMongoMockDatabase", "database")
        return _Collection(self, sync.get_collection(*args, **kwargs))


class EmbeddedClient(AsyncMongoMockClient):
    """An in-memory MongoDB with Motor's interface, queried off the event loop."""

    def get_database(self, *args: Any, **kwargs: Any) -> _Database:
        sync = _private(self, "AsyncMongoMockClient", "client")
        return _Database(
            self,
            sync.get_database(*args, **kwargs),
            mock_build_info=_private(self, "AsyncMongoMockClient", "build_info"),
        )
