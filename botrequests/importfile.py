"""Reading a mongoexport file for `botrequests import`: every document parsed and checked
against the rules the API applies before anything is written (nothing here writes).

A hostile file once crashed the import with a traceback, or left a first file loaded
when a second was bad. Each refusal names file, line and field: nesting deeper than
MAX_JSON_DEPTH (counted on the text, linearly, before Python's recursive parser sees it),
integers past 64 bits (plain or `$numberLong`), NaN and Infinity, bad `$numberDecimal`,
`$date` out of range, keys with NUL, '.' or a leading '$' (an operator, not a field),
lone surrogates, and documents over MongoDB's 16 MiB; and what would break the service
once stored: an `_id` twice in a file (half a file written, then a BulkWriteError),
`createdAt` / `updatedAt` that are not dates (a BSON Timestamp made every list of its
organization fail), an organization's `retentionDays` outside 1..36 500 days.
"""

import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import bson
from bson import ObjectId, json_util

from botrequests import bodyguard

MAX_DOCUMENT_BYTES = 16 * 1024 * 1024  # MongoDB's BSON document limit
# Extended JSON wraps values in objects (`{"$date": {"$numberLong": ...}}`): the text may
# nest this much deeper than the document it stands for.
_WRAPPER_LEVELS = 2
_TOKENS = re.compile(r'"(?:[^"\\]++|\\.)*+"?|[\[\]{}]', re.DOTALL)
_INT64 = (-(2**63), 2**63 - 1)


class ImportFileError(Exception):
    """Files that cannot be loaded; nothing of them was written."""


class _Refused(Exception):
    def __init__(self, path: list[str | int], reason: str) -> None:
        super().__init__(reason)
        self.path = path
        self.reason = reason


@dataclass
class ReadFile:
    path: str
    collection: str
    docs: list[tuple[int, dict[str, Any]]] = field(default_factory=list)  # (line, document)
    refusals: list[str] = field(default_factory=list)  # "file:line: field: reason"


def read(path: Path, collection: str, max_depth: int) -> ReadFile:
    """Every document of one file, or the reasons it cannot be loaded (all of them)."""
    result = ReadFile(str(path), collection)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        result.refusals.append(f"{path}: cannot read: {exc}")
        return result
    items: list[tuple[int, Any]]
    if text.lstrip().startswith("["):
        # The whole array is parsed at once; its items are checked one by one.
        items, parse = _array(result, text, max_depth), checked
    else:
        lines = enumerate(text.splitlines(), start=1)
        items, parse = [(n, line) for n, line in lines if line.strip()], parse_line
    first_line: dict[tuple[type, Any], int] = {}
    for number, item in items:
        _take(result, first_line, number, "line", lambda item=item: parse(item, max_depth))
    return result


def _take(
    result: ReadFile,
    first: dict[tuple[type, Any], int],
    number: int,
    unit: str,
    convert: Callable[[], dict[str, Any]],
) -> None:
    """Document `number` of a file, from `convert` (which raises `_Refused`), checked
    against the stored rules and the file's earlier `_id`s: kept, or its refusal noted."""
    try:
        doc = convert()
        stored_rules(result.collection, doc)
        if "_id" in doc:
            # (type, value): True, 1 and 1.0 are equal in Python, not in MongoDB.
            key = (type(doc["_id"]), doc["_id"])
            if key in first:
                raise _Refused(["_id"], f"the same _id as {unit} {first[key]}")
            first[key] = number
        result.docs.append((number, doc))
    except _Refused as refused:
        where = ".".join(str(part) for part in refused.path)
        result.refusals.append(
            f"{result.path}:{number}: " + (f"{where}: " if where else "") + refused.reason
        )


def read_bson(path: Path, collection: str, max_depth: int) -> ReadFile:
    """Every document of a `.bson` file (mongodump's, or `botrequests dump`'s), checked as
    a mongoexport line is: a dump is input like any other."""
    result = ReadFile(str(path), collection)
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as exc:
        result.refusals.append(f"{path}: cannot read: {exc.strerror or exc}")
        return result
    seen: dict[tuple[type, Any], int] = {}
    offset, number = 0, 0
    while offset < len(data):
        number += 1
        size = int.from_bytes(data[offset : offset + 4], "little", signed=True)
        if size < 5 or offset + size > len(data):
            result.refusals.append(f"{path}:{number}: not BSON (a document's length is wrong)")
            return result
        raw = data[offset : offset + size]
        offset += size
        _take(result, seen, number, "document", lambda raw=raw: _decoded(raw, max_depth))
    return result


def _decoded(raw: bytes, max_depth: int) -> dict[str, Any]:
    """One BSON document, decoded and checked as a mongoexport line's is."""
    if len(raw) > MAX_DOCUMENT_BYTES:
        raise _Refused([], f"the document is {len(raw)} bytes: at most {MAX_DOCUMENT_BYTES}")
    try:
        # The C decoder stops a deep nesting with RecursionError (caught here).
        doc = bson.decode(raw)
    except Exception as exc:  # InvalidBSON and what a hostile file makes it raise
        raise _Refused([], f"not BSON: {type(exc).__name__}: {str(exc)[:200]}") from None
    _check_values(doc, max_depth)
    if "_id" in doc and not isinstance(doc["_id"], ObjectId | str | int):
        raise _Refused(["_id"], "must be an ObjectId")
    return doc


# What an index of a dump's metadata may say besides its key and name.
INDEX_OPTIONS = frozenset({"unique", "sparse", "partialFilterExpression", "expireAfterSeconds"})
MAX_METADATA_BYTES = 1024 * 1024


def read_index_metadata(path: Path) -> list[dict[str, Any]] | str:
    """The indexes a dump's `<collection>.metadata.json` lists (none if there is no such
    file), each `{"name", "key": [(field, order)], options}`, or why it is refused."""
    if not path.exists():
        return []
    try:
        text = path.read_text(encoding="utf-8")[: MAX_METADATA_BYTES + 1]
    except (OSError, UnicodeDecodeError) as exc:
        return f"{path}: cannot read: {exc}"
    if len(text) > MAX_METADATA_BYTES or too_deep(text, 16) is not None:
        return f"{path}: larger or deeper than a collection's metadata is"
    try:
        metadata = json_util.loads(text)
        listed = metadata.get("indexes", [])
        indexes = []
        for spec in listed:
            name, key = spec["name"], spec["key"]
            if name == "_id_":
                continue
            if not isinstance(name, str) or not isinstance(key, dict) or not key:
                raise ValueError("an index needs a name and a key")
            for field_name, order in key.items():
                if order not in (1, -1) or isinstance(order, bool):
                    raise ValueError(f"index {name}: {field_name}: an order is 1 or -1")
            options = {k: v for k, v in spec.items() if k in INDEX_OPTIONS}
            indexes.append({"name": name, "key": list(key.items()), **options})
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        return f"{path}: not a dump's metadata: {type(exc).__name__}: {str(exc)[:200]}"
    return indexes


def _check_values(doc: dict[str, Any], max_depth: int) -> None:
    """Depth, keys and values a decoded document may not have (as `_convert` checks
    JSON), without recursion."""
    stack: list[tuple[Any, list[str | int]]] = [(doc, [])]
    while stack:
        node, where = stack.pop()
        if isinstance(node, dict | list) and len(where) >= max_depth:
            raise _Refused(where, f"nested deeper than {max_depth} levels")
        if isinstance(node, dict):
            for key, value in node.items():
                _check_key(where, key)
                stack.append((value, [*where, key]))
        elif isinstance(node, list):
            stack.extend((value, [*where, index]) for index, value in enumerate(node))
        elif isinstance(node, str):
            if bodyguard.has_surrogate(node):
                raise _Refused(where, f"text {bodyguard.SURROGATE}")
        elif isinstance(node, float) and not math.isfinite(node):
            raise _Refused(where, "not a finite number")


# Bounds the API applies to an organization's retention (schemas.OrganizationCreate).
RETENTION_DAYS = (1, 36_500)


def stored_rules(collection: str, doc: dict[str, Any]) -> None:
    """Values the service reads as typed (dates it sorts and pages by, the retention it
    computes a cutoff from): refused unless they have the type and range the API gives."""
    for name in ("createdAt", "updatedAt"):
        value = doc.get(name)
        if value is not None and not isinstance(value, datetime):
            raise _Refused([name], f'must be a date ({{"$date": ...}}), not {_kind(value)}')
    if collection == "organizations" and doc.get("retentionDays") is not None:
        days = doc["retentionDays"]
        low, high = RETENTION_DAYS
        if isinstance(days, bool) or not isinstance(days, int) or not low <= days <= high:
            raise _Refused(["retentionDays"], f"must be a whole number of days, {low} to {high}")


def _kind(value: Any) -> str:
    return {bson.Timestamp: "a BSON Timestamp", str: "text"}.get(type(value), type(value).__name__)


def _array(result: ReadFile, text: str, max_depth: int) -> list[tuple[int, Any]]:
    """A JSON array's items (parsed, not yet converted) with the line each starts on."""
    deep = too_deep(text, max_depth + _WRAPPER_LEVELS + 1)
    if deep is not None:
        line = text.count("\n", 0, deep) + 1
        result.refusals.append(f"{result.path}:{line}: nested deeper than {max_depth} levels")
        return []
    try:
        items = json.loads(text, **bodyguard.PARSE_HOOKS)
    except ValueError as exc:
        line = getattr(exc, "lineno", "?")
        result.refusals.append(f"{result.path}:{line}: not valid JSON: {exc}")
        return []
    starts = item_lines(text)
    return [(starts[i] if i < len(starts) else i + 1, item) for i, item in enumerate(items)]


def too_deep(text: str, limit: int) -> int | None:
    """The offset where brackets (outside strings) first nest deeper than `limit`, else
    None. One pass over the tokens: linear, and it never recurses."""
    depth = 0
    for match in _TOKENS.finditer(text):
        char = match.group()
        if char in "[{":
            depth += 1
            if depth > limit:
                return match.start()
        elif char in "]}":
            depth -= 1
    return None


def parse_line(text: str, max_depth: int) -> dict[str, Any]:
    """One document from its line of text: depth first, then parsed, then `checked`."""
    if too_deep(text, max_depth + _WRAPPER_LEVELS) is not None:
        raise _Refused([], f"nested deeper than {max_depth} levels")
    try:
        item = json.loads(text, **bodyguard.PARSE_HOOKS)
    except ValueError as exc:
        raise _Refused([], f"not valid JSON: {exc}") from None
    return checked(item, max_depth)


def checked(item: Any, max_depth: int) -> dict[str, Any]:
    """One parsed item converted from Extended JSON and checked; `_Refused` names the
    field and the reason."""
    doc = _convert(item, [], max_depth)
    if not isinstance(doc, dict):
        raise _Refused([], "a document must be a JSON object")
    if "_id" in doc and not isinstance(doc["_id"], ObjectId | str | int):
        raise _Refused(["_id"], "must be an ObjectId")
    try:
        size = len(bson.encode(doc))
    except Exception as exc:  # anything else BSON cannot hold: refused, never a traceback
        raise _Refused([], f"cannot be stored: {exc}") from None
    if size > MAX_DOCUMENT_BYTES:
        raise _Refused(
            [], f"the document is {size} bytes: MongoDB stores {MAX_DOCUMENT_BYTES} at most"
        )
    return doc


def _convert(node: Any, path: list[str | int], max_depth: int) -> Any:
    """Extended JSON to BSON values, bottom-up, as `json_util.loads` does, but knowing
    where each value is. Recursion is bounded: the text's depth was checked first."""
    if isinstance(node, bodyguard.Bad):
        raise _Refused(path, node.reason)
    if isinstance(node, str):
        if bodyguard.has_surrogate(node):
            raise _Refused(path, f"text {bodyguard.SURROGATE}")
        return node
    if isinstance(node, list):
        if len(path) >= max_depth:
            raise _Refused(path, f"nested deeper than {max_depth} levels")
        return [_convert(value, [*path, index], max_depth) for index, value in enumerate(node)]
    if not isinstance(node, dict):
        return node
    pairs = [(key, _convert(value, [*path, key], max_depth)) for key, value in node.items()]
    try:
        value = json_util.object_pairs_hook(pairs, json_util.DEFAULT_JSON_OPTIONS)
    except Exception as exc:  # json_util raises many types for bad Extended JSON
        reason = str(exc).split(" (Consider")[0][:200]
        raise _Refused(path, f"not valid Extended JSON ({type(exc).__name__}: {reason})") from None
    if isinstance(value, dict):
        if len(path) >= max_depth:
            raise _Refused(path, f"nested deeper than {max_depth} levels")
        for key in value:
            _check_key(path, key)
    elif isinstance(value, int) and not isinstance(value, bool):
        if not _INT64[0] <= value <= _INT64[1]:
            raise _Refused(path, "integer out of range (64 bits at most)")
    elif isinstance(value, float) and not math.isfinite(value):
        raise _Refused(path, "not a finite number: JSON has no NaN or Infinity")
    return value


def _check_key(path: list[str | int], key: str) -> None:
    if bodyguard.has_surrogate(key):
        raise _Refused(path, f"a key {bodyguard.SURROGATE}")
    if key.startswith("$") or "." in key or "\x00" in key:
        shown = key[:40].replace("\x00", "\\u0000")
        raise _Refused([*path, shown], "a key may not start with '$' or contain '.' or NUL")


def item_lines(text: str) -> list[int]:
    """The line each top-level item of a JSON array starts on."""
    decoder = json.JSONDecoder()
    lines, index = [], text.index("[") + 1
    # Lines counted from the previous item on, not from the start: linear in the file.
    counted, line = 0, 1
    while True:
        while index < len(text) and text[index] in " \t\r\n,":
            index += 1
        if index >= len(text) or text[index] == "]":
            return lines
        line += text.count("\n", counted, index)
        counted = index
        lines.append(line)
        try:
            _, index = decoder.raw_decode(text, index)
        except ValueError:
            return lines
