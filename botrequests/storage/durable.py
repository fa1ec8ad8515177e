"""The embedded backend kept on disk: SQLite under mongomock's working set.

mongomock holds the documents that queries run on; SQLite (WAL, `synchronous=FULL`)
keeps them, one table per collection keyed by `_id` and holding each document's BSON,
and one row per collection with its indexes. Nothing here is a journal format: what is
written is the whole new version of each document a write changed, or its deletion,
taken from mongomock's store right after the write (`recording.py` says which), so what
is on disk cannot differ from what was answered. A crash mid-commit is SQLite's to
recover.

Each write is encoded in the embedded worker as it ends, and handed to the committer
thread, which writes every batch waiting for it in one transaction (one fsync) while the
worker goes on with the next calls; each write is answered once the commit holding it
is done. A commit that fails (a full disk) is rolled back, and that batch and every
one after it (they were made on top of it) are put back in memory as SQLite still has
them: those writes are answered 503 and not applied. A read made in between may have
seen them.
"""

import contextlib
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import bson
from mongomock.store import CollectionStore, ServerStore

from botrequests.errors import NotDurable
from botrequests.storage import datadir, mongomock_keys, mongomock_newest, recording
from botrequests.storage.datadir import DataDirError
from botrequests.storage.recording import Batch

log = logging.getLogger("botrequests.db")

# PRAGMA application_id: marks the file as this service's ("brq1").
APPLICATION_ID = 0x62727131
SCHEMA = """
CREATE TABLE IF NOT EXISTS collections (
    database TEXT NOT NULL, name TEXT NOT NULL, tbl TEXT NOT NULL UNIQUE,
    indexes BLOB NOT NULL, PRIMARY KEY (database, name));
CREATE TABLE IF NOT EXISTS state (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
_STOP = object()
_FAILURES = (sqlite3.Error, bson.errors.BSONError, OverflowError, LookupError)


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
    """One data directory's SQLite database, the lock that makes it this process's, and
    the thread that commits to it."""

    def __init__(self, directory: Path, purpose: str) -> None:
        self.directory = datadir.prepare(directory)
        self.path = self.directory / datadir.DATABASE_FILE
        self._lock = datadir.Lock(self.directory, purpose)
        # (database, collection) -> table: read and written by the committer only (and
        # by `load`, before it starts).
        self._tables: dict[tuple[str, str], str] = {}
        # store -> (database, collection): the worker's, under the data lock.
        self._named: dict[CollectionStore, tuple[str, str]] = {}
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._closing = threading.Lock()
        self._closed = False
        self._committer: threading.Thread | None = None
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
                    documents[recording.key_of(document)] = document
                    count += 1
                self._tables[(database, name)] = table
                self._named[store] = (database, name)
        except (sqlite3.DatabaseError, bson.errors.InvalidBSON) as exc:
            raise _damaged(self.path, exc) from None
        return count

    def start(self, server: ServerStore, data_lock: Any) -> None:
        """Start committing; `data_lock` is held by whoever touches mongomock's data."""
        self._server, self._data_lock = server, data_lock
        self._committer = threading.Thread(target=self._commit_loop, name="embedded-commit")
        self._committer.daemon = True
        self._committer.start()

    # --- in the embedded worker, under the data lock --------------------------------------

    def submit(self, batch: Batch) -> None:
        """Encode what a write touched, as it is now, and hand it to the committer (its
        future is done when that is on disk)."""
        if not (batch.touched or batch.indexes or batch.cleared):
            batch.future.set_result(None)
            return
        try:
            for store in batch.touched.keys() | batch.indexes | batch.cleared:
                database, name = self._name(store)
                documents = store._documents
                kept, gone = [], []
                for key in batch.touched.get(store, ()):
                    document = documents.get(key)
                    if document is None:
                        gone.append(recording.id_bytes(key))
                    else:
                        kept.append((recording.id_bytes(key), bson.encode(document)))
                indexes = encode_indexes(store.indexes) if store in batch.indexes else None
                cleared = store in batch.cleared
                batch.payload.append((database, name, store, kept, gone, cleared, indexes))
        except _FAILURES as exc:  # the committer undoes it, with what follows it
            batch.unencodable = f"{type(exc).__name__}: {exc}"
        with self._closing:
            if self._closed:
                batch.future.set_exception(NotDurable("the data directory is closed"))
                return
            self._queue.put(batch)

    def _name(self, store: CollectionStore) -> tuple[str, str]:
        named = self._named.get(store)
        if named is None:
            for database, holder in self._server._databases.items():
                for name, candidate in holder._collections.items():
                    if candidate is store:
                        named = self._named[store] = (database, name)
            if named is None:
                raise LookupError(f"collection {store.name} belongs to no database")
        return named

    # --- the committer thread -------------------------------------------------------------

    def _commit_loop(self) -> None:
        while True:
            # The first thing queued, and everything waiting behind it: the batches share
            # one commit; calls run after it.
            items = [self._queue.get(), *self._drain()]
            batches = [item for item in items if isinstance(item, Batch)]
            if batches:
                self._commit(batches)
            for item in items:
                if isinstance(item, tuple):
                    self._call(*item)
            if _STOP in items:
                return

    def _drain(self) -> list:
        """Everything queued now, without waiting."""
        items = []
        while True:
            try:
                items.append(self._queue.get_nowait())
            except queue.Empty:
                return items

    def _call(self, function: Callable[[sqlite3.Connection], Any], job: Future) -> None:
        try:
            job.set_result(function(self._db))
        except Exception as exc:
            job.set_exception(exc)

    def _commit(self, batches: list[Batch]) -> None:
        known = dict(self._tables)
        try:
            statements = [s for batch in batches for s in self._statements(batch)]
            if len(statements) == 1:
                # One statement is its own transaction (autocommit): one step, one fsync,
                # and the GIL taken back once.
                self._db.execute(*statements[0])
            else:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    for statement in statements:
                        self._db.execute(*statement)
                    self._db.execute("COMMIT")
                except BaseException:
                    with contextlib.suppress(sqlite3.Error):
                        self._db.execute("ROLLBACK")
                    raise
        except _FAILURES as exc:
            self._tables = known  # tables made in the rolled-back transaction are gone
            self._fail(batches, f"{type(exc).__name__}: {exc}"[:300])
            return
        for batch in batches:
            batch.future.set_result(None)

    def _table(self, database: str, name: str, indexes: bytes | None) -> tuple[str, list]:
        """The collection's table, and the statements that make it if it is new."""
        table = self._tables.get((database, name))
        if table is not None:
            return table, []
        table = f"c{len(self._tables) + 1}"
        while table in self._tables.values():
            table += "_"
        self._tables[(database, name)] = table
        return table, [
            (f'CREATE TABLE "{table}" (id BLOB PRIMARY KEY, doc BLOB NOT NULL)',),
            (
                "INSERT INTO collections VALUES (?, ?, ?, ?)",
                (database, name, table, indexes or encode_indexes({})),
            ),
        ]

    def _statements(self, batch: Batch) -> list[tuple]:
        """What writing a batch takes, in order (`_table` may add a table for it)."""
        if batch.unencodable is not None:
            raise bson.errors.InvalidDocument(batch.unencodable)
        statements: list[tuple] = []
        for database, name, _, kept, gone, cleared, indexes in batch.payload:
            table, made = self._table(database, name, indexes)
            statements += made
            if cleared:
                statements.append((f'DELETE FROM "{table}"',))
            # Many rows per statement: sqlite3 lets go of the GIL at every step, and with
            # the event loop and the embedded worker busy, taking it back 1 000 times is
            # what a batch's commit would cost. An upsert keeps the row (and so its place
            # in the natural order).
            for part in _chunks(kept):
                statements.append(
                    (
                        f'INSERT INTO "{table}" VALUES {", ".join(["(?, ?)"] * len(part))} '
                        "ON CONFLICT (id) DO UPDATE SET doc = excluded.doc",
                        [value for row in part for value in row],
                    )
                )
            for part in _chunks(gone):
                marks = ", ".join("?" * len(part))
                statements.append((f'DELETE FROM "{table}" WHERE id IN ({marks})', part))
            if indexes is not None:
                update = "UPDATE collections SET indexes = ? WHERE tbl = ?"
                statements.append((update, (indexes, table)))
        return statements

    def _fail(self, batches: list[Batch], reason: str) -> None:
        """These batches, and every one queued after them (made on top of them), are not
        applied: undone in memory, from what SQLite holds, and answered `NotDurable`."""
        log.error("embedded database: a write could not be made durable (%s)", reason)
        with self._data_lock:  # no write runs meanwhile, so none can queue behind these
            queued = self._drain()
            batches += [item for item in queued if isinstance(item, Batch)]
            for item in queued:
                if isinstance(item, tuple):
                    self._call(*item)
            try:
                for batch in batches:
                    self._undo(batch)
            except sqlite3.Error:
                # Memory may now differ from what is on disk: said loudly; a restart loads
                # what is on disk.
                log.critical("embedded database: could not undo a failed write", exc_info=True)
        for batch in batches:
            batch.future.set_exception(NotDurable(reason))
        if _STOP in queued:
            self._queue.put(_STOP)

    def _undo(self, batch: Batch) -> None:
        """Put back in memory what SQLite holds for everything the batch touched."""
        for store in batch.touched.keys() | batch.indexes | batch.cleared:
            mongomock_newest.forget(store)
            mongomock_keys.forget(store)
            table = self._tables.get(self._named.get(store, ("", "")))
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
                        documents[recording.key_of(document)] = document
                continue
            for key in batch.touched.get(store, ()):
                row = (
                    table
                    and self._db.execute(
                        f'SELECT doc FROM "{table}" WHERE id = ?', (recording.id_bytes(key),)
                    ).fetchone()
                )
                if row:
                    documents[key] = bson.decode(row[0])
                else:
                    documents.pop(key, None)

    def call(self, function: Callable[[sqlite3.Connection], Any]) -> Any:
        """`function(connection)` in the committer thread, between two commits (for what
        must use its connection, such as a PRAGMA of that connection)."""
        job: Future = Future()
        self._queue.put((function, job))
        return job.result()

    def close(self) -> None:
        """Commit what is queued, mark the directory closed cleanly (unless a repair after an
        unclean stop is still owed) and release it."""
        with self._closing:
            self._closed = True
            self._queue.put(_STOP)
        if self._committer is not None:
            self._committer.join()
        if self._db is not None:
            with contextlib.suppress(sqlite3.Error):
                if not self.recovered:
                    self._db.execute("DELETE FROM state WHERE key='open'")
                self._db.close()
            self._db = None  # type: ignore[assignment]
        self._lock.release()
        _open.pop(self.directory, None)


_open: dict[Path, Store] = {}
# Rows per statement: two parameters each, well under SQLite's 32 766.
_ROWS_PER_STATEMENT = 400


def _chunks(rows: list) -> list[list]:
    return [rows[at : at + _ROWS_PER_STATEMENT] for at in range(0, len(rows), _ROWS_PER_STATEMENT)]


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
