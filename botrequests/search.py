"""Search (`q=`): the requests holding every given word, newest first.

Which requests match is decided here, by words.py, on every backend alike: the same
answers on MongoDB and on the embedded backend for the same data. The backend's index
only narrows the candidates (db.search_candidates: the embedded word index, or MongoDB's
text index; none on a server without one, where every request the other filters leave is
read). Candidates are read newest first in growing chunks until the page is full; the
whole search stops after QUERY_TIMEOUT_MS (504), each read within it as well.
"""

import time
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

from botrequests import words
from botrequests.cursors import NEWEST_FIRST, after
from botrequests.documents import BotRequest
from botrequests.errors import InvalidInput, QueryTooSlow
from botrequests.storage import db

# Candidates read per query when no index narrows them (then they grow twofold per read):
# a page of 50 among rare matches costs a few reads, not one per page size.
SCAN_FIRST = 200
SCAN_MOST = 5_000
# Stats of a search: the matching ids go to the aggregation as one `$in`; past this many
# the search is narrowed first (16 MiB is a command's most).
STATS_MOST_MATCHES = 200_000

clock = time.monotonic


def both(query: dict[str, Any], clause: dict[str, Any] | None) -> dict[str, Any]:
    """`query` and `clause`, in one top-level `$and` (where the embedded backend's newest
    walk reads the bounds of a page)."""
    if not clause:
        return query
    if not query:
        return clause
    if set(query) == {"$and"}:
        return {"$and": [*query["$and"], clause]}
    return {"$and": [query, clause]}


class Deadline:
    """QUERY_TIMEOUT_MS from now, for reads of several queries."""

    def __init__(self) -> None:
        self.ends = clock() + db.query_timeout_ms() / 1000

    def check(self) -> None:
        if clock() > self.ends:
            raise QueryTooSlow()


async def _holding(
    query: dict[str, Any], wanted: list[str], first: int, page: int
) -> AsyncIterator[dict]:
    """The raw documents matching `query` and holding every word, newest first (`query`
    may carry a keyset cursor), read `first` at a time, then more per read up to
    SCAN_MOST: at most one read's documents are held. `page`: how many documents each read
    holds at most; the backend names candidates only while k² < 16·n·page (k candidates of
    n), so that naming them in each of the k/page reads costs less than 16 reads of every
    document: linear in the data either way."""
    deadline = Deadline()
    clause = await db.search_candidates(BotRequest, wanted, page)
    base = both(query, clause)
    # An index's candidates are nearly all matches: a page's worth is read first.
    chunk = first if clause else max(first, SCAN_FIRST)
    find = base
    while True:
        rows = await db.find_raw(
            BotRequest, find, {}, batch_size=chunk, sort=NEWEST_FIRST, limit=chunk, timed=True
        )
        for row in rows:
            if words.matches(row, wanted):
                yield row
        if len(rows) < chunk:
            return
        deadline.check()
        last = rows[-1]
        find = after(base, last.get("createdAt"), last["_id"])
        chunk = min(max(chunk * 2, first), SCAN_MOST)


async def matching(query: dict[str, Any], wanted: list[str], limit: int) -> list[dict]:
    """Up to `limit` raw documents matching `query` and holding every word, newest first."""
    found: list[dict] = []
    async with aclosing(_holding(query, wanted, limit, limit)) as rows:
        async for row in rows:
            found.append(row)
            if len(found) >= limit:
                break
    return found


async def matching_ids(query: dict[str, Any], wanted: list[str]) -> list[Any]:
    """The ids of every request matching `query` and holding every word (stats), read a
    few thousand documents at a time."""
    ids: list[Any] = []
    async with aclosing(_holding(query, wanted, SCAN_MOST, SCAN_MOST)) as rows:
        async for row in rows:
            ids.append(row["_id"])
            if len(ids) > STATS_MOST_MATCHES:
                raise InvalidInput(
                    ["query", "q"],
                    f"the search matches more than {STATS_MOST_MATCHES} requests; narrow it "
                    "for stats (from/to, bot, or more words)",
                )
    return ids
