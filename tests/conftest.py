"""One app (lifespan running, `init_beanie` once) per session; an empty database per test.

With `TEST_MONGODB_URI` set the same suite runs against that real server (database
`botrequests_test`, dropped record by record before each test); otherwise it runs on the
embedded mongomock backend and tests marked `realmongo` are skipped.
"""

import os
from collections.abc import AsyncIterator

import httpx
import pytest

from botrequests.app import create_app
from botrequests.config import Settings
from botrequests.documents import DOCUMENT_MODELS

REAL_MONGODB_URI = os.environ.get("TEST_MONGODB_URI", "")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if REAL_MONGODB_URI:
        return
    skip = pytest.mark.skip(reason="needs a real MongoDB: set TEST_MONGODB_URI")
    for item in items:
        if "realmongo" in item.keywords:
            item.add_marker(skip)


def test_settings() -> Settings:
    # Access control is off for the suite at large; tests/test_access.py turns it on.
    return Settings(
        mongodb_uri=REAL_MONGODB_URI,
        mongodb_database="botrequests_test",
        BOTREQUESTS_AUTH="off",
        _env_file=None,
    )


@pytest.fixture(scope="session")
async def app() -> AsyncIterator:
    application = create_app(test_settings())
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture(autouse=True)
async def clean_db(app) -> None:
    for model in DOCUMENT_MODELS:
        await model.get_motor_collection().delete_many({})


@pytest.fixture
async def client(app) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 5555))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        yield http


@pytest.fixture
def secured(app):
    """Access control on, with an admin token (`Bearer admin-secret`), for one test."""
    original = app.state.settings
    app.state.settings = original.model_copy(update={"auth": "on", "admin_token": "admin-secret"})
    yield
    app.state.settings = original


@pytest.fixture
def raw(app):
    """The raw driver database, to check what is really stored."""
    return app.state.mongo[app.state.settings.mongodb_database]
