"""Counting database round trips, on either backend: the tests assert them, the benchmark
reports them. Part of the database layer (with db.py): it knows the driver."""

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from pymongo import monitoring


class _RoundTrips(monitoring.CommandListener):
    """Counts commands sent to the server (real MongoDB) while `counting` is on."""

    def __init__(self) -> None:
        self.count = 0
        self.counting = False
        self.commands: list[str] = []  # what was counted, for a failing assertion's message

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if self.counting:
            self.count += 1
            self.commands.append(event.command_name)

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


listener = _RoundTrips()

# The mongomock collection methods that stand for one round trip to a server.
_MOCK_OPERATIONS = (
    "find",
    "find_one",
    "aggregate",
    "insert_one",
    "insert_many",
    "update_one",
    "update_many",
    "delete_one",
    "delete_many",
    "count_documents",
    "find_one_and_update",
    "bulk_write",
    "distinct",
)


@contextmanager
def count_round_trips() -> Iterator[_RoundTrips]:
    """Count database round trips made inside the block, on either backend.

    On a real server a command listener counts what is sent; on the embedded backend the
    outermost call into a mongomock collection, or an inline read by key, counts as one
    (mongomock calls itself, e.g. `find_one` goes through `find`, so nested calls are not
    counted twice).
    """
    from mongomock.collection import Collection

    from botrequests.storage import embedded, mongomock_newest, mongomock_pipeline
    from botrequests.storage.mongomock_fixes import KeyedFind

    originals = {name: getattr(Collection, name) for name in _MOCK_OPERATIONS}
    # A newest-first find walked in index order is the one find a server would be sent.
    walked_find = mongomock_newest.find
    # So is a compiled aggregation the one aggregate command.
    compiled_aggregate = mongomock_pipeline.aggregate
    # And several updates in one hop (embedded.update_each) the one bulk_write.
    applied_updates = embedded.apply_updates
    # An inline read by key (embedded.find_together) is the find a server would be sent.
    keyed_read = KeyedFind.documents
    depth = 0

    def wrap(original: Any) -> Any:
        def counted(self: Any, *args: Any, **kwargs: Any) -> Any:
            nonlocal depth
            if depth == 0:
                listener.count += 1
                listener.commands.append(original.__name__)
            depth += 1
            try:
                return original(self, *args, **kwargs)
            finally:
                depth -= 1

        return counted

    listener.count = 0
    listener.commands = []
    listener.counting = True
    for name, original in originals.items():
        setattr(Collection, name, wrap(original))
    KeyedFind.documents = wrap(keyed_read)  # type: ignore[method-assign]
    mongomock_newest.find = wrap(walked_find)
    mongomock_pipeline.aggregate = wrap(compiled_aggregate)
    embedded.apply_updates = wrap(applied_updates)
    try:
        yield listener
    finally:
        listener.counting = False
        for name, original in originals.items():
            setattr(Collection, name, original)
        KeyedFind.documents = keyed_read  # type: ignore[method-assign]
        mongomock_newest.find = walked_find
        mongomock_pipeline.aggregate = compiled_aggregate
        embedded.apply_updates = applied_updates
