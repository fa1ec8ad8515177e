"""Aggregation pipelines compiled to Python, for the embedded backend.

mongomock runs a pipeline by copying every document of the collection, then interpreting
each stage's expressions for every document (the stats by bot took 6 s for 10 000
requests, growing faster than the data). `aggregate` compiles the stages the service uses
— `$match`, `$lookup` (equality form), `$addFields`/`$set`, `$unwind`, `$group` (`$sum`,
`$avg`, `$min`, `$max`, `$first`), `$sort`, `$limit` — with the expressions they hold
(field paths, `$eq`, `$ifNull`, `$cond`, `$filter`, `$dateToString`) into functions run
once per document over the stored documents, which are never copied nor changed (every
stage that changes a document makes a new one); only the answer is copied.

It answers what mongomock answers, in the same order: the same Python comparisons, the
same handling of a missing field per construct, groups in mongomock's order (sorted by
key as BSON orders them), sums taken by the same `sum()` over the same values. A pipeline
with any other stage or expression is run by mongomock, starting from what its first
`$match` selects (a scan with a compiled filter, or a lookup by `_id`) instead of a copy of
the whole collection; so is one that meets data outside what the compiled code knows (an
array on a dotted path, a `Decimal128` in a sum, values only mongomock's errors answer):
it is then run again by mongomock from the start. Tests compare both on random data.
"""

import functools
import gc
import numbers
import re
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from operator import eq as operator_eq
from operator import ge as operator_ge
from operator import gt as operator_gt
from operator import itemgetter as operator_itemgetter
from operator import le as operator_le
from operator import lt as operator_lt
from operator import mul as operator_mul
from typing import Any

from bson import ObjectId
from bson.decimal128 import Decimal128
from mongomock.aggregate import process_pipeline
from mongomock.collection import Collection
from mongomock.helpers import patch_datetime_awareness_in_document

from botrequests.storage import mongomock_deadline, mongomock_lookup
from botrequests.storage.mongomock_match import compile_filter, kind_of
from botrequests.storage.mongomock_source import Source

Row = dict[str, Any]
Expression = Callable[[Row, dict], Any]
Stage = Callable[[Iterable[Row]], Iterable[Row]]
_CHECK_EVERY = mongomock_deadline.CHECK_EVERY
_ACCUMULATORS = frozenset({"$sum", "$avg", "$min", "$max", "$first"})
_DATE_FORMAT = re.compile(r"(?:[^%]|%[YmdHMSj%])*")
_DAY_FORMAT = re.compile(r"(?:[^%]|%[Ymdj%])*")


class _NotCompiled(Exception):
    """A stage or expression this module does not compile: mongomock runs the pipeline."""


class _Unsure(Exception):
    """Data only mongomock's own code answers: the pipeline is run by mongomock."""


def aggregate(collection: Collection, pipeline: list[dict]) -> list[dict]:
    """What `collection.aggregate(pipeline)` answers, as a list."""
    from botrequests.storage.mongomock_fixes import _aware_copy, _copy_field_plain

    try:
        source, stages = _compile(collection, pipeline)
    except _NotCompiled:
        source = None
    if source is not None:
        # A run makes many short-lived objects (a group per request) and no reference
        # cycles; the cyclic collector would walk the whole stored data over and over
        # meanwhile (half the time of a stats call at 100 000 requests), so it waits.
        collecting = gc.isenabled()
        gc.disable()
        try:
            rows: Iterable[Row] = source()
            for stage in stages:
                rows = stage(rows)
            copy_one = _aware_copy if collection.codec_options.tz_aware else _copy_field_plain
            return [copy_one(row) for row in rows]
        except _Unsure:
            pass
        finally:
            if collecting:
                gc.enable()
    return _by_mongomock(collection, pipeline)


def _by_mongomock(collection: Collection, pipeline: list[dict]) -> list[dict]:
    """mongomock's pipeline, fed by a find of the first `$match` instead of a copy of every
    document (the same documents: a `$match` keeps what the find returns)."""
    first = pipeline[0] if pipeline else None
    if isinstance(first, dict) and len(first) == 1 and isinstance(first.get("$match"), dict):
        documents = list(collection.find(first["$match"]))
        pipeline = pipeline[1:]
    else:
        documents = list(collection.find())
    return list(process_pipeline(documents, collection.database, pipeline, None))


def _checked(rows: Iterable[Row]) -> Iterator[Row]:
    for number, row in enumerate(rows):
        if not number & (_CHECK_EVERY - 1):
            mongomock_deadline.check()
        yield row


def _rows(rows: Iterable[Row]) -> Iterable[Row]:
    """A stage's input, the deadline checked as it is read: a list a stage before made
    is checked here; a stream is checked where it starts (`_checked` at the source)."""
    return _checked(rows) if isinstance(rows, list) else rows


def _compile(collection: Collection, pipeline: Any) -> tuple[Callable[[], Iterable[Row]], list]:
    if not isinstance(pipeline, list):
        raise _NotCompiled
    stages = []
    for stage in pipeline:
        if not isinstance(stage, dict) or len(stage) != 1:
            raise _NotCompiled
        ((name, options),) = stage.items()
        compiler = _STAGES.get(name)
        if compiler is None:
            raise _NotCompiled
        stages.append((name, options, compiler))
    start: Callable[[], Iterable[Row]] = lambda: _checked(list(collection._store.documents))  # noqa: E731
    compiled = []
    # Whether the rows a stage reads are its own to change: the stored documents are not;
    # the new documents `$lookup`, `$addFields` and `$group` make are, and `$match`,
    # `$unwind`, `$sort` and `$limit` pass on what they read.
    owned = False
    for position, (name, options, compiler) in enumerate(stages):
        if position == 0 and name == "$match":
            start = _first_match(collection, options)
            continue
        if name in _OWNERSHIP_AWARE:
            compiled.append(compiler(collection, options, owned))
        else:
            compiled.append(compiler(collection, options))
        owned = owned or name in _MAKE_NEW_ROWS
    return start, compiled


def _first_match(collection: Collection, options: Any) -> Callable[[], Iterable[Row]]:
    if not isinstance(options, dict):
        raise _NotCompiled
    spec = patch_datetime_awareness_in_document(options)
    # The fixes' scan: a lookup by key when the filter names `_id`s, else every document
    # with the compiled filter; stored documents, not copies.
    return lambda: _checked(collection._iter_documents(spec))


# --- stages -----------------------------------------------------------------------------


def _match(collection: Collection, options: Any) -> Stage:
    if not isinstance(options, dict):
        raise _NotCompiled
    test = compile_filter(patch_datetime_awareness_in_document(options))
    return lambda rows: (row for row in _rows(rows) if test(row))


def _lookup(collection: Collection, options: Any) -> Stage:
    if not isinstance(options, dict) or set(options) != mongomock_lookup.SIMPLE:
        raise _NotCompiled
    local, foreign, into = (options[name] for name in ("localField", "foreignField", "as"))
    if not all(
        isinstance(field, str) and field and "." not in field and not field.startswith("$")
        for field in (local, foreign, into)
    ) or not isinstance(options["from"], str):
        raise _NotCompiled
    database = collection.database

    def stage(rows: Iterable[Row]) -> Iterator[Row]:
        index: dict[Any, list[tuple[int, dict]]] = {}
        try:
            stored = database.get_collection(options["from"])._store.documents
            for position, document in enumerate(stored):
                for key in mongomock_lookup.keys_of(document.get(foreign)):
                    index.setdefault(_lookup_key(key), []).append((position, document))
            for row in _rows(rows):
                keys = mongomock_lookup.keys_of(row.get(local))
                if len(keys) == 1:  # one value: its matches, in order, once each
                    found = index.get(_lookup_key(keys[0]), ())
                    if len(found) < 2:
                        yield {**row, into: [document for _, document in found]}
                        continue
                matched: dict[int, dict] = {}
                for key in keys:
                    for position, document in index.get(_lookup_key(key), ()):
                        matched[position] = document
                yield {**row, into: [matched[position] for position in sorted(matched)]}
        except TypeError as unhashable:  # a value that cannot be a key: mongomock's way
            raise _Unsure from unhashable

    return stage


def _lookup_key(value: Any) -> Any:
    """A dictionary key equal where `==` holds; an ObjectId by its bytes (their hash is
    computed once, an ObjectId's in Python at every lookup)."""
    return (ObjectId, value.binary) if isinstance(value, ObjectId) else value


def _add_fields(collection: Collection, options: Any, owned: bool = False) -> Stage:
    if not isinstance(options, dict) or not options:
        raise _NotCompiled
    source = _source()
    source.each_row()
    values = []
    for field, spec in options.items():
        if not isinstance(field, str) or not field or "." in field or field.startswith("$"):
            raise _NotCompiled
        value = source.temp()
        source.expression(spec, value, 1, ignore_missing=True)
        values.append((source.constant(field), value))
    # Each field computed from the stage's input, then set: on the row itself when it is
    # this pipeline's own, else on a copy.
    source.line(1, "out = row" if owned else "out = dict(row)")
    for field, value in values:
        source.line(1, f"if {value} is not M:")
        source.line(2, f"out[{field}] = {value}")
    source.line(1, "yield out")
    rows_out = source.function("add_fields", "rows")
    return lambda rows: rows_out(_rows(rows))


def _unwind(collection: Collection, options: Any, owned: bool = False) -> Stage:
    plain = isinstance(options, str)  # mongomock_fixes' `$unwind` form
    if plain:
        path, preserve = options, False
    elif isinstance(options, dict) and set(options) <= _UNWIND_OPTIONS:
        path, preserve = options.get("path"), options.get("preserveNullAndEmptyArrays")
    else:
        raise _NotCompiled
    if not isinstance(path, str) or not path.startswith("$") or "." in path or len(path) < 2:
        raise _NotCompiled
    field = path[1:]
    numbered = None if plain else options.get("includeArrayIndex")
    if numbered is not None and (
        not isinstance(numbered, str) or not numbered or "." in numbered or numbered == field
    ):
        raise _NotCompiled

    def stage(rows: Iterable[Row]) -> Iterator[Row]:
        for row in _rows(rows):
            if field not in row or row[field] is None:
                if preserve and not plain:
                    yield row
                continue
            values = row[field]
            if values == []:
                if preserve and not plain:
                    kept = row if owned else dict(row)
                    del kept[field]
                    yield kept
                continue
            if plain:  # the fixes' form puts the field last
                rest = {key: value for key, value in row.items() if key != field}
                for item in values if isinstance(values, list) else [values]:
                    yield {**rest, field: item}
            elif numbered is None:
                for item in values if isinstance(values, list | tuple) else [values]:
                    yield {**row, field: item}
            elif isinstance(values, list | tuple):
                for position, item in enumerate(values):
                    yield {**row, field: item, numbered: position}
            else:
                yield {**row, field: values, numbered: None}

    return stage


_UNWIND_OPTIONS = frozenset({"path", "preserveNullAndEmptyArrays", "includeArrayIndex"})


def _group(collection: Collection, options: Any) -> Stage:
    if not isinstance(options, dict) or "_id" not in options:
        raise _NotCompiled
    by = options["_id"]
    accumulators = []
    for field, spec in options.items():
        if field == "_id":
            continue
        if not isinstance(spec, dict) or len(spec) != 1:
            raise _NotCompiled
        ((operator, argument),) = spec.items()
        if operator not in _ACCUMULATORS:
            raise _NotCompiled
        accumulators.append((field, operator, argument))
    # Per accumulator, what a group holds: `$first` the first value present, a `$sum` of
    # an integer constant a count, the others every value present (then reduced as
    # mongomock reduces them: the same `sum()`, `min()`, `max()` over the same list).
    # A group is a list: its key, its BSON sort key, then one slot per accumulator.
    plan, reducers, template, lists = [], [], [None, None], []
    for slot, (field, operator, argument) in enumerate(accumulators, start=2):
        if operator == "$sum" and type(argument) is int:
            plan.append((slot, _COUNT, None))
            template.append(0)
            reducers.append((field, slot, functools.partial(operator_mul, argument)))
            continue
        if operator == "$first":
            plan.append((slot, _FIRST, argument))
            template.append(MISSING)
            reducers.append((field, slot, _first))
        else:
            plan.append((slot, _COLLECT, argument))
            template.append(None)
            lists.append(slot)
            reducers.append((field, slot, _REDUCERS[operator]))

    counts = [slot for slot, kind, _ in plan if kind is _COUNT]

    # The loop over the rows, written out (mongomock_source): the key, then each slot.
    source = _source()
    source.each_row()
    if by:
        source.expression(by, "key", 1, ignore_missing=True)
        source.line(1, "if key is M:")
        source.line(2, "key = None")
    else:
        source.line(1, "key = None")
    source.line(1, f"hashed = {source.constant(_hashable)}(key)")
    source.line(1, "group = groups.get(hashed)")
    source.line(1, "if group is None:")
    source.line(2, f"group = groups[hashed] = {source.constant(template)}.copy()")
    source.line(2, "group[0] = key")
    for slot in lists:
        source.line(2, f"group[{slot}] = []")
    for slot in counts:
        source.line(1, f"group[{slot}] += 1")
    for slot, kind, spec in plan:
        if kind is _FIRST:
            source.line(1, f"if group[{slot}] is M:")
            source.expression(spec, f"group[{slot}]", 2, ignore_missing=False)
        elif kind is _COLLECT:
            value = source.temp()
            source.expression(spec, value, 1, ignore_missing=False)
            source.line(1, f"if {value} is not M:")
            source.line(2, f"group[{slot}].append({value})")
    accumulate = source.function("accumulate", "rows, groups")

    def stage(rows: Iterable[Row]) -> list[Row]:
        groups: dict[Any, list] = {}
        accumulate(_rows(rows), groups)
        if not by and not groups:  # mongomock: one group, even of nothing
            group = groups[None] = template.copy()
            for slot in lists:
                group[slot] = []
        for group in groups.values():
            group[1] = _sort_key(group[0])
        ordered = sorted(groups.values(), key=operator_itemgetter(1))
        out = []
        for group in ordered:
            document = {field: reduce(group[slot]) for field, slot, reduce in reducers}
            document["_id"] = group[0]  # last, as mongomock puts it
            out.append(document)
        return out

    return stage


_FIRST, _COUNT, _COLLECT = "first", "count", "collect"
_PLAIN_NUMBERS = frozenset({int, float, bool})  # numbers.Number, as mongomock's sums take


def _first(held: Any) -> Any:
    return None if held is MISSING else held


def _numbers(held: list) -> list:
    if _PLAIN_NUMBERS.issuperset(map(type, held)):
        return held
    if any(isinstance(value, Decimal128) for value in held):
        raise _Unsure
    return [value for value in held if isinstance(value, numbers.Number)]


def _sum(held: list) -> Any:
    return sum(_numbers(held))


def _avg(held: list) -> Any:
    summed = _numbers(held)
    return sum(summed) / float(len(summed)) if summed else None


def _extreme(pick: Callable[[list], Any]) -> Callable[[list], Any]:
    def reduce(held: list) -> Any:
        present = [value for value in held if value is not None]
        try:
            return pick(present) if present else None
        except TypeError as mixed:
            raise _Unsure from mixed

    return reduce


_REDUCERS = {"$sum": _sum, "$avg": _avg, "$min": _extreme(min), "$max": _extreme(max)}


def _sort(collection: Collection, options: Any) -> Stage:
    if not isinstance(options, dict) or not options:
        raise _NotCompiled
    keys = []
    for field, direction in options.items():
        if not isinstance(field, str) or not field or field.startswith("$"):
            raise _NotCompiled
        if type(direction) is not int or direction not in (1, -1):
            raise _NotCompiled
        keys.append((field.split("."), direction))

    def stage(rows: Iterable[Row]) -> list[Row]:
        ordered = list(_rows(rows))
        # mongomock sorts once per key, from the last, each sort stable.
        for parts, direction in reversed(keys):
            ordered.sort(key=lambda row: _field_sort_key(row, parts), reverse=direction < 0)
        return ordered

    return stage


def _limit(collection: Collection, options: Any) -> Stage:
    if type(options) is not int or options < 0:
        raise _NotCompiled

    def stage(rows: Iterable[Row]) -> list[Row]:
        out = []
        if options:
            for row in _rows(rows):
                out.append(row)
                if len(out) >= options:
                    break
        return out

    return stage


_OWNERSHIP_AWARE = frozenset({"$addFields", "$set", "$unwind"})
_MAKE_NEW_ROWS = frozenset({"$lookup", "$addFields", "$set", "$group"})
_STAGES: dict[str, Callable[..., Stage]] = {
    "$match": _match,
    "$lookup": _lookup,
    "$addFields": _add_fields,
    "$set": _add_fields,
    "$unwind": _unwind,
    "$group": _group,
    "$sort": _sort,
    "$limit": _limit,
}


# --- BSON order and group keys ----------------------------------------------------------

_RANKS: dict[type, int] = {
    type(None): 5,
    int: 10,
    float: 10,
    str: 15,
    dict: 20,
    list: 25,
    ObjectId: 35,
    bool: 40,
    datetime: 45,
}


def _sort_key(value: Any) -> tuple:
    """A key Python orders as mongomock's `BsonComparable` orders `value`."""
    kind = kind_of(value)
    if kind is ObjectId:
        return (35, value.binary)
    if kind is dict:
        return (20, tuple((_rank(item), key, _sort_key(item)) for key, item in value.items()))
    rank = _RANKS.get(kind)
    if rank is None:
        raise _Unsure
    if rank == 5:
        return (5, 0)
    if rank == 25:
        return (25, tuple(_sort_key(item) for item in value))
    return (rank, value)


def _rank(value: Any) -> int:
    rank = _RANKS.get(kind_of(value))
    if rank is None:
        raise _Unsure
    return rank


def _hashable(key: Any) -> Any:
    """A dictionary key that tells apart what mongomock's sorted grouping tells apart
    (a boolean from a number); a document's fields in their order."""
    if type(key) is dict:
        return (dict, *(field for pair in key.items() for field in (pair[0], _scalar_key(pair[1]))))
    return _scalar_key(key)


def _scalar_key(value: Any) -> Any:
    kind = kind_of(value)
    if kind is ObjectId:
        return (ObjectId, value.binary)
    if kind is bool:
        return (bool, value)
    if kind is float and value != value:  # NaN: never equal, so never grouped by mongomock
        raise _Unsure
    if kind in (int, float, str, datetime, type(None)):
        return value
    raise _Unsure


def _field_sort_key(row: Row, parts: list[str]) -> tuple:
    """mongomock's `resolve_sort_key`: a missing field sorts as null, an array by its
    first element (an empty one before everything)."""
    value: Any = row
    for part in parts:
        if isinstance(value, dict):
            value = value.get(part, _MISSING)
        elif value is _MISSING:
            break
        else:
            raise _Unsure  # an array or a scalar on the way
        if value is _MISSING:
            break
    if value is _MISSING:
        return (1, (5, 0))
    if isinstance(value, list | tuple):
        return (0, (5, 0)) if not value else (1, _sort_key(value[0]))
    return (1, _sort_key(value))


_MISSING = object()


# --- expressions ------------------------------------------------------------------------
# A compiled expression returns MISSING where mongomock's evaluator raises KeyError (a
# missing field), and each construct treats it as mongomock treats that KeyError: most
# pass it on, `$ifNull` and `$cond`'s condition take it as null or false, a document
# literal leaves the field out when mongomock ignores missing keys there.

MISSING: Any = _MISSING
_NO_VARIABLES: dict = {}


def _expression(spec: Any, ignore_missing: bool) -> Expression:
    """`spec` as a function of (document, variables)."""
    if isinstance(spec, str) and spec.startswith("$$"):
        name, *parts = spec[2:].split(".")
        if not name:
            raise _NotCompiled

        def variable(row: Row, variables: dict) -> Any:
            if name in variables:
                value = variables[name]
            elif name in ("ROOT", "CURRENT"):
                value = row
            else:
                return MISSING
            return _walk(value, parts)

        return variable
    if isinstance(spec, str) and spec.startswith("$"):
        parts = spec[1:].split(".")
        if not all(parts):
            raise _NotCompiled
        if len(parts) == 1:
            (field,) = parts
            return lambda row, variables: row.get(field, MISSING)
        if len(parts) == 2:
            outer, inner = parts

            def nested(row: Row, variables: dict) -> Any:
                value = row.get(outer, MISSING)
                if type(value) is dict:
                    return value.get(inner, MISSING)
                return MISSING if value is MISSING else _walk(value, [inner])

            return nested
        return lambda row, variables: _walk(row, parts)
    if isinstance(spec, list | tuple | set):
        raise _NotCompiled
    if not isinstance(spec, dict):
        return lambda row, variables: spec
    if not all(isinstance(key, str) for key in spec):
        raise _NotCompiled
    if any(key.startswith("$") for key in spec):
        if len(spec) != 1:
            raise _NotCompiled
        ((operator, argument),) = spec.items()
        compiler = _OPERATORS.get(operator)
        if compiler is None:
            raise _NotCompiled
        return compiler(argument, ignore_missing)
    fields = [(key, _expression(value, ignore_missing)) for key, value in spec.items()]

    def document(row: Row, variables: dict) -> Any:
        out = {}
        for key, compute in fields:
            value = compute(row, variables)
            if value is MISSING:
                if ignore_missing:
                    continue
                return MISSING
            out[key] = value
        return out

    return document


def _walk(value: Any, parts: list[str]) -> Any:
    """mongomock's `get_value_by_dot`: MISSING for a missing field or a scalar on the way."""
    for part in parts:
        if isinstance(value, dict):
            value = value.get(part, MISSING)
            if value is MISSING:
                return MISSING
        elif isinstance(value, list | tuple):
            raise _Unsure
        else:
            return MISSING
    return value


def _binary(combine: Callable[[Any, Any], Any]) -> Callable[[Any, bool], Expression]:
    """An operator of two operands, as mongomock evaluates one: both computed in order, a
    missing one passed on, else `combine(first, second)`."""

    def compiled(argument: Any, ignore_missing: bool) -> Expression:
        if not isinstance(argument, list) or len(argument) != 2:
            raise _NotCompiled
        left, right = (_expression(part, ignore_missing) for part in argument)

        def evaluated(row: Row, variables: dict) -> Any:
            first = left(row, variables)
            if first is MISSING:
                return MISSING
            second = right(row, variables)
            return MISSING if second is MISSING else combine(first, second)

        return evaluated

    return compiled


def _if_null(argument: Any, ignore_missing: bool) -> Expression:
    if not isinstance(argument, list) or len(argument) != 2:
        raise _NotCompiled
    value, fallback = (_expression(part, ignore_missing) for part in argument)

    def if_null(row: Row, variables: dict) -> Any:
        found = value(row, variables)
        if found is None or found is MISSING:
            return fallback(row, variables)
        return found

    return if_null


def _cond(argument: Any, ignore_missing: bool) -> Expression:
    if isinstance(argument, list) and len(argument) == 3:
        parts = argument
    elif isinstance(argument, dict) and set(argument) == {"if", "then", "else"}:
        parts = [argument["if"], argument["then"], argument["else"]]
    else:
        raise _NotCompiled
    condition, then, otherwise = (_expression(part, ignore_missing) for part in parts)

    def cond(row: Row, variables: dict) -> Any:
        holds = condition(row, variables)
        # mongodb_to_bool; a missing condition is false
        if holds is not MISSING and holds not in _FALSY:
            return then(row, variables)
        return otherwise(row, variables)

    return cond


def _filter(argument: Any, ignore_missing: bool) -> Expression:
    if not isinstance(argument, dict) or not {"input", "cond"} <= set(argument):
        raise _NotCompiled
    if set(argument) - {"input", "cond", "as"}:
        raise _NotCompiled
    name = argument.get("as", "this")
    if not isinstance(name, str):
        raise _NotCompiled
    source = _expression(argument["input"], ignore_missing)
    condition = _expression(argument["cond"], ignore_missing)

    def filtered(row: Row, variables: dict) -> Any:
        items = source(row, variables)
        if items is MISSING:
            return MISSING
        if not isinstance(items, list):
            raise _Unsure
        kept = []
        for item in items:
            holds = condition(row, {**variables, name: item})
            if holds is MISSING:
                return MISSING
            if holds:
                kept.append(item)
        return kept

    return filtered


def _date_to_string(argument: Any, ignore_missing: bool) -> Expression:
    if not isinstance(argument, dict) or set(argument) != {"format", "date"}:
        raise _NotCompiled
    form = argument["format"]
    if not isinstance(form, str) or form.startswith("$") or not _DATE_FORMAT.fullmatch(form):
        raise _NotCompiled  # %L, time zones and the rest: mongomock's own
    date = _expression(argument["date"], ignore_missing)
    # A format of the day alone (stats by day) gives one text per day: formatted once.
    by_day: dict[Any, str] | None = {} if _DAY_FORMAT.fullmatch(form) else None

    def formatted(row: Row, variables: dict) -> Any:
        value = date(row, variables)
        if value is MISSING:
            return MISSING
        if type(value) is not datetime:
            raise _Unsure
        if by_day is None:
            return value.strftime(form)
        day = value.date()
        text = by_day.get(day)
        if text is None:
            text = by_day[day] = value.strftime(form)
        return text

    return formatted


def _ordered(compare: Callable[[Any, Any], bool]) -> Callable[[Any, Any], bool]:
    """`$lt`, `$lte`, `$gt`, `$gte`: mongomock's `bson_compare` across types (by type
    order) of the scalars compiled here."""

    def ordered(first: Any, second: Any) -> bool:
        # Two numbers (not NaN) are in the same rank: compared as they are.
        plain = type(first) in _PLAIN_ORDER and type(second) in _PLAIN_ORDER
        if plain and first == first and second == second:
            return compare(first, second)
        return compare(_scalar_order(first), _scalar_order(second))

    return ordered


_PLAIN_ORDER = frozenset({int, float})


def _scalar_order(value: Any) -> tuple:
    kind = type(value)
    if kind in (dict, list) or (kind is float and value != value):
        raise _Unsure  # documents, arrays, NaN: mongomock's own comparison
    return _sort_key(value)


_COMBINE: dict[str, Callable[[Any, Any], Any]] = {
    "$lt": _ordered(operator_lt),
    "$lte": _ordered(operator_le),
    "$gt": _ordered(operator_gt),
    "$gte": _ordered(operator_ge),
    "$eq": operator_eq,
}
_OPERATORS: dict[str, Callable[[Any, bool], Expression]] = {
    **{name: _binary(combine) for name, combine in _COMBINE.items()},
    "$ifNull": _if_null,
    "$cond": _cond,
    "$filter": _filter,
    "$dateToString": _date_to_string,
}


def _source() -> Source:
    """A stage's function being written: the constructs above, the same tests."""
    return Source(_expression, _COMBINE, MISSING, _walk, _FALSY)


_FALSY = (False, None, 0)
