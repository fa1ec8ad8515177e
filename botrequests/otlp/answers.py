"""What `/v1/traces` answers, in the encoding the request used (OTLP/HTTP): an
`ExportTraceServiceResponse` (with `partial_success` when spans were refused) on success,
a `google.rpc.Status` for every 4xx and 5xx.
"""

import orjson
from fastapi import Response
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from botrequests.otlp.decode import JSON, PROTOBUF

# google.rpc.Code for the HTTP statuses this receiver answers.
_RPC_CODES = {400: 3, 401: 16, 403: 7, 404: 5, 408: 4, 413: 3, 415: 3, 422: 3, 429: 8, 503: 14}
_RPC_CODES |= {500: 13, 504: 4}
# How long an exporter waits before retrying a 429 or 503 (it retries those, and 502/504).
RETRY_AFTER_SECONDS = 5
MAX_MESSAGE_CHARS = 4000


def encoding_of(content_type: str | None) -> str:
    """The encoding to answer in: JSON when the request was JSON, else protobuf."""
    kind = (content_type or "").split(";", 1)[0].strip().lower()
    return JSON if kind == JSON else PROTOBUF


def success(encoding: str, rejected: int, message: str) -> Response:
    """200: the export was taken; `rejected` spans of it were refused, for `message`."""
    if encoding == JSON:
        body: dict = {}
        if rejected or message:
            # The JSON mapping writes int64 as a string.
            body["partialSuccess"] = {"rejectedSpans": str(rejected), "errorMessage": message}
        return Response(orjson.dumps(body), media_type=JSON)
    answer = ExportTraceServiceResponse()
    if rejected or message:
        answer.partial_success.rejected_spans = rejected
        answer.partial_success.error_message = message
    return Response(answer.SerializeToString(), media_type=PROTOBUF)


def status_body(encoding: str, status: int, message: str) -> bytes:
    """A `google.rpc.Status` (code, message) for an HTTP error status."""
    code = _RPC_CODES.get(status, 2)  # 2: UNKNOWN
    message = message[:MAX_MESSAGE_CHARS]
    if encoding == JSON:
        return orjson.dumps({"code": code, "message": message})
    # Status is two scalar fields here: field 1 (varint), field 2 (length-delimited). The
    # message type itself lives in googleapis-common-protos, not needed for this.
    text = message.encode()
    return b"\x08" + _varint(code) + b"\x12" + _varint(len(text)) + text


def failure(encoding: str, status: int, message: str, headers: dict | None = None) -> Response:
    """An HTTP error as OTLP/HTTP answers one; 429 and 503 say when to retry."""
    headers = dict(headers or {})
    if status in (429, 503):
        headers.setdefault("Retry-After", str(RETRY_AFTER_SECONDS))
    return Response(
        status_body(encoding, status, message),
        status_code=status,
        media_type=encoding,
        headers=headers,
    )


def _varint(number: int) -> bytes:
    out = bytearray()
    while True:
        byte = number & 0x7F
        number >>= 7
        if number:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)
