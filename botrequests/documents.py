"""Beanie documents: the stored shape, exactly as the Mongoose application stores it.

Field names are the stored (and served) camelCase names, declared in the order Mongoose
writes them, so that serving a document keeps its key order. References are plain
ObjectIds (`PydanticObjectId`), never `Link`. `extra="allow"` keeps `__v` and fields this
service does not know in `model_extra`, so they are neither lost nor served.
"""

import functools
import operator
import types
import typing
from datetime import datetime
from typing import Any, ClassVar

import pymongo
from beanie import Document, PydanticObjectId
from bson import ObjectId
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    InstanceOf,
    create_model,
    model_validator,
)
from pydantic.fields import FieldInfo
from pymongo import IndexModel

REQUEST_KEY_INDEX = "organization_1_requestKey_1"
# Mongoose's version key. Mongoose increments it whenever it rewrites an array, and a
# document it loaded before then fails to save that array (VersionError) instead of
# overwriting the change: every update here that changes an array increments it too.
VERSION_BUMP = {"__v": 1}


class StoredOrder(BaseModel):
    """Remembers the order of the keys it was read with, so that a document is served in
    its stored order, as Mongoose serves it (serialize.dump). Documents the service builds
    itself (`model_construct`) have no stored order: they are stored and served in the
    order their fields are declared, which is the seed's."""

    # Array paths Mongoose hydrates as `[]` when a document does not hold them: plain
    # arrays are put before the stored keys, arrays of subdocuments after them (as
    # observed with Mongoose 8 and 9).
    ARRAYS_FIRST: ClassVar[tuple[str, ...]] = ()
    ARRAYS_LAST: ClassVar[tuple[str, ...]] = ()

    # The stored keys are kept in the model's private dict as `_stored_keys` (read by
    # serialize._pairs), set here rather than declared as a private attribute: a declared
    # one makes pydantic run its private-attribute set-up on every model validated, a
    # fifth of the time of reading a page of requests.

    @model_validator(mode="wrap")
    @classmethod
    def _remember_order(cls, data: Any, handler: Any) -> Any:
        model = handler(data)
        # Only what was read: a stored document always has its `_id` (keyword arguments
        # of a document the service builds say `id`, and their None is never stored).
        if isinstance(data, dict) and "_id" in data and isinstance(model, StoredOrder):
            private = model.__pydantic_private__
            if private is None:
                object.__setattr__(model, "__pydantic_private__", {"_stored_keys": tuple(data)})
            else:
                private["_stored_keys"] = tuple(data)
        return model


class StoredDocument(StoredOrder, Document):
    model_config = ConfigDict(extra="allow")

    class Settings:
        keep_nulls = False
        use_revision = False
        validate_on_save = False


class Organization(StoredDocument):
    name: str
    # Requests older than this many days are deleted (retention.py); None: kept. The
    # service's own field on a Mongoose entity (kept by Mongoose like any unknown field).
    retentionDays: int | None = None
    createdAt: datetime | None = None
    updatedAt: datetime | None = None

    class Settings(StoredDocument.Settings):
        name = "organizations"


class User(StoredDocument):
    name: str
    email: str | None = None
    organization: PydanticObjectId | None = None
    createdAt: datetime | None = None
    updatedAt: datetime | None = None

    class Settings(StoredDocument.Settings):
        name = "users"
        indexes = [IndexModel([("organization", pymongo.ASCENDING)])]


class BotInput(StoredOrder):
    """One input definition, embedded in its bot with its own `_id` (as Mongoose does)."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)
    ARRAYS_FIRST = ("options",)

    id: PydanticObjectId | None = Field(default=None, alias="_id")
    inputGroup: int | None = None
    inputType: str | None = None
    step: int | None = None
    bot: PydanticObjectId | None = None
    label: str | None = None
    name: str | None = None
    defaultValue: Any = None
    placeholder: str | None = None
    required: bool | None = None
    options: list[Any] | None = None


class Bot(StoredDocument):
    ARRAYS_LAST = ("inputs",)

    # The seed's order (Mongoose 5 stored a new bot's defaulted paths first), so that the
    # seed example comes back exactly as in the seed.
    creditCost: int | None = None
    inputs: list[BotInput] | None = None
    name: str
    slug: str
    promptTemplate: str | None = None
    organization: PydanticObjectId | None = None
    createdAt: datetime | None = None
    updatedAt: datetime | None = None

    class Settings(StoredDocument.Settings):
        name = "bots"
        indexes = [
            # Slugs are unique within an organization (shared bots, without one, among
            # themselves): one tenant never learns another's slugs from a 409. The
            # organization prefix also serves per-organization lookups.
            IndexModel(
                [("organization", pymongo.ASCENDING), ("slug", pymongo.ASCENDING)],
                unique=True,
                name="organization_1_slug_1",
            ),
        ]


class File(StoredDocument):
    createdBy: PydanticObjectId | None = None
    fileName: str
    s3Key: str
    contentType: str | None = None
    size: int | None = None
    organization: PydanticObjectId | None = None
    createdAt: datetime | None = None
    updatedAt: datetime | None = None

    class Settings(StoredDocument.Settings):
        name = "files"


class Invoice(StoredDocument):
    organization: PydanticObjectId
    credits: int
    status: str
    reference: str | None = None
    createdAt: datetime | None = None
    updatedAt: datetime | None = None

    class Settings(StoredDocument.Settings):
        name = "invoices"
        indexes = [IndexModel([("organization", pymongo.ASCENDING)])]


class BotRequest(StoredDocument):
    ARRAYS_FIRST = ("images", "relatedRequests")

    # `bot` and `success` are required of every new request (schemas.BotRequestCreate);
    # optional here so that a document another application wrote without them can still
    # be read and served (the importer reports it).
    images: list[PydanticObjectId] | None = None
    success: bool | None = None
    relatedRequests: list[PydanticObjectId] | None = None
    bot: PydanticObjectId | None = None
    createdBy: PydanticObjectId | None = None
    organization: PydanticObjectId | None = None
    inputs: dict[str, Any] | None = None
    ip: str | None = None
    prompt: str | None = None
    response: Any = None
    originalRequest: PydanticObjectId | None = None
    invoice: PydanticObjectId | None = None
    sessionKey: str | None = None
    isAggregation: bool | None = None
    credits: int | None = None
    requestKey: str | None = None
    # Observability: what the call cost, the writer's own keys and labels (schemas.Usage,
    # Metadata, Tags). Fields outside the Mongoose schema: Mongoose keeps and serves them.
    usage: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None
    tags: list[str] | None = None
    createdAt: datetime | None = None
    updatedAt: datetime | None = None

    class Settings(StoredDocument.Settings):
        name = "botrequests"
        # Every lookup the service makes; newest-first pages sort by (createdAt, _id).
        # (equality field, createdAt, _id) serves that filter with the newest-first sort
        # and the keyset cursor; the thread lookup's `$graphLookup` down uses the
        # originalRequest one. docs/reading/queries.md lists which query each index serves.
        indexes = [
            IndexModel([("createdAt", pymongo.DESCENDING), ("_id", pymongo.DESCENDING)]),
            IndexModel([("updatedAt", pymongo.DESCENDING)]),
            IndexModel([("usage.latencyMs", pymongo.ASCENDING)]),
            # Retention and erasure take deleted ids out of the lists that name them
            # (db.unlink_related): without it, a collection scan per batch.
            IndexModel(
                [("organization", pymongo.ASCENDING), ("relatedRequests", pymongo.ASCENDING)]
            ),
            # A client's idempotency key: a retried write is stored once. Unique within
            # an organization (no tenant can learn or take another's keys), and only
            # over requests that have one (a partial index: the many without do not
            # collide).
            IndexModel(
                [("organization", pymongo.ASCENDING), ("requestKey", pymongo.ASCENDING)],
                unique=True,
                partialFilterExpression={"requestKey": {"$type": "string"}},
                name=REQUEST_KEY_INDEX,
            ),
            *(
                IndexModel(
                    [
                        (field, pymongo.ASCENDING),
                        ("createdAt", pymongo.DESCENDING),
                        ("_id", pymongo.DESCENDING),
                    ]
                )
                for field in (
                    "organization",
                    "bot",
                    "createdBy",
                    "sessionKey",
                    "invoice",
                    "originalRequest",
                    "tags",  # multikey: one entry per tag
                    "usage.model",
                )
            ),
        ]


class ApiKey(StoredDocument):
    """An organization's API key (only its SHA-256 is stored). Not a Mongoose entity:
    botrequests' own collection."""

    organization: PydanticObjectId
    hash: str
    prefix: str
    # What the key may do: "ingest", "read" or "full" (auth.SCOPES); keys made before
    # scopes existed have none and are "full".
    scope: str | None = None
    createdAt: datetime | None = None
    # Set when a worker looks the key up (at most once per KEY_CACHE_SECONDS per worker).
    lastUsedAt: datetime | None = None
    revokedAt: datetime | None = None

    class Settings(StoredDocument.Settings):
        name = "apikeys"
        indexes = [
            IndexModel([("hash", pymongo.ASCENDING)], unique=True),
            IndexModel([("organization", pymongo.ASCENDING)]),
        ]


class Erasure(StoredDocument):
    """The record of one erasure of a user's data (GDPR Art. 17): who asked, when, and how
    much was deleted, never what. botrequests' own collection."""

    organization: PydanticObjectId
    user: PydanticObjectId
    requestedBy: str  # "admin token" or the key's prefix
    createdAt: datetime | None = None
    finishedAt: datetime | None = None
    deleted: dict[str, int] | None = None

    class Settings(StoredDocument.Settings):
        name = "erasures"
        indexes = [IndexModel([("organization", pymongo.ASCENDING), ("user", pymongo.ASCENDING)])]


class Feedback(StoredDocument):
    """A score (and comment) on one request, by an end user or a reviewer. botrequests'
    own collection: never inside the Mongoose request document."""

    request: PydanticObjectId
    organization: PydanticObjectId | None = None  # the request's
    score: float
    comment: str | None = None
    by: PydanticObjectId | None = None  # a user of the request's organization
    createdAt: datetime | None = None

    class Settings(StoredDocument.Settings):
        name = "feedback"
        indexes = [
            IndexModel([("request", pymongo.ASCENDING), ("createdAt", pymongo.ASCENDING)]),
            IndexModel([("organization", pymongo.ASCENDING), ("by", pymongo.ASCENDING)]),
        ]


class Deletion(StoredDocument):
    """Requests being deleted (a batch of retention or erasure), written before the first
    of the steps that delete them and removed after the last: a crash in between leaves
    this record, and the next sweep or erasure finishes its steps. botrequests' own
    collection."""

    organization: PydanticObjectId
    ids: list[PydanticObjectId]
    createdAt: datetime | None = None

    class Settings(StoredDocument.Settings):
        name = "deletions"


class Lease(StoredDocument):
    """A lease that lets one worker at a time run a job (the retention sweep): held by
    `owner` until `until`; its `_id` is the job's name (a string: read and written raw by
    db.take_lease, never through this model). botrequests' own collection."""

    owner: str | None = None
    until: datetime | None = None

    class Settings(StoredDocument.Settings):
        name = "leases"


# The Mongoose entities (and the importer's collections), then the service's own.
ENTITY_MODELS: list[type[Document]] = [Organization, User, Bot, File, Invoice, BotRequest]
DOCUMENT_MODELS: list[type[Document]] = [
    *ENTITY_MODELS,
    ApiKey,
    Erasure,
    Feedback,
    Deletion,
    Lease,
]


# An ObjectId as stored is checked in pydantic's core (an isinstance); anything else goes
# through Beanie's PydanticObjectId as before (a stored 24-hex string, say).
_StoredId = InstanceOf[ObjectId] | PydanticObjectId


def _stored_ids(annotation: Any) -> Any:
    """`annotation` with PydanticObjectId (alone, optional or in a list) as `_StoredId`."""
    if annotation is PydanticObjectId:
        return _StoredId
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (types.UnionType, typing.Union):
        return functools.reduce(operator.or_, (_stored_ids(arg) for arg in args))
    if origin is list and args:
        return list[_stored_ids(args[0])]
    return annotation


class _Read(StoredOrder):
    model_config = ConfigDict(extra="allow", populate_by_name=True)


@functools.cache
def reader(document: type[StoredDocument]) -> type[StoredOrder]:
    """A plain pydantic twin of a document for the read paths: the same fields and the
    same validation, without Beanie's `Document.__init__`, which pydantic calls on every
    `model_validate` and which validates the document a second time (16 µs a request
    document, against 7 µs). Served exactly as the document would be."""
    fields: dict[str, Any] = {}
    for name, info in document.model_fields.items():
        if name != "revision_id":
            annotation = _stored_ids(info.annotation)
            fields[name] = (annotation, FieldInfo.merge_field_infos(info, annotation=annotation))
    twin = create_model(f"{document.__name__}Read", __base__=_Read, **fields)
    twin.ARRAYS_FIRST = document.ARRAYS_FIRST
    twin.ARRAYS_LAST = document.ARRAYS_LAST
    return twin
