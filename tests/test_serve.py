"""Over real HTTP: `botrequests serve` (uvicorn) in its own process."""

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.test_bot_requests import SEED, shape

ROOT = Path(__file__).parent.parent
FIXTURES = Path(__file__).parent / "data" / "mongoose"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MONGODB_")}
    env["BOTREQUESTS_AUTH"] = "off"
    process = subprocess.Popen(
        [sys.executable, "-m", "botrequests", "serve", "--port", str(port), "--import"]
        + [str(p) for p in sorted(FIXTURES.glob("*.json"))],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                if httpx.get(f"{base}/readyz").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        else:
            process.kill()
            pytest.fail(process.stdout.read().decode() if process.stdout else "no start")
        yield base
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.mark.parametrize(
    "expected", sorted((FIXTURES / "expected").glob("*.json")), ids=lambda p: p.stem
)
def test_serve_import_serves_fixture_exactly(server, expected):
    response = httpx.get(f"{server}/bot-requests/{expected.stem}")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert json.dumps(response.json()) == json.dumps(json.loads(expected.read_text()))


def test_serve_thread_over_http(server):
    body = httpx.get(f"{server}/bot-requests/649bc81558b7391cbaa55624/thread").json()
    assert body["root"] == "649bc7f958b7391cbaa5561a"
    assert len(body["requests"]) == 2


def test_serve_seed_example_script_comes_back_in_seed_shape(server):
    result = subprocess.run(
        [sys.executable, "scripts/seed_example.py", server],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    served = json.loads(result.stdout)
    assert served.pop("credits") == 10
    assert json.dumps(shape(served)) == json.dumps(shape(SEED))


def test_serve_docs_and_openapi(server):
    assert httpx.get(f"{server}/docs").status_code == 200
    schema = httpx.get(f"{server}/openapi.json").json()
    assert "/bot-requests/{id}/thread" in schema["paths"]


def test_serve_with_access_control_prints_a_working_development_key():
    """The README's first command, as it is: access control on, a development key printed."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MONGODB_", "BOTREQUESTS_"))}
    process = subprocess.Popen(
        [sys.executable, "-m", "botrequests", "serve", "--port", str(port)],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        key = None
        deadline = time.monotonic() + 20
        while key is None and time.monotonic() < deadline:
            line = process.stdout.readline() if process.stdout else ""
            if "API key br_" in line:
                key = line.split("API key ")[1].split()[0]
        assert key, "no development key printed"
        assert httpx.get(f"{base}/bot-requests").status_code == 401
        response = httpx.get(f"{base}/bot-requests", headers={"Authorization": f"Bearer {key}"})
        assert response.status_code == 200
        assert response.headers["x-request-id"]
    finally:
        process.terminate()
        process.wait(timeout=10)
