"""Bot requests: record, read populated, record the outcome, list."""

from typing import Annotated, Literal

from beanie import PydanticObjectId
from fastapi import APIRouter, Path, Query, Request, Response
from fastapi.responses import StreamingResponse

from botrequests import analytics, batch, feedback, ingest, populate, threads
from botrequests import botrequest_service as service
from botrequests.auth import PrincipalDep
from botrequests.deps import JSON, BotRequestDep, ObjectIdPath, PopulatePaths, SettingsDep, created
from botrequests.errors import PayloadTooLarge
from botrequests.responses import (
    BatchResult,
    BotRequestPage,
    BotRequestPublic,
    FeedbackList,
    FeedbackPublic,
    SessionList,
    Stats,
    Thread,
)
from botrequests.schemas import (
    OBJECT_ID_PATTERN,
    BotRequestBatch,
    BotRequestCreate,
    BotRequestUpdate,
    ExportQuery,
    FeedbackCreate,
    ListQuery,
    StatsQuery,
)
from botrequests.serialize import dump
from botrequests.timeutil import now

router = APIRouter(prefix="/bot-requests", tags=["bot requests"])


@router.post("", status_code=201, response_model=BotRequestPublic)
async def create_bot_request(body: BotRequestCreate, request: Request, who: PrincipalDep) -> JSON:
    """Record one interaction; answers the populated request (an `ingest` key: what it
    sent, with the id and times made)."""
    client_ip = request.client.host if request.client else None
    answer = await ingest.create(body, client_ip, populated=who.may_read)
    return created(answer, f"/bot-requests/{answer['id']}")


@router.post(
    "/batch",
    response_model=BatchResult,
    responses={413: {"description": "more items than BATCH_MAX_ITEMS"}},
)
async def create_bot_request_batch(
    body: BotRequestBatch, request: Request, settings: SettingsDep
) -> JSON:
    """Record many interactions at once; answers each item's id or errors."""
    if len(body.items) > settings.batch_max_items:
        raise PayloadTooLarge(
            f"{len(body.items)} items; a batch takes at most {settings.batch_max_items}"
        )
    client_ip = request.client.host if request.client else None
    return JSON(await batch.create_batch(body.items, client_ip))


@router.get("", response_model=BotRequestPage)
async def list_bot_requests(query: Annotated[ListQuery, Query()], settings: SettingsDep) -> JSON:
    """A filtered, newest-first page of bot requests; follow `next` for the next page."""
    paths = populate.parse_paths(query.populate)
    limit = query.limit or settings.page_default_limit
    return JSON(await service.page(query, limit, query.cursor, paths, query.feedback))


@router.get("/stats", response_model=Stats)
async def bot_request_stats(query: Annotated[StatsQuery, Query()]) -> JSON:
    """Counts, success rate and credits per bot, organization, user, session or UTC day."""
    return JSON(await analytics.stats(query, query.groupBy))


@router.get("/sessions", response_model=SessionList)
async def find_sessions(
    q: Annotated[str | None, Query(max_length=200, description="sessionKey starts with")] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> JSON:
    """Session keys starting with `q`, most recently active first, for pickers."""
    return JSON({"items": await analytics.sessions(q, limit)})


@router.get(
    "/export",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"application/x-ndjson": {}, "text/csv": {}}},
        429: {"description": "EXPORT_MAX_CONCURRENT exports are being streamed; Retry-After"},
    },
)
async def export_bot_requests(
    query: Annotated[ExportQuery, Query()], settings: SettingsDep
) -> StreamingResponse:
    """Every matching request, populated, streamed: NDJSON (one request per line, as
    served) or `?format=csv` (one flat row per request)."""
    paths = populate.parse_paths(query.populate)
    as_csv = query.format == "csv"
    lines = await analytics.export_batches(query, paths, as_csv, settings.export_max_concurrent)
    kind, media = (
        ("csv", "text/csv; charset=utf-8") if as_csv else ("ndjson", "application/x-ndjson")
    )
    stamp = now().strftime("%Y%m%dT%H%M%SZ")
    disposition = f'attachment; filename="bot-requests-{stamp}.{kind}"'
    return StreamingResponse(lines, media_type=media, headers={"Content-Disposition": disposition})


@router.get("/{id}", response_model=BotRequestPublic)
async def read_bot_request(doc: BotRequestDep, paths: PopulatePaths) -> JSON:
    """One bot request, populated (`?populate=` picks the paths, `none` for raw ids)."""
    return JSON((await populate.populate([doc], paths))[0])


@router.patch("/{id}", response_model=BotRequestPublic)
async def update_bot_request(
    doc: BotRequestDep, body: BotRequestUpdate, paths: PopulatePaths, who: PrincipalDep
) -> JSON:
    """Record the outcome later: `response`, `success`, `images`, `invoice` (an `ingest`
    key is answered what it sent, with the id and `updatedAt`)."""
    updated = await service.update(doc, body)
    if not who.may_read:
        return JSON(ingest.receipt(dump(updated), set(body.model_fields_set)))
    return JSON((await populate.populate([updated], paths))[0])


@router.post("/{id}/feedback", status_code=201, response_model=FeedbackPublic)
async def add_feedback(doc: BotRequestDep, body: FeedbackCreate) -> JSON:
    """Record feedback on a request: `score` in [-1, 1], an optional comment and user."""
    return created(dump(await feedback.add(doc, body)), f"/bot-requests/{doc.id}/feedback")


@router.get("/{id}/feedback", response_model=FeedbackList)
async def list_feedback(doc: BotRequestDep) -> JSON:
    """The request's feedback, oldest first."""
    return JSON({"items": [dump(record) for record in await feedback.of(doc)]})


@router.delete("/{id}/feedback/{feedback_id}", status_code=204)
async def delete_feedback(
    doc: BotRequestDep, feedback_id: Annotated[str, Path(pattern=OBJECT_ID_PATTERN)]
) -> Response:
    """Remove one piece of feedback from the request."""
    await feedback.remove(doc, PydanticObjectId(feedback_id.lower()))
    return Response(status_code=204)


@router.get("/{id}/thread", response_model=Thread)
async def read_thread(
    identifier: ObjectIdPath,
    paths: PopulatePaths,
    settings: SettingsDep,
    scope: Literal["thread", "chain"] = "thread",
    limit: Annotated[
        int | None,
        Query(ge=1, le=10_000, description="requests per answer (at most THREAD_MAX_MEMBERS)"),
    ] = None,
    cursor: Annotated[str | None, Query(max_length=300, description="`next`")] = None,
) -> JSON:
    """The follow-up thread a request belongs to, a page at a time (`scope=chain`: root →
    this one)."""
    most = settings.thread_max_members
    size = min(limit or most, most)
    answer = await threads.thread(identifier, scope, paths, settings.thread_max_depth, size, cursor)
    return JSON(answer)
