"""API keys of an organization (admin token only)."""

from typing import Annotated, Literal

from beanie import PydanticObjectId
from fastapi import APIRouter, Path, Response
from pydantic import BaseModel, ConfigDict, Field

from botrequests import auth
from botrequests.auth import AdminDep
from botrequests.deps import JSON, OrganizationDep, created
from botrequests.documents import ApiKey
from botrequests.errors import not_found
from botrequests.schemas import OBJECT_ID_PATTERN
from botrequests.serialize import iso
from botrequests.timeutil import now

router = APIRouter(tags=["api keys"])


Scope = Literal["ingest", "read", "full"]


class ApiKeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    scope: Scope = Field(
        default="full",
        description="ingest: record requests and outcomes only; read: reads only; full: both",
    )


class ApiKeyIssued(BaseModel):
    id: str
    organization: str
    prefix: str
    scope: Scope
    key: str
    createdAt: str


class ApiKeyPublic(BaseModel):
    id: str
    prefix: str
    scope: Scope
    createdAt: str | None = None
    lastUsedAt: str | None = None
    revokedAt: str | None = None


class ApiKeyList(BaseModel):
    items: list[ApiKeyPublic]


@router.post("/organizations/{id}/api-keys", status_code=201, response_model=ApiKeyIssued)
async def create_api_key(
    organization: OrganizationDep, _: AdminDep, body: ApiKeyCreate | None = None
) -> JSON:
    """Issue an API key for the organization (`scope`, default full); the key is shown in
    this answer only."""
    scope = body.scope if body is not None else "full"
    record, key = await auth.issue_key(organization.id, scope)
    answer = {
        "id": str(record.id),
        "organization": str(organization.id),
        "prefix": record.prefix,
        "scope": scope,
        "key": key,
        "createdAt": iso(record.createdAt or now()),
    }
    return created(answer, f"/organizations/{organization.id}/api-keys")


@router.get("/organizations/{id}/api-keys", response_model=ApiKeyList)
async def list_api_keys(organization: OrganizationDep, _: AdminDep) -> JSON:
    """The organization's keys: scope, prefix, creation, last use, revocation (never the
    key itself)."""
    keys = await ApiKey.find({"organization": organization.id}).sort("createdAt").to_list()
    items = [
        {
            "id": str(found.id),
            "prefix": found.prefix,
            "scope": found.scope or "full",
            **{
                name: iso(value)
                for name in ("createdAt", "lastUsedAt", "revokedAt")
                if (value := getattr(found, name)) is not None
            },
        }
        for found in keys
    ]
    return JSON({"items": items})


@router.delete("/organizations/{id}/api-keys/{key_id}", status_code=204)
async def revoke_api_key(
    organization: OrganizationDep,
    key_id: Annotated[str, Path(pattern=OBJECT_ID_PATTERN)],
    _: AdminDep,
) -> Response:
    """Revoke one of the organization's keys: at once on the worker that revokes it,
    within KEY_CACHE_SECONDS on the others."""
    identifier = PydanticObjectId(key_id.lower())
    found = await ApiKey.find_one({"_id": identifier, "organization": organization.id})
    if found is None:
        raise not_found("api key", key_id)
    if found.revokedAt is None:
        await found.set({"revokedAt": now()})
    auth.forget_key(found.hash)
    return Response(status_code=204)
