"""Access control: organization API keys, an admin token, and the request's tenant.

A key is `br_` + 43 random URL-safe characters, shown once; only its SHA-256 is stored (a
key has 256 bits of entropy, so a fast hash is enough and a lookup is one indexed query).
The tenant of the request being served lives in a context variable set by the `principal`
dependency: the query layer reads it to scope every read and write to that organization
(`None`: the admin token, or access control turned off).
"""

import asyncio
import hashlib
import hmac
import re
import secrets
import time
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated, Any

from beanie import PydanticObjectId
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from botrequests.documents import ApiKey
from botrequests.errors import Forbidden, Unauthorized
from botrequests.storage import db
from botrequests.timeutil import now

current_org: ContextVar[PydanticObjectId | None] = ContextVar("current_org", default=None)


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> str:
    """A fresh API key's text (stored with `store_key`)."""
    return "br_" + secrets.token_urlsafe(32)


async def issue_key(organization: PydanticObjectId, scope: str = "full") -> tuple[ApiKey, str]:
    key = new_key()
    return await store_key(organization, key, scope), key


async def store_key(organization: PydanticObjectId, key: str, scope: str = "full") -> ApiKey:
    """Store a key made by `new_key` (its hash only) for the organization."""
    hashed = digest(key)
    record = ApiKey(
        id=db.key_id(hashed),
        organization=organization,
        hash=hashed,
        prefix=key[:10],
        scope=scope,
        createdAt=now(),
    )
    await record.insert()
    return record


# What a key may do. `ingest`: record requests (one, a batch) and their outcome (PATCH),
# nothing else, not even a read; `read`: every read, no write; `full`: both, and the other
# writes of its organization (bots, users, files, invoices, erasures).
SCOPES = ("ingest", "read", "full")
# The operations an `ingest` key may call (method, route path).
INGEST_OPERATIONS = frozenset(
    {
        ("POST", "/bot-requests"),
        ("POST", "/bot-requests/batch"),
        ("PATCH", "/bot-requests/{id}"),
        # A product's backend relays its users' thumbs.
        ("POST", "/bot-requests/{id}/feedback"),
        # OpenTelemetry exporters (OTLP/HTTP): spans become requests.
        ("POST", "/v1/traces"),
    }
)


def scopes_for(method: str, path: str) -> tuple[str, ...]:
    """The key scopes that may call an operation: a rule, not a list kept by hand, so a
    new route is covered the day it is added (and the OpenAPI document says it)."""
    if (method, path) in INGEST_OPERATIONS:
        return ("ingest", "full")
    if method in ("GET", "HEAD"):
        return ("read", "full")
    return ("full",)


@dataclass(frozen=True)
class Principal:
    org: PydanticObjectId | None  # None: every organization
    admin: bool
    scope: str = "full"
    key: str | None = None  # the key's prefix, for records of who did what

    @property
    def may_read(self) -> bool:
        """Whether answers may carry records: not for a write-only (`ingest`) key."""
        return self.scope != "ingest"


_bearer = HTTPBearer(
    auto_error=False,
    description="An organization's API key (`botrequests create-api-key`), or the admin token",
)


async def principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    settings = request.app.state.settings
    if not settings.auth_enabled:
        current_org.set(None)
        return Principal(None, True)
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthorized("missing API key: send 'Authorization: Bearer <key>'")
    token = credentials.credentials
    admin = settings.admin_token
    if admin and hmac.compare_digest(token.encode(), admin.encode()):
        current_org.set(None)
        return Principal(None, True)
    if not KEY_FORM.fullmatch(token):
        raise Unauthorized("unknown or revoked API key")  # not even looked up
    found = await _key_of(digest(token), settings.key_cache_seconds)
    if found is None:
        raise Unauthorized("unknown or revoked API key")
    org, scope = found
    current_org.set(org)
    who = Principal(org, False, scope, token[:10])
    route = request.scope.get("route")
    # (`request.url` is built only when needed: it costs as much as the rest of this.)
    allowed = scopes_for(request.method, route.path if route else request.url.path)
    if scope not in allowed:
        raise Forbidden(
            f"this API key's scope is '{scope}'; this operation needs "
            + " or ".join(f"'{name}'" for name in allowed)
        )
    return who


# Keys found valid, by hash: (organization, scope, until when), for KEY_CACHE_SECONDS. A cache,
# not state: each worker fills its own and loses nothing by forgetting it. A key revoked
# through this worker is dropped at once; through another worker, or in the database,
# it stops working here within KEY_CACHE_SECONDS. Unknown keys are never remembered, so
# guessing cannot fill it; it is emptied if it ever holds KEY_CACHE_MAX keys.
_known: dict[str, tuple[PydanticObjectId, str, float]] = {}
KEY_CACHE_MAX = 10_000
# Lookups under way in this worker, by hash: concurrent first uses of one key wait for one
# lookup (one read, at most one write of `lastUsedAt`) instead of making one each.
_looking: dict[str, asyncio.Future] = {}
# "Last use" is written at most this often per key (across workers: a conditional update).
LAST_USE_EVERY = timedelta(seconds=60)
# What `issue_key` makes: anything else is refused without a lookup.
KEY_FORM = re.compile(r"br_[A-Za-z0-9_-]{43}")


async def _key_of(hashed: str, cache_seconds: float) -> tuple[PydanticObjectId, str] | None:
    remembered = _known.get(hashed)
    moment = time.monotonic()
    if remembered is not None and remembered[2] > moment:
        return remembered[0], remembered[1]
    pending = _looking.get(hashed)
    if pending is not None:
        row = await asyncio.shield(pending)
    else:
        pending = _looking[hashed] = asyncio.get_running_loop().create_future()
        try:
            row = await db.use_key(hashed, now(), LAST_USE_EVERY)
        except asyncio.CancelledError:
            pending.cancel()
            raise
        except Exception as exc:
            pending.set_exception(exc)
            pending.exception()  # retrieved: no "never retrieved" warning when none wait
            raise
        else:
            pending.set_result(row)
        finally:
            del _looking[hashed]
    if row is None:
        _known.pop(hashed, None)
        return None
    org, scope = PydanticObjectId(row["organization"]), row.get("scope") or "full"
    if cache_seconds > 0:
        if len(_known) >= KEY_CACHE_MAX:
            _known.clear()
        _known[hashed] = (org, scope, moment + cache_seconds)
    return org, scope


def forget_key(hashed: str) -> None:
    """A key was revoked here: this worker stops accepting it at once."""
    _known.pop(hashed, None)


PrincipalDep = Annotated[Principal, Depends(principal)]


async def admin_only(who: PrincipalDep) -> Principal:
    if not who.admin:
        raise Forbidden("this needs the admin token (BOTREQUESTS_ADMIN_TOKEN)")
    return who


AdminDep = Annotated[Principal, Depends(admin_only)]


# Bots, users and files written without an organization (by another application) are
# shared: every tenant sees them. Invoices and bot requests always belong to one.
_SHARED = frozenset({"bots", "users", "files"})


def scoped(model: type, query: dict[str, Any]) -> dict[str, Any]:
    """`query` limited to what the current tenant may see of `model`'s collection."""
    org = current_org.get()
    if org is None:
        return query
    name = model.Settings.name
    if name == "organizations":
        tenant: dict[str, Any] = {"_id": org}
    elif name in _SHARED:
        tenant = {"organization": {"$in": [org, None]}}
    else:
        tenant = {"organization": org}
    return {"$and": [query, tenant]} if query else tenant


def visible(doc: dict[str, Any]) -> bool:
    """Whether a raw bot request belongs to the current tenant (for thread members)."""
    org = current_org.get()
    return org is None or doc.get("organization") == org


def may_change(record_org: PydanticObjectId | None, fields: dict[str, Any], what: str) -> None:
    """403 unless the caller may change this record in this way: a key changes only its
    own organization's records (shared ones, without an organization, need the admin
    token: every tenant uses them), and never moves one to another organization."""
    org = current_org.get()
    if org is None:
        return
    if record_org is None:
        raise Forbidden(
            f"this {what} is shared by every organization: only the admin token may change it"
        )
    if "organization" in fields and fields["organization"] != org:
        raise Forbidden(f"an API key cannot move a {what} to another organization")


def owned(fields: dict[str, Any]) -> dict[str, Any]:
    """A record written under a key belongs to the key's organization, whatever the body
    said."""
    org = current_org.get()
    return fields if org is None else {**fields, "organization": org}
