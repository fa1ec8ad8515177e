"""The embedded backend's word index: each folded word of a request's searched fields
(words.py) to the ids of the requests holding it, for search (`q=`).

It is kept with the collection's equality indexes (mongomock_keys, where mongomock's store
changes; `WORDS` names it among their fields): built by the first search after a start
or a load (linear, once; no other query pays for it), then kept on every insert, update
and delete. An update
of a searched field indexes the document again under its new words; its old words stay
until the next rebuild — candidates the search's own check drops (search.py), so the index
only has to miss nothing.
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
