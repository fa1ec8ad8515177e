"""Equality indexes on the embedded backend: the fields of the indexes the service declares.

mongomock answers a filter on any field other than `_id` by testing every document: the
follow-ups of a request, a request's feedback, a session's page, the check that a
`requestKey` is not taken yet (on every keyed insert) each cost the whole collection. Here
each field named by an index of the collection (`indexes.py` declares them, on MongoDB and
here alike) gets a dictionary from each value it holds (each element of an array) to the
ids of the documents holding it. A query with an equality on such a field (`field:
value` or `field: {"$in": [...]}`, at its top or in its `$and`) reads the candidates of
its most selective field, in the store's order, and the whole filter still decides each
of them: the index only has to miss nothing.

Kept where documents enter and leave mongomock's store (`CollectionStore.__setitem__` and
`__delitem__`, so a write half done is seen as the store sees it): a new document is
added; a deleted one leaves its ids, skipped when read (an id counts only while its
document is stored). An update that may change an indexed field (`Collection._update`:
every update and replace goes through it) reads the documents it may change first, and
indexes them again under their new values once it is done (their old entries stay:
candidates the filter drops); while it runs, the indexes are off. A change of the
document count this module did not see (a load) or an index created or dropped drops
them, rebuilt by the next query that needs them (linear, once). A field whose values run
through an array (`a.b` over a list of documents) is not indexed.
"""

from datetime import datetime
from typing import Any

from bson import ObjectId
from mongomock import helpers
from mongomock.collection import Collection
from mongomock.store import CollectionStore

from botrequests.storage import mongomock_words
from botrequests.storage.mongomock_match import kind_of

_SLOT = "_field_indexes"
_SCALARS = (str, ObjectId, int, float, bool, datetime)
_PAUSED = "_field_indexes_paused"
_ALL = object()  # every index paused
_CHANGING = "_fields_an_update_changes"


class _Unindexable(Exception):
    """A stored value this index cannot hold."""


class _FieldIndex:
    def __init__(self, field: str, documents: list[tuple[Any, dict]]) -> None:
        self.parts = field.split(".")
        self.ids: dict[Any, list] = {}
        self.count = 0
        self.stale = 0
        for key, document in documents:
            self.add(key, document)

    def add(self, key: Any, document: dict, again: bool = False) -> None:
        """Index `document`, stored under `key`; `again`: a document already counted,
        indexed anew under what it holds now (its old entries stay: candidates the filter
        drops)."""
        value: Any = document
        for part in self.parts:
            if isinstance(value, dict):
                value = value.get(part)
            elif isinstance(value, list | tuple):
                raise _Unindexable  # an array on the way: mongomock matches each element
            else:
                value = None
                break
        for held in value if isinstance(value, list) else (value,):
            try:
                self.ids.setdefault(held, []).append(key)
            except TypeError:  # unhashable (a document): no scalar equals it
                continue
        if not again:
            self.count += 1


class _Indexes:
    """A collection's equality indexes, and where each stored document sits in the store
    (`order`: the store keeps documents in the order they were first stored)."""

    def __init__(self, fields: frozenset[str], store: Any) -> None:
        self.fields = fields
        self.by_field: dict[str, _FieldIndex] = {}
        self.order: dict[Any, int] = {}
        self.next = 0
        documents = list(store._documents.items())
        for key, _ in documents:
            self.order[key] = self.next
            self.next += 1
        # The word index is built after a start in steps between other calls
        # (`build_words`), or by the first search that needs it sooner; then kept like
        # the others.
        self.words: mongomock_words.WordIndex | None = None
        self.building: mongomock_words.Build | None = None
        for field in fields - {mongomock_words.WORDS}:
            try:
                self.by_field[field] = _FieldIndex(field, documents)
            except _Unindexable:
                continue

    def add(self, key: Any, document: dict, again: bool = False) -> None:
        if not again:
            self.order[key] = self.next
            self.next += 1
        for index in self.by_field.values():
            index.add(key, document, again)
        if self.words is not None:
            self.words.add(key, document, again)
        elif self.building is not None:
            self.building.index.add(key, document, again)

    def removed(self, key: Any) -> None:
        position = self.order.pop(key, None)
        for index in self.by_field.values():
            index.stale += 1
        if self.words is not None:
            self.words.stale += 1
        elif self.building is not None and self.building.counts(position):
            self.building.index.stale += 1


def _declared(collection: Collection) -> frozenset[str]:
    """Every field of the collection's indexes but `_id` and `createdAt` (ranges and
    order, which mongomock_newest walks)."""
    fields = set()
    for index in collection._store.indexes.values():
        for field, _ in index.get("key", ()):
            if isinstance(field, str) and field not in ("_id", "createdAt"):
                fields.add(field)
    if collection.name in mongomock_words.COLLECTIONS:
        fields.add(mongomock_words.WORDS)
    return frozenset(fields)


def _indexes(collection: Collection) -> _Indexes | None:
    store = collection._store
    fields = _declared(collection)
    if not fields:
        return None
    if store.__dict__.get(_PAUSED) is _ALL:
        return None  # an update that may change any indexed field is running
    held = store.__dict__.get(_SLOT)
    # (The store's dict itself: `len(store)` takes mongomock's lock, once per index.)
    size = len(store._documents)
    if held is not None and (
        held.fields != fields
        or len(held.order) != size
        or any(index.count - index.stale != size for index in held.by_field.values())
        or (held.words is not None and held.words.count - held.words.stale != size)
    ):
        held = None  # other indexes declared since, or written to some other way: rebuilt
    if held is None:
        held = store.__dict__[_SLOT] = _Indexes(fields, store)
    return held


def indexes_field(collection: Collection, field: str) -> bool:
    """Whether `collection` keeps an equality index on `field` now."""
    indexes = _indexes(collection)
    return (
        indexes is not None
        and field in indexes.by_field
        and field not in _paused(collection._store)
    )


def _key_of(document: dict) -> Any:
    """The key mongomock's store holds `document` under."""
    identifier = document["_id"]
    return helpers.hashdict(identifier) if isinstance(identifier, dict) else identifier


def forget(store: Any) -> None:
    """Drop a collection's equality indexes: rebuilt by the next query that needs them."""
    store.__dict__.pop(_SLOT, None)


def _equalities(query: Any) -> list[tuple[str, list]]:
    """`(field, values)` a document must hold one of to match `query`."""
    if not isinstance(query, dict):
        return []
    found = []
    for key, search in query.items():
        if key == "$and" and isinstance(search, list):
            for clause in search:
                found += _equalities(clause)
        elif not isinstance(key, str) or key.startswith("$"):
            continue
        elif kind_of(search) in _SCALARS:
            found.append((key, [search]))
        elif isinstance(search, dict) and set(search) == {"$in"}:
            values = search["$in"]
            if isinstance(values, list) and values and all(kind_of(v) in _SCALARS for v in values):
                found.append((key, values))
    return found


def candidates(collection: Collection, query: Any) -> list | None:
    """The ids (some perhaps twice, or no longer stored) of every document that may match
    `query`, from the most selective equality on an indexed field; None when no index
    applies."""
    wanted = _equalities(query)
    if not wanted:
        return None
    indexes = _indexes(collection)
    if indexes is None:
        return None
    best: list | None = None
    paused = _paused(collection._store)
    for field, values in wanted:
        index = indexes.by_field.get(field)
        if index is None or field in paused:
            continue
        if any(isinstance(value, ObjectId) and str(value) in index.ids for value in values):
            continue  # mongomock matches an ObjectId with its text in an array too
        if len(values) == 1:
            ids = index.ids.get(values[0], [])
        else:  # `$in`: each value's ids (put back in the store's order by `documents`)
            ids = [identifier for value in values for identifier in index.ids.get(value, ())]
        if best is None or len(ids) < len(best):
            best = ids
    return best


def word_candidates(collection: Collection, wanted: list[str], page: int | None) -> list | None:
    """The ids of the documents that may hold every word of a search (mongomock_words);
    None when the collection keeps no word index now (an update of its words runs), or
    when, for a `page` of that size, naming its k candidates costs more than walking the
    n documents newest first to find the page (about n·page/k of them, each copied and
    its words read: some 15 times what naming one id costs).
    """
    indexes = _indexes(collection)
    if (
        indexes is None
        or mongomock_words.WORDS not in indexes.fields
        or mongomock_words.WORDS in _paused(collection._store)
    ):
        return None
    if indexes.words is None:
        indexes.words = mongomock_words.WordIndex(list(collection._store._documents.items()))
        indexes.building = None
    found = mongomock_words.candidates(indexes.words, wanted)
    held = indexes.order
    if page is not None and len(found) ** 2 >= 16 * page * len(held):
        return None
    return [key for key in dict.fromkeys(found) if key in held]


def prepare(collection: Collection) -> None:
    """Build the collection's equality indexes now (at start, before the first query
    that needs them); the word index is built apart, in steps (`build_words`)."""
    _indexes(collection)


def build_words(collection: Collection, step: int) -> tuple[int, int] | None:
    """Index the words of up to `step` more documents of the word index being built (one
    call of tens of milliseconds at most, between other calls): how far it has come,
    `(indexed, of)`; None once the index is built, or when the collection keeps none."""
    indexes = _indexes(collection)
    if indexes is None or mongomock_words.WORDS not in indexes.fields:
        return None
    if indexes.words is not None:
        return None
    if indexes.building is None:
        indexes.building = mongomock_words.Build(list(indexes.order.items()), indexes.next)
    building = indexes.building
    building.take(collection._store._documents, indexes.order, step)
    if building.done:
        indexes.words, indexes.building = building.index, None
        return None
    return building.done_upto, len(building.snapshot)


def documents(collection: Collection, query: Any) -> list[dict] | None:
    """The stored documents that may match `query`, in the store's order, once each; None
    when no index applies."""
    ids = candidates(collection, query)
    if ids is None:
        return None
    held = collection._store.__dict__[_SLOT]
    stored = collection._store._documents
    order = held.order
    found = {identifier: stored[identifier] for identifier in ids if identifier in order}
    return [found[key] for key in sorted(found, key=order.__getitem__)]


def _changed_fields(update: Any, fields: frozenset[str]) -> frozenset[str] | None:
    """The indexed fields an update may change (empty: none); None when that cannot be
    told, or it may change `_id`."""
    if not isinstance(update, dict) or not update:
        return None
    changed_fields: set[str] = set()
    for operator, changes in update.items():
        if not isinstance(operator, str) or not operator.startswith("$"):
            return None
        if not isinstance(changes, dict):
            return None
        for changed in changes:
            if not isinstance(changed, str):
                return None
            if mongomock_words.WORDS in fields and mongomock_words.changes_words(changed):
                changed_fields.add(mongomock_words.WORDS)
            for field in (*fields, "_id"):
                if (
                    changed == field
                    or changed.startswith(field + ".")
                    or field.startswith(changed + ".")
                ):
                    changed_fields.add(field)
    return None if "_id" in changed_fields else frozenset(changed_fields)


def update_changes(collection: Collection) -> frozenset[str] | None:
    """While an update runs on `collection`: the only indexed fields it may change (those
    of the indexes outside them stay as they were); None otherwise, or when not known."""
    return collection.__dict__.get(_CHANGING)


def _paused(store: Any) -> frozenset[str]:
    """The fields whose indexes an update running now may be changing."""
    paused = store.__dict__.get(_PAUSED)
    return paused if isinstance(paused, frozenset) else frozenset()


def _install() -> None:
    """Keep the indexes where mongomock's store changes, and off while an update that may
    change an indexed field runs."""
    set_item, del_item = CollectionStore.__setitem__, CollectionStore.__delitem__
    drop, create_index, drop_index = (
        CollectionStore.drop,
        CollectionStore.create_index,
        CollectionStore.drop_index,
    )
    update = Collection._update

    def __setitem__(self: CollectionStore, key: Any, value: Any) -> None:
        held = self.__dict__.get(_SLOT)
        new = held is not None and key not in self._documents
        set_item(self, key, value)
        if held is None:
            return
        try:
            held.add(key, value, again=not new)  # not new: a stored document replaced whole
        except _Unindexable:
            forget(self)

    def __delitem__(self: CollectionStore, key: Any) -> None:
        del_item(self, key)
        held = self.__dict__.get(_SLOT)
        if held is not None:
            held.removed(key)

    def changed(method: Any) -> Any:
        def call(self: CollectionStore, *args: Any) -> Any:
            forget(self)
            return method(self, *args)

        return call

    def _update(self: Collection, spec: Any, document: Any, *args: Any, **kwargs: Any) -> Any:
        store = self._store
        held = store.__dict__.get(_SLOT)
        changing = None if held is None else _changed_fields(document, held.fields)
        # (An upsert may insert a document: every one of its uniques is checked.)
        upsert = args[0] if args else kwargs.get("upsert", False)
        if changing is not None and not upsert:
            self.__dict__[_CHANGING] = changing
        try:
            if held is None or changing == frozenset():
                return update(self, spec, document, *args, **kwargs)
            return _paused_update(self, held, changing, spec, document, *args, **kwargs)
        finally:
            self.__dict__.pop(_CHANGING, None)

    def _paused_update(
        self: Collection,
        held: Any,
        changing: Any,
        spec: Any,
        document: Any,
        *args: Any,
        **kwargs: Any,
    ) -> Any:
        store = self._store
        # It may change an indexed field: the documents it may change (read first, with
        # the indexes) are indexed again once it is done, under what they hold then; while
        # it runs, its own reads (a uniqueness check) do not use the indexes of the fields
        # it changes (of any, when that cannot be told).
        touched = [_key_of(found) for found in self._iter_documents(spec)]
        store.__dict__[_PAUSED] = _ALL if changing is None else changing
        try:
            return update(self, spec, document, *args, **kwargs)
        finally:
            store.__dict__.pop(_PAUSED, None)
            held = store.__dict__.get(_SLOT)
            try:
                for key in touched if held is not None else ():
                    if key in held.order:
                        held.add(key, store._documents[key], again=True)
            except _Unindexable:
                forget(store)

    CollectionStore.__setitem__ = __setitem__  # type: ignore[method-assign]
    CollectionStore.__delitem__ = __delitem__  # type: ignore[method-assign]
    CollectionStore.drop = changed(drop)  # type: ignore[method-assign]
    CollectionStore.create_index = changed(create_index)  # type: ignore[method-assign]
    CollectionStore.drop_index = changed(drop_index)  # type: ignore[method-assign]
    Collection._update = _update  # type: ignore[method-assign]


_install()
