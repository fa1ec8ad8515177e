"""Property-based checks against the app's own OpenAPI schema, over real HTTP from
`botrequests serve`: no server error, and every response conforms to the schema."""

import os
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.test_serve import FIXTURES, ROOT, free_port


@pytest.fixture(scope="module")
def api_schema() -> Iterator:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MONGODB_", "BOTREQUESTS_"))}
    env["BOTREQUESTS_AUTH"] = "off"
    env["LOG_LEVEL"] = "warning"
    process = subprocess.Popen(
        [sys.executable, "-m", "botrequests", "serve", "--port", str(port), "--import"]
        + [str(p) for p in sorted(FIXTURES.glob("*.json"))],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                httpx.get(f"{base}/healthz")
                break
            except httpx.TransportError:
                time.sleep(0.1)
        yield schemathesis.openapi.from_url(f"{base}/openapi.json")
    finally:
        process.terminate()
        process.wait(timeout=10)


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
EXAMPLES = int(os.environ.get("SCHEMATHESIS_EXAMPLES", "30"))


def test_api_conforms_to_its_schema(api_schema):
    """Every operation, `EXAMPLES` generated cases each (schemathesis' pytest plugin is
    driven by hand: its fixture loader does not run under this pytest)."""
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 20
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
        def check(case) -> None:
            case.call_and_validate(checks=CHECKS)

        check()
