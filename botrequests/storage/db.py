"""The only module that knows the driver: client creation, Beanie start-up, raw calls.

Motor reaches end of life in 2027 and Beanie 2 moves to PyMongo's async client; keeping
every driver-specific line here makes that move a change in one place (DESIGN.md).
"""

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import timedelta
from typing import Any

import bson
from beanie import Document, init_beanie
from motor.motor_asyncio import AsyncIOMotorClient
from pymongo import IndexModel, UpdateOne, uri_parser
from pymongo.errors import CollectionInvalid, DuplicateKeyError, OperationFailure

from botrequests.config import Settings
from botrequests.documents import (
    DOCUMENT_MODELS,
    VERSION_BUMP,
    ApiKey,
    Bot,
    BotRequest,
    Lease,
)
from botrequests.storage import durable, indexes, mongomock_words
from botrequests.storage.roundtrips import count_round_trips as count_round_trips  # re-exported
from botrequests.storage.roundtrips import listener

log = logging.getLogger("botrequests.db")

# The embedded backend keeps a word index on the requests (search, `q=`).
mongomock_words.COLLECTIONS.add(BotRequest.Settings.name)


def create_client(settings: Settings, purpose: str = "botrequests serve") -> Any:
    """A Motor client for `MONGODB_URI`; when it is unset, the embedded backend kept in
    the data directory (`DataDirError` if that cannot be used; `purpose` names this
    process to another that finds it in use); `mongomock://`: the embedded backend in
    memory only."""
    if settings.embedded:
        from botrequests.storage.embedded import EmbeddedClient

        if not settings.durable:
            log.warning(
                "MONGODB_URI=%s: the embedded database is in memory only; nothing is kept "
                "after exit (unset MONGODB_URI to keep it in BOTREQUESTS_DATA_DIR)",
                settings.mongodb_uri,
            )
            return EmbeddedClient(tz_aware=True)
        store = durable.open_store(settings.data_path, purpose)
        try:
            client = EmbeddedClient(tz_aware=True, store=store)
        except BaseException:
            store.close()
            raise
        log.info("embedded database kept in %s: %d document(s) loaded", store.path, client.loaded)
        return client
    return AsyncIOMotorClient(
        settings.mongodb_uri,
        tz_aware=True,
        event_listeners=[listener],
        **client_defaults(settings),
    )


def client_defaults(settings: Settings) -> dict[str, Any]:
    """The service's timeouts, for what `MONGODB_URI` leaves out: an option given in the
    URI wins (a keyword argument would override it)."""
    timeout = settings.mongodb_timeout_ms
    defaults = {
        "serverSelectionTimeoutMS": timeout,
        "connectTimeoutMS": timeout,
        # Longer than QUERY_TIMEOUT_MS, so a slow query is stopped by the server and
        # reported as such (504), not cut by the socket.
        "socketTimeoutMS": max(timeout * 5, settings.query_timeout_ms + 5_000),
    }
    query = settings.mongodb_uri.partition("?")[2]
    # split_options reads the query string only (parse_uri would resolve mongodb+srv).
    given = set(uri_parser.split_options(query)) if query else set()
    return {name: value for name, value in defaults.items() if name.lower() not in given}


# A batch size above any bounded result this service reads: the server sends it all in
# its first reply (up to 16 MB) instead of 101 documents and the rest on getMore.
_ONE_REPLY = 100_000

# Read from the settings at start-up (configuration, not state).
_limits: dict[str, Any] = {"query_timeout_ms": Settings.model_fields["query_timeout_ms"].default}


async def init_db(client: Any, settings: Settings) -> list[indexes.Decision]:
    """Bind the Beanie documents to the database and create their indexes; returns the
    indexes that could not be made as wanted (each already logged, with its cost)."""
    _limits["query_timeout_ms"] = settings.query_timeout_ms
    _limits["percentiles"] = False if settings.embedded else await _has_percentile(client)
    database = client[settings.mongodb_database]
    # Every collection exists before the first write: creating one implicitly while
    # inserts race into it was seen to deadlock a wire-protocol server.
    existing = set(await database.list_collection_names())
    for model in DOCUMENT_MODELS:
        name = model.Settings.name
        if name not in existing:
            with contextlib.suppress(CollectionInvalid):  # another worker made it meanwhile
                await database.create_collection(name)
    # Beanie would create the indexes in one call that fails on the first conflict with
    # an index another application made; ensure_indexes compares each first.
    await init_beanie(database=database, document_models=DOCUMENT_MODELS, skip_indexes=True)
    shortfall = await ensure_indexes(database)
    await _retire_global_unique_indexes(database)
    return shortfall


async def ensure_indexes(database: Any) -> list[indexes.Decision]:
    """Create each wanted index that is not there. One that conflicts with an existing
    index (same keys under another name or with other options, or its name taken), or
    that the server refuses (e.g. duplicates in the data for a unique one), is skipped:
    one warning names every such index and what its absence costs."""
    shortfall: list[indexes.Decision] = []
    for model in DOCUMENT_MODELS:
        wanted = list(getattr(model.Settings, "indexes", None) or [])
        if not wanted:
            continue
        coll = database[model.Settings.name]
        existing = await coll.index_information()
        for index in wanted:
            decision = indexes.decide(model.Settings.name, index, existing)
            if decision.action == "create":
                try:
                    await coll.create_indexes([index])
                    continue
                except OperationFailure as exc:
                    reason = (exc.details or {}).get("errmsg") or str(exc)
                    decision = indexes.Decision(
                        decision.collection,
                        decision.name,
                        "missing",
                        f"the server refused it: {reason[:200]}",
                        decision.cost,
                    )
            if decision.action == "equivalent" and not decision.cost:
                log.info("index %s", decision.line())
            elif decision.action != "present":
                shortfall.append(decision)
    search = await _ensure_search_index(database)
    _limits["text_index"] = search is None
    if search is not None:
        shortfall.append(search)
    if shortfall:
        log.warning(
            "indexes not created as wanted (the database's own stay untouched): %s",
            "; ".join(decision.line() for decision in shortfall),
        )
    return shortfall


async def _ensure_search_index(database: Any) -> indexes.Decision | None:
    """The text index that narrows a search on MongoDB (indexes.SEARCH_INDEX_MODEL);
    None when it is there, else what stands in its way. The embedded backend keeps its own
    word index (mongomock_words)."""
    from botrequests.storage import embedded

    name = BotRequest.Settings.name
    coll = database[name]
    if embedded.is_embedded(coll):
        return None
    decision = indexes.decide_search(name, await coll.index_information())
    if decision.action == "create":
        try:
            await coll.create_indexes([indexes.SEARCH_INDEX_MODEL])
            return None
        except OperationFailure as exc:
            reason = (exc.details or {}).get("errmsg") or str(exc)
            detail = f"the server refused it: {reason[:200]}"
            return indexes.Decision(name, decision.name, "missing", detail, decision.cost)
    return None if decision.action == "present" else decision


async def search_candidates(
    model: type[Document], wanted: list[str], page: int | None = None
) -> dict[str, Any] | None:
    """A clause narrowing a search to the documents that may hold every one of `wanted`
    (folded words), from the backend's index: the embedded word index's ids, or MongoDB's
    text index (each word a phrase: all must appear). None: no index, or (for a `page` of
    that size) one whose candidates cost more to name than a walk costs to find the page;
    every document the other filters leave is a candidate. The caller's check decides
    (search.py)."""
    from botrequests.storage import embedded

    coll = collection(model)
    if embedded.is_embedded(coll):
        ids = await embedded.run_timed(
            _limits["query_timeout_ms"], embedded.word_candidates, coll, wanted, page
        )
        return None if ids is None else {"_id": {"$in": ids}}
    if _limits.get("text_index"):
        phrases = " ".join(f'"{word}"' for word in wanted)
        return {"$text": {"$search": phrases, "$diacriticSensitive": False}}
    return None


async def _retire_global_unique_indexes(database: Any) -> None:
    """Uniqueness is per organization now (the per-organization indexes exist: init_beanie
    made them first, so uniqueness is never off). `requestKey` is this service's own
    field, so a global `requestKey_1` is this service's old index: dropped. A global
    unique `slug_1` on `bots` may be the Mongoose application's own (`unique: true`):
    never dropped, only reported, with what it costs."""
    requests = database[BotRequest.get_collection_name()]
    indexes = await requests.index_information()
    if "requestKey_1" in indexes and indexes["requestKey_1"].get("unique"):
        await requests.drop_index("requestKey_1")
        log.info("dropped the old global unique index requestKey_1 (now per organization)")
    bots = await database[Bot.get_collection_name()].index_information()
    slug = bots.get("slug_1")
    if slug and slug.get("unique"):
        log.warning(
            "bots has a unique index slug_1 over all organizations (made by this service "
            "before 0.2, or by the Mongoose application): slugs stay unique across "
            "organizations, and a 409 tells one organization that another uses a slug. "
            "If nothing else needs it: db.bots.dropIndex('slug_1')"
        )


def close_client(client: Any) -> None:
    client.close()


def _store(client: Any) -> "durable.Store | None":
    holder = client.__dict__.get("holder")  # an EmbeddedClient kept on disk
    return holder.durable if holder is not None else None


def stopped_uncleanly(client: Any) -> bool:
    """Whether the data directory was not closed by the last process that used it (a
    crash or `kill -9`) and nothing has repaired what that may have left."""
    store = _store(client)
    return store is not None and store.recovered


def repaired(client: Any) -> None:
    """What an unclean stop may have left is repaired (`stopped_uncleanly` is now False)."""
    store = _store(client)
    if store is not None:
        store.recovered = False


def data_directory(client: Any) -> Any:
    """The data directory the embedded backend keeps its data in, or None."""
    store = _store(client)
    return store.directory if store is not None else None


# Documents one step of the embedded word index's build at start indexes: tens of
# milliseconds of the worker's time, the most a call that comes meanwhile waits for it.
WORD_INDEX_STEP = 1_000


async def prepare_indexes(client: Any, settings: Settings) -> None:
    """The embedded backend's in-memory indexes, built at start (before the service is
    ready), but the word index, built in the background (`build_word_indexes`); MongoDB
    keeps its own."""
    from botrequests.storage import embedded

    if isinstance(client, embedded.EmbeddedClient):
        await embedded.run(embedded.prepare_indexes, client, settings.mongodb_database)


async def build_word_indexes(client: Any, settings: Settings) -> None:
    """The embedded word index, built after a start in steps between other calls (a
    search that comes first builds what is left whole). Given up after its build had
    to start over three times (the data changed under it in a way that drops indexes):
    the first search builds it then."""
    from botrequests.storage import embedded

    if not isinstance(client, embedded.EmbeddedClient):
        return
    for name in sorted(mongomock_words.COLLECTIONS):
        began, last, restarts = time.monotonic(), -1, 0
        while restarts < 3:
            progress = await embedded.run(
                embedded.build_words, client, settings.mongodb_database, name, WORD_INDEX_STEP
            )
            if progress is None:
                log.info("word index of %s built in %.1f s", name, time.monotonic() - began)
                break
            restarts += progress[0] <= last
            last = progress[0]


async def thread_links(model: type[Document]) -> list[tuple[Any, Any, list]]:
    """Every document's `(_id, originalRequest, relatedRequests)`, in one linear pass over
    the embedded backend's memory (one hop): what a repair after a crash checks."""
    from botrequests.storage import embedded

    return await embedded.run(embedded.thread_links, collection(model))


async def ping(client: Any) -> None:
    await client.admin.command("ping")


def collection(model: type[Document]) -> Any:
    return model.get_motor_collection()


async def aggregate(model: type[Document], pipeline: Sequence[Mapping[str, Any]]) -> list[dict]:
    """Run an aggregation on a document's collection and return the raw documents; the
    server stops it after QUERY_TIMEOUT_MS (maxTimeMS → ExecutionTimeout → 504). Every
    pipeline here ends in a bounded result (a `$limit`, or one group per key up to
    STATS_MAX_GROUPS), asked for in one reply (16 MB at most: larger results still
    need a getMore)."""
    cursor = collection(model).aggregate(
        list(pipeline), maxTimeMS=_limits["query_timeout_ms"], batchSize=_ONE_REPLY
    )
    return await cursor.to_list(length=None)


async def _has_percentile(client: Any) -> bool:
    """Whether the server computes `$percentile` (MongoDB 7.0 on; mongomock does not)."""
    info = await client.admin.command("buildInfo")
    version = tuple(
        int(part) for part in str(info.get("version", "0")).split(".")[:2] if part.isdigit()
    )
    return version >= (7, 0)


def percentiles() -> bool:
    return bool(_limits.get("percentiles"))


def query_timeout_ms() -> int:
    """QUERY_TIMEOUT_MS, for `find`s built with Beanie (`max_time_ms=`)."""
    return _limits["query_timeout_ms"]


async def find_raw(
    model: type[Document],
    query: Mapping[str, Any],
    projection: Mapping[str, Any],
    batch_size: int = 0,
    sort: list[tuple[str, int]] | None = None,
    limit: int = 0,
    timed: bool = False,
) -> list[dict]:
    """Raw documents of a find with a projection (`{}`: whole documents). Callers that
    read every result ask for it in one batch: a server otherwise sends 101 documents and
    the rest on getMore. `timed`: stopped by the server after QUERY_TIMEOUT_MS (504)."""
    options: dict[str, Any] = {"max_time_ms": _limits["query_timeout_ms"]} if timed else {}
    cursor = collection(model).find(
        dict(query),
        dict(projection) or None,
        batch_size=batch_size,
        sort=sort,
        limit=limit,
        **options,
    )
    return await cursor.to_list(length=None)


async def iterate_sized(
    model: type[Document],
    query: Mapping[str, Any],
    sort: list[tuple[str, int]],
    limit: int,
    batch_size: int,
) -> AsyncIterator[tuple[dict, int]]:
    """Raw documents one at a time, each with its BSON size, for callers that bound what
    they hold by bytes (export). The driver holds one reply at a time: at most
    `batch_size` documents and never more than the server's 16 MiB per reply. The cursor
    is closed when the caller stops early (use `contextlib.aclosing`)."""
    cursor = collection(model).find(
        dict(query),
        sort=sort,
        limit=limit,
        batch_size=batch_size,
        max_time_ms=_limits["query_timeout_ms"],
    )
    try:
        async for raw in cursor:
            yield raw, len(bson.encode(raw))
    finally:
        await cursor.close()


async def find_each(
    jobs: Sequence[tuple[type[Document], Mapping[str, Any], Mapping[str, Any] | None]],
) -> list[list[dict]]:
    """The raw documents of several finds `(model, filter, projection or None)`, each read
    in one reply: on a server concurrently (one round trip each), on the embedded backend
    in one hop to its worker thread. The read path of by-id loads and population: no
    query builder, no model per document until the caller validates one."""
    from botrequests.storage import embedded

    collections = [collection(model) for model, _, _ in jobs]
    options = {"batch_size": _ONE_REPLY}
    if collections and embedded.is_embedded(collections[0]):
        return await embedded.find_together(
            [
                (coll, dict(query), dict(projection) if projection else None, {})
                for coll, (_, query, projection) in zip(collections, jobs, strict=True)
            ]
        )
    cursors = [
        coll.find(dict(query), dict(projection) if projection else None, **options)
        for coll, (_, query, projection) in zip(collections, jobs, strict=True)
    ]
    return list(await asyncio.gather(*(cursor.to_list(length=None) for cursor in cursors)))


def key_id(hashed: str) -> Any:
    """A key's `_id`, from its hash: a lookup by `_id` is a read by key on every backend
    (mongomock scans for any other field, so an unknown token cost a scan of the keys)."""
    return bson.ObjectId(hashed[:24])


async def use_key(hashed: str, moment: Any, every: timedelta) -> dict | None:
    """The unrevoked key with this hash (its organization and scope). Its `lastUsedAt` is
    written when older than `every`, by a conditional update: of many workers using it at
    once, one writes."""
    from botrequests.storage import embedded

    keys = collection(ApiKey)
    projection = {"organization": 1, "scope": 1, "lastUsedAt": 1}
    wanted = {"_id": key_id(hashed), "hash": hashed, "revokedAt": None}
    row = await keys.find_one(wanted, projection)
    if row is None and not embedded.is_embedded(keys):
        # A key issued before ids followed hashes (a server keeps its data): the hash index.
        row = await keys.find_one({"hash": hashed, "revokedAt": None}, projection)
    if row is None:
        return None
    last, stale = row.get("lastUsedAt"), moment - every
    if last is None or last < stale:
        await keys.update_one(
            {"_id": row["_id"], "$or": [{"lastUsedAt": None}, {"lastUsedAt": {"$lt": stale}}]},
            {"$set": {"lastUsedAt": moment}},
        )
    return row


async def take_lease(name: str, owner: str, moment: Any, until: Any) -> bool:
    """Whether `owner` now holds the lease `name` until `until` (taken if free or expired,
    or already its own). Atomic on the server: of workers racing, one wins; the others'
    upsert meets the unique `_id` and they are told no."""
    free = {"_id": name, "$or": [{"until": {"$lt": moment}}, {"owner": owner}]}
    try:
        await collection(Lease).update_one(
            free, {"$set": {"owner": owner, "until": until}}, upsert=True
        )
    except DuplicateKeyError:
        return False
    held = await collection(Lease).find_one({"_id": name})
    return bool(held and held.get("owner") == owner)


async def release_lease(name: str, owner: str) -> None:
    await collection(Lease).delete_one({"_id": name, "owner": owner})


async def delete_many(model: type[Document], query: Mapping[str, Any]) -> int:
    return (await collection(model).delete_many(dict(query))).deleted_count


async def unlink_related(organization: Any, ids: list[Any]) -> int:
    """Take `ids` out of every `relatedRequests` of the organization that lists them (and
    move `__v`, as Mongoose would for an array change): before the requests are deleted."""
    result = await collection(BotRequest).update_many(
        {"organization": organization, "relatedRequests": {"$in": ids}},
        {"$pull": {"relatedRequests": {"$in": ids}}, "$inc": VERSION_BUMP},
    )
    return result.modified_count


async def update_each(model: type[Document], updates: list[tuple[dict, dict]]) -> int:
    """Several `(filter, update)` pairs, each applied to one document, in one round trip
    (an unordered `bulk_write`; on the embedded backend, one hop to its worker)."""
    from botrequests.storage import embedded

    coll = collection(model)
    if embedded.is_embedded(coll):
        return await embedded.update_each(coll, updates)
    result = await coll.bulk_write([UpdateOne(f, u) for f, u in updates], ordered=False)
    return result.modified_count


async def count(model: type[Document], query: Mapping[str, Any]) -> int:
    return await collection(model).count_documents(dict(query))


async def insert_raw(model: type[Document], docs: list[dict]) -> list[Any]:
    """Insert documents exactly as given (used by the importer: unknown fields kept)."""
    result = await collection(model).insert_many(docs, ordered=False)
    return list(result.inserted_ids)


async def existing_ids(model: type[Document], ids: list[Any]) -> set[Any]:
    """Which of `ids` are stored (one query)."""
    if not ids:
        return set()
    cursor = collection(model).find({"_id": {"$in": ids}}, {"_id": 1})
    return {doc["_id"] for doc in await cursor.to_list(length=None)}


async def set_raw(model: type[Document], docs: list[dict]) -> int:
    """`$set` each document's fields onto the stored one (import --upsert): fields stored
    but absent from the file are kept, never dropped by a replace."""
    # One update per document: mongomock's bulk_write does not take current PyMongo's
    # UpdateOne, and an import is not a hot path.
    matched = 0
    for doc in docs:
        fields = {key: value for key, value in doc.items() if key != "_id"}
        result = await collection(model).update_one({"_id": doc["_id"]}, {"$set": fields})
        matched += result.matched_count
    return matched


async def create_missing_indexes(
    model: type[Document], wanted: list[dict[str, Any]]
) -> tuple[int, list[str]]:
    """Create each index `{"name", "key", options}` whose name the collection lacks (a
    dump's); how many were made, and why each other one was not."""
    coll = collection(model)
    existing = await coll.index_information()
    made, refused = 0, []
    for spec in wanted:
        if spec["name"] in existing:
            continue
        options = {k: v for k, v in spec.items() if k not in ("name", "key")}
        try:
            await coll.create_indexes([IndexModel(spec["key"], name=spec["name"], **options)])
            made += 1
        except OperationFailure as exc:
            refused.append(f"{spec['name']}: {str(exc)[:200]}")
    return made, refused


async def explain_find(coll: Any, query: dict, sort: list[tuple[str, int]]) -> dict:
    """The query planner's answer for a find (real MongoDB only; mongomock has no planner)."""
    return await coll.find(query).sort(sort).explain()
