"""Liveness and readiness."""

from fastapi import APIRouter, Request

from botrequests.deps import JSON
from botrequests.storage import db

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> JSON:
    """The process is alive."""
    return JSON({"status": "ok"})


@router.get("/readyz", responses={503: {"description": "not ready: the reason is given"}})
async def readyz(request: Request) -> JSON:
    """Ready only when data calls can succeed: start-up finished and the database answers."""
    state = request.app.state
    if not state.db_ready:
        detail = f"database {state.db_problem}"
        return JSON({"status": "unavailable", "detail": detail}, status_code=503)
    try:
        await db.ping(state.mongo)
    except Exception:  # any driver failure means "not ready"; details go to the log
        return JSON({"status": "unavailable", "detail": "database unreachable"}, status_code=503)
    body: dict = {"status": "ok"}
    if state.index_shortfall:
        # Ready (data calls succeed), but the operator should know what is slower or
        # not enforced: the same lines as the start-up warning.
        body["indexes"] = [decision.line() for decision in state.index_shortfall]
    return JSON(body)
