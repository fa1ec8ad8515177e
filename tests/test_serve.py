"""Over real HTTP: `botrequests serve` (uvicorn) in its own process."""

import json
import subprocess
import sys
from collections.abc import Iterator

import httpx
import pytest

from tests.servers import FIXTURES, ROOT, served
from tests.test_bot_requests import SEED, shape


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    with served("--import", *map(str, sorted(FIXTURES.glob("*.json")))) as site:
        yield site.base


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
    assert len(body["items"]) == 2


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
    """The first command of the README and Getting started, as it is: access control on,
    a development key printed."""
    with served(auth=True) as site:
        assert (site.key or "").startswith("br_")
        said = "".join(site.output)
        assert f"API docs {site.base}/docs, viewer {site.base}/ui; access control on" in said
        assert "for organization 'Development'" in said
        assert httpx.get(f"{site.base}/bot-requests").status_code == 401
        headers = {"Authorization": f"Bearer {site.key}"}
        response = httpx.get(f"{site.base}/bot-requests", headers=headers)
        assert response.status_code == 200
        assert response.headers["x-request-id"]
