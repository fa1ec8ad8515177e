"""Organizations, users, files and invoices: create and read."""

from typing import Annotated

from fastapi import APIRouter, Query

from botrequests import records
from botrequests.auth import AdminDep
from botrequests.deps import JSON, FileDep, InvoiceDep, OrganizationDep, UserDep, created
from botrequests.responses import (
    FilePublic,
    InvoicePublic,
    OrganizationPublic,
    UserList,
    UserPublic,
)
from botrequests.schemas import (
    FileCreate,
    InvoiceCreate,
    OrganizationCreate,
    OrganizationUpdate,
    UserCreate,
)
from botrequests.serialize import dump

router = APIRouter()


@router.post(
    "/organizations", status_code=201, response_model=OrganizationPublic, tags=["organizations"]
)
async def create_organization(body: OrganizationCreate, _: AdminDep) -> JSON:
    """Create an organization (admin token)."""
    answer = dump(await records.create_organization(body))
    return created(answer, f"/organizations/{answer['id']}")


@router.patch("/organizations/{id}", response_model=OrganizationPublic, tags=["organizations"])
async def update_organization(
    organization: OrganizationDep, body: OrganizationUpdate, _: AdminDep
) -> JSON:
    """Rename an organization or set its `retentionDays` (admin token)."""
    return JSON(dump(await records.update_organization(organization, body)))


@router.get("/organizations/{id}", response_model=OrganizationPublic, tags=["organizations"])
async def read_organization(organization: OrganizationDep) -> JSON:
    """Read one organization."""
    return JSON(dump(organization))


@router.post("/users", status_code=201, response_model=UserPublic, tags=["users"])
async def create_user(body: UserCreate) -> JSON:
    """Create a user (optionally of an organization)."""
    answer = dump(await records.create_user(body))
    return created(answer, f"/users/{answer['id']}")


@router.get("/users", response_model=UserList, tags=["users"])
async def find_users(
    q: Annotated[str | None, Query(max_length=100, description="name contains (any case)")] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> JSON:
    """Find users by name (the first `limit`, by name), for pickers."""
    return JSON({"items": [dump(user) for user in await records.find_users(q, limit)]})


@router.get("/users/{id}", response_model=UserPublic, tags=["users"])
async def read_user(user: UserDep) -> JSON:
    """Read one user."""
    return JSON(dump(user))


@router.post("/files", status_code=201, response_model=FilePublic, tags=["files"])
async def create_file(body: FileCreate) -> JSON:
    """Record a file's metadata (its bytes live in object storage under `s3Key`)."""
    answer = dump(await records.create_file(body))
    return created(answer, f"/files/{answer['id']}")


@router.get("/files/{id}", response_model=FilePublic, tags=["files"])
async def read_file(file: FileDep) -> JSON:
    """Read one file's metadata."""
    return JSON(dump(file))


@router.post("/invoices", status_code=201, response_model=InvoicePublic, tags=["invoices"])
async def create_invoice(body: InvoiceCreate) -> JSON:
    """Create an invoice for an organization."""
    answer = dump(await records.create_invoice(body))
    return created(answer, f"/invoices/{answer['id']}")


@router.get("/invoices/{id}", response_model=InvoicePublic, tags=["invoices"])
async def read_invoice(invoice: InvoiceDep) -> JSON:
    """Read one invoice."""
    return JSON(dump(invoice))
