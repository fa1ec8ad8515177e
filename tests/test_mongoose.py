"""Next to a Mongoose application: read what it wrote, write what it reads, lose nothing."""

import json
from pathlib import Path

import pytest
from bson import ObjectId

from botrequests import importer
from tests.factories import post, seed_world
from tests.test_docs import exact_example

FIXTURES = Path(__file__).parent / "data" / "mongoose"
EXPECTED = sorted((FIXTURES / "expected").glob("*.json"))


SHARED = Path(__file__).parent.parent.parent / "shared" / "fixtures" / "mongoose"


def test_fixtures_are_the_shared_ones():
    """The copy the suite loads is the project's shared fixture database, byte for byte
    (updated there for Mongoose's stored order and nulls: issue 15)."""
    if not SHARED.is_dir():
        pytest.skip(f"no shared fixtures at {SHARED} (CI has ../shared beside the project)")
    ours = sorted(p.relative_to(FIXTURES) for p in FIXTURES.rglob("*.json"))
    theirs = sorted(p.relative_to(SHARED) for p in SHARED.rglob("*.json"))
    assert ours == theirs
    for name in ours:
        assert (FIXTURES / name).read_bytes() == (SHARED / name).read_bytes(), name


async def load_fixtures() -> importer.Report:
    return await importer.load(sorted(FIXTURES.glob("*.json")))


async def test_import_fixtures_reports_every_file_and_no_problem(client):
    report = await load_fixtures()
    assert {Path(f.path).name: f.inserted for f in report.files} == {
        "botrequests.json": 3,
        "bots.json": 1,
        "files.json": 1,
        "invoices.json": 1,
        "organizations.json": 1,
        "users.json": 1,
    }
    assert report.problems == []


@pytest.mark.parametrize("expected", EXPECTED, ids=lambda p: p.stem)
async def test_read_mongoose_written_request_served_exactly_as_expected(client, expected):
    await load_fixtures()
    response = await client.get(f"/bot-requests/{expected.stem}")
    assert response.status_code == 200
    want = json.loads(expected.read_text())
    # key for key, value for value, in the same order, nothing added
    assert json.dumps(response.json()) == json.dumps(want)


async def test_thread_of_mongoose_followup(client):
    await load_fixtures()
    body = (await client.get("/bot-requests/649bc81558b7391cbaa55624/thread")).json()
    assert body["root"] == "649bc7f958b7391cbaa5561a"
    assert [(r["request"]["id"], r["depth"]) for r in body["items"]] == [
        ("649bc7f958b7391cbaa5561a", 0),
        ("649bc81558b7391cbaa55624", 1),
    ]
    root = body["items"][0]["request"]
    assert root["originalRequest"] is None  # stored as null: served as null (Mongoose)
    assert root["userAgent"] == "UnltdWeb/2.3"  # outside the schema: served in its place
    assert list(root).index("userAgent") == list(root).index("originalRequest") + 1
    assert root["relatedRequests"] == ["649bc81558b7391cbaa55624"]


async def test_patch_mongoose_written_request_keeps_v_unknown_fields_and_created_at(client, raw):
    await load_fixtures()
    oid = ObjectId("649bc7f958b7391cbaa5561a")
    before = await raw.botrequests.find_one({"_id": oid})
    response = await client.patch(f"/bot-requests/{oid}", json={"success": False})
    assert response.status_code == 200
    after = await raw.botrequests.find_one({"_id": oid})
    assert after["__v"] == before["__v"] == 1
    assert after["userAgent"] == "UnltdWeb/2.3"
    assert after["createdAt"] == before["createdAt"]
    assert after["originalRequest"] is None  # untouched, not rewritten or dropped
    assert after["updatedAt"] > before["updatedAt"]
    assert after["success"] is False
    assert set(after) == set(before)


async def test_followup_onto_mongoose_request_keeps_its_fields(client, raw):
    await load_fixtures()
    made = await post(
        client,
        "/bot-requests",
        {
            "bot": "64880aac2f5e4553ddac6eaf",
            "success": True,
            "response": {},
            "originalRequest": "649bc7f958b7391cbaa5561a",
        },
    )
    stored = await raw.botrequests.find_one({"_id": ObjectId("649bc7f958b7391cbaa5561a")})
    assert stored["relatedRequests"] == [
        ObjectId("649bc81558b7391cbaa55624"),
        ObjectId(made["id"]),
    ]
    assert stored["userAgent"] == "UnltdWeb/2.3"
    assert stored["__v"] == 2  # was 1: the array changed, as Mongoose's push + save does


async def test_read_request_with_missing_and_null_optional_fields(client, raw):
    oid = ObjectId()
    await raw.botrequests.insert_one(
        {
            "_id": oid,
            "bot": ObjectId(),
            "success": True,
            "response": None,
            "ip": "1.1.1.1",
            "prompt": None,
            "invoice": None,
            "__v": 0,
        }
    )
    body = (await client.get(f"/bot-requests/{oid}")).json()
    # As Mongoose serves it: the missing arrays as [] first, then the stored keys in their
    # order, each stored null as null; the bot it names does not exist: its id.
    assert list(body.items()) == [
        ("images", []),
        ("relatedRequests", []),
        ("bot", body["bot"]),
        ("success", True),
        ("response", None),
        ("ip", "1.1.1.1"),
        ("prompt", None),
        ("invoice", None),
        ("id", str(oid)),
    ]


async def test_created_records_stored_with_mongoose_names_and_types(client, raw):
    world = await seed_world(client)
    for collection, key in [
        ("organizations", "org"),
        ("users", "user"),
        ("bots", "bot"),
        ("files", "image"),
        ("invoices", "invoice"),
    ]:
        stored = await raw[collection].find_one({"_id": ObjectId(world[key]["id"])})
        assert list(stored)[0] == "_id"
        assert stored["__v"] == 0
        assert stored["createdAt"].tzinfo is not None or stored["createdAt"].year > 2000
        assert not {"revision_id", "_class_id", "id"} & set(stored)
    user = await raw.users.find_one({"_id": ObjectId(world["user"]["id"])})
    assert isinstance(user["organization"], ObjectId)
    invoice = await raw.invoices.find_one({"_id": ObjectId(world["invoice"]["id"])})
    assert isinstance(invoice["organization"], ObjectId)


# --- importing ------------------------------------------------------------------------


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


async def test_import_malformed_line_names_file_and_line_and_loads_nothing(tmp_path, raw):
    good = '{"_id": {"$oid": "649bc73858b7391cbaa555ff"}, "name": "A"}'
    path = write(tmp_path, "organizations.json", f'{good}\n{{"name": \n')
    with pytest.raises(importer.ImportFileError, match=r"organizations.json:2:"):
        await importer.load([path])
    assert await raw.organizations.count_documents({}) == 0


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"_id": {"$oid": "zz"}, "name": "A"}\n', r"organizations.json:1:"),
        ('["not an object"]\n', r"organizations.json:1: a document must be a JSON object"),
        ('{"name": "A"}\n42\n', r"organizations.json:2: a document must be a JSON object"),
        ('[{"name": "A"},\n {"name": ]\n', r"organizations.json:2:"),
    ],
)
async def test_import_bad_extended_json_rejected(tmp_path, raw, text, message):
    path = write(tmp_path, "organizations.json", text)
    with pytest.raises(importer.ImportFileError, match=message):
        await importer.load([path])
    assert await raw.organizations.count_documents({}) == 0


async def test_import_unknown_collection_rejected(app, tmp_path):
    path = write(tmp_path, "people.json", '{"name": "A"}\n')
    with pytest.raises(importer.ImportFileError, match="unknown collection 'people'"):
        await importer.load([path])


async def test_import_json_array_canonical_extended_json_and_collection_option(tmp_path, raw):
    text = json.dumps(
        [
            {
                "_id": {"$oid": "649bc73858b7391cbaa555ff"},
                "name": "A",
                "createdAt": {"$date": {"$numberLong": "1687930680418"}},
                "__v": {"$numberInt": "0"},
            }
        ],
        indent=2,
    )
    path = write(tmp_path, "export.json", text)
    report = await importer.load([path], collection="organizations")
    assert report.files[0].inserted == 1
    stored = await raw.organizations.find_one({})
    assert stored["_id"] == ObjectId("649bc73858b7391cbaa555ff")
    assert stored["__v"] == 0
    assert stored["createdAt"].year == 2023


async def test_import_existing_ids_skipped_unless_upsert(tmp_path, raw):
    path = write(
        tmp_path,
        "organizations.json",
        '{"_id": {"$oid": "649bc73858b7391cbaa555ff"}, "name": "A"}\n',
    )
    await importer.load([path])
    await raw.organizations.update_one({}, {"$set": {"extra": 1}})
    path.write_text('{"_id": {"$oid": "649bc73858b7391cbaa555ff"}, "name": "B"}\n')
    report = await importer.load([path])
    assert report.files[0].skipped == [(1, "649bc73858b7391cbaa555ff")]
    assert (await raw.organizations.find_one({}))["name"] == "A"
    report = await importer.load([path], upsert=True)
    assert report.files[0].updated == 1
    stored = await raw.organizations.find_one({})
    assert stored["name"] == "B"
    assert stored["extra"] == 1  # fields not in the file are kept


async def test_import_reports_documents_the_service_cannot_serve(app, tmp_path):
    lines = [
        '{"success": true, "response": {}, "ip": "1.1.1.1"}',
        '{"bot": "64880aac2f5e4553ddac6eaf", "success": true, "response": {}, "ip": "::1"}',
        '{"bot": {"$oid": "64880aac2f5e4553ddac6eaf"}, "success": true, "response": {},'
        ' "ip": "::1"}',
    ]
    path = write(tmp_path, "botrequests.json", "\n".join(lines) + "\n")
    report = await importer.load([path])
    assert report.files[0].inserted == 3
    problems = "\n".join(report.problems)
    assert "botrequests.json:1: bot: required field missing" in problems
    assert "botrequests.json:2: bot is not an ObjectId" in problems
    assert "botrequests.json:3: bot 64880aac2f5e4553ddac6eaf names no document in bots" in problems


async def test_read_request_missing_required_fields_still_served(client, raw):
    oid = ObjectId()
    await raw.botrequests.insert_one({"_id": oid, "ip": "1.1.1.1", "response": {}, "__v": 0})
    response = await client.get(f"/bot-requests/{oid}")
    assert response.status_code == 200
    # An empty object is left out, as Mongoose's toJSON minimizes it.
    assert response.json() == {"images": [], "relatedRequests": [], "ip": "1.1.1.1", "id": str(oid)}
    listed = (await client.get("/bot-requests", params={"populate": "none"})).json()
    assert [item["id"] for item in listed["items"]] == [str(oid)]


async def test_read_stored_document_of_wrong_type_answers_clear_json(client, raw):
    oid = ObjectId()
    await raw.botrequests.insert_one({"_id": oid, "bot": ObjectId(), "success": "maybe"})
    response = await client.get(f"/bot-requests/{oid}")
    assert response.status_code == 500
    assert response.json() == {
        "detail": "a stored document cannot be served: success: Input should be a valid boolean, "
        "unable to interpret input"
    }


async def test_thread_of_mongoose_followup_is_the_documented_example(client):
    await load_fixtures()
    answer = await client.get(
        "/bot-requests/649bc81558b7391cbaa55624/thread", params={"populate": "none"}
    )
    assert answer.status_code == 200
    assert answer.json() == exact_example("thread-of-fixtures"), json.dumps(answer.json())


async def test_populated_request_is_the_documented_example(client):
    await load_fixtures()
    answer = await client.get("/bot-requests/649bc73858b7391cbaa555ff")
    assert answer.status_code == 200
    assert json.dumps(answer.json()) == json.dumps(exact_example("fixture-request"))
