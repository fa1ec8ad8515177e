"""Which spans are model calls, and how one becomes a bot request (docs/recording/
opentelemetry.md has this as a table: keep the two together).

A span is a model call when `gen_ai.operation.name` is `chat`, `text_completion` or
`generate_content`, `openinference.span.kind` is `LLM`, or OpenLLMetry's
`llm.request.type` is `chat` or `completion`. The record is built as a JSON body of
`POST /bot-requests` would be, and checked by the same schema (receiver.py).
"""

import ipaddress
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from botrequests.otlp import messages
from botrequests.otlp.decode import TOO_DEEP, Span
from botrequests.otlp.messages import Refused

MODEL_OPERATIONS = frozenset({"chat", "text_completion", "generate_content"})
OPENLLMETRY_TYPES = frozenset({"chat", "completion"})
# A span may start this far past the receiver's clock (the two machines' clocks differ).
CLOCK_SKEW_NS = 5 * 60 * 1_000_000_000
MAX_ERROR_CHARS = 2000

# (metadata key, the attributes it is read from, first found): a documented, bounded set.
METADATA = (
    ("provider", ("gen_ai.provider.name", "gen_ai.system", "llm.provider", "llm.system")),
    ("operation", ("gen_ai.operation.name", "llm.request.type")),
    ("responseId", ("gen_ai.response.id",)),
    ("finishReasons", ("gen_ai.response.finish_reasons", "llm.finish_reason")),
    ("temperature", ("gen_ai.request.temperature", "llm.request.temperature")),
    ("maxTokens", ("gen_ai.request.max_tokens", "llm.request.max_tokens")),
    ("topP", ("gen_ai.request.top_p", "llm.request.top_p")),
    ("userId", ("user.id", "enduser.id", "gen_ai.user.id")),
)
MODEL = ("gen_ai.response.model", "gen_ai.request.model", "llm.model_name")
INPUT_TOKENS = ("gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens", "llm.token_count.prompt")
OUTPUT_TOKENS = (
    "gen_ai.usage.output_tokens",
    "gen_ai.usage.completion_tokens",
    "llm.token_count.completion",
)
SESSION = ("gen_ai.conversation.id", "session.id")
TAGS = ("tag.tags",)


def is_model_call(attributes: dict[str, Any]) -> bool:
    return (
        attributes.get("gen_ai.operation.name") in MODEL_OPERATIONS
        or attributes.get("openinference.span.kind") == "LLM"
        or attributes.get("llm.request.type") in OPENLLMETRY_TYPES
    )


@dataclass(slots=True)
class Record:
    """A span as a bot request: the body to check, and what the body cannot say."""

    body: dict[str, Any]
    service: str
    created_at: datetime
    start_ns: int


def record(span: Span, exporter_ip: str | None, now_ns: int, oldest_ns: int) -> Record:
    """The span as a bot request's body (bot left to the receiver), or `Refused`."""
    attrs = span.attributes
    if not span.trace_id or not span.span_id:
        raise Refused("a span needs a 16-byte trace id and an 8-byte span id")
    if not span.start_ns:
        raise Refused("the span has no start time")
    if span.start_ns > now_ns + CLOCK_SKEW_NS:
        raise Refused("the span starts in the future (more than 5 minutes past this clock)")
    if span.start_ns < oldest_ns:
        raise Refused("the span starts before the organization's retention keeps requests")
    if span.end_ns and span.end_ns < span.start_ns:
        raise Refused("the span ends before it starts")
    inputs, outputs = messages.conversation(attrs)
    failed = span.status_code == 2 or attrs.get("error.type") is not None
    response: dict[str, Any] = {"messages": outputs}
    if failed:
        response["error"] = _error(span)
    usage: dict[str, Any] = {}
    model = _first(attrs, MODEL, str)
    if model is not None:
        usage["model"] = model
    for key, names in (("promptTokens", INPUT_TOKENS), ("completionTokens", OUTPUT_TOKENS)):
        tokens = _first(attrs, names, int)
        if tokens is not None:
            usage[key] = tokens
    if span.end_ns:
        usage["latencyMs"] = round((span.end_ns - span.start_ns) / 1_000_000, 3)
    body: dict[str, Any] = {
        "success": not failed,
        "response": response,
        "ip": _client_ip(attrs) or exporter_ip,
        "requestKey": f"otel:{span.trace_id}:{span.span_id}",
        "metadata": _metadata(span),
    }
    if inputs:
        body["inputs"] = {"messages": inputs}
        prompt = messages.as_text(inputs)
        if prompt:
            body["prompt"] = prompt
    if usage:
        body["usage"] = usage
    session = _first(attrs, SESSION, str)
    if session is not None:
        body["sessionKey"] = session
    tags = _first(attrs, TAGS, list)
    if tags is not None:
        body["tags"] = tags
    service = span.resource.get("service.name")
    return Record(
        body=body,
        service=service if isinstance(service, str) and service else "unknown_service",
        created_at=datetime.fromtimestamp(span.start_ns // 1_000_000 / 1000, UTC),
        start_ns=span.start_ns,
    )


def _first(attrs: dict[str, Any], names: tuple[str, ...], kind: type) -> Any:
    """The first of `names` present; one of the wrong type refuses the span."""
    for name in names:
        value = attrs.get(name)
        if value is None:
            continue
        if value is TOO_DEEP:
            raise Refused(f"{name} nests too deep")
        if (kind is int and isinstance(value, bool)) or not isinstance(value, kind):
            raise Refused(f"{name} must be {_KIND_NAMES[kind]}")
        return value
    return None


_KIND_NAMES = {str: "a string", int: "an integer", list: "a list", float: "a number"}


def _metadata(span: Span) -> dict[str, Any]:
    found: dict[str, Any] = {"traceId": span.trace_id, "spanId": span.span_id}
    for key, names in METADATA:
        for name in names:
            value = span.attributes.get(name)
            if value is None:
                continue
            if isinstance(value, list) and all(isinstance(v, str) for v in value):
                value = ", ".join(value)  # finish reasons: metadata values are scalars
            if value is TOO_DEEP or not isinstance(value, str | int | float | bool):
                raise Refused(f"{name} must be a scalar or a list of strings")
            found[key] = value
            break
    return found


def _client_ip(attrs: dict[str, Any]) -> str | None:
    """`client.address` when it is an IP address (it may also name a host)."""
    value = attrs.get("client.address")
    if not isinstance(value, str) or len(value) > 64:
        return None
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        return None


def _error(span: Span) -> dict[str, Any]:
    """What failed: `error.type` or the exception event's type, and the status message or
    the exception's message (never its stack trace)."""
    exception = next((attrs for name, attrs in span.events if name == "exception"), {})
    kind = span.attributes.get("error.type") or exception.get("exception.type")
    message = span.status_message or exception.get("exception.message")
    error: dict[str, Any] = {}
    if isinstance(kind, str) and kind:
        error["type"] = kind[:MAX_ERROR_CHARS]
    if isinstance(message, str) and message:
        error["message"] = message[:MAX_ERROR_CHARS]
    return error
