"""An OTLP/HTTP traces body to plain `Span`s: protobuf (`opentelemetry-proto`) or the
specification's JSON mapping (hex ids, lowerCamelCase names, enums as integers, 64-bit
integers as strings or numbers), plain or gzip.

The size limit applies to what the body inflates to: gzip is inflated in steps that stop
at MAX_BODY_BYTES, so a small body that would inflate past it is refused, never inflated.
A JSON body meets the JSON API's checks (nesting, numbers) once inflated. Attribute values
nest (arrays, key-value lists); past `VALUE_DEPTH` levels a value is kept as `TOO_DEEP`,
which a span that reads it is refused for.
"""

import base64
import binascii
import zlib
from dataclasses import dataclass, field
from typing import Any

import orjson
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from botrequests import bodyguard

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
VALUE_DEPTH = 8
# Attributes per span and events per span kept (the SDK's own default limit is 128 each).
MAX_ATTRIBUTES = 1000
MAX_EVENTS = 1000
_INFLATE_STEP = 64 * 1024


class Undecodable(Exception):
    """400: not an export this receiver can read."""


class TooLarge(Exception):
    """413: the body, or what it inflates to, is over MAX_BODY_BYTES."""


class Unsupported(Exception):
    """415: a content type or encoding other than those of OTLP/HTTP."""


class _TooDeep:
    def __repr__(self) -> str:
        return "TOO_DEEP"


TOO_DEEP = _TooDeep()


@dataclass(slots=True)
class Span:
    trace_id: str  # lower-case hex ("" when absent or malformed)
    span_id: str
    name: str
    start_ns: int
    end_ns: int
    status_code: int  # 0 unset, 1 ok, 2 error
    status_message: str
    attributes: dict[str, Any]
    resource: dict[str, Any]
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)


def media_type(content_type: str | None) -> str:
    """`application/x-protobuf` or `application/json` (parameters dropped), else 415."""
    kind = (content_type or "").split(";", 1)[0].strip().lower()
    if kind not in (PROTOBUF, JSON):
        raise Unsupported(
            f"content type {kind or '(none)'!r}: OTLP/HTTP sends {PROTOBUF} or {JSON}"
        )
    return kind


def inflate(body: bytes, encoding: str | None, limit: int) -> bytes:
    """The body as sent before `Content-Encoding` (gzip or none), at most `limit` bytes."""
    coding = (encoding or "identity").strip().lower()
    if coding == "identity":
        return body
    if coding != "gzip":
        raise Unsupported(f"content encoding {coding!r}: this receiver takes gzip or none")
    inflater = zlib.decompressobj(wbits=31)
    out, size, pending = [], 0, body
    try:
        while True:
            chunk = inflater.decompress(pending, min(_INFLATE_STEP, limit + 1 - size))
            size += len(chunk)
            if size > limit:
                raise TooLarge(f"request body inflates past {limit} bytes")
            out.append(chunk)
            pending = inflater.unconsumed_tail
            if inflater.eof:
                break
            if not pending and not chunk:
                raise Undecodable("gzip body ends before its end")
    except zlib.error as exc:
        raise Undecodable(f"not a gzip body: {exc}") from None
    return b"".join(out)


def spans(body: bytes, kind: str, max_json_depth: int) -> list[Span]:
    """Every span of the export, in the order sent."""
    if kind == PROTOBUF:
        try:
            request = ExportTraceServiceRequest.FromString(body)
        except (DecodeError, RecursionError) as exc:
            raise Undecodable(f"not an OTLP protobuf export: {exc}") from None
        return list(_from_protobuf(request))
    stripped = bodyguard.strip_strings(body)
    if bodyguard.depth_exceeds(stripped, max_json_depth):
        raise Undecodable(f"JSON nested deeper than {max_json_depth} levels")
    problem = bodyguard.unstorable(body, stripped)
    if problem is not None:
        path, why = problem
        raise Undecodable(f"{'.'.join(str(p) for p in path) or 'body'}: {why}")
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise Undecodable(f"not JSON: {exc}") from None
    return list(_from_json(document))


# --- protobuf ---------------------------------------------------------------------------


def _from_protobuf(request: ExportTraceServiceRequest) -> Any:
    for resource_spans in request.resource_spans:
        resource = _pb_attributes(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                yield Span(
                    trace_id=_hex(span.trace_id, 16),
                    span_id=_hex(span.span_id, 8),
                    name=span.name,
                    start_ns=span.start_time_unix_nano,
                    end_ns=span.end_time_unix_nano,
                    status_code=span.status.code,
                    status_message=span.status.message,
                    attributes=_pb_attributes(span.attributes),
                    resource=resource,
                    events=[
                        (event.name, _pb_attributes(event.attributes))
                        for event in span.events[:MAX_EVENTS]
                    ],
                )


def _hex(raw: bytes, size: int) -> str:
    return raw.hex() if len(raw) == size and any(raw) else ""


def _pb_attributes(pairs: Any, depth: int = 0) -> dict[str, Any]:
    return {pair.key: _pb_value(pair.value, depth) for pair in pairs[:MAX_ATTRIBUTES]}


def _pb_value(value: Any, depth: int) -> Any:
    which = value.WhichOneof("value")
    if which is None:
        return None
    if which in ("array_value", "kvlist_value"):
        if depth >= VALUE_DEPTH:
            return TOO_DEEP
        if which == "array_value":
            return [_pb_value(item, depth + 1) for item in value.array_value.values]
        return _pb_attributes(value.kvlist_value.values, depth + 1)
    return getattr(value, which)


# --- JSON -------------------------------------------------------------------------------


def _get(mapping: Any, camel: str, snake: str) -> Any:
    """A field by its JSON name (lowerCamelCase) or, as protobuf's JSON parsers accept,
    its proto name."""
    if not isinstance(mapping, dict):
        raise Undecodable(f"expected an object, got {type(mapping).__name__}")
    found = mapping.get(camel)
    return mapping.get(snake) if found is None else found


def _list(mapping: Any, camel: str, snake: str) -> list:
    found = _get(mapping, camel, snake)
    if found is None:
        return []
    if not isinstance(found, list):
        raise Undecodable(f"{camel} must be an array")
    return found


def _from_json(document: Any) -> Any:
    for resource_spans in _list(document, "resourceSpans", "resource_spans"):
        resource = _json_attributes(_get(resource_spans, "resource", "resource") or {})
        for scope_spans in _list(resource_spans, "scopeSpans", "scope_spans"):
            for span in _list(scope_spans, "spans", "spans"):
                status = _get(span, "status", "status") or {}
                yield Span(
                    trace_id=_json_id(_get(span, "traceId", "trace_id"), 16),
                    span_id=_json_id(_get(span, "spanId", "span_id"), 8),
                    name=_text(_get(span, "name", "name")),
                    start_ns=_uint64(_get(span, "startTimeUnixNano", "start_time_unix_nano")),
                    end_ns=_uint64(_get(span, "endTimeUnixNano", "end_time_unix_nano")),
                    status_code=_status_code(_get(status, "code", "code")),
                    status_message=_text(_get(status, "message", "message")),
                    attributes=_json_attributes(span),
                    resource=resource,
                    events=[
                        (_text(_get(event, "name", "name")), _json_attributes(event))
                        for event in _list(span, "events", "events")[:MAX_EVENTS]
                    ],
                )


def _text(value: Any) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise Undecodable(f"expected a string, got {type(value).__name__}")
    return value


def _json_id(value: Any, size: int) -> str:
    """Hex, as the JSON mapping has ids (not base64); "" when absent or malformed."""
    if not isinstance(value, str) or len(value) != 2 * size:
        return ""
    try:
        return _hex(bytes.fromhex(value), size)
    except ValueError:
        return ""


def _uint64(value: Any) -> int:
    if value is None:
        return 0
    number = _int64(value)
    if number < 0:
        raise Undecodable("a time in nanoseconds is negative")
    return number


def _int64(value: Any) -> int:
    # The JSON mapping writes 64-bit integers as strings or numbers.
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise Undecodable(f"expected an integer, got {type(value).__name__}")
    if isinstance(value, str):
        if not value.lstrip("-").isdigit() or len(value) > 20:
            raise Undecodable(f"not an integer: {value[:40]!r}")
        value = int(value)
    if not -(2**63) <= value < 2**64:
        raise Undecodable("an integer outside 64 bits")
    return value


def _status_code(value: Any) -> int:
    if value is None:
        return 0
    if isinstance(value, str):  # protobuf's JSON parsers accept the enum's name too
        names = {"STATUS_CODE_UNSET": 0, "STATUS_CODE_OK": 1, "STATUS_CODE_ERROR": 2}
        if value in names:
            return names[value]
    code = _int64(value)
    return code if code in (0, 1, 2) else 0


def _json_attributes(owner: Any, depth: int = 0) -> dict[str, Any]:
    pairs = _list(owner, "attributes", "attributes") if depth == 0 else owner
    found: dict[str, Any] = {}
    for pair in pairs[:MAX_ATTRIBUTES]:
        key = _get(pair, "key", "key")
        if not isinstance(key, str):
            raise Undecodable("an attribute without a string key")
        found[key] = _json_value(_get(pair, "value", "value"), depth)
    return found


def _json_value(value: Any, depth: int) -> Any:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise Undecodable("an attribute value must be an AnyValue object")
    for camel, snake in (
        ("stringValue", "string_value"),
        ("boolValue", "bool_value"),
        ("intValue", "int_value"),
        ("doubleValue", "double_value"),
        ("bytesValue", "bytes_value"),
        ("arrayValue", "array_value"),
        ("kvlistValue", "kvlist_value"),
    ):
        given = _get(value, camel, snake)
        if given is None:
            continue
        if camel == "stringValue":
            return _text(given)
        if camel == "boolValue":
            if not isinstance(given, bool):
                raise Undecodable("boolValue must be true or false")
            return given
        if camel == "intValue":
            return _int64(given)
        if camel == "doubleValue":
            if isinstance(given, bool) or not isinstance(given, int | float):
                raise Undecodable("doubleValue must be a number")
            return float(given)
        if camel == "bytesValue":
            try:
                return base64.b64decode(_text(given), validate=True)
            except binascii.Error:
                raise Undecodable("bytesValue is not base64") from None
        if depth >= VALUE_DEPTH:
            return TOO_DEEP
        if camel == "arrayValue":
            return [_json_value(item, depth + 1) for item in _list(given, "values", "values")]
        return _json_attributes(_list(given, "values", "values"), depth + 1)
    return None
