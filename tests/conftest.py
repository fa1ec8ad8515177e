"""Two lanes: every test that uses the app runs on the embedded backend (mongomock) and on
a real MongoDB wire-protocol server; the test id names the lane (`[embedded]`, `[wire]`).

The wire lane starts SecantusDB itself (free port, temporary storage, stopped at the end),
or uses `TEST_MONGODB_URI` when it is set (a real `mongod` or Atlas: database
`botrequests_test`, emptied record by record before each test). `WIRE=off` runs the
embedded lane alone. One app (lifespan running, `init_beanie` once) per lane; an empty
database per test. Tests marked `realmongo` run on the wire lane only.
"""

import os
import tempfile
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from botrequests.app import create_app
from botrequests.config import Settings
from botrequests.documents import DOCUMENT_MODELS
from tests.wire import WireServer, wire_server

REAL_MONGODB_URI = os.environ.get("TEST_MONGODB_URI", "")
# The durable default keeps its data in the user's data directory: nothing the suite runs
# (processes included) may use the real one.
os.environ["XDG_DATA_HOME"] = tempfile.mkdtemp(prefix="botrequests-suite-")
LANES = ["embedded"] + ([] if os.environ.get("WIRE", "on") == "off" else ["wire"])


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    skip = pytest.mark.skip(reason="runs on the wire lane only (needs a real server)")
    for item in items:
        lane = getattr(item, "callspec", None) and item.callspec.params.get("lane")
        if "realmongo" in item.keywords and lane != "wire":
            item.add_marker(skip)


def lane_settings(uri: str) -> Settings:
    # Access control is off for the suite at large; tests/test_access.py turns it on.
    # A longer timeout than the service's default: on a loaded machine a real server may
    # take seconds to answer, and a test is about behaviour, not speed (tests of timeouts
    # and outages set their own).
    return Settings(
        mongodb_uri=uri,
        mongodb_database="botrequests_test",
        mongodb_timeout_ms=10_000,
        BOTREQUESTS_AUTH="off",
        _env_file=None,
    )


@pytest.fixture(scope="session")
def wire() -> Iterator[WireServer | None]:
    """The wire lane's server: started here, or None when TEST_MONGODB_URI names one."""
    if REAL_MONGODB_URI:
        yield None
        return
    with wire_server() as server:
        yield server


@pytest.fixture(scope="session", params=LANES)
async def lane(request: pytest.FixtureRequest) -> AsyncIterator:
    """The lane's app, started once (lifespan running) for every test of that lane."""
    uri = (
        "mongomock://"  # the embedded backend in memory: tests of the data directory make their own
    )
    if request.param == "wire":
        server = request.getfixturevalue("wire")
        uri = REAL_MONGODB_URI or server.uri
    application = create_app(lane_settings(uri))
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def app(lane):
    """The lane's app over an empty database. Tests that use neither it nor `client` /
    `raw` (a `botrequests serve` process, the benchmark) run once, in no lane."""
    database = lane.state.mongo[lane.state.settings.mongodb_database]
    # Every collection, the models' and any a test wrote by itself; checked empty after,
    # so that nothing an earlier test left (even a write still landing) reaches this one.
    for _ in range(5):
        names = {model.get_collection_name() for model in DOCUMENT_MODELS}
        names |= {n for n in await database.list_collection_names() if not n.startswith("system.")}
        for name in names:
            await database[name].delete_many({})
        left = [name for name in names if await database[name].find_one({}, {"_id": 1})]
        if not left:
            return lane
    raise RuntimeError(f"collections not emptied before the test: {left}")


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
