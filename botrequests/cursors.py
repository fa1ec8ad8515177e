"""Opaque cursors: a small JSON object, URL-safe base64, times in whole milliseconds.

Milliseconds by integer arithmetic (all a BSON date holds): a float of seconds is off by
one ms for some dates (from 2038 on), and a cursor would skip a row there. Anything that
does not decode — tampered, truncated, ids that are no ids, numbers out of range — is
one 422 on `cursor`.
"""

import base64
import binascii
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from bson import ObjectId
from bson.errors import InvalidId

from botrequests.errors import InvalidInput

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
NEWEST_FIRST = [("createdAt", -1), ("_id", -1)]
_MS = timedelta(milliseconds=1)
T = TypeVar("T")


def to_ms(moment: datetime) -> int:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - EPOCH) // _MS


def from_ms(value: Any) -> datetime:
    if not isinstance(value, int):
        raise ValueError("not a time")
    return EPOCH + value * _MS


def encode(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


def decode(cursor: str, read: Callable[[dict[str, Any]], T], what: str = "cursor") -> T:
    """`read(data)` of the decoded object; a 422 naming `cursor` if any step fails."""
    try:
        data = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if not isinstance(data, dict):
            raise ValueError("not a cursor")
        return read(data)
    except (binascii.Error, ValueError, TypeError, KeyError, OverflowError, InvalidId) as exc:
        raise InvalidInput(["query", "cursor"], f"malformed {what}") from exc


def after(query: dict[str, Any], moment: datetime, last_id: ObjectId) -> dict[str, Any]:
    """`query` restricted to what sorts after (createdAt, _id) in newest-first order."""
    keyset = {
        "$or": [{"createdAt": {"$lt": moment}}, {"createdAt": moment, "_id": {"$lt": last_id}}]
    }
    return {"$and": [query, keyset]} if query else keyset
