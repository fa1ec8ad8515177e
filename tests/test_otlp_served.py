"""The docs' OpenTelemetry examples (examples/opentelemetry/), run as written in their own
processes against `botrequests serve` (access control on) and a fake OpenAI served over
HTTP: configured by the environment alone, each records its conversation as a thread."""

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests import otel
from tests.servers import ROOT, free_port, served

EXAMPLES = ROOT / "examples" / "opentelemetry"
JSON_EXPORTER = "from opentelemetry.exporter.otlp.json.http.trace_exporter import OTLPSpanExporter"
PROTOBUF_EXPORTER = (
    "from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter"
)


@pytest.fixture(scope="module")
def fake_openai() -> Iterator[str]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "tests.otel:fake_openai", "--port", str(port)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(f"{base}/models")
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError("the fake OpenAI did not start") from None
                time.sleep(0.1)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=10)


def run_example(script: Path, env: dict[str, str]) -> str:
    done = subprocess.run(
        [sys.executable, str(script)],
        env={**os.environ, **env},
        cwd=script.parent,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.parametrize(
    ("example", "variant"),
    [
        ("bot_openai_v2.py", "protobuf"),
        ("bot_openinference.py", "protobuf"),
        ("bot_openllmetry.py", "protobuf"),
        ("bot_openai_v2.py", "json"),
        ("bot_openinference.py", "gzip"),
    ],
)
def test_otlp_example_records_its_conversation_from_the_environment_alone(
    fake_openai, tmp_path, example, variant
):
    script = EXAMPLES / example
    if variant == "json":  # the docs' one-line change to the OTLP/HTTP JSON exporter
        text = script.read_text()
        assert PROTOBUF_EXPORTER in text
        script = tmp_path / example
        script.write_text(text.replace(PROTOBUF_EXPORTER, JSON_EXPORTER))
    with served(auth=True) as site:
        env = {
            "OTEL_EXPORTER_OTLP_ENDPOINT": site.base,
            "OTEL_EXPORTER_OTLP_HEADERS": f"Authorization=Bearer%20{site.key}",
            "OTEL_SERVICE_NAME": "parcel-bot",
            "OPENAI_API_KEY": "sk-test",
            "OPENAI_BASE_URL": fake_openai,
            **otel.GENAI_ENV,
        }
        if variant == "gzip":
            env["OTEL_EXPORTER_OTLP_COMPRESSION"] = "gzip"
        printed = run_example(script, env)
        assert "echo: Where is my parcel?" in printed
        page = httpx.get(
            f"{site.base}/bot-requests?populate=bot",
            headers={"Authorization": f"Bearer {site.key}"},
        )
    assert page.status_code == 200, page.text
    first, second = sorted(page.json()["items"], key=lambda r: r["createdAt"])
    assert first["bot"]["name"] == "parcel-bot"
    assert first["sessionKey"] == second["sessionKey"] == "order-1234"
    assert second["originalRequest"] == first["id"]
    assert first["usage"]["model"] == otel.SERVED_MODEL
    assert first["response"]["messages"][0]["content"] == "echo: Where is my parcel?"
    assert "user: Can it come on Saturday?" in second["prompt"]
    assert "assistant: echo: Where is my parcel?" in second["prompt"]
