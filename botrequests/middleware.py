"""ASGI middleware: one structured log line per request with an `X-Request-ID`, and the
limits every body meets before FastAPI parses it (size → 413; JSON nesting, non-finite or
out-of-range numbers and lone surrogates → 422 naming the field). The checks themselves
are in `bodyguard.py`, each linear in the body's size.
"""

import asyncio
import json
import logging
import re
import time
import uuid
from typing import Any

from botrequests import bodyguard, otlp
from botrequests.otlp import answers

log = logging.getLogger("botrequests.access")

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,128}$")


async def _send_json(send: Any, status: int, detail: Any, headers: list) -> None:
    body = json.dumps({"detail": detail}).encode()
    await _send(send, status, body, b"application/json", headers)


async def _send(send: Any, status: int, body: bytes, media_type: bytes, headers: list) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", media_type),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _status_sender(headers: dict) -> Any:
    """`_send_json`'s counterpart on the OTLP path: a `google.rpc.Status`."""
    encoding = answers.encoding_of(headers.get(b"content-type", b"").decode("latin-1"))

    async def send_status(send: Any, status: int, detail: Any, extra: list) -> None:
        body = answers.status_body(encoding, status, str(detail))
        await _send(send, status, body, encoding.encode(), extra)

    return send_status


class Guard:
    def __init__(
        self, app: Any, max_body_bytes: int, max_json_depth: int, body_timeout_seconds: float
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.max_json_depth = max_json_depth
        self.body_timeout_seconds = body_timeout_seconds

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        given = headers.get(b"x-request-id", b"").decode("latin-1")
        request_id = given if _REQUEST_ID.match(given) else uuid.uuid4().hex
        id_header = [(b"x-request-id", request_id.encode())]
        if scope.get("path", "").startswith("/ui"):
            # The pages load only their own files and talk only to this origin.
            id_header += [
                (b"content-security-policy", b"default-src 'self'"),
                (b"x-content-type-options", b"nosniff"),
            ]
        started = time.perf_counter()
        status = {"code": 500}

        async def send_logged(message: dict) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                message["headers"] = [*message.get("headers", []), *id_header]
            await send(message)

        try:
            replay = await self._checked_body(scope, receive, headers, send_logged)
            if replay is not None:
                await self.app(scope, replay, send_logged)
        finally:
            # Never the query string, a header or the body: they may hold keys or user data.
            # (Not even built when the access log is off: it costs a tenth of a bare GET.)
            if log.isEnabledFor(logging.INFO):
                log.info(
                    json.dumps(
                        {
                            "method": scope.get("method"),
                            "path": scope.get("path"),
                            "status": status["code"],
                            "ms": round((time.perf_counter() - started) * 1000, 2),
                            "requestId": request_id,
                        }
                    )
                )

    async def _checked_body(self, scope: dict, receive: Any, headers: dict, send: Any) -> Any:
        """Read the body within the size limit and check its nesting; answer 413 / 422
        and return None when it fails, else a `receive` that replays it."""
        if scope.get("method") in ("GET", "HEAD", "DELETE", "OPTIONS"):
            return receive
        # The OTLP receiver's body may be protobuf or gzip: it is checked once decoded
        # (otlp/decode.py), and its errors are `google.rpc.Status` messages.
        traces = scope.get("path") == otlp.PATH
        refuse = _status_sender(headers) if traces else _send_json

        too_large = f"request body over {self.max_body_bytes} bytes"
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            await refuse(send, 413, too_large, [])
            return None
        chunks, size = [], 0
        # The whole body within BODY_TIMEOUT_SECONDS: a client sending a byte now and then
        # would otherwise hold its connection and this task for ever.
        deadline = time.monotonic() + self.body_timeout_seconds
        while True:
            try:
                message = await asyncio.wait_for(receive(), deadline - time.monotonic())
            except TimeoutError:
                detail = f"request body not received within {self.body_timeout_seconds:g} s"
                await refuse(send, 408, detail, [(b"connection", b"close")])
                return None
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                await refuse(send, 413, too_large, [])
                return None
            chunks.append(chunk)
            if not message.get("more_body"):
                break
        body = b"".join(chunks)
        if traces:
            return _replay(body, receive)
        stripped = bodyguard.strip_strings(body)
        problem: tuple[list, str] | None = None
        if bodyguard.depth_exceeds(stripped, self.max_json_depth):
            problem = ([], f"JSON nested deeper than {self.max_json_depth} levels")
        else:
            problem = bodyguard.unstorable(body, stripped)
        if problem is not None:
            path, msg = problem
            detail = [{"loc": ["body", *path], "msg": msg, "type": "value_error"}]
            await _send_json(send, 422, detail, [])
            return None
        return _replay(body, receive)


def _replay(body: bytes, receive: Any) -> Any:
    """A `receive` that gives the body read, then what the connection says next."""
    sent = False

    async def replay() -> dict:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay
