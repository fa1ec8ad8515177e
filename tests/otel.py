"""OpenTelemetry peers for the tests: a small fake of OpenAI's chat completions API, the
real `openai` client against it, the three instrumentations of openai, and the SDK's
OTLP/HTTP protobuf exporter sending to the lane's app.

The exporter runs in the SDK's own thread (`BatchSpanProcessor`) and sends with
`requests`; `ASGIBridge` hands each of its requests to the app on the test's event loop,
so that both lanes (and their round-trip counters) see exactly what a served app would.
Endpoint and headers come from `OTEL_EXPORTER_OTLP_ENDPOINT` / `OTEL_EXPORTER_OTLP_HEADERS`,
as a bot's would (tests/test_otlp_served.py does the same over real HTTP).
"""

import asyncio
import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import openai
import requests
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

INSTRUMENTATIONS = ("openai-v2", "openinference", "openllmetry")
MODEL = "gpt-fake"
SERVED_MODEL = "gpt-fake-0001"

# --- a fake of the chat completions API -------------------------------------------------

fake_openai = FastAPI()


@fake_openai.post("/v1/chat/completions")
async def chat_completions(request: Request) -> Any:
    """Echoes the last message; "fail" in it answers 400; streams when asked."""
    body = await request.json()
    last = body["messages"][-1]["content"]
    if "fail" in last:
        error = {"message": "the model is overloaded", "type": "server_error", "code": "busy"}
        return JSONResponse({"error": error}, status_code=400)
    text = f"echo: {last}"
    usage = {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}
    base = {"id": "chatcmpl-1", "created": int(time.time()), "model": SERVED_MODEL}
    if not body.get("stream"):
        choice = {"index": 0, "message": {"role": "assistant", "content": text}}
        choice["finish_reason"] = "stop"
        return {**base, "object": "chat.completion", "choices": [choice], "usage": usage}

    def chunks() -> Iterator[str]:
        chunk = {**base, "object": "chat.completion.chunk"}
        for index, piece in enumerate((text[:5], text[5:])):
            delta = {"role": "assistant", "content": piece} if index == 0 else {"content": piece}
            choice = {"index": 0, "delta": delta, "finish_reason": None}
            yield f"data: {json.dumps({**chunk, 'choices': [choice]})}\n\n"
        last_choice = {"index": 0, "delta": {}, "finish_reason": "stop"}
        yield f"data: {json.dumps({**chunk, 'choices': [last_choice], 'usage': usage})}\n\n"
        yield "data: [DONE]\n\n"

    return StreamingResponse(chunks(), media_type="text/event-stream")


def openai_client() -> openai.AsyncOpenAI:
    transport = httpx.ASGITransport(app=fake_openai)
    return openai.AsyncOpenAI(
        api_key="sk-test",
        base_url="http://fake-openai/v1",
        http_client=httpx.AsyncClient(transport=transport),
        max_retries=0,
    )


# --- instrumentations -------------------------------------------------------------------


class _Switch(SpanProcessor):
    """Hands the spans of an instrumentation that stays installed to the provider of the
    test using it now (to none between tests)."""

    target: TracerProvider | None = None

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        if self.target is not None:
            self.target._active_span_processor.on_start(span, parent_context)

    def on_end(self, span: Any) -> None:
        if self.target is not None:
            self.target._active_span_processor.on_end(span)


_installed: dict[str, _Switch] = {}


@contextmanager
def instrumented(name: str, provider: TracerProvider) -> Iterator[None]:
    """openai instrumented by one of the three, with message content on the span."""
    if name == "openllmetry":
        # Its uninstrument() leaves its wrappers on openai, and a second instrument() wraps
        # them again (a streamed answer then accumulates twice): installed once per process.
        switch = _installed.get(name)
        if switch is None:
            from opentelemetry.instrumentation.openai import OpenAIInstrumentor as OpenLLMetry

            switch = _installed[name] = _Switch()
            sticky = TracerProvider(resource=provider.resource)
            sticky.add_span_processor(switch)
            OpenLLMetry().instrument(tracer_provider=sticky)
        switch.target = provider
        try:
            yield
        finally:
            switch.target = None
        return
    if name == "openai-v2":
        from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor
    else:
        from openinference.instrumentation.openai import OpenAIInstrumentor
    instrumentor = OpenAIInstrumentor()
    instrumentor.instrument(tracer_provider=provider)
    try:
        yield
    finally:
        instrumentor.uninstrument()


# The latest GenAI conventions, messages on the span (openai-v2 reads these at instrument()).
GENAI_ENV = {
    "OTEL_SEMCONV_STABILITY_OPT_IN": "gen_ai_latest_experimental",
    "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "span_only",
}


class Conversation(SpanProcessor):
    """Sets `gen_ai.conversation.id` on every span started while `current` is set: the
    application's part, as the conventions leave it."""

    current: str | None = None

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        if self.current is not None:
            span.set_attribute("gen_ai.conversation.id", self.current)


# --- the exporter, into the lane's app ---------------------------------------------------


class ASGIBridge(requests.adapters.BaseAdapter):
    """A `requests` adapter that sends to an ASGI app running on `loop`."""

    def __init__(self, app: Any, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self.app, self.loop = app, loop
        self.sent: list[tuple[int, int]] = []  # (status, body bytes) per export
        # Answers to lose: the app records the export, the exporter is told 503 (a proxy's
        # timeout after the write), and retries the same export.
        self.lose_answers = 0

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        async def call() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app, client=("198.51.100.9", 4318))
            async with httpx.AsyncClient(transport=transport) as http:
                return await http.request(
                    request.method or "POST",
                    request.url or "",
                    headers=dict(request.headers),
                    content=request.body,
                )

        answer = asyncio.run_coroutine_threadsafe(call(), self.loop).result(timeout=120)
        self.sent.append((answer.status_code, len(request.body or b"")))
        response = requests.Response()
        response.status_code = answer.status_code
        if self.lose_answers:
            self.lose_answers -= 1
            response.status_code = 503
        response.headers.update(answer.headers)
        response._content = answer.content
        response.url = request.url or ""
        response.request = request
        return response

    def close(self) -> None:
        pass


@contextmanager
def exporting(app: Any, service: str = "support-bot") -> Iterator[tuple[TracerProvider, Any]]:
    """A tracer provider exporting with `BatchSpanProcessor` and the OTLP/HTTP protobuf
    exporter, configured from the environment alone, into `app`."""
    bridge = ASGIBridge(app, asyncio.get_running_loop())
    session = requests.Session()
    session.mount("http://", bridge)
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    conversation = Conversation()
    provider.add_span_processor(conversation)
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(session=session)))
    provider.conversation = conversation  # type: ignore[attr-defined]
    provider.bridge = bridge  # type: ignore[attr-defined]
    try:
        yield provider, bridge
    finally:
        provider.shutdown()


async def flush(provider: TracerProvider) -> None:
    """Every span ended so far, exported (in the SDK's thread; the loop serves meanwhile)."""
    assert await asyncio.to_thread(provider.force_flush, 60_000)


def endpoint_env(key: str | None) -> dict[str, str]:
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://botrequests.test"}
    if key:
        env["OTEL_EXPORTER_OTLP_HEADERS"] = f"Authorization=Bearer%20{key}"
    return env


def set_env(monkeypatch: Any, values: dict[str, str]) -> None:
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    assert all(os.environ[name] == value for name, value in values.items())
