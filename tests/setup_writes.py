"""Set-up writes straight into the database that a busy machine cannot break, and waits
that give a busy machine its time.

A test's own documents go in chunks small enough that each finishes far within the
socket timeout (one 10 000-document `insert_many` did not, on a loaded machine: the driver
retried it after the timeout, the first attempt had gone through, and the retry failed
with E11000; what the first attempt was still writing then landed in the next test). A
chunk the driver retried after its first attempt went through is not an error: the
documents with those ids are these ones.
"""

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from pymongo.errors import BulkWriteError

CHUNK = 500
T = TypeVar("T")


def _only_repeated_ids(exc: BulkWriteError) -> bool:
    errors = exc.details.get("writeErrors", [])
    return bool(errors) and all(
        error.get("code") == 11000
        and (error.get("keyPattern") == {"_id": 1} or "_id_" in error.get("errmsg", ""))
        for error in errors
    )


async def insert_all(collection: Any, docs: list[dict[str, Any]], chunk: int = CHUNK) -> None:
    """Insert `docs` (each gets its `_id` before the first attempt) a chunk at a time."""
    for start in range(0, len(docs), chunk):
        part = docs[start : start + chunk]
        try:
            await collection.insert_many(part, ordered=False)
        except BulkWriteError as exc:
            if not _only_repeated_ids(exc):
                raise


async def eventually(
    probe: Callable[[], Awaitable[T]],
    done: Callable[[T], bool],
    within: float = 120.0,
    every: float = 0.1,
) -> T:
    """`probe()` until `done(result)`, for up to `within` seconds (far beyond what it takes
    on an idle machine: only a failure waits that long); the last result either way."""
    deadline = time.monotonic() + within
    while True:
        result = await probe()
        if done(result) or time.monotonic() > deadline:
            return result
        await asyncio.sleep(every)
