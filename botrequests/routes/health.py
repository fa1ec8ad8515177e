"""Liveness and readiness."""

from fastapi import APIRouter, Request

from botrequests import db
from botrequests.deps import JSON

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> JSON:
    """The process is alive."""
    return JSON({"status": "ok"})


@router.get("/readyz", responses={503: {"description": "database unreachable"}})
async def readyz(request: Request) -> JSON:
    """The database answers a ping."""
    try:
        await db.ping(request.app.state.mongo)
    except Exception:  # any driver failure means "not ready"; details go to the log
        return JSON({"status": "unavailable", "detail": "database unreachable"}, status_code=503)
    return JSON({"status": "ok"})
