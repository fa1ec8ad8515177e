"""OpenTelemetry: the OTLP/HTTP traces receiver (`OTEL_EXPORTER_OTLP_ENDPOINT` + `/v1/traces`)."""

from typing import Any

from fastapi import APIRouter, Request, Response

from botrequests import otlp
from botrequests.auth import PrincipalDep
from botrequests.deps import SettingsDep
from botrequests.otlp import answers, receiver

router = APIRouter(tags=["opentelemetry"])

_BOTH = ("application/x-protobuf", "application/json")
_STATUS = {
    "type": "object",
    "description": "google.rpc.Status",
    "properties": {"code": {"type": "integer"}, "message": {"type": "string"}},
}
_EXPORT_ANSWER = {
    "type": "object",
    "description": "ExportTraceServiceResponse",
    "properties": {
        "partialSuccess": {
            "type": "object",
            "properties": {
                "rejectedSpans": {"type": "string"},
                "errorMessage": {"type": "string"},
            },
        }
    },
}


def _content(schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "application/x-protobuf": {"schema": {"type": "string", "format": "binary"}},
        "application/json": {"schema": schema},
    }


_ERRORS = {
    400: "not an OTLP export (undecodable protobuf or JSON, a bad gzip body), or the "
    "X-Botrequests-Bot header names no bot of this organization",
    401: "missing, unknown or revoked API key",
    403: "a read key, or the admin token (spans need an organization's key)",
    413: "the body, or what it inflates to, is over MAX_BODY_BYTES; or more model spans "
    "than BATCH_MAX_ITEMS",
    415: "a content type other than application/x-protobuf or application/json, or an "
    "encoding other than gzip",
    429: "OTLP_MAX_CONCURRENT exports being recorded by this worker: retry after Retry-After",
    503: "database unavailable: retry after Retry-After",
    504: "the database did not answer in time (QUERY_TIMEOUT_MS)",
}


@router.post(
    otlp.PATH,
    response_class=Response,
    responses={
        200: {"description": "the export was taken", "content": _content(_EXPORT_ANSWER)},
        **{
            code: {"description": text, "content": _content(_STATUS)}
            for code, text in _ERRORS.items()
        },
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "description": "ExportTraceServiceRequest (OTLP/HTTP), gzip or not",
            "content": {kind: {"schema": {"type": "string", "format": "binary"}} for kind in _BOTH},
        }
    },
)
async def export_traces(request: Request, who: PrincipalDep, settings: SettingsDep) -> Response:
    """Record the model-call spans of an OTLP/HTTP trace export as bot requests."""
    headers = request.headers
    outcome = await receiver.export(
        await request.body(),
        headers.get("content-type"),
        headers.get("content-encoding"),
        headers.get("x-botrequests-bot"),
        request.client.host if request.client else None,
        who.org,
        settings,
    )
    encoding = answers.encoding_of(headers.get("content-type"))
    return answers.success(encoding, len(outcome.refused), outcome.message)
