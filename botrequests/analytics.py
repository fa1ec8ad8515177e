"""Stats (one aggregation pipeline, then one scoped query for the groups' names) and NDJSON
or CSV export (memory bounded by bytes)."""

import csv
import io
import re
import unicodedata
import weakref
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

import orjson

from botrequests import populate, search, words
from botrequests.auth import scoped
from botrequests.botrequest_service import NEWEST_FIRST, after, filter_query
from botrequests.documents import Bot, BotRequest, Organization, User, reader
from botrequests.errors import TooManyRequests
from botrequests.schemas import BotRequestFilters
from botrequests.serialize import plain
from botrequests.storage import db

# groupBy -> (collection to take {name, id} from, extra fields shown)
_LOOKUPS = {
    "bot": (Bot, ("name", "slug")),
    "organization": (Organization, ("name",)),
    "createdBy": (User, ("name",)),
}


STATS_MAX_GROUPS = 10_000


def stats_pipeline(
    filters: BotRequestFilters, group_by: str, ids: list[Any] | None = None
) -> list[dict[str, Any]]:
    """The stats aggregation; `ids`: a search's matches (search.matching_ids), the only
    requests counted."""
    match = filter_query(filters)
    if ids is not None:
        match = search.both(match, {"_id": {"$in": ids}})
    key: Any = {
        "day": {"$dateToString": {"format": "%Y-%m-%d", "date": "$createdAt"}},  # UTC dates
        "model": "$usage.model",
        "tag": "$tags",
    }.get(group_by, f"${group_by}")
    # A request counts once per tag it carries; untagged ones make the `null` group.
    per_tag = [{"$unwind": {"path": "$tags", "preserveNullAndEmptyArrays": True}}]
    missing = "none"  # what `$ifNull` gives a request without feedback, to count none
    # After the feedback is unwound a request is a row per piece of its feedback; its own
    # numbers count on its first row only (`fbFirst`: index 0, or none: no feedback).

    def once(value: Any, otherwise: Any = 0) -> dict[str, Any]:
        return {"$cond": ["$fbFirst", value, otherwise]}

    latency = once("$usage.latencyMs", None)  # null: left out of the average
    return [
        {"$match": match},
        # Each request's feedback (the service's own collection, joined on the request's
        # id: an index on MongoDB, one built per stage on the embedded backend, so linear
        # in what it reads), kept only where it is of the request's own organization: a
        # join is scoped like any read. Joined before the per-tag rows are made, so once
        # per request. Then one row per piece of feedback, grouped by key in one pass
        # (`$sum` over an array is not computed alike by every server, `$reduce` not at
        # all by mongomock).
        {
            "$lookup": {
                "from": "feedback",
                "localField": "_id",
                "foreignField": "request",
                "as": "fb",
            }
        },
        {
            "$addFields": {
                "fb": {
                    "$filter": {
                        "input": "$fb",
                        "as": "one",
                        "cond": {"$eq": ["$$one.organization", "$organization"]},
                    }
                }
            }
        },
        *(per_tag if group_by == "tag" else []),
        {
            "$unwind": {
                "path": "$fb",
                "preserveNullAndEmptyArrays": True,
                "includeArrayIndex": "fbIndex",
            }
        },
        {"$addFields": {"fbFirst": {"$lte": [{"$ifNull": ["$fbIndex", 0]}, 0]}}},
        {
            "$group": {
                "_id": key,
                "requests": {"$sum": once(1)},
                "succeeded": {"$sum": once({"$cond": [{"$eq": ["$success", True]}, 1, 0]})},
                "credits": {"$sum": once({"$ifNull": ["$credits", 0]})},
                "tokens": {"$sum": once({"$ifNull": ["$usage.totalTokens", 0]})},
                "cost": {"$sum": once({"$ifNull": ["$usage.cost", 0]})},
                "latencyMs": {"$avg": latency},
                **(
                    {
                        "latencyPercentiles": {
                            "$percentile": {
                                "input": latency,
                                "p": [0.5, 0.95],
                                "method": "approximate",
                            }
                        }
                    }
                    if db.percentiles()
                    else {}
                ),
                "feedback": {
                    "$sum": {
                        "$cond": [{"$eq": [{"$ifNull": ["$fb.score", missing]}, missing]}, 0, 1]
                    }
                },
                "scoreTotal": {"$sum": {"$ifNull": ["$fb.score", 0]}},
                "first": {"$min": "$createdAt"},
                "last": {"$max": "$createdAt"},
            }
        },
        {"$sort": {"_id": 1} if group_by == "day" else {"requests": -1, "_id": 1}},
        # One more than served, to tell a cut answer (a session per group can be many).
        {"$limit": STATS_MAX_GROUPS + 1},
    ]


async def _group_names(group_by: str, keys: list[Any]) -> dict[Any, dict[str, Any]]:
    """`{name, …, id}` of each group's record, read like any other read: scoped to the
    caller's organization (a `$lookup` inside the pipeline would look across tenants, and
    the embedded backend has no `$lookup` with a sub-pipeline to scope it)."""
    if group_by not in _LOOKUPS:
        return {}
    model, fields = _LOOKUPS[group_by]
    ids = [key for key in keys if key is not None]
    if not ids:
        return {}
    projection = dict.fromkeys(fields, 1)
    rows = await db.find_raw(
        model, scoped(model, {"_id": {"$in": ids}}), projection, batch_size=len(ids) + 1
    )
    return {
        row["_id"]: {**{f: row[f] for f in fields if row.get(f) is not None}, "id": str(row["_id"])}
        for row in rows
    }


def _percentiles(computed: list | None) -> dict[str, float | None]:
    """p50 and p95 of the group's latencies, where the server computes them (MongoDB 7.0
    on: `$percentile`, approximate); None on the embedded backend."""
    p50, p95 = computed if computed and len(computed) == 2 else (None, None)
    return {"latencyP50Ms": _rounded(p50, 3), "latencyP95Ms": _rounded(p95, 3)}


def _rounded(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def _group_key(key: Any, group_by: str, names: dict[Any, dict[str, Any]]) -> Any:
    if group_by in _LOOKUPS and key is not None:
        # A record that is gone, or another organization's: its id, as population does.
        return names.get(key, str(key))
    return plain(key)


async def stats(filters: BotRequestFilters, group_by: str) -> dict[str, Any]:
    wanted = filters.words
    ids = await search.matching_ids(filter_query(filters), wanted) if wanted else None
    groups = await db.aggregate(BotRequest, stats_pipeline(filters, group_by, ids))
    truncated = len(groups) > STATS_MAX_GROUPS
    groups = groups[:STATS_MAX_GROUPS]
    names = await _group_names(group_by, [group["_id"] for group in groups])
    items = []
    for group in groups:
        requests, succeeded = group["requests"], group["succeeded"]
        items.append(
            {
                group_by: _group_key(group["_id"], group_by, names),
                "requests": requests,
                "succeeded": succeeded,
                "failed": requests - succeeded,
                "successRate": round(succeeded / requests, 4) if requests else 0.0,
                "credits": group["credits"],
                "tokens": group["tokens"],
                "cost": round(group["cost"], 6),
                "averageLatencyMs": _rounded(group.get("latencyMs"), 3),
                **_percentiles(group.get("latencyPercentiles")),
                "feedback": {
                    "count": group["feedback"],
                    "averageScore": _rounded(
                        group["scoreTotal"] / group["feedback"] if group["feedback"] else None, 4
                    ),
                },
                "first": plain(group.get("first")),
                "last": plain(group.get("last")),
            }
        )
    return {"groupBy": group_by, "items": items, "next": None, "truncated": truncated}


async def sessions(prefix: str | None, limit: int) -> list[dict[str, Any]]:
    """Session keys that start with `prefix` (escaped: matched as written), most recently
    active first, with their request counts, first and last activity and user (`{name,
    id}`, read scoped like every read); this tenant's only. A prefix so that the
    sessionKey index answers it."""
    match: dict[str, Any] = {"sessionKey": {"$type": "string"}}
    if prefix:
        match = {"sessionKey": {"$regex": "^" + re.escape(prefix)}}
    rows = await db.aggregate(
        BotRequest,
        [
            {"$match": scoped(BotRequest, match)},
            {
                "$group": {
                    "_id": "$sessionKey",
                    "requests": {"$sum": 1},
                    "first": {"$min": "$createdAt"},
                    "last": {"$max": "$createdAt"},
                    # One user per session as a rule; the same one on every backend.
                    "user": {"$max": "$createdBy"},
                }
            },
            {"$sort": {"last": -1, "_id": 1}},
            {"$limit": limit},
        ],
    )
    names = await _group_names("createdBy", [row.get("user") for row in rows])
    return [
        {
            "sessionKey": row["_id"],
            "requests": row["requests"],
            "first": plain(row.get("first")),
            "last": plain(row["last"]),
            "user": _group_key(row.get("user"), "createdBy", names),
        }
        for row in rows
    ]


EXPORT_BATCH = 500  # documents per page at most (one query; populated together)
# A page stops growing once the stored documents it holds reach this many bytes, so what an
# export holds is bounded by bytes, not by a count of documents of any size
# (docs/reading/queries.md).
EXPORT_PAGE_BYTES = 4 * 1024 * 1024
EXPORT_FIRST_PAGE = 8
EXPORT_CHUNK_BYTES = 1024 * 1024  # sent to the client as soon as this much is serialized


# Exports this process streams now: each holds a page of documents and a cursor for as
# long as its client reads, so a few slow readers could hold a lot of memory. A bound on
# this worker's own resources (not state another worker needs). A weak set of one token per
# stream, held by the stream alone: a stream dropped before it started leaves with it.
class _Export:
    pass


_exporting: "weakref.WeakSet[_Export]" = weakref.WeakSet()
EXPORT_RETRY_AFTER_S = 5


async def export_batches(
    filters: BotRequestFilters, paths: tuple[str, ...], as_csv: bool = False, most: int = 4
) -> AsyncIterator[bytes]:
    """Every matching request as NDJSON, newest first, read and populated a page at a
    time (keyset on createdAt, _id). A page ends at EXPORT_BATCH documents or
    EXPORT_PAGE_BYTES of them, whichever comes first, and the next page's reply size
    follows the documents seen, so memory is bounded by bytes whatever the documents'
    size. The first page is read before the first byte is sent, so a database error is
    still a 503."""
    if len(_exporting) >= most:
        raise TooManyRequests(
            f"{most} exports are being streamed by this worker (EXPORT_MAX_CONCURRENT); "
            "try again shortly",
            EXPORT_RETRY_AFTER_S,
        )
    wanted = filters.words
    # A search reads the candidates of the backend's index (search.py); words.matches
    # decides each. A page may then hold fewer than it read, or none: the next follows
    # the last document read.
    query = filter_query(filters)
    if wanted:
        # (Pages of EXPORT_BATCH: candidates named only while naming them in every page's
        # query costs less, over the export, than walking to them — linear either way.)
        query = search.both(query, await db.search_candidates(BotRequest, wanted, EXPORT_BATCH))
    seen = {"docs": 0, "bytes": 0}

    async def page(find: dict[str, Any]) -> tuple[list[BotRequest], bool, tuple | None]:
        """One page, whether the query may have more after it, and where it stopped."""
        if seen["docs"]:
            # A reply of about a page's bytes: many small documents at once, few large.
            average = max(seen["bytes"] // seen["docs"], 1)
            limit = EXPORT_BATCH
            batch = max(1, min(EXPORT_BATCH, EXPORT_PAGE_BYTES // average))
        else:
            # Sizes unknown yet: a small first page, so that its one reply cannot hold
            # 16 MiB of large documents (the server's cap per reply).
            limit = batch = EXPORT_FIRST_PAGE
        docs, size, read, last = [], 0, 0, None
        found = db.iterate_sized(BotRequest, find, NEWEST_FIRST, limit, batch)
        async with aclosing(found) as rows:
            async for raw, nbytes in rows:
                read += 1
                last = (raw.get("createdAt"), raw["_id"])
                size += nbytes
                if not wanted or words.matches(raw, wanted):
                    docs.append(reader(BotRequest).model_validate(raw))
                if size >= EXPORT_PAGE_BYTES:
                    break
        seen["docs"] += read
        seen["bytes"] += size
        return docs, read == limit or size >= EXPORT_PAGE_BYTES, last

    encode = csv_rows if as_csv else ndjson_lines
    token = _Export()

    async def lines() -> AsyncIterator[bytes]:
        try:
            async for chunk in pages():
                yield chunk
        finally:  # the client read it all, went away, or the stream failed
            _exporting.discard(token)

    async def pages() -> AsyncIterator[bytes]:
        if as_csv:
            yield csv_rows([], header=True)
        nonlocal docs, more, last
        deadline = search.Deadline()
        while True:
            items = await populate.populate(docs, paths) if docs else []
            chunk: list[bytes] = []
            size = 0
            for item in items:
                chunk.append(encode([item]))
                size += len(chunk[-1])
                if size >= EXPORT_CHUNK_BYTES:
                    yield b"".join(chunk)
                    chunk, size = [], 0
            if chunk:
                yield b"".join(chunk)
            if not more or last is None:
                return
            if wanted and not docs:
                deadline.check()  # pages of candidates none of which matched
            items, docs = [], []  # the next page is read without this one held
            docs, more, last = await page(after(query, *last))
            if docs:
                deadline = search.Deadline()

    _exporting.add(token)
    try:
        docs, more, last = await page(query)
    except BaseException:
        _exporting.discard(token)
        raise
    return lines()


def ndjson_lines(items: list[dict[str, Any]]) -> bytes:
    return b"".join(orjson.dumps(item) + b"\n" for item in items)


CSV_COLUMNS = (
    "id", "createdAt", "updatedAt", "bot", "botName", "createdBy", "userName",
    "organization", "organizationName", "success", "credits", "sessionKey", "model",
    "promptTokens", "completionTokens", "totalTokens", "latencyMs", "cost", "tags",
    "originalRequest",
)  # fmt: skip


def _ref(value: Any) -> tuple[Any, Any]:
    """A populated reference is {…, name, id}; an unpopulated one its id."""
    if isinstance(value, dict):
        return value.get("id"), value.get("name")
    return value, None


# A spreadsheet runs a cell as a formula when it starts with one of these, also after
# characters it skips or does not show (OWASP's CSV injection guidance, ASVS 1.2.10).
_FORMULA_STARTS = frozenset("=+-@\t\r\n")


def _unseen(char: str) -> bool:
    """Whitespace, control and format characters (NUL, LF, zero-width space, BOM, ...)."""
    return char.isspace() or unicodedata.category(char) in ("Cc", "Cf", "Zs", "Zl", "Zp")


def _cell(value: Any) -> Any:
    """Text from requests never becomes a formula (CSV injection): a cell whose first
    shown character starts one gets a leading `'`. Booleans are spelled as in JSON."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if not isinstance(value, str) or not value:
        return value
    if value[0] in _FORMULA_STARTS:
        return "'" + value
    for char in value:  # linear: stops at the first shown character
        if not _unseen(char):
            return "'" + value if char in _FORMULA_STARTS else value
    return value


def csv_rows(items: list[dict[str, Any]], header: bool = False) -> bytes:
    """Flat rows for spreadsheets: ids and names of the references, usage, tags joined by
    `;`. The request's text (inputs, prompt, response) is left to the NDJSON export."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    if header:
        writer.writerow(CSV_COLUMNS)
    for item in items:
        bot, bot_name = _ref(item.get("bot"))
        user, user_name = _ref(item.get("createdBy"))
        org, org_name = _ref(item.get("organization"))
        usage = item.get("usage") or {}
        row = (
            item.get("id"), item.get("createdAt"), item.get("updatedAt"), bot, bot_name,
            user, user_name, org, org_name, item.get("success"), item.get("credits"),
            item.get("sessionKey"), usage.get("model"), usage.get("promptTokens"),
            usage.get("completionTokens"), usage.get("totalTokens"), usage.get("latencyMs"),
            usage.get("cost"), ";".join(item.get("tags") or []), item.get("originalRequest"),
        )  # fmt: skip
        writer.writerow([_cell(v) for v in row])
    return out.getvalue().encode()
