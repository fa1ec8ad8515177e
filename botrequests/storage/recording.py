"""What a write touches in mongomock's store, recorded while it runs.

mongomock changes documents in place and keeps no log, so the embedded backend learns
what a write changed here: the keys its store sets and deletes, and the documents an
update or a delete walks (any of them may have changed), while a write records (only
then: reads pay one attribute check). `durable.py` writes the whole current version of
each, or its deletion, to disk.
"""

import contextlib
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import bson
from mongomock import helpers
from mongomock.collection import Collection
from mongomock.store import CollectionStore

# The fixes replace `_iter_documents` first; the recording below wraps theirs.
from botrequests.storage import mongomock_fixes


@dataclass(eq=False)
class Batch:
    """What one write touched (the keys each collection's store set or deleted, whose
    indexes changed, which were dropped), then what it is written to disk as, and the
    future its caller waits on until that is committed."""

    touched: dict[CollectionStore, set] = field(default_factory=dict)
    indexes: set[CollectionStore] = field(default_factory=set)
    cleared: set[CollectionStore] = field(default_factory=set)
    future: Future = field(default_factory=Future)
    # Filled by Store.submit: (database, collection, store, rows kept, ids gone, cleared,
    # indexes or None), and why it could not be encoded, if so.
    payload: list[tuple] = field(default_factory=list)
    unencodable: str | None = None

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


@contextlib.contextmanager
def recording() -> Iterator[Batch]:
    """While a write runs (in the embedded worker): what it touches goes into the batch."""
    global _recording
    batch = _recording = Batch()
    try:
        yield batch
    finally:
        _recording = None


def key_of(document: dict) -> Any:
    identifier = document["_id"]
    return helpers.hashdict(identifier) if isinstance(identifier, dict) else identifier


def id_bytes(key: Any) -> bytes:
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
        batch.touch(store, key_of(document))
        yield document


_install()
