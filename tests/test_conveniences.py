"""What a user notices: Location on 201, `/` to the viewer, export as a named download (NDJSON
or CSV), `--version`, one-line setting errors, an import report that summarizes."""

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from bson import ObjectId

from tests.factories import record, seed_world
from tests.servers import ROOT


async def test_create_answers_201_with_a_location_that_reads_it_back(client):
    world = await seed_world(client)
    body = {"bot": world["bot"]["id"], "success": True, "response": {}, "ip": "10.0.0.1"}
    cases = [
        ("/organizations", {"name": "Other"}),
        ("/users", {"name": "Ada", "organization": world["org"]["id"]}),
        ("/bots", {"name": "B", "slug": "b"}),
        ("/files", {"fileName": "a.png", "s3Key": "k/a.png"}),
        ("/invoices", {"organization": world["org"]["id"], "credits": 1, "status": "paid"}),
        ("/bot-requests", body),
    ]
    for path, payload in cases:
        response = await client.post(path, json=payload)
        assert response.status_code == 201, response.text
        location = response.headers["location"]
        assert location == f"{path}/{response.json()['id']}"
        again = await client.get(location)
        assert again.status_code == 200
        assert again.json()["id"] == response.json()["id"]
    request = await record(client, world)
    feedback = await client.post(f"/bot-requests/{request['id']}/feedback", json={"score": 1})
    assert feedback.status_code == 201
    listed = await client.get(feedback.headers["location"])
    assert [item["id"] for item in listed.json()["items"]] == [feedback.json()["id"]]


async def test_root_redirects_to_the_viewer(client):
    response = await client.get("/")
    assert response.status_code == 307
    assert response.headers["location"] == "/ui"


async def test_export_is_a_named_download(client):
    world = await seed_world(client)
    await record(client, world)
    response = await client.get("/bot-requests/export")
    assert response.status_code == 200
    disposition = response.headers["content-disposition"]
    assert disposition.startswith('attachment; filename="bot-requests-')
    assert disposition.endswith('.ndjson"')


async def test_export_csv_one_flat_row_per_request_and_no_formulas(client):
    world = await seed_world(client)
    usage = {"model": "gpt-4o", "promptTokens": 3, "completionTokens": 4, "latencyMs": 120}
    plain = await record(client, world, usage=usage, tags=["a", "b"])
    hostile = await record(client, world, sessionKey='=HYPERLINK("http://x")', success=False)
    response = await client.get("/bot-requests/export", params={"format": "csv"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert response.headers["content-disposition"].endswith('.csv"')
    rows = list(csv.DictReader(io.StringIO(response.text)))
    by_id = {row["id"]: row for row in rows}
    assert set(by_id) == {plain["id"], hostile["id"]}
    row = by_id[plain["id"]]
    assert row["botName"] == "Hellow world bot"
    assert row["userName"] == "John Doe"
    assert row["organizationName"] == "Test"
    assert row["model"] == "gpt-4o"
    assert row["totalTokens"] == "7"
    assert float(row["latencyMs"]) == 120
    assert row["tags"] == "a;b"
    assert row["credits"] == "10"
    assert by_id[hostile["id"]]["sessionKey"] == '\'=HYPERLINK("http://x")'
    assert by_id[hostile["id"]]["success"] == "false"  # as JSON spells it
    bad = await client.get("/bot-requests/export", params={"format": "xml"})
    assert bad.status_code == 422


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("MONGODB_", "BOTREQUESTS_"))}
    return subprocess.run(
        [sys.executable, "-m", "botrequests", *args],
        cwd=ROOT,
        env={**clean, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_version_and_help_list_every_command():
    from botrequests import __version__

    assert _cli("--version").stdout.strip() == f"botrequests {__version__}"
    usage = _cli("--help").stdout
    for command in ("serve", "import", "create-api-key", "purge", "repair-threads"):
        assert command in usage


def test_bad_settings_are_one_line_each_not_a_traceback():
    done = _cli("serve", env={"PORT": "abc", "BOTREQUESTS_AUTH": "maybe"})
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert lines == [
        "botrequests: setting BOTREQUESTS_AUTH='maybe': Input should be 'on' or 'off'",
        "botrequests: setting PORT='abc': Input should be a valid integer, unable to parse "
        "string as an integer",
    ]
    secret = _cli("serve", env={"MONGODB_TIMEOUT_MS": "1", "BOTREQUESTS_ADMIN_TOKEN": "s3cret"})
    assert "MONGODB_TIMEOUT_MS='1'" in secret.stderr


@pytest.mark.parametrize(
    ("command", "name", "value", "says"),
    [
        ("serve", "MONGODB_URI", "notauri://x", "Invalid URI scheme"),
        ("serve", "MONGODB_URI", "mongodb://user:pw@", "Empty host"),
        ("import", "MONGODB_URI", "mongodb://user:pw@db/?nosuchoption=1", "Unknown option"),
        ("purge", "MONGODB_URI", "mongodb+srv://user:pw@db.example.com:27017", "one host"),
        ("serve", "MONGODB_URI", "mongodb://user:pw@db:99999", "Port must be"),
        ("serve", "LOG_LEVEL", "loud", "Input should be 'critical', 'error', 'warning'"),
        ("serve", "HOST", "not a host", "an IP address or a host name"),
        ("serve", "MONGODB_DATABASE", "bot.requests", "a MongoDB database name"),
        ("serve", "FORWARDED_ALLOW_IPS", "10.0.0.1;10.0.0.2", "not an address or network"),
    ],
)
def test_bad_setting_is_one_line_and_exit_2(command, name, value, says):
    args = [command, "x.json"] if command == "import" else [command]
    done = _cli(*args, env={name: value})
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"botrequests: setting {name}")
    assert says in lines[0]
    assert "pw" not in done.stderr  # a URI's password is never echoed


def test_setting_checks_take_what_the_services_users_set():
    from botrequests.config import Settings

    good = Settings(
        _env_file=None,
        mongodb_uri="mongodb+srv://u:p%40ss@cluster0.example.net/app?retryWrites=true&w=majority",
        mongodb_database="bot-requests_1",
        host="::",
        log_level="DEBUG",
        forwarded_allow_ips="10.0.0.0/8, 127.0.0.1, ::1",
    )
    assert good.log_level == "debug"
    assert Settings(_env_file=None, host="api.internal.example.com").host.endswith(".com")
    assert Settings(_env_file=None, forwarded_allow_ips="*").forwarded_allow_ips == "*"


def test_bad_serve_option_is_refused_before_anything_starts():
    for args, says in [
        (["--host", "a b"], "argument --host: an IP address or a host name"),
        (["--port", "0"], "argument --port: a whole number from 1 to 65535"),
        (["--workers", "-1"], "argument --workers: a whole number from 1 to 256"),
    ]:
        done = _cli("serve", *args)
        assert done.returncode == 2
        assert says in done.stderr.strip().splitlines()[-1], done.stderr


def test_import_summarizes_many_dangling_references_and_reports_all(tmp_path: Path):
    """2 000 requests naming users that are not in the files: counted per kind, 20 shown,
    called servable (they are served as ids), every line in --report."""
    bot = ObjectId()
    (tmp_path / "bots.json").write_text(
        json.dumps({"_id": {"$oid": str(bot)}, "name": "B", "slug": "b"}) + "\n"
    )
    lines = [
        json.dumps(
            {
                "_id": {"$oid": str(ObjectId())},
                "bot": {"$oid": str(bot)},
                "createdBy": {"$oid": str(ObjectId())},
                "success": True,
                "response": {},
                "ip": "10.0.0.1",
            }
        )
        for _ in range(2000)
    ]
    (tmp_path / "botrequests.json").write_text("\n".join(lines) + "\n")
    report = tmp_path / "report.txt"
    done = _cli(
        "import",
        str(tmp_path / "bots.json"),
        str(tmp_path / "botrequests.json"),
        "--report",
        str(report),
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout.splitlines()
    assert len(out) < 40
    assert sum("names no document in users" in line for line in out) == 20
    assert "... and 1980 more (--report PATH writes every line)" in out
    assert "2000 × dangling reference (served as its id, not an error)" in out
    assert "0 document(s) the service cannot serve as they are" in out
    written = report.read_text().splitlines()
    assert sum("names no document in users" in line for line in written) == 2000


async def test_openapi_examples_are_valid_and_succeed_on_the_fixture_database(client):
    """/docs' "Try it out" bodies: each example validates, and on the fixtures (what
    `serve --import tests/data/mongoose/*.json` loads) each create succeeds as is."""
    from botrequests import importer, schemas
    from tests.servers import FIXTURES

    await importer.load(sorted(FIXTURES.glob("*.json")))
    openapi = (await client.get("/openapi.json")).json()["components"]["schemas"]
    creates = {
        "/organizations": schemas.OrganizationCreate,
        "/users": schemas.UserCreate,
        "/files": schemas.FileCreate,
        "/invoices": schemas.InvoiceCreate,
        "/bots": schemas.BotCreate,
        "/bot-requests": schemas.BotRequestCreate,
    }
    for path, model in creates.items():
        example = openapi[model.__name__]["examples"][0]
        model.model_validate(example)
        response = await client.post(path, json=example)
        assert response.status_code == 201, (path, response.text)
    assert openapi["BotRequestCreate"]["examples"][0]["ip"] == "29.251.124.244"
    request = response.json()
    assert request["bot"]["name"] == "Hellow world bot"
    for path, model in (
        (f"/bot-requests/{request['id']}/feedback", schemas.FeedbackCreate),
        (f"/bot-requests/{request['id']}", schemas.BotRequestUpdate),
    ):
        example = openapi[model.__name__]["examples"][0]
        call = client.post if path.endswith("feedback") else client.patch
        assert (await call(path, json=example)).status_code in (200, 201)


async def test_import_reports_progress_per_file(client):
    """What `botrequests import` shows on a terminal, one step at a time."""
    from botrequests import importer
    from tests.servers import FIXTURES

    steps: list[str] = []
    files = sorted(FIXTURES.glob("*.json"))
    await importer.load(files, progress=steps.append)
    assert steps[0] == f"checking {files[0]} (1 of {len(files)})"
    assert sum(step.startswith("loading ") for step in steps) == len(files)
    assert steps[-1] == "checking references"
