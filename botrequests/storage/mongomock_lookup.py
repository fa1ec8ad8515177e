"""mongomock's `$lookup` over an index of the foreign collection built once per stage
(installed when `embedded.py` is imported, beside `mongomock_fixes.py`).

mongomock runs a find on the foreign collection for every document entering the stage:
the stats' join of each request with its feedback cost requests × feedback (47-75 s for
one tenant's 1 000 requests, every tenant waiting). Here the foreign collection is read
once into a dictionary from `foreignField` to its documents, and each document takes its
matches from it: linear in both. The same documents in the same order (the foreign
collection's), copied as mongomock copies them; other forms (dotted fields, values that
cannot be dictionary keys) go to mongomock's own code.
"""

import copy
from typing import Any

from mongomock import aggregate as mongomock_aggregate

_SLOW_LOOKUP = mongomock_aggregate._PIPELINE_HANDLERS["$lookup"]
SIMPLE = {"from", "localField", "foreignField", "as"}


def keys_of(value: Any) -> list:
    """The index keys a stored value matches by equality: itself, or each element of an
    array (MongoDB matches an array field by any element). Missing and null match None."""
    return list(value) if isinstance(value, list) else [value]


def _lookup(in_collection: list[dict], database: Any, options: dict) -> list[dict]:
    fields = [options.get(name) for name in ("localField", "foreignField", "as")]
    if set(options) != SIMPLE or not all(
        isinstance(field, str) and "." not in field and not field.startswith("$")
        for field in fields
    ):
        return _SLOW_LOOKUP(in_collection, database, options)
    local, foreign, into = fields
    index: dict[Any, list[tuple[int, dict]]] = {}
    try:
        stored = database.get_collection(options["from"])._store.documents
        for position, doc in enumerate(stored):
            for key in keys_of(doc.get(foreign)):
                index.setdefault(key, []).append((position, doc))
        for doc in in_collection:
            matched: dict[int, dict] = {}
            for key in keys_of(doc.get(local)):
                for position, found in index.get(key, ()):
                    matched[position] = found
            doc[into] = [copy.deepcopy(matched[position]) for position in sorted(matched)]
    except TypeError:  # a value that cannot be a key (a document): mongomock's own way
        return _SLOW_LOOKUP(in_collection, database, options)
    return in_collection


mongomock_aggregate._PIPELINE_HANDLERS["$lookup"] = _lookup
