"""API keys of an organization (admin token only)."""

from typing import Annotated

from beanie import PydanticObjectId
from fastapi import APIRouter, Path, Response
from pydantic import BaseModel

from botrequests import auth
from botrequests.auth import AdminDep
from botrequests.deps import JSON, OrganizationDep
from botrequests.documents import ApiKey
from botrequests.errors import not_found
from botrequests.schemas import OBJECT_ID_PATTERN
from botrequests.serialize import iso
from botrequests.timeutil import now

router = APIRouter(tags=["api keys"])


class ApiKeyIssued(BaseModel):
    id: str
    organization: str
    prefix: str
    key: str
    createdAt: str


@router.post("/organizations/{id}/api-keys", status_code=201, response_model=ApiKeyIssued)
async def create_api_key(organization: OrganizationDep, _: AdminDep) -> JSON:
    """Issue an API key for the organization; the key is shown in this answer only."""
    record, key = await auth.issue_key(organization.id)
    body = {
        "id": str(record.id),
        "organization": str(organization.id),
        "prefix": record.prefix,
        "key": key,
        "createdAt": iso(record.createdAt or now()),
    }
    return JSON(body, status_code=201)


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
