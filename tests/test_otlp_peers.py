"""Real clients: the `openai` client against a fake of its API, instrumented in turn by
opentelemetry-instrumentation-openai-v2, OpenInference and OpenLLMetry, exporting through
the OpenTelemetry SDK (`BatchSpanProcessor`, OTLP/HTTP protobuf) into each lane's app."""

import openai
import pytest

from tests import otel
from tests.test_access import ADMIN, tenant

pytestmark = pytest.mark.usefixtures("secured")


async def ingest_key(client, who: dict) -> str:
    issued = await client.post(
        f"/organizations/{who['org']['id']}/api-keys", json={"scope": "ingest"}, headers=ADMIN
    )
    assert issued.status_code == 201, issued.text
    return issued.json()["key"]


async def chat(ai: openai.AsyncOpenAI, history: list[dict], text: str, stream: bool) -> str:
    history.append({"role": "user", "content": text})
    if stream:
        answer = await ai.chat.completions.create(
            model=otel.MODEL,
            messages=history,
            stream=True,
            stream_options={"include_usage": True},
        )
        reply = "".join([c.choices[0].delta.content or "" async for c in answer if c.choices])
    else:
        done = await ai.chat.completions.create(model=otel.MODEL, messages=history)
        reply = done.choices[0].message.content
    history.append({"role": "assistant", "content": reply})
    return reply


async def requests_of(client, who: dict) -> list[dict]:
    page = await client.get("/bot-requests?limit=100&populate=bot", headers=who["headers"])
    assert page.status_code == 200, page.text
    return sorted(page.json()["items"], key=lambda r: r["createdAt"])


@pytest.mark.parametrize("instrumentation", otel.INSTRUMENTATIONS)
async def test_otlp_instrumented_openai_records_a_conversation_as_a_thread(
    client, monkeypatch, instrumentation
):
    who = await tenant(client, "Acme")
    key = await ingest_key(client, who)
    otel.set_env(monkeypatch, {**otel.GENAI_ENV, **otel.endpoint_env(key)})
    ai = otel.openai_client()
    with otel.exporting(client._transport.app) as (provider, bridge):
        # The first export's answer is lost after it was recorded: the SDK sends it again.
        bridge.lose_answers = 1
        with otel.instrumented(instrumentation, provider):
            provider.conversation.current = "conv-42"
            history = [{"role": "system", "content": "You are terse."}]
            # The application's own span around the calls: accepted, not a request.
            with provider.get_tracer("support").start_as_current_span("handle ticket"):
                await chat(ai, history, "hello there", stream=False)
                await chat(ai, history, "and a streamed one", stream=True)
                with pytest.raises(openai.BadRequestError):
                    await chat(ai, history, "please fail", stream=False)
            provider.conversation.current = None
        await otel.flush(provider)
    assert len(bridge.sent) >= 2  # the export, and its retry
    assert bridge.sent[0][1] == bridge.sent[1][1]
    assert all(status == 200 for status, _ in bridge.sent), bridge.sent
    stored = await requests_of(client, who)
    assert len(stored) == 3, [r.get("metadata") for r in stored]
    first, second, failed = stored
    assert first["bot"]["name"] == "support-bot"
    assert {r["bot"]["id"] for r in stored} == {first["bot"]["id"]}
    assert first["usage"]["model"] == otel.SERVED_MODEL
    assert first["usage"]["promptTokens"] == 7
    assert first["usage"]["completionTokens"] == 3
    assert first["usage"]["totalTokens"] == 10
    assert first["usage"]["latencyMs"] > 0
    assert first["success"] is True
    assert second["success"] is True
    assert first["response"]["messages"][0]["content"] == "echo: hello there"
    assert first["inputs"]["messages"][0] == {"role": "system", "content": "You are terse."}
    assert "user: hello there" in first["prompt"]
    assert second["response"]["messages"][0]["content"] == "echo: and a streamed one"
    assert [m["role"] for m in second["inputs"]["messages"]] == [
        "system",
        "user",
        "assistant",
        "user",
    ]
    assert failed["success"] is False
    assert "overloaded" in failed["response"]["error"]["message"]
    assert {r["sessionKey"] for r in stored} == {"conv-42"}
    # One thread, in order: each turn follows the one before.
    assert "originalRequest" not in first or first["originalRequest"] is None
    assert second["originalRequest"] == first["id"]
    assert failed["originalRequest"] == second["id"]
    thread = await client.get(f"/bot-requests/{first['id']}/thread", headers=who["headers"])
    assert thread.status_code == 200, thread.text
    assert [node["request"]["id"] for node in thread.json()["items"]] == [
        first["id"],
        second["id"],
        failed["id"],
    ]
    assert first["metadata"]["provider"] == "openai"
    assert len(first["metadata"]["traceId"]) == 32
    assert len(first["metadata"]["spanId"]) == 16
    ids = first["metadata"]
    assert first["requestKey"] == f"otel:{ids['traceId']}:{ids['spanId']}"
