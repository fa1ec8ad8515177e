"""What the routes answer: the served JSON shapes, documented in the OpenAPI schema.

The routes return the serializer's dicts directly (encoded with orjson); these models
describe those dicts for `/docs`, clients and the schemathesis checks.
"""

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue


class ErrorBody(BaseModel):
    """Every error: a message, or FastAPI's list of `{loc, msg, type}` for a 422."""

    detail: str | list[dict[str, JsonValue]]
    existing: str | None = Field(
        default=None, description="409 on a requestKey: the id of the request that holds it"
    )


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody, "description": text}
    for code, text in {
        401: "missing, unknown or revoked API key",
        403: "not allowed with this key (the admin token, or another scope, is needed)",
        404: "no such record (or another organization's)",
        409: "conflict: a duplicate slug or requestKey (`existing` names the request)",
        413: "body over MAX_BODY_BYTES, or a batch over BATCH_MAX_ITEMS",
        422: "invalid body, query or id, or a reference to nothing",
        503: "database unavailable",
        504: "the database did not answer in time (QUERY_TIMEOUT_MS)",
    }.items()
}


class Ref(BaseModel):
    id: str


class OrganizationPublic(BaseModel):
    name: str | None = None
    retentionDays: int | None = None
    createdAt: str | None = None
    updatedAt: str | None = None
    id: str


class FeedbackPublic(BaseModel):
    request: str
    organization: str | None = None
    score: float
    comment: str | None = None
    by: str | None = None
    createdAt: str | None = None
    id: str


class FeedbackList(BaseModel):
    items: list[FeedbackPublic]


class ErasurePublic(BaseModel):
    """What an erasure deleted (counts per collection), who asked and when; never the
    erased content."""

    organization: str
    user: str
    requestedBy: str
    createdAt: str | None = None
    finishedAt: str | None = None
    deleted: dict[str, int] | None = None
    id: str


class ErasureList(BaseModel):
    items: list[ErasurePublic]


class UserPublic(BaseModel):
    name: str | None = None
    email: str | None = None
    organization: str | None = None
    createdAt: str | None = None
    updatedAt: str | None = None
    id: str


class BotInputPublic(BaseModel):
    inputGroup: int | None = None
    inputType: str | None = None
    step: int | None = None
    bot: Ref | None = None
    label: str | None = None
    name: str | None = None
    defaultValue: JsonValue = None
    placeholder: str | None = None
    required: bool | None = None
    options: list[JsonValue] | None = None
    id: str | None = None


class BotPublic(BaseModel):
    name: str | None = None
    slug: str | None = None
    creditCost: int | None = None
    inputs: list[BotInputPublic] | None = None
    promptTemplate: str | None = None
    organization: str | None = None
    createdAt: str | None = None
    updatedAt: str | None = None
    id: str


class FilePublic(BaseModel):
    createdBy: str | None = None
    fileName: str | None = None
    s3Key: str | None = None
    contentType: str | None = None
    size: int | None = None
    organization: str | None = None
    createdAt: str | None = None
    updatedAt: str | None = None
    id: str


class InvoicePublic(BaseModel):
    organization: str | None = None
    credits: int | None = None
    status: str | None = None
    reference: str | None = None
    createdAt: str | None = None
    updatedAt: str | None = None
    id: str


class NamedRef(BaseModel):
    name: str | None = None
    id: str


class BotRequestPublic(BaseModel):
    """A bot request, as Mongoose serves it: keys in stored order, a stored `null` as
    `null`, fields another application stored outside the schema included; each reference
    is its populated record, or its id string when not populated (or when the record it
    names no longer exists)."""

    model_config = ConfigDict(extra="allow")

    images: list[FilePublic | str] | None = None
    success: bool | None = None
    relatedRequests: list[str] | None = None
    bot: BotPublic | str | None = None
    createdBy: NamedRef | str | None = None
    organization: NamedRef | str | None = None
    inputs: dict[str, JsonValue] | None = None
    ip: str | None = None
    prompt: str | None = None
    response: JsonValue = None
    originalRequest: str | None = None
    invoice: InvoicePublic | str | None = None
    sessionKey: str | None = None
    isAggregation: bool | None = None
    credits: int | None = None
    requestKey: str | None = None
    usage: dict[str, JsonValue] | None = Field(
        default=None,
        description="{model, promptTokens, completionTokens, totalTokens, latencyMs, cost}",
    )
    metadata: dict[str, JsonValue] | None = None
    tags: list[str] | None = None
    createdAt: str | None = None
    updatedAt: str | None = None
    id: str


class UserList(BaseModel):
    items: list[UserPublic]


class SessionSummary(BaseModel):
    sessionKey: str
    requests: int
    first: str | None = None
    last: str | None = None
    user: JsonValue = Field(
        default=None, description="`{name, id}` of the session's user, its id if gone, or null"
    )


class SessionList(BaseModel):
    items: list[SessionSummary]


class BotPage(BaseModel):
    items: list[BotPublic]
    next: str | None = None


class FeedbackSummary(BaseModel):
    count: int
    averageScore: float | None = None


class SearchWords(BaseModel):
    words: list[str] = Field(description="the words of `q`, without case or accents")


class BotRequestPage(BaseModel):
    items: list[BotRequestPublic]
    next: str | None = None
    search: SearchWords | None = Field(default=None, description="with `q=` only")
    feedback: dict[str, FeedbackSummary] | None = Field(
        default=None,
        description="with `feedback=true` only: each item's feedback summary, by id",
    )


class ThreadItem(BaseModel):
    """A thread member: the request exactly as GET serves it, and beside it what the
    service computes about it."""

    request: BotRequestPublic
    depth: int = Field(description="0 for the root, 1 for its follow-ups, …")
    feedback: FeedbackSummary


class ThreadTotals(BaseModel):
    """Over the requests of this answer."""

    requests: int
    totalTokens: int | float
    cost: float
    latencyMs: float
    feedback: FeedbackSummary


class Thread(BaseModel):
    root: str
    scope: Literal["thread", "chain"]
    items: list[ThreadItem]
    totals: ThreadTotals
    truncated: bool = Field(
        description="not the whole thread: more follow-ups (see `next`), or deeper than "
        "THREAD_MAX_DEPTH"
    )
    cycle: bool
    next: str | None = Field(description="cursor for the thread's following requests")


class StatsGroup(BaseModel):
    bot: BotPublic | str | None = None
    organization: NamedRef | str | None = None
    createdBy: NamedRef | str | None = None
    sessionKey: str | None = None
    day: str | None = None
    model: str | None = None
    tag: str | None = None
    requests: int
    succeeded: int
    failed: int
    successRate: float
    credits: int
    tokens: int | float = Field(description="sum of usage.totalTokens")
    cost: float = Field(description="sum of usage.cost")
    averageLatencyMs: float | None = Field(
        default=None, description="mean usage.latencyMs of the requests that give one"
    )
    latencyP50Ms: float | None = Field(
        default=None, description="median latency where the server computes it (MongoDB 7+)"
    )
    latencyP95Ms: float | None = Field(
        default=None, description="95th percentile latency, likewise (null on the embedded backend)"
    )
    feedback: "FeedbackSummary"
    first: str | None = None
    last: str | None = None


class Stats(BaseModel):
    groupBy: str
    items: list[StatsGroup]
    next: None = None
    truncated: bool = Field(
        description="more groups than STATS_MAX_GROUPS: the largest (or earliest days) shown"
    )


class PromptPreview(BaseModel):
    prompt: str | None = None
    inputs: dict[str, JsonValue]


class BatchError(BaseModel):
    index: int
    field: str
    reason: str


class BatchItem(BaseModel):
    index: int
    status: Literal["created", "existing", "error"]
    id: str | None = None
    errors: list[BatchError] | None = None


class BatchResult(BaseModel):
    items: list[BatchItem]
    created: int
    existing: int
    failed: int
