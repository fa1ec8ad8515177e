"""Property-based checks against the app's own OpenAPI schema, over real HTTP from
`botrequests serve`: no server error, and every response conforms to the schema."""

import os
from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.servers import FIXTURES, served


@pytest.fixture(scope="module")
def api_schema() -> Iterator:
    with served("--import", *map(str, sorted(FIXTURES.glob("*.json")))) as site:
        yield schemathesis.openapi.from_url(f"{site.base}/openapi.json")


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
