"""An export recorded: its model spans become bot requests through the batch path
(batch.py), a bounded set of round trips whatever the export's size: the organization
(retention), the bots, the conversations' latest requests, then the batch's own.

- **Bot**: the one the `X-Botrequests-Bot` header names (slug or id, of the key's
  organization), else one per resource `service.name` (found by its slug; created on
  first sight, while the organization has fewer than OTLP_MAX_BOTS bots).
- **Threads**: spans of a conversation (`sessionKey`) follow each other in start-time
  order; the first of an export follows the latest request of that conversation that
  started before it. A span that arrives after later turns were recorded therefore joins
  as a branch at its place in time; what is stored is never re-linked.
- **Refused spans** (a value the JSON API would refuse, no room for a new bot) are
  counted and named in `partial_success`; the rest of the export is recorded.
"""

import contextlib
import re
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from beanie import PydanticObjectId
from pymongo.errors import BulkWriteError

from botrequests import batch
from botrequests.auth import scoped
from botrequests.config import Settings
from botrequests.documents import Bot, BotRequest, Organization
from botrequests.errors import (
    Forbidden,
    PayloadTooLarge,
    ServiceError,
    TooManyRequests,
    UnsupportedMediaType,
)
from botrequests.otlp import decode, mapping
from botrequests.otlp.answers import RETRY_AFTER_SECONDS
from botrequests.otlp.decode import Span
from botrequests.otlp.messages import Refused
from botrequests.records import stamped
from botrequests.storage import db
from botrequests.timeutil import now

MAX_REASONS = 10
_NOT_SLUG = re.compile(r"[^a-z0-9_-]+")
_OBJECT_ID = re.compile(r"^[0-9a-fA-F]{24}$")


class UnknownBot(ServiceError):
    """400: the header names no bot of this organization."""


class Undecodable(ServiceError):
    """400: the body is not an OTLP export."""


# Exports this worker is recording now: each holds its decoded body (up to MAX_BODY_BYTES
# and its spans). A bound on this worker's own memory, not state another worker needs.
_in_progress = 0


async def export(
    body: bytes,
    content_type: str | None,
    content_encoding: str | None,
    bot_header: str | None,
    exporter_ip: str | None,
    organization: PydanticObjectId | None,
    limits: Settings,
) -> "Outcome":
    """An OTLP/HTTP export body (as sent) decoded and recorded, within `limits`."""
    global _in_progress
    if limits.auth_enabled and organization is None:
        raise Forbidden("spans are recorded for an organization: send its API key")
    try:
        kind = decode.media_type(content_type)
    except decode.Unsupported as exc:
        raise UnsupportedMediaType(str(exc)) from None
    if _in_progress >= limits.otlp_max_concurrent:
        raise TooManyRequests(
            f"{_in_progress} exports are being recorded by this worker "
            "(OTLP_MAX_CONCURRENT); try again shortly",
            RETRY_AFTER_SECONDS,
        )
    _in_progress += 1
    try:
        try:
            raw = decode.inflate(body, content_encoding, limits.max_body_bytes)
            spans = decode.spans(raw, kind, limits.max_json_depth)
        except decode.Unsupported as exc:
            raise UnsupportedMediaType(str(exc)) from None
        except decode.TooLarge as exc:
            raise PayloadTooLarge(str(exc)) from None
        except decode.Undecodable as exc:
            raise Undecodable(str(exc)) from None
        del raw
        return await receive(
            spans,
            organization,
            bot_header,
            exporter_ip,
            limits.batch_max_items,
            limits.otlp_max_bots,
        )
    finally:
        _in_progress -= 1


@dataclass
class Outcome:
    """What became of an export's spans."""

    refused: list[str] = field(default_factory=list)  # one reason per refused span

    @property
    def message(self) -> str:
        if not self.refused:
            return ""
        shown = "; ".join(self.refused[:MAX_REASONS])
        more = len(self.refused) - MAX_REASONS
        return shown + (f"; and {more} more" if more > 0 else "")


def slug_of(service: str) -> str:
    """A service name as a bot's slug: lower case, runs of other characters as `-`."""
    slug = _NOT_SLUG.sub("-", service.lower()).strip("-_")[:100].rstrip("-_")
    return slug or "unknown-service"


async def receive(
    spans: list[Span],
    organization: PydanticObjectId | None,
    bot_header: str | None,
    exporter_ip: str | None,
    max_items: int,
    max_bots: int,
) -> Outcome:
    """Record the export's model spans; say what was refused and why."""
    outcome = Outcome()
    calls = [span for span in spans if mapping.is_model_call(span.attributes)]
    if not calls:
        return outcome
    if len(calls) > max_items:
        raise PayloadTooLarge(
            f"{len(calls)} model spans in one export; at most {max_items} (BATCH_MAX_ITEMS): "
            "lower OTEL_BSP_MAX_EXPORT_BATCH_SIZE"
        )
    named = await _named_bot(bot_header, organization) if bot_header else None
    now_ns = int(now().timestamp() * 1e9)
    oldest_ns = await _oldest_kept_ns(organization, now_ns)
    records: list[mapping.Record] = []
    for span in calls:
        try:
            records.append(mapping.record(span, exporter_ip, now_ns, oldest_ns))
        except Refused as why:
            outcome.refused.append(f"span {span.span_id or '(no id)'}: {why}")
    bots = {}
    if named is None:
        bots, no_room = await _bots_by_service(records, organization, max_bots)
        for record in [r for r in records if r.service in no_room]:
            outcome.refused.append(
                f"span {record.body['metadata']['spanId']}: the organization has "
                f"{max_bots} bots (OTLP_MAX_BOTS); no new bot for service {record.service!r}"
            )
        records = [r for r in records if r.service not in no_room]
    for record in records:
        bot = named if named is not None else bots[record.service]
        record.body["bot"] = str(bot.id)
        # A bot that keeps input definitions (one made through the API, even with none)
        # checks `inputs` against them: the prompt says it all.
        if bot.inputs is not None:
            record.body.pop("inputs", None)
    records.sort(key=lambda r: (r.start_ns, r.body["requestKey"]))
    follows = await _thread(records, organization)
    answer = await batch.create_batch(
        [r.body for r in records],
        exporter_ip,
        created_at=[r.created_at for r in records],
        follows=follows,
    )
    for item in answer["items"]:
        if item["status"] == "error":
            span_id = records[item["index"]].body["metadata"]["spanId"]
            why = ", ".join(f"{e['field'] or 'span'}: {e['reason']}" for e in item["errors"])
            outcome.refused.append(f"span {span_id}: {why}")
    return outcome


async def _named_bot(header: str, organization: PydanticObjectId | None) -> Bot:
    """The bot the header names: by id or by slug, in the organization."""
    text = header.strip()
    query: dict[str, Any] = (
        {"_id": PydanticObjectId(text)} if _OBJECT_ID.match(text) else {"slug": text[:100]}
    )
    query["organization"] = organization
    found = await Bot.find_one(scoped(Bot, query))
    if found is None:
        raise UnknownBot(
            f"X-Botrequests-Bot: no bot {text[:100]!r} in this organization "
            "(a slug or an id; leave the header out to use the resource's service.name)"
        )
    return found


async def _oldest_kept_ns(organization: PydanticObjectId | None, now_ns: int) -> int:
    """The earliest start a span may have: its organization's retention, if any."""
    if organization is None:
        return 0
    found = await Organization.find_one({"_id": organization})
    if found is None or not found.retentionDays:
        return 0
    return now_ns - int(timedelta(days=found.retentionDays).total_seconds() * 1e9)


async def _bots_by_service(
    records: list[mapping.Record], organization: PydanticObjectId | None, max_bots: int
) -> tuple[dict[str, Bot], set[str]]:
    """Each service's bot (found by slug, or made now), and the services left without
    one because the organization has no room for another bot."""
    services = list(dict.fromkeys(record.service for record in records))
    slugs = {service: slug_of(service) for service in services}
    by_slug = await _bots_with_slugs(set(slugs.values()), organization)
    missing = [s for s in dict.fromkeys(slugs.values()) if s not in by_slug]
    if missing:
        room = max(0, max_bots - await db.count(Bot, {"organization": organization}))
        names = {slug: service for service, slug in reversed(slugs.items())}
        made = [
            Bot.model_construct(**stamped({"name": names[s][:200], "slug": s}))
            for s in missing[:room]
        ]
        for bot in made:
            bot.organization = organization
        if made:
            # Another export may have made some of them meanwhile: read below.
            with contextlib.suppress(BulkWriteError):
                await db.insert_raw(
                    Bot, [bot.model_dump(by_alias=True, exclude_none=True) for bot in made]
                )
            by_slug |= await _bots_with_slugs({bot.slug for bot in made}, organization)
    bots = {service: by_slug[slug] for service, slug in slugs.items() if slug in by_slug}
    return bots, {service for service in services if service not in bots}


async def _bots_with_slugs(slugs: set[str], organization: PydanticObjectId | None) -> dict:
    if not slugs:
        return {}
    query = {"organization": organization, "slug": {"$in": sorted(slugs)}}
    found = await Bot.find(query, batch_size=len(slugs) + 1).to_list()
    return {bot.slug: bot for bot in found}


async def _thread(
    records: list[mapping.Record], organization: PydanticObjectId | None
) -> dict[int, int]:
    """Within the export (in start order), each span of a conversation follows the one
    before it (`{index: earlier index}`); the first follows the conversation's latest
    stored request that started before it (its `originalRequest`). One query."""
    follows: dict[int, int] = {}
    last: dict[str, int] = {}
    for index, record in enumerate(records):
        session = record.body.get("sessionKey")
        if not isinstance(session, str):
            continue
        if session in last:
            follows[index] = last[session]
        last[session] = index
    firsts = {
        record.body["sessionKey"]: (index, record.created_at)
        for index, record in reversed(list(enumerate(records)))
        if isinstance(record.body.get("sessionKey"), str)
    }
    if not firsts:
        return follows
    query = {
        "sessionKey": {"$in": sorted(firsts)},
        "$or": [{"sessionKey": key, "createdAt": {"$lt": at}} for key, (_, at) in firsts.items()],
        "organization": organization,
    }
    pipeline = [
        {"$match": scoped(BotRequest, query)},
        {"$sort": {"sessionKey": 1, "createdAt": -1, "_id": -1}},
        {"$group": {"_id": "$sessionKey", "latest": {"$first": "$_id"}}},
    ]
    for row in await db.aggregate(BotRequest, pipeline):
        index, _ = firsts.get(row["_id"], (None, None))
        if index is not None:
            records[index].body["originalRequest"] = str(row["latest"])
    return follows
