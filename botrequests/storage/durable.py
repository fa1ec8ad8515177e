"""The embedded backend kept on disk: SQLite under mongomock's working set.

mongomock holds the documents that queries run on; SQLite (WAL, `synchronous=FULL`)
keeps them, one table per collection keyed by `_id` and holding each document's BSON,
and one row per collection with its indexes. Nothing here is a journal format: what is
written is the whole new version of each document a write changed, or its deletion,
taken from mongomock's store after the write, so what is on disk cannot differ from
what was answered. A crash mid-commit is SQLite's to recover.

A write records what it touches while it runs in the embedded worker (`recording`): the
keys mongomock's store sets or deletes, and the documents an update or delete walked
(mongomock changes them in place). Writes join the open `Batch`; `commit` writes the
batch in one transaction. The embedded worker commits when nothing else is queued, so
writes that arrive together share one commit (one fsync), and each is answered after
the commit that holds it. A commit that fails (a full disk) is rolled back in SQLite and
the batch's documents are put back in memory as SQLite still has them: those writes are
answered 503 and not applied. A read made before that may have seen them.
"""

import contextlib
import logging
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bson
from mongomock import helpers
from mongomock.collection import Collection
from mongomock.store import CollectionStore, ServerStore

from botrequests.errors import NotDurable

# The fixes replace `_iter_documents` first; the recording below wraps theirs.
from botrequests.storage import datadir, mongomock_fixes, mongomock_newest
from botrequests.storage.datadir import DataDirError

log = logging.getLogger("botrequests.db")

# PRAGMA application_id: marks the file as this service's ("brq1").
APPLICATION_ID = 0x62727131
SCHEMA = """
CREATE TABLE IF NOT EXISTS collections (
    database TEXT NOT NULL, name TEXT NOT NULL, tbl TEXT NOT NULL UNIQUE,
    indexes BLOB NOT NULL, PRIMARY KEY (database, name));
CREATE TABLE IF NOT EXISTS state (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


@dataclass(eq=False)
class Batch:
    """Writes waiting for one commit: the keys each collection's store changed."""

    touched: dict[CollectionStore, set] = field(default_factory=dict)
    indexes: set[CollectionStore] = field(default_factory=set)
    cleared: set[CollectionStore] = field(default_factory=set)
    done: bool = False
    error: NotDurable | None = None

    def touch(self, store: CollectionStore, key: Any) -> None:
        keys = self.touched.get(store)
        if keys is None:
            keys = self.touched[store] = set()
        keys.add(key)

    @property
    def empty(self) -> bool:
        return not (self.touched or self.indexes or self.cleared)


# The batch of the write running now (in the embedded worker, under its lock), if any.
_recording: Batch | None = None


def _key_of(document: dict) -> Any:
    identifier = document["_id"]
    return helpers.hashdict(identifier) if isinstance(identifier, dict) else identifier


def _id_bytes(key: Any) -> bytes:
    return bson.encode({"_id": dict(key) if isinstance(key, helpers.hashdict) else key})


def _install() -> None:
    """Make mongomock's store report what a write touches (only while one records)."""
    set_item, del_item = CollectionStore.__setitem__, CollectionStore.__delitem__
    drop, create_index, drop_index = (
        CollectionStore.drop,
        CollectionStore.create_index,
        CollectionStore.drop_index,
    )
    walk = Collection._iter_documents
    assert walk is mongomock_fixes.iter_documents, "mongomock_fixes must be installed first"

    def __setitem__(self: CollectionStore, key: Any, value: Any) -> None:
        set_item(self, key, value)
        if _recording is not None:
            _recording.touch(self, key)

    def __delitem__(self: CollectionStore, key: Any) -> None:
        del_item(self, key)
        if _recording is not None:
            _recording.touch(self, key)

    def dropped(self: CollectionStore) -> None:
        drop(self)
        if _recording is not None:
            _recording.cleared.add(self)
            _recording.indexes.add(self)

    def index_made(self: CollectionStore, *args: Any) -> None:
        create_index(self, *args)
        if _recording is not None:
            _recording.indexes.add(self)

    def index_dropped(self: CollectionStore, *args: Any) -> None:
        drop_index(self, *args)
        if _recording is not None:
            _recording.indexes.add(self)

    def walked(self: Collection, query: Any) -> Any:
        found = walk(self, query)
        batch = _recording
        if batch is None:
            return found
        # An update changes the documents it walks in place: each may have changed.
        return _watched(batch, self._store, found)

    walked.__wrapped__ = walk  # type: ignore[attr-defined]
    CollectionStore.__setitem__ = __setitem__  # type: ignore[method-assign]
    CollectionStore.__delitem__ = __delitem__  # type: ignore[method-assign]
    CollectionStore.drop = dropped  # type: ignore[method-assign]
    CollectionStore.create_index = index_made  # type: ignore[method-assign]
    CollectionStore.drop_index = index_dropped  # type: ignore[method-assign]
    Collection._iter_documents = walked  # type: ignore[method-assign]


def _watched(batch: Batch, store: CollectionStore, found: Iterator[dict]) -> Iterator[dict]:
    for document in found:
        batch.touch(store, _key_of(document))
        yield document


_install()


def encode_indexes(indexes: dict[str, dict]) -> bytes:
    listed = [
        {**spec, "name": name, "key": [[field, order] for field, order in spec["key"]]}
        for name, spec in indexes.items()
    ]
    return bson.encode({"indexes": listed})


def decode_indexes(blob: bytes) -> dict[str, dict]:
    indexes = {}
    for spec in bson.decode(blob)["indexes"]:
        name = spec.pop("name")
        spec["key"] = [(field, order) for field, order in spec["key"]]
        indexes[name] = spec
    return indexes


class Store:
    """One data directory's SQLite database, and the lock that makes it this process's."""

    def __init__(self, directory: Path, purpose: str) -> None:
        self.directory = datadir.prepare(directory)
        self.path = self.directory / datadir.DATABASE_FILE
        self._lock = datadir.Lock(self.directory, purpose)
        self.open_batch = Batch()
        self._tables: dict[CollectionStore, str] = {}
        self._names: dict[str, tuple[str, str]] = {}  # table -> (database, collection)
        self.recovered = False  # the last process using it did not close it
        try:
            self._db = self._connect()
        except DataDirError:
            self._lock.release()
            raise

    def _connect(self) -> sqlite3.Connection:
        try:
            # Used by the embedded worker (and the loop before it starts), one at a time.
            connection = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            found = connection.execute("PRAGMA application_id").fetchone()[0]
            tables = connection.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
            if found != APPLICATION_ID and (found or tables):
                connection.close()
                raise DataDirError(
                    f"{self.path} is an SQLite database of another application "
                    "(not botrequests): set BOTREQUESTS_DATA_DIR to another directory"
                )
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=FULL")
            connection.executescript(SCHEMA)
            connection.execute(f"PRAGMA application_id={APPLICATION_ID}")
            left = connection.execute("SELECT value FROM state WHERE key='open'").fetchone()
            self.recovered = left is not None
            connection.execute(
                "INSERT OR REPLACE INTO state VALUES ('open', ?)", (time.strftime("%FT%TZ"),)
            )
        except sqlite3.DatabaseError as exc:
            raise _damaged(self.path, exc) from None
        return connection

    def load(self, server: ServerStore) -> int:
        """Fill mongomock's `server` with what is stored; how many documents."""
        count = 0
        try:
            rows = self._db.execute("SELECT database, name, tbl, indexes FROM collections")
            for database, name, table, indexes in rows.fetchall():
                store = server[database][name]
                store.indexes = decode_indexes(indexes)
                store.create()
                documents = store._documents
                for (blob,) in self._db.execute(f'SELECT doc FROM "{table}" ORDER BY rowid'):
                    document = bson.decode(blob)
                    documents[_key_of(document)] = document
                    count += 1
                self._tables[store] = table
                self._names[table] = (database, name)
        except (sqlite3.DatabaseError, bson.errors.InvalidBSON) as exc:
            raise _damaged(self.path, exc) from None
        return count

    @contextlib.contextmanager
    def recording(self) -> Iterator[Batch]:
        """While a write runs (in the embedded worker): what it touches joins the batch."""
        global _recording
        _recording = self.open_batch
        try:
            yield self.open_batch
        finally:
            _recording = None

    def ticket(self) -> Batch:
        """The batch holding the writes made so far (already done when they touched nothing)."""
        if self.open_batch.empty:
            return Batch(done=True)
        return self.open_batch

    def commit(self, server: ServerStore) -> None:
        """Commit the open batch (in the embedded worker); on failure, undo it in memory."""
        batch, self.open_batch = self.open_batch, Batch()
        if batch.empty:
            batch.done = True
            return
        try:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._write(batch, server)
                self._db.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    self._db.execute("ROLLBACK")
                raise
        except (sqlite3.Error, bson.errors.BSONError, OverflowError) as exc:
            reason = f"{type(exc).__name__}: {exc}"[:300]
            log.error("embedded database: a write could not be made durable (%s)", reason)
            self._undo(batch)
            batch.error = NotDurable(reason)
        finally:
            batch.done = True

    def _table(self, store: CollectionStore, server: ServerStore) -> str:
        table = self._tables.get(store)
        if table is None:
            database, name = self._find(store, server)
            table = f"c{len(self._names) + 1}"
            while table in self._names:
                table += "_"
            self._db.execute(
                f'CREATE TABLE IF NOT EXISTS "{table}" (id BLOB PRIMARY KEY, doc BLOB NOT NULL)'
            )
            self._db.execute(
                "INSERT INTO collections VALUES (?, ?, ?, ?)",
                (database, name, table, encode_indexes(store.indexes)),
            )
            self._tables[store] = table
            self._names[table] = (database, name)
        return table

    @staticmethod
    def _find(store: CollectionStore, server: ServerStore) -> tuple[str, str]:
        for database, holder in server._databases.items():
            for name, candidate in holder._collections.items():
                if candidate is store:
                    return database, name
        raise LookupError(f"collection {store.name} belongs to no database")

    def _write(self, batch: Batch, server: ServerStore) -> None:
        for store in batch.cleared:
            self._db.execute(f'DELETE FROM "{self._table(store, server)}"')
        for store, keys in batch.touched.items():
            table = self._table(store, server)
            documents = store._documents
            kept, gone = [], []
            for key in keys:
                document = documents.get(key)
                if document is None:
                    gone.append((_id_bytes(key),))
                else:
                    kept.append((_id_bytes(key), bson.encode(document)))
            # An upsert keeps the row (and so its place in the natural order).
            self._db.executemany(
                f'INSERT INTO "{table}" VALUES (?, ?) '
                "ON CONFLICT (id) DO UPDATE SET doc = excluded.doc",
                kept,
            )
            self._db.executemany(f'DELETE FROM "{table}" WHERE id = ?', gone)
        for store in batch.indexes:
            self._db.execute(
                "UPDATE collections SET indexes = ? WHERE tbl = ?",
                (encode_indexes(store.indexes), self._table(store, server)),
            )

    def _undo(self, batch: Batch) -> None:
        """Put back in memory what SQLite holds for everything the batch touched."""
        for store in batch.touched.keys() | batch.indexes | batch.cleared:
            mongomock_newest.forget(store)
            table = self._tables.get(store)
            if store in batch.indexes:
                row = (
                    table
                    and self._db.execute(
                        "SELECT indexes FROM collections WHERE tbl = ?", (table,)
                    ).fetchone()
                )
                store.indexes = decode_indexes(row[0]) if row else {}
            documents = store._documents
            if store in batch.cleared:
                documents.clear()
                if table:
                    for (blob,) in self._db.execute(f'SELECT doc FROM "{table}" ORDER BY rowid'):
                        document = bson.decode(blob)
                        documents[_key_of(document)] = document
                continue
            for key in batch.touched.get(store, ()):
                row = (
                    table
                    and self._db.execute(
                        f'SELECT doc FROM "{table}" WHERE id = ?', (_id_bytes(key),)
                    ).fetchone()
                )
                if row:
                    documents[key] = bson.decode(row[0])
                else:
                    documents.pop(key, None)

    def close(self) -> None:
        """Mark the directory closed cleanly (unless a repair after an unclean stop is still
        owed) and release it. Every write was committed before it was answered."""
        if self._db is not None:
            with contextlib.suppress(sqlite3.Error):
                if not self.recovered:
                    self._db.execute("DELETE FROM state WHERE key='open'")
                self._db.close()
            self._db = None  # type: ignore[assignment]
        self._lock.release()
        _open.pop(self.directory, None)


_open: dict[Path, Store] = {}


def open_store(directory: Path, purpose: str) -> Store:
    """The store of `directory`: the one this process holds already, or newly opened."""
    directory = directory.expanduser().absolute()
    store = _open.get(directory)
    if store is None:
        store = _open[directory] = Store(directory, purpose)
    return store


def _damaged(path: Path, exc: BaseException) -> DataDirError:
    return DataDirError(
        f"{path}: SQLite reports the database damaged or unreadable: {exc} "
        "(nothing was changed; restore it from a backup or `botrequests dump` output)"
    )
