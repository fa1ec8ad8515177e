"""The viewer pages: static HTML, CSS and JavaScript modules shipped in the package.

The pages call the same JSON API as every other client (with the API key the user gives,
kept in sessionStorage); the routes here only hand out files, so they need no key.
"""

from importlib.resources import files
from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

STATIC = Path(str(files("botrequests") / "static"))

router = APIRouter(prefix="/ui", include_in_schema=False)


@router.get("")
async def search_page() -> FileResponse:
    """Find requests."""
    return FileResponse(STATIC / "index.html")


@router.get("/requests/{request_id}")
async def request_page(request_id: str) -> FileResponse:
    """One request and its thread (the page itself says when the id is malformed or
    unknown)."""
    return FileResponse(STATIC / "request.html")


assets = StaticFiles(directory=STATIC)
