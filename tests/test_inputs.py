"""Bot input definitions, request inputs checked against them, safe prompt templates."""

import pytest
from bson import ObjectId

from tests.factories import post

DEFINITIONS = [
    {
        "name": "color",
        "inputType": "select",
        "options": ["Green", "Red"],
        "required": True,
        "defaultValue": "Green",
    },
    {"name": "topic", "inputType": "text", "required": True},
    {"name": "count", "inputType": "number", "defaultValue": 3},
    {"name": "tags", "inputType": "multiselect", "options": [{"label": "A", "value": "a"}, "b"]},
    {"name": "formal", "inputType": "checkbox"},
    {"name": "doc", "inputType": "file"},
    {"name": "notes", "inputType": "textarea"},
]
TEMPLATE = "Write {count} lines about {topic} in {color}. Tags: {tags}. {{literal}}"


async def make_bot(client, **extra) -> dict:
    body = {"name": "Poet", "slug": "poet", "inputs": DEFINITIONS, "promptTemplate": TEMPLATE}
    return await post(client, "/bots", {**body, **extra})


async def ask(client, bot: dict, inputs: dict, **extra):
    body = {"bot": bot["id"], "success": True, "response": {}, "inputs": inputs, **extra}
    return await client.post("/bot-requests", json=body)


async def test_create_request_fills_defaults_and_renders_prompt(client, raw):
    bot = await make_bot(client)
    response = await ask(client, bot, {"topic": "the sea", "tags": ["a", "b"]})
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["inputs"] == {"color": "Green", "topic": "the sea", "count": 3, "tags": ["a", "b"]}
    assert body["prompt"] == "Write 3 lines about the sea in Green. Tags: a, b. {literal}"
    stored = await raw.botrequests.find_one({"_id": ObjectId(body["id"])})
    assert stored["inputs"]["count"] == 3
    assert stored["prompt"] == body["prompt"]


async def test_create_request_keeps_explicit_prompt(client):
    bot = await make_bot(client)
    response = await ask(client, bot, {"topic": "x"}, prompt="my own prompt")
    assert response.json()["prompt"] == "my own prompt"


async def test_create_request_value_with_braces_inserted_literally(client):
    bot = await make_bot(client)
    hostile = "{color.__class__} {0} {{topic}} <img src=x onerror=alert(1)>"
    response = await ask(client, bot, {"topic": hostile})
    assert response.json()["prompt"] == (
        f"Write 3 lines about {hostile} in Green. Tags: . {{literal}}"
    )


@pytest.mark.parametrize(
    ("inputs", "loc", "msg"),
    [
        ({"topic": "x", "colour": "Red"}, "colour", "unknown input 'colour'"),
        ({}, "topic", "input 'topic' is required"),
        ({"topic": 5}, "topic", "input 'topic' must be a string"),
        ({"topic": "x", "count": "3"}, "count", "input 'count' must be a number"),
        ({"topic": "x", "count": True}, "count", "input 'count' must be a number"),
        ({"topic": "x", "color": "Blue"}, "color", "must be one of the options"),
        ({"topic": "x", "tags": ["c"]}, "tags", "must be a list of the options"),
        ({"topic": "x", "tags": "a"}, "tags", "must be a list of the options"),
        ({"topic": "x", "formal": "yes"}, "formal", "must be true or false"),
        ({"topic": "x", "doc": "not-an-id"}, "doc", "must be a File id"),
    ],
)
async def test_create_request_bad_inputs_422_with_exact_error(client, raw, inputs, loc, msg):
    bot = await make_bot(client)
    response = await ask(client, bot, inputs)
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert detail[0]["loc"] == ["body", "inputs", loc]
    assert msg in detail[0]["msg"]
    assert await raw.botrequests.count_documents({}) == 0


async def test_create_request_file_input_must_exist(client):
    bot = await make_bot(client)
    image = await post(client, "/files", {"fileName": "a.pdf", "s3Key": "k"})
    ok = await ask(client, bot, {"topic": "x", "doc": image["id"].upper()})
    assert ok.status_code == 201
    assert ok.json()["inputs"]["doc"] == image["id"]
    missing = str(ObjectId())
    bad = await ask(client, bot, {"topic": "x", "doc": [image["id"], missing]})
    assert bad.status_code == 422
    assert bad.json()["detail"][0]["msg"] == f"file {missing} does not exist"


@pytest.mark.parametrize(
    ("change", "loc", "msg"),
    [
        (
            {"inputs": [{"name": "bad name", "inputType": "text"}]},
            ["inputs", 0, "name"],
            "not an identifier",
        ),
        (
            {"inputs": [{"name": "a", "inputType": "text"}, {"name": "a", "inputType": "number"}]},
            ["inputs", 1, "name"],
            "name used twice",
        ),
        (
            {"inputs": [{"name": "a", "inputType": "select"}]},
            ["inputs", 0, "options"],
            "select needs options",
        ),
        (
            {
                "inputs": [
                    {"name": "a", "inputType": "select", "options": ["x"], "defaultValue": "y"}
                ]
            },
            ["inputs", 0, "defaultValue"],
            "default must be one of the options",
        ),
        (
            {"inputs": [{"name": "a", "inputType": "number", "defaultValue": "3"}]},
            ["inputs", 0, "defaultValue"],
            "default must be a number",
        ),
        ({"inputs": [{"name": "a", "inputType": "color"}]}, ["inputs", 0, "inputType"], ""),
        ({"promptTemplate": "{undeclared}"}, ["promptTemplate"], "not a declared input"),
        ({"promptTemplate": "{color.__class__}"}, ["promptTemplate"], "not an input name"),
        ({"promptTemplate": "{0}"}, ["promptTemplate"], "not an input name"),
        ({"promptTemplate": "{}"}, ["promptTemplate"], "not an input name"),
        ({"promptTemplate": "{topic[0]}"}, ["promptTemplate"], "not an input name"),
        ({"promptTemplate": "{topic!r}"}, ["promptTemplate"], "conversion or format"),
        ({"promptTemplate": "{topic:>999999}"}, ["promptTemplate"], "conversion or format"),
        ({"promptTemplate": "unclosed {topic"}, ["promptTemplate"], "malformed template"),
    ],
)
async def test_create_bot_invalid_definitions_422_naming_input(client, change, loc, msg):
    body = {"name": "B", "slug": "b", "inputs": DEFINITIONS, **change}
    response = await client.post("/bots", json=body)
    assert response.status_code == 422, response.text
    detail = response.json()["detail"][0]
    assert detail["loc"][1:] == loc
    assert msg in detail["msg"]


async def test_patch_bot_template_checked_against_existing_inputs(client):
    bot = await make_bot(client)
    bad = await client.patch(f"/bots/{bot['id']}", json={"promptTemplate": "{nope}"})
    assert bad.status_code == 422
    good = await client.patch(f"/bots/{bot['id']}", json={"promptTemplate": "About {topic}"})
    assert good.json()["promptTemplate"] == "About {topic}"
    dropped = await client.patch(
        f"/bots/{bot['id']}", json={"inputs": [{"name": "other", "inputType": "text"}]}
    )
    assert dropped.status_code == 422  # the template would name an input that is gone


async def test_prompt_preview_renders_without_writing(client, raw):
    bot = await make_bot(client)
    response = await client.get(
        f"/bots/{bot['id']}/prompt-preview", params={"inputs": '{"topic": "rain", "count": 2}'}
    )
    assert response.status_code == 200, response.text
    assert response.json() == {
        "prompt": "Write 2 lines about rain in Green. Tags: . {literal}",
        "inputs": {"color": "Green", "topic": "rain", "count": 2},
    }
    assert await raw.botrequests.count_documents({}) == 0


@pytest.mark.parametrize(
    ("inputs", "msg"),
    [
        ("not json", "must be a JSON object"),
        ("[1, 2]", "must be a JSON object"),
        ('{"$where": "1"}', "must be a JSON object"),
        ("{}", "input 'topic' is required"),
    ],
)
async def test_prompt_preview_bad_inputs_422(client, inputs, msg):
    bot = await make_bot(client)
    response = await client.get(f"/bots/{bot['id']}/prompt-preview", params={"inputs": inputs})
    assert response.status_code == 422
    assert msg in response.json()["detail"][0]["msg"]


async def test_request_for_bot_without_stored_definitions_keeps_inputs(client, raw):
    bot_id = ObjectId()
    await raw.bots.insert_one({"_id": bot_id, "name": "legacy", "slug": "legacy", "__v": 0})
    response = await client.post(
        "/bot-requests",
        json={"bot": str(bot_id), "success": True, "response": {}, "inputs": {"any": 1}},
    )
    assert response.status_code == 201
    assert response.json()["inputs"] == {"any": 1}
