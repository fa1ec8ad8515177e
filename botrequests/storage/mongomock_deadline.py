"""QUERY_TIMEOUT_MS on the embedded backend, as MongoDB's `maxTimeMS` does it: a find or an
aggregation still running past its deadline is stopped and raises `ExecutionTimeout`
(answered 504), so one slow read never holds the embedded worker, and every write queued
behind it, for longer than the timeout.

mongomock runs a query in Python, document by document. While a call has a deadline
(`run_with_deadline`, around the calls that ask for one), the deadline is checked every
CHECK_EVERY documents of a collection scan and of a `$match`, at the start of each
pipeline stage, and every CHECK_EVERY evaluations of mongomock's expression evaluator
(`$group`, `$project` and the others use it). Calls without one run mongomock's code as
it is. `install()` (from embedded.py, after the other fixes) puts the stage checks in.
"""

import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from mongomock import aggregate as mongomock_aggregate
from mongomock import helpers
from pymongo.errors import ExecutionTimeout

from botrequests.storage import mongomock_match

CHECK_EVERY = 256  # a power of two
clock: Callable[[], float] = time.monotonic  # replaced by tests: what counts is order


class _Deadline:
    at: float | None = None
    calls = 0


DEADLINE = _Deadline()
_PLAIN_EXPRESSION = mongomock_aggregate._parse_expression


def check() -> None:
    """Raise `ExecutionTimeout` if the current call's deadline has passed."""
    if DEADLINE.at is not None and clock() > DEADLINE.at:
        DEADLINE.at = None  # raised once; the call unwinds
        raise ExecutionTimeout("operation exceeded time limit (QUERY_TIMEOUT_MS)", 50)


def active() -> bool:
    return DEADLINE.at is not None


def scan(documents: Iterable[dict], test: Callable[[dict], bool]) -> Iterator[dict]:
    """The documents `test` accepts, in order, checking the deadline as it goes."""
    for number, document in enumerate(documents):
        if not number & (CHECK_EVERY - 1):
            check()
        if test(document):
            yield document


def _counted_expression(*args: Any, **kwargs: Any) -> Any:
    DEADLINE.calls += 1
    if not DEADLINE.calls & (CHECK_EVERY - 1):
        check()
    return _PLAIN_EXPRESSION(*args, **kwargs)


def run_with_deadline(milliseconds: int | None, call: Callable[[], Any]) -> Any:
    """`call()` stopped with `ExecutionTimeout` once `milliseconds` have passed (None: no
    deadline). Runs in the embedded worker while it holds the data: one call at a time,
    so the evaluator may be swapped for the call's duration."""
    if not milliseconds:
        return call()
    DEADLINE.at, DEADLINE.calls = clock() + milliseconds / 1000, 0
    mongomock_aggregate._parse_expression = _counted_expression
    try:
        return call()
    finally:
        DEADLINE.at = None
        mongomock_aggregate._parse_expression = _PLAIN_EXPRESSION


def _match(in_collection: list[dict], database: Any, options: Any) -> list[dict]:
    if not active():
        return _PLAIN_MATCH(in_collection, database, options)
    test = mongomock_match.compile_filter(helpers.patch_datetime_awareness_in_document(options))
    patch = helpers.patch_datetime_awareness_in_document
    return list(scan(in_collection, lambda document: test(patch(document))))


def _stage(handler: Callable[..., Any]) -> Callable[..., Any]:
    def timed(*args: Any, **kwargs: Any) -> Any:
        if DEADLINE.at is not None:
            check()
        return handler(*args, **kwargs)

    timed.__wrapped__ = handler  # type: ignore[attr-defined]
    return timed


_PLAIN_MATCH = mongomock_aggregate._PIPELINE_HANDLERS["$match"]


def install() -> None:
    """Checks at every pipeline stage's start, and in `$match`'s loop (once)."""
    handlers = mongomock_aggregate._PIPELINE_HANDLERS
    if getattr(handlers["$match"], "__wrapped__", None) is not None:
        return
    handlers["$match"] = _match
    for name, handler in list(handlers.items()):
        if handler is not None:
            handlers[name] = _stage(handler)
