"""Domain errors, raised below the routes and mapped to one JSON shape by one handler.

Every error body is `{"detail": ...}`; validation-like errors use FastAPI's list form
(`[{"loc": [...], "msg": ..., "type": ...}]`) so a client parses one shape for all 422s.
"""

import logging

from beanie.exceptions import CollectionWasNotInitialized
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError
from pymongo.errors import (
    ConnectionFailure,
    DuplicateKeyError,
    ExecutionTimeout,
    NetworkTimeout,
    PyMongoError,
    ServerSelectionTimeoutError,
)

from botrequests import otlp
from botrequests.otlp import answers

log = logging.getLogger("botrequests.errors")


SLOW_DETAIL = "the database did not finish this query in time; ask for less (filters, limit)"


class ServiceError(Exception):
    status_code = 400

    def __init__(self, detail: object) -> None:
        super().__init__(str(detail))
        self.detail = detail


class Unauthorized(ServiceError):
    status_code = 401


class Forbidden(ServiceError):
    status_code = 403


class NotFound(ServiceError):
    status_code = 404


class Conflict(ServiceError):
    """409; `existing` names the record that already holds the unique value."""

    status_code = 409

    def __init__(self, detail: object, existing: str | None = None) -> None:
        super().__init__(detail)
        self.existing = existing


class PayloadTooLarge(ServiceError):
    status_code = 413


class UnsupportedMediaType(ServiceError):
    status_code = 415


class Unavailable(ServiceError):
    status_code = 503


class QueryTooSlow(ServiceError):
    """A read of several queries (a search) that ran past QUERY_TIMEOUT_MS, as one query
    past the server's maxTimeMS does."""

    status_code = 504

    def __init__(self) -> None:
        super().__init__(SLOW_DETAIL)


class TooManyRequests(ServiceError):
    """429; `retry_after` seconds go in the Retry-After header."""

    status_code = 429

    def __init__(self, detail: object, retry_after: int) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


class InvalidInput(ServiceError):
    """422 naming the offending field: `loc` is its path, as in FastAPI's own 422s."""

    status_code = 422

    def __init__(self, loc: list[str | int], msg: str, kind: str = "value_error") -> None:
        super().__init__([{"loc": loc, "msg": msg, "type": kind}])

    @classmethod
    def many(cls, details: list[dict]) -> "InvalidInput":
        error = cls([], "")
        error.detail = details
        return error


class NotDurable(PyMongoError):
    """The embedded backend could not make a write durable (its data directory is full or
    unwritable): it was not applied. A driver error, as a server's failed write is: the
    CLI reports it in one line, the API as 503."""


def not_found(what: str, identifier: object) -> NotFound:
    return NotFound(f"{what} {identifier} not found")


def _respond(
    request: Request, body: dict[str, object], status: int, headers: dict | None = None
) -> Response:
    """The one error answer: `{"detail": ...}` as JSON, or on the OTLP receiver's path a
    `google.rpc.Status` in the request's encoding, as OTLP/HTTP specifies."""
    if request.url.path == otlp.PATH:
        detail = body["detail"]
        if isinstance(detail, list):
            detail = "; ".join(str(d.get("msg", d) if isinstance(d, dict) else d) for d in detail)
        encoding = answers.encoding_of(request.headers.get("content-type"))
        return answers.failure(encoding, status, str(detail), headers)
    return JSONResponse(body, status_code=status, headers=headers)


async def _service_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ServiceError)
    headers = {"WWW-Authenticate": "Bearer"} if exc.status_code == 401 else None
    if isinstance(exc, TooManyRequests):
        headers = {"Retry-After": str(exc.retry_after)}
    body: dict[str, object] = {"detail": exc.detail}
    if isinstance(exc, Conflict) and exc.existing is not None:
        body["existing"] = exc.existing
    return _respond(request, body, exc.status_code, headers)


async def _duplicate_key(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, DuplicateKeyError)
    keys = sorted((exc.details or {}).get("keyValue", {}) or {})
    what = ", ".join(keys) if keys else "a unique field"
    return _respond(request, {"detail": f"duplicate value for {what}"}, 409)


async def _too_slow(request: Request, exc: Exception) -> Response:
    # The server is up; this query took too long (maxTimeMS, or no answer in the
    # socket's time). Not an outage: narrower filters, a smaller page or `limit` help.
    log.warning("query timed out: %s", type(exc).__name__)
    return _respond(request, {"detail": SLOW_DETAIL}, 504)


def unavailable(problem: str) -> str:
    """The one 503 text, whether start-up has not reached the database yet or a call lost
    it: `database unavailable (<what failed>); try again shortly`."""
    return f"database unavailable ({problem}); try again shortly"


async def _unavailable(request: Request, exc: Exception) -> Response:
    log.error("database unavailable: %s", type(exc).__name__)
    problem = (
        "starting"
        if isinstance(exc, CollectionWasNotInitialized)
        else f"unreachable ({type(exc).__name__})"
    )
    return _respond(request, {"detail": unavailable(problem)}, 503)


async def _not_durable(request: Request, exc: Exception) -> Response:
    # Logged where it happened (storage/durable.py), with SQLite's reason.
    problem = f"the data directory could not keep this write: {exc}; it was not applied"
    return _respond(request, {"detail": unavailable(problem)}, 503)


async def _corrupt_document(request: Request, exc: Exception) -> Response:
    # Request bodies are validated by FastAPI (RequestValidationError, a 422); a pydantic
    # ValidationError reaching here comes from parsing a *stored* document another
    # application wrote with a field of the wrong type. Say so plainly; `botrequests
    # import` reports such documents by file and line.
    assert isinstance(exc, ValidationError)
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first["loc"])
    log.error("stored document does not match its schema: %s: %s", where, first["msg"])
    detail = f"a stored document cannot be served: {where}: {first['msg']}"
    return _respond(request, {"detail": detail}, 500)


def install(app: FastAPI) -> None:
    app.add_exception_handler(ServiceError, _service_error)
    app.add_exception_handler(DuplicateKeyError, _duplicate_key)
    app.add_exception_handler(ExecutionTimeout, _too_slow)
    app.add_exception_handler(NetworkTimeout, _too_slow)  # before ConnectionFailure: a subclass
    app.add_exception_handler(ServerSelectionTimeoutError, _unavailable)
    app.add_exception_handler(ConnectionFailure, _unavailable)
    app.add_exception_handler(CollectionWasNotInitialized, _unavailable)
    app.add_exception_handler(ValidationError, _corrupt_document)
    app.add_exception_handler(NotDurable, _not_durable)
