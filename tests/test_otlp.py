"""The OTLP/HTTP receiver (`POST /v1/traces`) as the protocol specifies it, on both lanes:
encodings, limits, partial success, errors as `google.rpc.Status`, and how spans map."""

import gzip
import json
import time
from contextlib import contextmanager

import pytest
from google.rpc.status_pb2 import Status as RpcStatus
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from pymongo.errors import ServerSelectionTimeoutError

from botrequests.otlp import receiver
from botrequests.storage import db
from tests.otlp_export import JSON, PROTOBUF, as_json, chat_attributes, protobuf, span
from tests.test_access import ADMIN, tenant


async def post(client, body: bytes, headers: dict | None = None):
    return await client.post("/v1/traces", content=body, headers={**PROTOBUF, **(headers or {})})


def answer_of(response) -> ExportTraceServiceResponse:
    assert response.status_code == 200, response.content
    assert response.headers["content-type"] == "application/x-protobuf"
    return ExportTraceServiceResponse.FromString(response.content)


def status_of(response) -> RpcStatus:
    assert response.headers["content-type"] == "application/x-protobuf"
    return RpcStatus.FromString(response.content)


async def stored(raw) -> list[dict]:
    return await raw.botrequests.find({}).sort("createdAt", 1).to_list(None)


async def test_otlp_protobuf_export_records_model_spans_and_skips_the_rest(client, raw):
    spans = [
        span(
            chat_attributes("where is my parcel", "on its way", **{"client.address": "192.0.2.1"})
        ),
        span({"http.request.method": "POST", "url.full": "https://api.openai.com"}, name="POST"),
        span({"gen_ai.operation.name": "embeddings", "gen_ai.request.model": "e"}),
        span({"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "search"}),
        span(
            {
                "openinference.span.kind": "LLM",
                "llm.model_name": "gpt-4o",
                "llm.token_count.prompt": 5,
                "llm.token_count.completion": 6,
                "llm.input_messages.0.message.role": "user",
                "llm.input_messages.0.message.content": "ping",
                "llm.output_messages.0.message.role": "assistant",
                "llm.output_messages.0.message.content": "pong",
                "tag.tags": ["beta", "support"],
                "session.id": "s-1",
            }
        ),
        span(
            {  # OpenLLMetry before the latest conventions, with v1.30-era names
                "llm.request.type": "chat",
                "gen_ai.system": "anthropic",
                "gen_ai.request.model": "claude",
                "gen_ai.usage.prompt_tokens": 9,
                "gen_ai.usage.completion_tokens": 4,
                "gen_ai.prompt.0.role": "system",
                "gen_ai.prompt.0.content": "be brief",
                "gen_ai.prompt.1.role": "user",
                "gen_ai.prompt.1.content": "2+2?",
                "gen_ai.completion.0.role": "assistant",
                "gen_ai.completion.0.content": "4",
                "gen_ai.completion.0.finish_reason": "stop",
            }
        ),
    ]
    answer = answer_of(await post(client, protobuf(spans)))
    assert answer.partial_success.rejected_spans == 0
    assert answer.partial_success.error_message == ""
    latest, oi, legacy = await stored(raw)
    assert latest["usage"] == {
        "model": "gpt-4o-mini-2024-07-18",
        "promptTokens": 12,
        "completionTokens": 30,
        "totalTokens": 42,
        "latencyMs": 250.0,
    }
    assert latest["prompt"] == "user: where is my parcel"
    assert latest["inputs"] == {"messages": [{"role": "user", "content": "where is my parcel"}]}
    assert latest["response"] == {
        "messages": [{"role": "assistant", "content": "on its way", "finishReason": "stop"}]
    }
    assert latest["ip"] == "192.0.2.1"
    assert latest["metadata"]["provider"] == "openai"
    assert latest["metadata"]["operation"] == "chat"
    assert oi["usage"]["model"] == "gpt-4o"
    assert oi["usage"]["totalTokens"] == 11
    assert oi["response"]["messages"] == [{"role": "assistant", "content": "pong"}]
    assert oi["tags"] == ["beta", "support"]
    assert oi["sessionKey"] == "s-1"
    assert oi["ip"] == "203.0.113.7"  # no client.address: the exporter's
    assert legacy["metadata"]["provider"] == "anthropic"
    assert legacy["usage"]["promptTokens"] == 9
    assert legacy["prompt"] == "system: be brief\n\nuser: 2+2?"
    assert legacy["response"]["messages"][0] == {
        "role": "assistant",
        "content": "4",
        "finishReason": "stop",
    }
    bots = await raw.bots.find({}).to_list(None)
    assert [(b["name"], b["slug"]) for b in bots] == [("support-bot", "support-bot")]
    assert {r["bot"] for r in (latest, oi, legacy)} == {bots[0]["_id"]}


async def test_otlp_json_export_hex_ids_answered_in_json(client, raw):
    one = span(chat_attributes(), trace_id=bytes(range(16)), span_id=bytes(range(1, 9)))
    response = await client.post("/v1/traces", content=as_json([one]), headers=JSON)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {}
    (request,) = await stored(raw)
    assert request["metadata"]["traceId"] == bytes(range(16)).hex()
    assert request["metadata"]["spanId"] == bytes(range(1, 9)).hex()
    assert request["requestKey"] == f"otel:{bytes(range(16)).hex()}:{bytes(range(1, 9)).hex()}"


async def test_otlp_gzip_export_inflated_and_recorded(client, raw):
    body = gzip.compress(protobuf([span(chat_attributes()) for _ in range(3)]))
    answer = answer_of(await post(client, body, {"content-encoding": "gzip"}))
    assert answer.partial_success.rejected_spans == 0
    assert len(await stored(raw)) == 3


async def test_otlp_gzip_bomb_413_never_inflated_past_the_limit(client, raw, app):
    limit = app.state.settings.max_body_bytes
    bomb = gzip.compress(b"\0" * (limit * 40))
    assert len(bomb) < limit // 10
    response = await post(client, bomb, {"content-encoding": "gzip"})
    assert response.status_code == 413
    assert f"inflates past {limit} bytes" in status_of(response).message
    assert await stored(raw) == []


@pytest.mark.parametrize(
    ("body", "headers", "status", "said"),
    [
        (b"\x0a\xff\xff\xff\xff\x0f", PROTOBUF, 400, "not an OTLP protobuf export"),
        (b'{"resourceSpans": [', JSON, 400, "not JSON"),
        (b'{"resourceSpans": {}}', JSON, 400, "resourceSpans must be an array"),
        (b"[" * 200 + b"]" * 200, JSON, 400, "nested deeper"),
        (b"\x1f\x8b\x08\x00broken", {**PROTOBUF, "content-encoding": "gzip"}, 400, "gzip"),
        (b"{}", {"content-type": "text/plain"}, 415, "content type 'text/plain'"),
        (b"{}", {**PROTOBUF, "content-encoding": "br"}, 415, "content encoding 'br'"),
    ],
)
async def test_otlp_undecodable_body_4xx_status_changes_nothing(
    client, raw, body, headers, status, said
):
    response = await client.post("/v1/traces", content=body, headers=headers)
    assert response.status_code == status
    kind = "application/json" if headers.get("content-type") == JSON["content-type"] else None
    if kind:
        assert response.headers["content-type"] == kind
        assert said in response.json()["message"]
        assert response.json()["code"] == 3
    else:
        assert said in status_of(response).message
    assert await stored(raw) == []


HOSTILE = [
    ({"gen_ai.response.model": "m" * 201}, "usage.model"),
    ({"gen_ai.usage.input_tokens": -5}, "usage.promptTokens"),
    ({"gen_ai.usage.output_tokens": "many"}, "gen_ai.usage.output_tokens must be an integer"),
    ({"gen_ai.input.messages": "[{not json"}, "gen_ai.input.messages is not JSON"),
    ({"gen_ai.input.messages": "[" * 100 + "]" * 100}, "nests deeper"),
    ({"gen_ai.input.messages": json.dumps([{"role": "x" * 100}])}, "a role is a string"),
    (
        {  # OpenInference's indexed messages (None: the latest conventions' left out)
            "gen_ai.input.messages": None,
            "gen_ai.output.messages": None,
            "llm.input_messages.99999999.message.content": "x",
        },
        "message index past",
    ),
    ({"gen_ai.response.id": "r" * 1001}, "metadata.responseId"),
    ({"gen_ai.request.temperature": float("nan")}, "metadata.temperature"),
    ({"tag.tags": ["t" * 65]}, "tags.0"),
    ({"tag.tags": [f"t{i}" for i in range(21)]}, "tags"),
    ({"gen_ai.conversation.id": "c" * 201}, "sessionKey"),
]


@pytest.mark.parametrize(("hostile", "named"), HOSTILE)
async def test_otlp_hostile_attribute_refuses_its_span_only(client, raw, hostile, named):
    attributes = {**chat_attributes(), **hostile}
    bad = span({key: value for key, value in attributes.items() if value is not None})
    good = span(chat_attributes("fine"))
    answer = answer_of(await post(client, protobuf([bad, good])))
    assert answer.partial_success.rejected_spans == 1
    assert bad.span_id.hex() in answer.partial_success.error_message
    assert named in answer.partial_success.error_message
    (kept,) = await stored(raw)
    assert kept["metadata"]["spanId"] == good.span_id.hex()


async def test_otlp_span_times_bounded_future_and_reversed_refused(client, raw):
    future = span(chat_attributes(), start_ns=time.time_ns() + 3600 * 10**9)
    reversed_ = span(chat_attributes(), duration_ms=-5)
    no_ids = span(chat_attributes(), trace_id=bytes(16))
    answer = answer_of(await post(client, protobuf([future, reversed_, no_ids])))
    message = answer.partial_success.error_message
    assert answer.partial_success.rejected_spans == 3
    assert "starts in the future" in message
    assert "ends before it starts" in message
    assert "16-byte trace id" in message
    assert await stored(raw) == []


async def test_otlp_failed_call_recorded_failed_with_its_error(client, raw):
    attributes = chat_attributes(**{"error.type": "RateLimitError"})
    del attributes["gen_ai.output.messages"]  # a failed call has no answer
    failed = span(attributes, error="429: slow down")
    answer_of(await post(client, protobuf([failed])))
    (request,) = await stored(raw)
    assert request["success"] is False
    assert request["response"]["error"] == {"type": "RateLimitError", "message": "429: slow down"}


async def test_otlp_retried_export_records_nothing_twice(client, raw):
    body = protobuf([span(chat_attributes(**{"gen_ai.conversation.id": "c"})) for _ in range(4)])
    answer_of(await post(client, body))
    first = await stored(raw)
    again = answer_of(await post(client, body))
    assert again.partial_success.rejected_spans == 0
    assert await stored(raw) == first


async def test_otlp_conversation_is_a_thread_late_span_joins_as_branch(client, raw):
    now = time.time_ns() - 600 * 10**9
    at = [now + step * 10**9 for step in range(4)]
    turn = {"gen_ai.conversation.id": "conv"}
    a, b, c, d = (span(chat_attributes(f"turn {n}", **turn), start_ns=at[n]) for n in range(4))
    # Two exports: the later turns first (in reverse order inside), then the one between.
    answer_of(await post(client, protobuf([d, c, a])))
    answer_of(await post(client, protobuf([b])))
    by_text = {r["inputs"]["messages"][0]["content"]: r for r in await stored(raw)}
    first, second, third, fourth = (by_text[f"turn {n}"] for n in range(4))
    assert "originalRequest" not in first
    assert third["originalRequest"] == first["_id"]
    assert fourth["originalRequest"] == third["_id"]
    assert second["originalRequest"] == first["_id"]  # late: a branch beside `third`
    assert sorted(first["relatedRequests"]) == sorted([second["_id"], third["_id"]])
    assert fourth["_id"] in third["relatedRequests"]


async def test_otlp_bot_header_names_the_bot_unknown_400(client, raw):
    bot = (await client.post("/bots", json={"name": "Helper", "slug": "helper"})).json()
    spans = [span(chat_attributes())]
    answer_of(await post(client, protobuf(spans), {"x-botrequests-bot": "helper"}))
    answer_of(
        await post(client, protobuf([span(chat_attributes())]), {"x-botrequests-bot": bot["id"]})
    )
    assert [str(r["bot"]) for r in await stored(raw)] == [bot["id"], bot["id"]]
    assert await raw.bots.count_documents({}) == 1
    unknown = await post(client, protobuf([span(chat_attributes())]), {"x-botrequests-bot": "nope"})
    assert unknown.status_code == 400
    assert "no bot 'nope'" in status_of(unknown).message
    assert len(await stored(raw)) == 2


async def test_otlp_bot_with_input_definitions_keeps_the_prompt_only(client, raw):
    await client.post(
        "/bots",
        json={"name": "Form", "slug": "form", "inputs": [{"name": "topic", "inputType": "text"}]},
    )
    answer = answer_of(
        await post(client, protobuf([span(chat_attributes("hi"))]), {"x-botrequests-bot": "form"})
    )
    assert answer.partial_success.rejected_spans == 0
    (request,) = await stored(raw)
    assert "inputs" not in request or request["inputs"] == {}
    assert request["prompt"] == "user: hi"


@contextmanager
def settings_changed(app, **changes):
    original = app.state.settings
    app.state.settings = original.model_copy(update=changes)
    try:
        yield
    finally:
        app.state.settings = original


async def test_otlp_new_bots_bounded_per_organization(client, raw, app):
    with settings_changed(app, otlp_max_bots=1):
        await _new_bots_bounded(client, raw)


async def _new_bots_bounded(client, raw):
    answer_of(await post(client, protobuf([span(chat_attributes())], service="first")))
    refused = answer_of(await post(client, protobuf([span(chat_attributes())], service="second")))
    assert refused.partial_success.rejected_spans == 1
    assert "OTLP_MAX_BOTS" in refused.partial_success.error_message
    assert "'second'" in refused.partial_success.error_message
    assert [b["slug"] for b in await raw.bots.find({}).to_list(None)] == ["first"]
    again = answer_of(await post(client, protobuf([span(chat_attributes())], service="first")))
    assert again.partial_success.rejected_spans == 0
    assert len(await stored(raw)) == 2


async def test_otlp_round_trips_constant_in_the_export_size(client, raw):
    async def trips(count: int) -> int:
        spans = [
            span(chat_attributes(f"q{n}", **{"gen_ai.conversation.id": f"c{n % 7}"}))
            for n in range(count)
        ]
        with db.count_round_trips() as counter:
            answer_of(await post(client, protobuf(spans)))
        return counter.count

    first = await trips(5)  # makes the bot
    small, large = await trips(5), await trips(200)
    assert small == large, (small, large)
    assert first <= small + 2
    assert len(await stored(raw)) == 210


async def test_otlp_busy_worker_429_with_retry_after(client, raw, app, monkeypatch):
    monkeypatch.setattr(receiver, "_in_progress", app.state.settings.otlp_max_concurrent)
    response = await post(client, protobuf([span(chat_attributes())]))
    assert response.status_code == 429
    assert response.headers["retry-after"] == "5"
    assert status_of(response).code == 8
    assert await stored(raw) == []


async def test_otlp_database_down_503_with_retry_after(client, monkeypatch):
    async def down(*args, **kwargs):
        raise ServerSelectionTimeoutError("no server")

    monkeypatch.setattr(receiver, "receive", down)
    response = await post(client, protobuf([span(chat_attributes())]))
    assert response.status_code == 503
    assert response.headers["retry-after"] == "5"
    assert "database unavailable" in status_of(response).message


async def key_for(client, who: dict, scope: str) -> dict:
    issued = await client.post(
        f"/organizations/{who['org']['id']}/api-keys", json={"scope": scope}, headers=ADMIN
    )
    assert issued.status_code == 201, issued.text
    return {"Authorization": f"Bearer {issued.json()['key']}"}


@pytest.mark.usefixtures("secured")
async def test_otlp_scopes_ingest_key_records_for_its_organization_only(client, raw):
    acme, globex = await tenant(client, "Acme"), await tenant(client, "Globex")
    body = protobuf([span(chat_attributes(**{"gen_ai.conversation.id": "shared-id"}))])
    missing = await post(client, body)
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"] == "Bearer"
    assert status_of(missing).code == 16
    for refused in (await key_for(client, acme, "read"), ADMIN):
        response = await post(client, body, refused)
        assert response.status_code == 403, response.content
        assert status_of(response).code == 7
    assert await stored(raw) == []
    answer_of(await post(client, body, await key_for(client, acme, "ingest")))
    # Globex's conversation of the same id is its own: never a follow-up of Acme's.
    later = protobuf([span(chat_attributes(**{"gen_ai.conversation.id": "shared-id"}))])
    answer_of(await post(client, later, globex["headers"]))
    first, second = await stored(raw)
    assert str(first["organization"]) == acme["org"]["id"]
    assert str(second["organization"]) == globex["org"]["id"]
    assert "originalRequest" not in second
    bots = await raw.bots.find({}).sort("organization", 1).to_list(None)
    assert sorted(str(b["organization"]) for b in bots) == sorted(
        [acme["org"]["id"], globex["org"]["id"]]
    )
    # A header naming another organization's bot names nothing.
    acme_bot = next(b for b in bots if str(b["organization"]) == acme["org"]["id"])
    foreign = await post(
        client, later, {**globex["headers"], "x-botrequests-bot": str(acme_bot["_id"])}
    )
    assert foreign.status_code == 400


@pytest.mark.usefixtures("secured")
async def test_otlp_span_before_the_retention_refused(client, raw):
    who = await tenant(client, "Acme")
    changed = await client.patch(
        f"/organizations/{who['org']['id']}", json={"retentionDays": 1}, headers=ADMIN
    )
    assert changed.status_code == 200, changed.text
    old = span(chat_attributes(), start_ns=time.time_ns() - 3 * 86_400 * 10**9)
    fresh = span(chat_attributes())
    answer = answer_of(await post(client, protobuf([old, fresh]), who["headers"]))
    assert answer.partial_success.rejected_spans == 1
    assert "retention" in answer.partial_success.error_message
    (kept,) = await stored(raw)
    assert kept["metadata"]["spanId"] == fresh.span_id.hex()


async def test_otlp_tool_calls_kept_in_their_order(client, raw):
    openinference = span(
        {
            "openinference.span.kind": "LLM",
            "llm.output_messages.0.message.role": "assistant",
            "llm.output_messages.0.message.tool_calls.1.tool_call.function.name": "refund",
            "llm.output_messages.0.message.tool_calls.0.tool_call.function.name": "lookup",
            "llm.output_messages.0.message.tool_calls.0.tool_call.function.arguments": '{"id":7}',
        }
    )
    openllmetry = span(
        {
            "llm.request.type": "chat",
            "gen_ai.completion.0.role": "assistant",
            "gen_ai.completion.0.tool_calls.0.name": "lookup",
            "gen_ai.completion.0.tool_calls.0.arguments": '{"id":8}',
        },
        start_ns=time.time_ns() - 30 * 10**9,
    )
    answer_of(await post(client, protobuf([openinference, openllmetry])))
    first, second = await stored(raw)
    assert first["response"]["messages"][0]["toolCalls"] == [
        {"name": "lookup", "arguments": '{"id":7}'},
        {"name": "refund"},
    ]
    assert second["response"]["messages"][0]["toolCalls"] == [
        {"name": "lookup", "arguments": '{"id":8}'}
    ]
