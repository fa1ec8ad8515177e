"""Regression tests for the second attack review (issue 27): each finding has its tests
here, or in the module named beside it (erasure and retention races:
tests/test_erasure_races.py; slow clients: tests/test_slow_clients.py)."""

import csv
import io
import json
from datetime import timedelta

import pytest
from bson import ObjectId

from botrequests import analytics, auth, db, retention
from botrequests.timeutil import now
from tests.test_access import ADMIN, records_of, tenant
from tests.test_scopes import keys_of_every_scope

# --- 1. an ingest key's writes answer what it sent, never what it may not read ------------


async def test_ingest_key_write_answers_only_what_it_sent(client, secured):
    org, headers = await keys_of_every_scope(client)
    full = headers["full"]
    mine = await records_of(client, {"org": org, "headers": full})
    bot = await client.post(
        "/bots",
        json={
            "name": "Secret bot",
            "slug": "t",
            "creditCost": 7,
            "promptTemplate": "Say {x}",
            "inputs": [{"inputType": "text", "label": "X", "name": "x"}],
        },
        headers=full,
    )
    body = {
        "bot": bot.json()["id"],
        "createdBy": mine["users"]["id"],
        "images": [mine["files"]["id"]],
        "invoice": mine["invoices"]["id"],
        "inputs": {"x": "hi"},
        "success": True,
        "response": {"text": "hello"},
    }
    made = await client.post("/bot-requests", json=body, headers=headers["ingest"])
    assert made.status_code == 201, made.text
    answer = made.json()
    assert set(answer) == {*body, "ip", "id", "createdAt", "updatedAt"}
    for path in ("bot", "createdBy", "invoice"):
        assert answer[path] == body[path]  # ids, never the records they name
    assert answer["images"] == body["images"]
    for secret in ("Secret bot", "Say", "creditCost", "fileName", '"credits"', '"name"'):
        assert secret not in made.text
    # The full key reads what was stored: the prompt and credits came from the bot.
    stored = (await client.get(f"/bot-requests/{answer['id']}", headers=full)).json()
    assert stored["prompt"] == "Say hi" and stored["credits"] == 7


async def test_ingest_key_patch_answers_no_stored_content(client, secured):
    org, headers = await keys_of_every_scope(client)
    theirs = await records_of(client, {"org": org, "headers": headers["full"]})
    target = theirs["bot-requests"]["id"]
    for change in ({}, {"success": False}):
        patched = await client.patch(
            f"/bot-requests/{target}", json=change, headers=headers["ingest"]
        )
        assert patched.status_code == 200, patched.text
        assert set(patched.json()) == {*change, "id", "createdAt", "updatedAt"}
        assert org["name"] not in patched.text and "secret" not in patched.text
    # A full key's PATCH answers the populated request, as before.
    again = await client.patch(f"/bot-requests/{target}", json={}, headers=headers["full"])
    assert again.json()["response"] == {"secret": org["name"]}


# --- 11. CSV cells: formulas behind characters a spreadsheet skips ------------------------

HIDDEN_FORMULAS = [
    "=1+1",
    "\x00=1+1",
    " =1+1",
    "\n=1+1",
    "\u200b=1+1",
    "\ufeff@SUM(A1)",
    "\u00a0\u200d+1",
    "\t-1",
]


def test_csv_cell_neutralises_formulas_after_unseen_characters():
    fields = ("userName", "botName", "sessionKey", "model", "tags")
    for text in HIDDEN_FORMULAS:
        item = {
            "id": "x",
            "bot": {"id": "b", "name": text},
            "createdBy": {"id": "u", "name": text},
            "sessionKey": text,
            "usage": {"model": text},
            "tags": [text],
            "success": True,
        }
        text_out = analytics.csv_rows([item], header=True).decode()
        row = next(csv.DictReader(io.StringIO(text_out)))
        for field in fields:
            assert row[field].startswith("'"), (field, text)
            assert row[field][1:] == text.replace("\r\n", "\n"), (field, text)
        assert row["success"] == "true"
    for harmless in ("hello", " x", "\u200bx=1", "a=b", ""):
        assert analytics._cell(harmless) == harmless


async def test_export_csv_neutralises_hidden_formula_in_session_key(client):
    from tests.factories import record, seed_world

    world = await seed_world(client)
    made = await record(client, world, sessionKey="\u200b=HYPERLINK(1)")
    rows = list(
        csv.DictReader(
            io.StringIO((await client.get("/bot-requests/export", params={"format": "csv"})).text)
        )
    )
    assert [row["sessionKey"] for row in rows if row["id"] == made["id"]] == [
        "'\u200b=HYPERLINK(1)"
    ]
