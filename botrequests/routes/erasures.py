"""Erasure of one person's data in an organization (GDPR Art. 17), and its records."""

from fastapi import APIRouter

from botrequests import erasure
from botrequests.auth import PrincipalDep
from botrequests.deps import JSON, OrganizationDep, created
from botrequests.documents import Erasure
from botrequests.responses import ErasureList, ErasurePublic
from botrequests.schemas import ErasureCreate
from botrequests.serialize import dump

router = APIRouter(prefix="/organizations/{id}/erasures", tags=["erasures"])


@router.post("", status_code=201, response_model=ErasurePublic)
async def erase_user(organization: OrganizationDep, body: ErasureCreate, who: PrincipalDep) -> JSON:
    """Delete every request a user created, their file records and the user (the admin
    token, or a full key of this organization); answers what was deleted, per collection.
    Export first to give the person their data: GET /bot-requests/export?createdBy=<id>."""
    asked = "admin token" if who.admin else f"API key {who.key}"
    record = await erasure.erase(organization.id, body.user, asked)
    return created(dump(record), f"/organizations/{organization.id}/erasures")


@router.get("", response_model=ErasureList)
async def list_erasures(organization: OrganizationDep) -> JSON:
    """The organization's erasures, oldest first: who asked, when, how much was deleted."""
    found = await Erasure.find({"organization": organization.id}).sort("createdAt").to_list()
    return JSON({"items": [dump(record) for record in found]})
