"""The embedded backend's word index: each folded word of a request's searched fields
(words.py) to the ids of the requests holding it, for search (`q=`).

It is kept with the collection's equality indexes (mongomock_keys, where mongomock's store
changes; `WORDS` names it among their fields): built after a start in steps of tens of
milliseconds at most (`Build`, run between other calls, so that no caller waits for all
of it), or whole by a search that needs it before they are done (linear, once); then kept
on every insert, update and delete. An update of a searched field indexes the document
again under its new words; its old words stay until the next rebuild — candidates the
search's own check drops (search.py), so the index only has to miss nothing.
"""

from typing import Any

from botrequests import words
from botrequests.storage import mongomock_deadline

WORDS = "$words"
# The collections whose documents are searched: the bot requests (set by db at start).
COLLECTIONS: set[str] = set()


class WordIndex:
    """Same interface as mongomock_keys' field index: `ids`, `count`, `stale`, `add`."""

    def __init__(self, documents: list[tuple[Any, dict]]) -> None:
        self.ids: dict[str, list] = {}
        self.count = 0
        self.stale = 0
        for key, document in documents:
            self.add(key, document)

    def add(self, key: Any, document: dict, again: bool = False) -> None:
        for word in words.document_words(document):
            self.ids.setdefault(word, []).append(key)
        if not again:
            self.count += 1


class Build:
    """A word index being built in steps over the documents stored when it began
    (`snapshot`: their keys and positions in the store's order); meanwhile the writes add
    to it as to a built one (mongomock_keys): a document stored since is indexed when it
    is stored, one indexed again when it changes, one deleted counts as stale once it has
    been counted."""

    def __init__(self, snapshot: list[tuple[Any, int]], boundary: int) -> None:
        self.index = WordIndex([])
        self.snapshot = snapshot
        self.done_upto = 0  # the snapshot's documents before this one are indexed
        self.boundary = boundary  # positions from here: stored since, indexed then

    @property
    def done(self) -> bool:
        return self.done_upto >= len(self.snapshot)

    def counts(self, position: int | None) -> bool:
        """Whether the document at `position` (in the store's order) is counted yet."""
        if position is None:
            return False
        if position >= self.boundary:
            return True
        upto = self.done_upto
        return upto >= len(self.snapshot) or position < self.snapshot[upto][1]

    def take(self, stored: dict, order: dict, step: int) -> None:
        """Index the next `step` documents of the snapshot still stored where they were
        (one deleted since is left out; one stored again since was indexed then)."""
        end = min(len(self.snapshot), self.done_upto + step)
        for key, position in self.snapshot[self.done_upto : end]:
            if order.get(key) == position:
                self.index.add(key, stored[key])
        self.done_upto = end


def changes_words(path: str) -> bool:
    """Whether a change of `path` may change a document's searched words."""
    return any(
        path == field or path.startswith(field + ".") or field.startswith(path + ".")
        for field in words.SEARCHED
    )


def candidates(index: WordIndex, wanted: list[str]) -> list:
    """The ids (perhaps stale, or twice) of the documents that may hold every word: those
    of its rarest word, kept where every other word's ids hold them too."""
    lists = sorted((index.ids.get(word, []) for word in wanted), key=len)
    mongomock_deadline.check()
    if not lists or not lists[0]:
        return []
    found = lists[0]
    for other in lists[1:]:
        mongomock_deadline.check()  # QUERY_TIMEOUT_MS, as the reads it serves
        held = set(other)
        found = [key for key in found if key in held]
        if not found:
            break
    return found
