"""What crosses the HTTP edge: `XCreate` / `XUpdate` bodies and `XPublic` responses.

Bodies forbid unknown fields (no mass assignment of `id`, `createdAt`, `relatedRequests`),
bound every string and integer (BSON cannot hold integers past 64 bits), and parse every
ObjectId strictly: 24 hex digits, either case, nothing else.
"""

import ipaddress
import math
import re
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from beanie import PydanticObjectId
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    JsonValue,
    StringConstraints,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from botrequests import words as text_words

OBJECT_ID_PATTERN = r"^[0-9a-fA-F]{24}$"
MAX_INT = 2**53  # safe in JSON for every client, and far inside BSON's int64
MAX_JSON_DEPTH = 32


def _strict_object_id(value: Any) -> Any:
    """Only a 24-hex-digit string (either case) is an id: not 12 bytes, not a number."""
    if not isinstance(value, str) or not re.fullmatch(OBJECT_ID_PATTERN, value):
        raise ValueError("must be an ObjectId: 24 hexadecimal digits")
    return value.lower()


ObjectIdIn = Annotated[
    PydanticObjectId,
    BeforeValidator(_strict_object_id),
    WithJsonSchema({"type": "string", "pattern": OBJECT_ID_PATTERN}),
]
Name = Annotated[str, StringConstraints(min_length=1, max_length=200)]
ShortText = Annotated[str, StringConstraints(max_length=2000)]
LongText = Annotated[str, StringConstraints(max_length=200_000)]
Count = Annotated[int, Field(ge=0, le=MAX_INT)]
SmallInt = Annotated[int, Field(ge=-MAX_INT, le=MAX_INT)]


def _check_json(value: Any, depth: int = 0) -> Any:
    """Reject what MongoDB cannot store or would read as an operator: keys starting with
    `$`, containing `.` or NUL, nesting deeper than MAX_JSON_DEPTH, unbounded integers,
    non-finite floats."""
    if depth > MAX_JSON_DEPTH:
        raise ValueError(f"nested deeper than {MAX_JSON_DEPTH} levels")
    if isinstance(value, dict):
        for key, item in value.items():
            if key.startswith("$") or "." in key or "\x00" in key:
                raise ValueError(f"key {key[:40]!r} may not start with '$' or contain '.' or NUL")
            _check_json(item, depth + 1)
    elif isinstance(value, list):
        for item in value:
            _check_json(item, depth + 1)
    elif isinstance(value, int) and not isinstance(value, bool) and abs(value) > 2**63 - 1:
        raise ValueError("integer out of range")
    elif isinstance(value, float) and not math.isfinite(value):
        # JSON has no NaN or Infinity (the body guard refuses them in bodies; this covers
        # JSON given in a query string, such as prompt-preview's `inputs`).
        raise ValueError("not a finite number: JSON has no NaN or Infinity")
    return value


def _not_null(value: Any) -> Any:
    if value is None:
        raise ValueError("may not be null")
    return value


def _ip(value: str) -> str:
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise ValueError("not a valid IPv4 or IPv6 address") from None


Email = Annotated[str, StringConstraints(max_length=320, pattern=r"^[^@\s]+@[^@\s]+$")]
SafeJson = Annotated[JsonValue, AfterValidator(_check_json)]
SafeObject = Annotated[dict[str, JsonValue], AfterValidator(_check_json)]
IpAddress = Annotated[str, StringConstraints(max_length=64), AfterValidator(_ip)]


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


# Examples in the OpenAPI schema name the records of tests/data/mongoose (organization
# Test, John Doe, the Hellow world bot): with `botrequests serve --import
# tests/data/mongoose/*.json` and the key it prints, /docs' "Try it out" succeeds as is.
EXAMPLE_ORG = "644853d690c195691be42075"
EXAMPLE_USER = "64483f3290c195691be41d57"
EXAMPLE_BOT = "64880aac2f5e4553ddac6eaf"


# --- organizations, users, files, invoices ---------------------------------------------


class OrganizationCreate(Body):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"name": "Acme", "retentionDays": 365}]}
    )

    name: Name
    retentionDays: Annotated[int, Field(ge=1, le=36_500)] | None = Field(
        default=None, description="delete requests older than this many days (none: keep)"
    )


class OrganizationUpdate(Body):
    name: Name | None = None
    retentionDays: Annotated[int, Field(ge=1, le=36_500)] | None = Field(
        default=None, description="delete requests older than this many days; null: keep all"
    )


class ErasureCreate(Body):
    user: ObjectIdIn = Field(description="the user whose requests, files and record go")


class UserCreate(Body):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"name": "Ada Lovelace", "email": "ada@example.com"}]},
    )

    name: Name
    email: Email | None = None
    organization: ObjectIdIn | None = None


class FileCreate(Body):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "fileName": "diagram.png",
                    "s3Key": "uploads/2026/diagram.png",
                    "contentType": "image/png",
                    "size": 48213,
                }
            ]
        },
    )

    fileName: Annotated[str, StringConstraints(min_length=1, max_length=1024)]
    s3Key: Annotated[str, StringConstraints(min_length=1, max_length=1024)]
    createdBy: ObjectIdIn | None = None
    contentType: Annotated[str, StringConstraints(max_length=255)] | None = None
    size: Count | None = None
    organization: ObjectIdIn | None = None


class InvoiceCreate(Body):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"organization": EXAMPLE_ORG, "credits": 20, "status": "paid"}]
        },
    )

    organization: ObjectIdIn
    credits: Count
    status: Literal["draft", "open", "paid", "void"]
    reference: Annotated[str, StringConstraints(max_length=200)] | None = None


# --- bots ------------------------------------------------------------------------------

InputType = Literal["text", "textarea", "number", "select", "multiselect", "checkbox", "file"]


class BotInputCreate(Body):
    name: Annotated[str, StringConstraints(min_length=1, max_length=100)]
    inputType: InputType
    inputGroup: Count | None = None
    step: SmallInt | None = None
    label: ShortText | None = None
    defaultValue: SafeJson = None
    placeholder: ShortText | None = None
    required: bool | None = None
    options: Annotated[list[SafeJson], Field(max_length=1000)] | None = None


SLUG_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,99}$"


class BotCreate(Body):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "name": "Poet",
                    "slug": "poet",
                    "creditCost": 3,
                    "inputs": [{"name": "topic", "inputType": "text", "required": True}],
                    "promptTemplate": "Write four lines about {topic}.",
                }
            ]
        },
    )

    name: Name
    slug: Annotated[str, StringConstraints(pattern=SLUG_PATTERN)]
    creditCost: Count = 0
    inputs: Annotated[list[BotInputCreate], Field(max_length=200)] = []
    promptTemplate: LongText | None = None
    organization: ObjectIdIn | None = None


class BotUpdate(Body):
    name: Name | None = None
    slug: Annotated[str, StringConstraints(pattern=SLUG_PATTERN)] | None = None
    creditCost: Count | None = None
    inputs: Annotated[list[BotInputCreate], Field(max_length=200)] | None = None
    promptTemplate: LongText | None = None
    organization: ObjectIdIn | None = None


# --- bot requests ----------------------------------------------------------------------


# --- usage, metadata and tags ----------------------------------------------------------

Tokens = Annotated[int, Field(ge=0, le=MAX_INT)]
Measure = Annotated[float, Field(ge=0, le=1e15, allow_inf_nan=False)]


class Usage(Body):
    """What the call cost: each optional; `totalTokens` is the sum of the other two when
    it is not given."""

    model: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = None
    promptTokens: Tokens | None = None
    completionTokens: Tokens | None = None
    totalTokens: Tokens | None = None
    latencyMs: Measure | None = None
    cost: Measure | None = None

    @model_validator(mode="after")
    def _total(self) -> "Usage":
        if self.totalTokens is None and None not in (self.promptTokens, self.completionTokens):
            self.totalTokens = self.promptTokens + self.completionTokens  # type: ignore[operator]
        return self


METADATA_KEY_PATTERN = r"^[^$.\x00]{1,64}$"
MetadataKey = Annotated[str, StringConstraints(pattern=METADATA_KEY_PATTERN)]
MetadataValue = (
    bool
    | Annotated[int, Field(ge=-MAX_INT, le=MAX_INT)]
    | Annotated[float, Field(allow_inf_nan=False)]
    | Annotated[str, StringConstraints(max_length=1000)]
)
Metadata = Annotated[
    dict[MetadataKey, MetadataValue],
    Field(max_length=32, description="flat: at most 32 keys (no '$' or '.'), scalar values"),
]
Tag = Annotated[str, StringConstraints(min_length=1, max_length=64)]
Tags = Annotated[list[Tag], Field(max_length=20, description="at most 20 short strings")]


class BotRequestCreate(Body):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "bot": EXAMPLE_BOT,
                    "createdBy": EXAMPLE_USER,
                    "inputs": {"color": "Green"},
                    "ip": "29.251.124.244",
                    "success": True,
                    "response": {"message": "Hellow word"},
                    "sessionKey": "session-42",
                    "usage": {"model": "gpt-4o-mini", "promptTokens": 12, "completionTokens": 30},
                    "tags": ["checkout"],
                }
            ]
        },
    )

    bot: ObjectIdIn
    success: bool
    response: Annotated[SafeJson, AfterValidator(_not_null)]
    ip: IpAddress | None = None
    createdBy: ObjectIdIn | None = None
    organization: ObjectIdIn | None = None
    inputs: SafeObject | None = None
    invoice: ObjectIdIn | None = None
    images: Annotated[list[ObjectIdIn], Field(max_length=100)] | None = None
    prompt: LongText | None = None
    originalRequest: ObjectIdIn | None = None
    sessionKey: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = None
    isAggregation: bool | None = None
    requestKey: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = Field(
        default=None, description="client idempotency key: a retry with the same key is stored once"
    )
    usage: Usage | None = None
    metadata: Metadata | None = None
    tags: Tags | None = None


class FeedbackCreate(Body):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"score": 1, "comment": "spot on"}]}
    )

    score: Annotated[float, Field(ge=-1, le=1, allow_inf_nan=False)] = Field(
        description="from -1 to 1: a thumbs down is -1, up is 1"
    )
    comment: Annotated[str, StringConstraints(max_length=2000)] | None = None
    by: ObjectIdIn | None = Field(
        default=None, description="the user giving it (of the request's organization)"
    )


class BotRequestBatch(Body):
    items: list[Any] = Field(
        description="each item as the body of POST /bot-requests; checked one by one"
    )


class BotRequestUpdate(Body):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"success": True, "response": {"message": "Hellow word"}}]},
    )

    success: bool | None = None
    response: SafeJson = None
    images: Annotated[list[ObjectIdIn], Field(max_length=100)] | None = None
    invoice: ObjectIdIn | None = None
    usage: Usage | None = None
    metadata: Metadata | None = None
    tags: Tags | None = None


# --- query strings ---------------------------------------------------------------------


def _utc(value: datetime) -> datetime:
    try:
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00+14:00 is before the first representable UTC
        raise ValueError("date out of range (years 1 to 9999 in UTC)") from None


Instant = Annotated[datetime, AfterValidator(_utc)]


class BotRequestFilters(BaseModel):
    """Filters shared by the list, stats and export; all combinable. Unknown query
    parameters are rejected, so `bot[$ne]=...` is a 422, never an ignored filter."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    bot: ObjectIdIn | None = None
    createdBy: ObjectIdIn | None = None
    organization: ObjectIdIn | None = None
    invoice: ObjectIdIn | None = None
    originalRequest: ObjectIdIn | None = Field(
        default=None, description="only the follow-ups of this request"
    )
    success: bool | None = None
    sessionKey: Annotated[str, StringConstraints(max_length=200)] | None = None
    isAggregation: bool | None = None
    from_: Instant | None = Field(
        default=None, alias="from", description="createdAt at or after (ISO-8601)"
    )
    to: Instant | None = Field(default=None, description="createdAt before (ISO-8601)")
    tag: list[Tag] | None = Field(
        default=None, max_length=20, description="repeatable: requests with every tag given"
    )
    model: Annotated[str, StringConstraints(max_length=200)] | None = Field(
        default=None, description="usage.model"
    )
    minLatencyMs: Measure | None = Field(default=None, description="usage.latencyMs at least")
    maxLatencyMs: Measure | None = Field(default=None, description="usage.latencyMs at most")
    metadata: dict[MetadataKey, Annotated[str, StringConstraints(max_length=1000)]] | None = Field(
        default=None,
        max_length=32,
        description="given as `metadata.<key>=<value>` query parameters (each must match)",
    )
    q: Annotated[str, StringConstraints(max_length=text_words.QUERY_MAX_CHARS)] | None = Field(
        default=None,
        description=(
            "search: requests whose prompt, input values or response hold every word "
            "(case and accents aside, whole words; punctuation only separates words)"
        ),
    )

    @field_validator("q")
    @classmethod
    def _search_words(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None  # an empty search box searches nothing
        found = text_words.query_words(value)
        if not found:
            raise ValueError("holds no word (letters or digits)")
        if len(found) > text_words.QUERY_MAX_WORDS:
            raise ValueError(f"at most {text_words.QUERY_MAX_WORDS} different words")
        return value

    @property
    def words(self) -> list[str]:
        """The folded words of `q` (none without it)."""
        return text_words.query_words(self.q) if self.q else []

    @model_validator(mode="before")
    @classmethod
    def _metadata_parameters(cls, data: Any) -> Any:
        """`metadata.<key>=<value>` query parameters into one `metadata` filter; every
        other unknown parameter is still refused."""
        if not isinstance(data, dict):
            return data
        given = {key: value for key, value in data.items() if key.startswith("metadata.")}
        if not given:
            return data
        rest = {key: value for key, value in data.items() if key not in given}
        rest["metadata"] = {
            key.removeprefix("metadata."): value[-1] if isinstance(value, list) else value
            for key, value in given.items()
        }
        return rest

    @model_validator(mode="after")
    def _range(self) -> "BotRequestFilters":
        if self.from_ and self.to and self.from_ >= self.to:
            raise ValueError("'from' must be before 'to'")
        low, high = self.minLatencyMs, self.maxLatencyMs
        if low is not None and high is not None and low > high:
            raise ValueError("'minLatencyMs' must not be above 'maxLatencyMs'")
        return self


Populate = Annotated[str, StringConstraints(max_length=200)]


class ListQuery(BotRequestFilters):
    limit: int | None = Field(default=None, ge=1, le=500, description="1-500, default 50")
    cursor: Annotated[str, StringConstraints(max_length=300)] | None = None
    populate: Populate | None = None
    feedback: bool = Field(
        default=False,
        description="true: `feedback` beside `items`, each item's {count, averageScore}",
    )


class StatsQuery(BotRequestFilters):
    groupBy: Literal["bot", "organization", "createdBy", "sessionKey", "day", "model", "tag"] = (
        "bot"
    )


class ExportQuery(BotRequestFilters):
    populate: Populate | None = None
    format: Literal["ndjson", "csv"] = Field(
        default="ndjson",
        description="ndjson: each request as served; csv: one row per request, flat columns",
    )
