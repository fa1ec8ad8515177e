"""Filters compiled to Python functions, for the embedded backend's scans.

mongomock decides whether a document matches by interpreting the filter for every
document (`filter_applies`: ~10 µs a document for the service's filters, a second per
100 000 documents before anything else is done). `compile_filter` turns a filter into a
function once per query, so a scan costs a few dictionary reads per document.

The compiled function answers exactly what `filter_applies` answers, quirks included
(mongomock compares with Python's `==`): each top-level clause is compiled where its form
is one the service uses (equality with a scalar, `$in`, `$all`, `$eq`, `$gt`/`$gte`/
`$lt`/`$lte`, `$type`, `$exists`, `$and`, `$or`) and left to `filter_applies` otherwise,
and a document whose values take a path the compiled clause does not know (an array in
a dotted path, a comparison of documents) is handed to `filter_applies` for that clause.
Tests compare both on random filters and documents.
"""

import operator
from collections.abc import Callable
from datetime import datetime
from typing import Any

from bson import ObjectId
from mongomock import filtering
from mongomock.filtering import NOTHING, filter_applies

Predicate = Callable[[dict], bool]

# The comparison types (mongomock's `_get_compare_type`) of the values compiled
# comparisons handle; any other type goes to mongomock.
_RANK: dict[type, int] = {
    type(None): 5,
    int: 10,
    float: 10,
    str: 15,
    ObjectId: 35,
    bool: 40,
    datetime: 45,
}
_SCALARS = frozenset(_RANK)
_RANGES = {"$gt": operator.gt, "$gte": operator.ge, "$lt": operator.lt, "$lte": operator.le}
_COMPILED_OPERATORS = frozenset({"$in", "$all", "$eq", "$type", "$exists", *_RANGES})


def kind_of(value: Any) -> type:
    """`type(value)`, with ObjectId for its subclasses (Beanie's `PydanticObjectId`, which
    documents written by the service hold in memory)."""
    kind = type(value)
    if kind in _SCALARS or not isinstance(value, ObjectId):
        return kind
    return ObjectId


class _Defer(Exception):
    """This document's values take a path only mongomock's own code answers."""


def compile_filter(query: Any) -> Predicate:
    """A function answering `filter_applies(query, document)` for each document."""
    if not isinstance(query, dict):
        return lambda document: filter_applies(query, document)
    clauses = [_clause(key, search) for key, search in query.items() if key != "$comment"]
    if not clauses:
        return lambda document: True
    if len(clauses) == 1:
        return clauses[0]
    if len(clauses) == 2:
        first, second = clauses
        return lambda document: first(document) and second(document)
    return lambda document: all(clause(document) for clause in clauses)


def _clause(key: str, search: Any) -> Predicate:
    plain = {key: search}

    def fallback(document: dict) -> bool:
        return filter_applies(plain, document)

    if key in ("$and", "$or"):
        if not isinstance(search, list) or not search:
            return fallback  # mongomock's error
        parts = [compile_filter(part) for part in search]
        if key == "$and":
            return lambda document: all(part(document) for part in parts)
        return lambda document: any(part(document) for part in parts)
    if not isinstance(key, str) or key.startswith("$") or not key:
        return fallback
    test = _value_test(search)
    if test is None:
        return fallback
    parts = key.split(".")
    if any(not part or part.isdigit() for part in parts):
        return fallback
    first, rest = parts[0], parts[1:]
    last = parts[-1]

    def clause(document: dict) -> bool:
        value = document.get(first, NOTHING)
        if rest:
            current = document.get(first, {})
            for part in rest[:-1]:
                if isinstance(current, dict):
                    current = current.get(part, {})
                elif isinstance(current, list | tuple):
                    return filter_applies(plain, document)
                else:
                    return test is _EXISTS_FALSE
            if isinstance(current, dict):
                value = current.get(last, NOTHING)
            elif isinstance(current, list | tuple):
                return filter_applies(plain, document)
            else:  # no candidate at all (a scalar on the way)
                return test is _EXISTS_FALSE
        try:
            return test(value)
        except _Defer:
            return filter_applies(plain, document)

    return clause


def _exists_false(value: Any) -> bool:
    return value is NOTHING


_EXISTS_FALSE: Callable[[Any], bool] = _exists_false


def _value_test(search: Any) -> Callable[[Any], bool] | None:
    """A test of one field's value, or None if mongomock's code must decide."""
    if kind_of(search) in _SCALARS:
        return _equals(search)
    if not isinstance(search, dict) or not search:
        return None
    if not all(isinstance(name, str) and name in _COMPILED_OPERATORS for name in search):
        return None
    if "$all" in search and len(search) > 1:
        return None
    if "$exists" in search:
        if len(search) > 1 or type(search["$exists"]) is not bool:
            return None
        return _EXISTS_FALSE if not search["$exists"] else (lambda value: value is not NOTHING)
    tests = []
    for name, argument in search.items():
        test = _operator_test(name, argument)
        if test is None:
            return None
        tests.append(test)
    if len(tests) == 1:
        return tests[0]
    return lambda value: all(test(value) for test in tests)


def _equals(search: Any) -> Callable[[Any], bool]:
    """`{field: search}` with a scalar: mongomock's equality (Python's `==`), an array
    matching by any element."""
    is_oid = isinstance(search, ObjectId)
    text = str(search) if is_oid else None

    def test(value: Any) -> bool:
        if isinstance(value, list | tuple):
            return bool(search in value or search == value or (is_oid and text in value))
        return bool(value == search or (search is None and value is NOTHING))

    return test


def _operator_test(name: str, argument: Any) -> Callable[[Any], bool] | None:
    if name == "$eq":
        if isinstance(argument, list | tuple):
            return None

        def equal(value: Any) -> bool:
            if isinstance(value, list | tuple):
                return any(_eq(item, argument) for item in value)
            return _eq(value, argument)

        return equal
    if name == "$in":
        if not isinstance(argument, list | tuple) or any(
            isinstance(item, filtering._RE_TYPES) for item in argument
        ):
            return None
        values = list(argument)
        has_none = None in values
        # `x in values` for a list tests `==` against each value: a population's `$in` of
        # n ids over n documents was n² ObjectId comparisons. The hashable values in a set
        # answer the same (equal values hash alike); the others are still compared.
        hashed = {item for item in values if hashable(item)}
        others = [item for item in values if not hashable(item)]

        def held(item: Any) -> bool:
            try:
                if item in hashed:
                    return True
            except TypeError:  # an unhashable value (a document) from the data
                pass
            return any(item == other for other in others) if others else False

        def within(value: Any) -> bool:
            if value is NOTHING and has_none:
                return True
            if isinstance(value, list | tuple):
                return any(held(item) for item in value)
            return held(value)

        return within
    if name == "$all":
        if (
            not isinstance(argument, list | tuple)
            or not argument  # true even of a field with no value at all, in mongomock
            or any(isinstance(item, dict) for item in argument)
        ):
            return None
        wanted = list(argument)

        def every(value: Any) -> bool:
            held = list(value) if isinstance(value, list) else [value]
            return all(item in held for item in wanted)

        return every
    if name == "$type":
        check = filtering.TYPE_MAP.get(argument) if isinstance(argument, str) else None
        if check is None:
            return None

        def typed(value: Any) -> bool:
            if check(value):
                return True
            return isinstance(value, list | tuple) and any(check(item) for item in value)

        return typed
    compare = _RANGES.get(name)
    if compare is None or kind_of(argument) not in _SCALARS or argument is None:
        return None
    rank = _RANK[kind_of(argument)]

    def ranged(value: Any) -> bool:
        if value is NOTHING:
            return False
        if isinstance(value, list | tuple):
            return any(_compared(compare, item, argument, rank) for item in value)
        return _compared(compare, value, argument, rank)

    return ranged


def hashable(value: Any) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return True


def _eq(value: Any, search: Any) -> bool:
    if value is NOTHING and search is None:
        return True
    return bool(value == search)


def _compared(compare: Callable[[Any, Any], bool], value: Any, argument: Any, rank: int) -> bool:
    """mongomock's `bson_compare` without comparing across types (type bracketing)."""
    kind = _RANK.get(kind_of(value))
    if kind is None:
        raise _Defer
    return kind == rank and bool(compare(value, argument))
