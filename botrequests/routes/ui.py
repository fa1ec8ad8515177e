"""The viewer pages: static HTML, CSS and JavaScript modules shipped in the package.

The pages call the same JSON API as every other client (with the API key the user gives,
kept in sessionStorage); the routes here only hand out files, so they need no key.
"""

from importlib.resources import files
from pathlib import Path

from fastapi import APIRouter
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles

STATIC = Path(str(files("botrequests") / "static"))

router = APIRouter(prefix="/ui", include_in_schema=False)
home = APIRouter(include_in_schema=False)


docs = APIRouter(include_in_schema=False)
VENDOR = "/ui/static/vendor"


@docs.get("/docs")
async def api_docs() -> HTMLResponse:
    """Swagger UI for the OpenAPI schema, with its assets served from the package (the
    page works with no internet access)."""
    return get_swagger_ui_html(
        openapi_url="/openapi.json",
        title="botrequests — API",
        swagger_js_url=f"{VENDOR}/swagger-ui/swagger-ui-bundle.js",
        swagger_css_url=f"{VENDOR}/swagger-ui/swagger-ui.css",
        swagger_favicon_url=f"{VENDOR}/swagger-ui/favicon-32x32.png",
        swagger_ui_parameters={"persistAuthorization": False},
    )


@home.get("/")
async def root() -> RedirectResponse:
    """A browser pointed at the service lands on the viewer."""
    return RedirectResponse("/ui", status_code=307)


@router.get("")
async def search_page() -> FileResponse:
    """Find requests."""
    return FileResponse(STATIC / "index.html")


@router.get("/stats")
async def stats_page() -> FileResponse:
    """Counts, success, credits, tokens, cost, latency and feedback per group, charted."""
    return FileResponse(STATIC / "stats.html")


@router.get("/sessions")
async def sessions_page() -> FileResponse:
    """Sessions: key, user, requests, first and last activity; each opens its requests."""
    return FileResponse(STATIC / "sessions.html")


@router.get("/requests/{request_id}")
async def request_page(request_id: str) -> FileResponse:
    """One request and its thread (the page itself says when the id is malformed or
    unknown)."""
    return FileResponse(STATIC / "request.html")


assets = StaticFiles(directory=STATIC)
