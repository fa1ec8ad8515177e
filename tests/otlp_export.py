"""Hand-made OTLP exports for the receiver's tests: protobuf messages of opentelemetry-proto,
and the same export in the specification's JSON mapping (hex ids)."""

import base64
import json
import os
import time
from typing import Any

from google.protobuf.json_format import MessageToDict
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, Status

PROTOBUF = {"content-type": "application/x-protobuf"}
JSON = {"content-type": "application/json"}


def value(given: Any) -> AnyValue:
    if isinstance(given, bool):
        return AnyValue(bool_value=given)
    if isinstance(given, int):
        return AnyValue(int_value=given)
    if isinstance(given, float):
        return AnyValue(double_value=given)
    if isinstance(given, bytes):
        return AnyValue(bytes_value=given)
    if isinstance(given, list):
        return AnyValue(array_value=ArrayValue(values=[value(v) for v in given]))
    return AnyValue(string_value=given)


def chat_attributes(user: str = "hello", answer: str = "hi there", **extra: Any) -> dict:
    """A model call as the latest GenAI conventions record it."""
    return {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "gpt-4o-mini",
        "gen_ai.response.model": "gpt-4o-mini-2024-07-18",
        "gen_ai.usage.input_tokens": 12,
        "gen_ai.usage.output_tokens": 30,
        "gen_ai.input.messages": json.dumps(
            [{"role": "user", "parts": [{"type": "text", "content": user}]}]
        ),
        "gen_ai.output.messages": json.dumps(
            [
                {
                    "role": "assistant",
                    "parts": [{"type": "text", "content": answer}],
                    "finish_reason": "stop",
                }
            ]
        ),
        **extra,
    }


def span(
    attributes: dict,
    *,
    name: str = "chat gpt-4o-mini",
    start_ns: int | None = None,
    duration_ms: float = 250,
    error: str | None = None,
    trace_id: bytes | None = None,
    span_id: bytes | None = None,
) -> Span:
    start = start_ns if start_ns is not None else time.time_ns() - 60_000_000_000
    made = Span(
        trace_id=trace_id or os.urandom(16),
        span_id=span_id or os.urandom(8),
        name=name,
        kind=Span.SPAN_KIND_CLIENT,
        start_time_unix_nano=start,
        end_time_unix_nano=start + int(duration_ms * 1_000_000),
        attributes=[KeyValue(key=k, value=value(v)) for k, v in attributes.items()],
    )
    if error is not None:
        made.status.CopyFrom(Status(code=Status.STATUS_CODE_ERROR, message=error))
    return made


def export(spans: list[Span], service: str = "support-bot") -> ExportTraceServiceRequest:
    resource = Resource(attributes=[KeyValue(key="service.name", value=value(service))])
    return ExportTraceServiceRequest(
        resource_spans=[ResourceSpans(resource=resource, scope_spans=[ScopeSpans(spans=spans)])]
    )


def protobuf(spans: list[Span], service: str = "support-bot") -> bytes:
    return export(spans, service).SerializeToString()


def as_json(spans: list[Span], service: str = "support-bot") -> bytes:
    """The export in OTLP's JSON mapping: protobuf's JSON, with ids in hex (not base64)."""
    document = MessageToDict(export(spans, service))
    for resource_spans in document["resourceSpans"]:
        for scope_spans in resource_spans["scopeSpans"]:
            for item in scope_spans["spans"]:
                for key in ("traceId", "spanId", "parentSpanId"):
                    if key in item:
                        item[key] = base64.b64decode(item[key]).hex()
    return json.dumps(document).encode()
