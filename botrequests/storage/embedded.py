"""The embedded backend: mongomock behind Motor's interface, run off the event loop.

mongomock-motor calls mongomock synchronously inside the event loop, so one slow query
(mongomock itself has no indexes: a thread lookup on a chain of 1 000 took 15 s) stopped every
other caller, `/healthz` included. Here every call that touches the data runs in one
worker thread, one at a time (mongomock is not thread-safe): a slow query delays other
database calls, never the loop, so health checks and requests that need no database
answer at once.

Reads by key (`_id` or `_id $in`, as every load by id and every population lookup is)
are bounded work, a dictionary lookup per id: they run on the loop itself when the
worker is free, without the two thread switches a hop costs (a third of a populated GET's
time under load). The worker holds `_LOCK` while it touches the data, so an inline read
never meets a write half done; when the worker is busy, the read queues behind it.

It also passes an index's `partialFilterExpression` on (mongomock's `create_indexes` drops
it: the per-organization `requestKey` index would collide on every request without a
key); `mongomock_fixes.py` mends what mongomock itself does slowly or wrongly. Part of
the database layer: with `db.py`, the only module that knows the driver.
"""

import asyncio
import functools
import gc
import logging
import sys
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from mongomock_motor import (
    AsyncCursor,
    AsyncLatentCommandCursor,
    AsyncMongoMockClient,
    AsyncMongoMockCollection,
    AsyncMongoMockDatabase,
)

from botrequests.errors import NotDurable
from botrequests.storage import (  # noqa: F401 (the fixes install themselves)
    durable,
    mongomock_deadline,
    mongomock_fixes,
    mongomock_lookup,
    mongomock_newest,
    mongomock_pipeline,
    recording,
)

# After the fixes and the indexed $lookup are in: their stages get the deadline's check too.
mongomock_deadline.install()

log = logging.getLogger("botrequests.db")
_WORKER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="embedded-db")
# Held by whoever touches mongomock's data: the worker for each call, the loop for an
# inline read by key.
_LOCK = threading.Lock()
# An inline read names at most this many ids in all (a page of 100 populated names ~600
# at most); more and it goes to the worker, so the loop never does unbounded work.
INLINE_MAX_IDS = 1_000
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
    return await run_timed(None, function, *args, **kwargs)


async def run_timed(
    max_time_ms: int | None, function: Callable[..., Any], *args: Any, **kwargs: Any
) -> Any:
    """`run`, stopped with `ExecutionTimeout` past `max_time_ms` (a query's `maxTimeMS`)."""
    call = functools.partial(function, *args, **kwargs)

    def locked() -> Any:
        with _LOCK:
            return mongomock_deadline.run_with_deadline(max_time_ms, call)

    return await asyncio.get_running_loop().run_in_executor(_WORKER, locked)


async def run_write(holder: "Holder", call: Callable[[], Any]) -> Any:
    """Run a write in the worker and answer once what it changed is on disk (durable.py:
    committed with the writes queued beside it), or raise `NotDurable`."""

    def job() -> tuple[Any, BaseException | None, recording.Batch]:
        result, error = None, None
        with recording.recording() as batch:
            try:
                result = call()
            except Exception as exc:  # what it changed before failing is kept all the same
                error = exc
        holder.durable.submit(batch)
        return result, error, batch

    result, error, batch = await run(job)
    try:
        await asyncio.wrap_future(batch.future)
    except NotDurable as failed:
        raise failed from error
    if error is not None:
        raise error
    return result


async def find_together(jobs: list[tuple[Any, dict, dict | None, dict]]) -> list[list[dict]]:
    """Several finds `(collection, filter, projection, options)` at once: inline when all
    are reads by key and the worker is free, else in one hop to the worker (each hop
    costs more than a lookup by key in mongomock)."""
    keyed = [
        mongomock_fixes.find_by_keys(collection._sync(), query, projection) if not options else None
        for collection, query, projection, options in jobs
    ]
    named = sum(len(found.ids) for found in keyed if found is not None)
    if None not in keyed and named <= INLINE_MAX_IDS and _LOCK.acquire(blocking=False):
        try:
            return [found.documents() for found in keyed]  # type: ignore[union-attr]
        finally:
            _LOCK.release()

    def all_of_them() -> list[list[dict]]:
        return [
            list(collection._sync().find(query, projection, **options))
            for collection, query, projection, options in jobs
        ]

    return await run(all_of_them)


def apply_updates(collection: Any, updates: list[tuple[dict, dict]]) -> int:
    """Each `(filter, update)` as an `update_one`, in order (in the worker): what a server
    does with a `bulk_write` of `UpdateOne`s, in one hop. Returns how many changed."""
    modified = 0
    for query, update in updates:
        try:
            result = collection.update_one(query, update)
        except BaseException:
            mongomock_newest.failed_write(collection)
            raise
        mongomock_newest.after_write(collection, "update_one", (query, update), {}, result)
        modified += result.modified_count
    return modified


async def update_each(collection: "_Collection", updates: list[tuple[dict, dict]]) -> int:
    """`apply_updates` in one hop to the worker, durable before it answers."""
    sync = collection._sync()
    module = sys.modules[__name__]  # looked up at call time: the round-trip counter wraps it

    def call() -> int:
        return module.apply_updates(sync, updates)

    if collection._holder is not None:
        return await run_write(collection._holder, call)
    return await run(call)


def thread_links(collection: Any) -> list[tuple[Any, Any, list]]:
    """`(_id, originalRequest, relatedRequests)` of every stored document (in the worker)."""
    return [
        (document["_id"], document.get("originalRequest"), document.get("relatedRequests") or [])
        for document in collection._sync()._store._documents.values()
    ]


def word_candidates(collection: Any, wanted: list[str], page: int | None) -> list | None:
    """The ids of the documents that may hold every word (in the worker; mongomock_keys)."""
    from botrequests.storage import mongomock_keys

    return mongomock_keys.word_candidates(collection._sync(), wanted, page)


def prepare_indexes(client: "EmbeddedClient", database: str) -> None:
    """Build every collection's in-memory indexes (in the worker, at start): the first
    page or lookup after a start costs what any other does."""
    from botrequests.storage import mongomock_keys

    sync = _private(client, "AsyncMongoMockClient", "client").get_database(database)
    for name in sync.list_collection_names():
        collection = sync.get_collection(name)
        mongomock_newest.prepare(collection)
        mongomock_keys.prepare(collection)


def build_words(
    client: "EmbeddedClient", database: str, name: str, step: int
) -> tuple[int, int] | None:
    """One step of building a collection's word index (in the worker): None once it is
    built, else how far it has come, `(indexed, of)`."""
    from botrequests.storage import mongomock_keys

    sync = _private(client, "AsyncMongoMockClient", "client").get_database(database)
    return mongomock_keys.build_words(sync.get_collection(name), step)


def is_embedded(collection: Any) -> bool:
    return isinstance(collection, _Collection)


def _private(wrapper: Any, owner: str, name: str) -> Any:
    # mongomock-motor keeps the wrapped object in a name-mangled attribute.
    return wrapper.__dict__[f"_{owner}__{name}"]


class _Cursor(AsyncCursor):
    """A find cursor whose results are computed in the worker thread, within its
    `max_time_ms` (the first read runs the query: mongomock computes it whole)."""

    def __init__(self, cursor: Any, max_time_ms: int | None = None) -> None:
        super().__init__(cursor)
        self._max_time_ms = max_time_ms

    def _sync(self) -> Any:
        return _private(self, "AsyncCursor", "cursor")

    def max_time_ms(self, max_time_ms: int | None) -> "_Cursor":
        self._max_time_ms = max_time_ms
        return self

    async def to_list(self, *args: Any, **kwargs: Any) -> list:
        return await run_timed(self._max_time_ms, list, self._sync())

    async def next(self) -> Any:
        item = await run_timed(self._max_time_ms, next, self._sync(), _DONE)
        if item is _DONE:
            raise StopAsyncIteration
        return item

    __anext__ = next

    def clone(self) -> "_Cursor":
        return _Cursor(self._sync().clone(), self._max_time_ms)


class _Buffered:
    """A cursor computed whole in the worker on its first read (`_compute`), then read from
    memory: `to_list`, `async for`, `next`, `close`."""

    _results: deque | None = None

    async def _compute(self) -> list:
        raise NotImplementedError

    async def _all(self) -> deque:
        if self._results is None:
            self._results = deque(await self._compute())
        return self._results

    async def to_list(self, *args: Any, **kwargs: Any) -> list:
        results = list(await self._all())
        self._results = deque()
        return results

    def __aiter__(self) -> "_Buffered":
        return self

    async def next(self) -> Any:
        results = await self._all()
        if not results:
            raise StopAsyncIteration
        return results.popleft()

    __anext__ = next

    async def close(self) -> None:
        self._results = deque()


class _NewestFind(_Buffered):
    """A newest-first find, answered in the worker by `mongomock_newest.find` within its
    `max_time_ms`."""

    def __init__(self, collection: Any, query: dict, limit: int, options: dict) -> None:
        self._collection, self._query, self._limit = collection, query, limit
        self._max_time_ms = options.get("max_time_ms")

    async def _compute(self) -> list:
        return await run_timed(
            self._max_time_ms, mongomock_newest.find, self._collection, self._query, self._limit
        )


class _LatentAggregation(_Buffered, AsyncLatentCommandCursor):
    """mongomock runs a pipeline when `aggregate` is called; this defers it to the first
    read, in the worker thread."""

    def __init__(self, start: Callable[[], Any], max_time_ms: int | None = None) -> None:
        super().__init__(None)
        self._start = start
        self._max_time_ms = max_time_ms
        self._results = None

    async def _compute(self) -> list:
        return await run_timed(self._max_time_ms, lambda: list(self._start()))


# Past this many documents in one collection, what reads them all (stats, an export) takes
# about a second or more on this backend, and start-up and memory grow with them
# (docs/benchmarks.md, scripts/growth.py): said once.
GROWTH_WARNING_DOCUMENTS = 100_000
_warned: set[str] = set()


def _warn_when_large(collection: Any) -> None:
    if _warned or len(collection._store) < GROWTH_WARNING_DOCUMENTS:
        return
    _warned.add(collection.name)
    log.warning(
        "the embedded database holds %d documents in %s: pages and lookups stay fast, but "
        "stats and exports read every one (about a second per 100 000, the embedded worker "
        "busy meanwhile), and start-up and memory grow with the data. "
        "Set MONGODB_URI to a MongoDB server (botrequests dump, then mongorestore) to go on "
        "growing",
        len(collection._store),
        collection.name,
    )


# Every this many documents stored since the last time, the cyclic collector is run over
# what is not frozen yet (the new documents, a few milliseconds) and what survives is
# frozen with the rest: stored documents hold no reference cycles and live until deleted
# (freed by their reference counts), and a full collection that walked all of them took
# 1.5 s at 300 000 requests, every call waiting (the p99 of a page under load).
FREEZE_EVERY_DOCUMENTS = 10_000
_stored_since_freeze = [0]


def _freeze_when_grown(result: Any) -> None:
    ids = getattr(result, "inserted_ids", None)
    _stored_since_freeze[0] += len(ids) if ids is not None else 1
    if _stored_since_freeze[0] >= FREEZE_EVERY_DOCUMENTS:
        _stored_since_freeze[0] = 0
        gc.collect()
        gc.freeze()


def _off_loop(name: str) -> Callable[..., Any]:
    grows = name in ("insert_one", "insert_many")

    async def method(self: "_Collection", *args: Any, **kwargs: Any) -> Any:
        sync = self._sync()

        def call() -> Any:
            try:
                result = getattr(sync, name)(*args, **kwargs)
            except BaseException:
                mongomock_newest.failed_write(sync)
                raise
            mongomock_newest.after_write(sync, name, args, kwargs, result)
            if grows:
                _warn_when_large(sync)
                _freeze_when_grown(result)
            return result

        if self._holder is not None:
            return await run_write(self._holder, call)
        return await run(call)

    method.__name__ = name
    return method


class _Collection(AsyncMongoMockCollection):
    def __init__(self, database: Any, collection: Any, holder: "Holder | None") -> None:
        super().__init__(database, collection)
        self._holder = holder  # the data directory's store, when kept on disk
        mongomock_fixes.partial_aware_uniques(collection)

    def _sync(self) -> Any:
        return _private(self, "AsyncMongoMockCollection", "collection")

    def find(self, *args: Any, **kwargs: Any) -> "_Cursor | _NewestFind":
        query = mongomock_newest.walkable(args, kwargs)
        if query is not None:  # newest first: walked in index order (mongomock_newest)
            return _NewestFind(self._sync(), query, kwargs.get("limit") or 0, kwargs)
        return _Cursor(self._sync().find(*args, **kwargs), kwargs.get("max_time_ms"))

    def aggregate(self, *args: Any, **kwargs: Any) -> _LatentAggregation:
        if len(args) == 1 and set(kwargs) <= {"maxTimeMS", "batchSize"}:
            # Compiled, where its stages allow (mongomock_pipeline); else mongomock's own.
            start = functools.partial(mongomock_pipeline.aggregate, self._sync(), args[0])
            return _LatentAggregation(start, kwargs.get("maxTimeMS"))
        start = functools.partial(self._sync().aggregate, *args, **kwargs)
        return _LatentAggregation(start, kwargs.get("maxTimeMS"))

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

        if self._holder is not None:
            return await run_write(self._holder, create)
        return await run(create)


for _name in _ASYNC_METHODS:
    setattr(_Collection, _name, _off_loop(_name))


class _Database(AsyncMongoMockDatabase):
    _holder: "Holder | None" = None

    def get_collection(self, *args: Any, **kwargs: Any) -> _Collection:
        sync = _private(self, "AsyncMongoMockDatabase", "database")
        return _Collection(self, sync.get_collection(*args, **kwargs), self._holder)


class Holder:
    """A data directory's store and the mongomock data it keeps."""

    def __init__(self, store: durable.Store, server: Any) -> None:
        self.durable, self.server = store, server


class EmbeddedClient(AsyncMongoMockClient):
    """mongomock with Motor's interface, queried off the event loop; with `store`, its
    data loaded from and written through to that data directory (durable.py)."""

    def __init__(self, *args: Any, store: durable.Store | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.holder: Holder | None = None
        if store is not None:
            server = _private(self, "AsyncMongoMockClient", "client")._store
            self.loaded = store.load(server)
            # What was loaded lives as long as the process and holds no reference cycles:
            # out of the cyclic collector's sight, which would otherwise walk all of it on
            # every full collection (a pause that grows with the data).
            gc.freeze()
            store.start(server, _LOCK)
            self.holder = Holder(store, server)

    def get_database(self, *args: Any, **kwargs: Any) -> _Database:
        sync = _private(self, "AsyncMongoMockClient", "client")
        database = _Database(
            self,
            sync.get_database(*args, **kwargs),
            mock_build_info=_private(self, "AsyncMongoMockClient", "build_info"),
        )
        database._holder = self.holder
        return database

    def close(self) -> None:
        _private(self, "AsyncMongoMockClient", "client").close()
        if self.holder is not None:
            self.holder.durable.close()
