"""The durable default: the embedded backend kept in a data directory (SQLite underneath).

Restarts keep every record and the development key; one process per directory; a
damaged, foreign or unwritable directory stops start-up in one line; a commit that
cannot be made (a full disk) answers 503 and applies nothing; `botrequests dump` is read
by an independent BSON reader and loaded into a MongoDB wire server by `import`.
"""

import asyncio
import os
import shutil
import socket
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import bson
import httpx
import pytest

from botrequests.app import create_app
from botrequests.config import Settings
from botrequests.storage import datadir
from tests.factories import request_body, seed_world
from tests.servers import ROOT, free_port, served


def durable_settings(directory: Path, **extra: object) -> Settings:
    return Settings(
        BOTREQUESTS_DATA_DIR=str(directory),
        BOTREQUESTS_AUTH="off",
        retention_sweep_seconds=0,
        _env_file=None,
        **extra,
    )


class Running:
    """An app on a data directory, lifespan running, with a client."""

    def __init__(self, directory: Path) -> None:
        self.app = create_app(durable_settings(directory))

    async def __aenter__(self) -> httpx.AsyncClient:
        self._life = self.app.router.lifespan_context(self.app)
        await self._life.__aenter__()
        transport = httpx.ASGITransport(app=self.app)
        self._client = httpx.AsyncClient(transport=transport, base_url="http://test")
        return self._client

    async def __aexit__(self, *exc: object) -> None:
        await self._client.aclose()
        await self._life.__aexit__(*exc)


def cli(
    *args: str, directory: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("MONGODB_", "BOTREQUESTS_"))}
    return subprocess.run(
        [sys.executable, "-m", "botrequests", *args],
        env={**base, "BOTREQUESTS_DATA_DIR": str(directory), **(env or {})},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def one_line(done: subprocess.CompletedProcess) -> str:
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert "Traceback" not in done.stderr
    assert len(lines) == 1, done.stderr
    return lines[0]


# --- restarts ---------------------------------------------------------------------------


def test_restart_keeps_every_record_and_the_development_key(tmp_path):
    with served(auth=True, data_dir=tmp_path) as first:
        headers = {"Authorization": f"Bearer {first.key}"}
        bot = {"name": "Kept", "slug": "kept"}
        world = httpx.post(f"{first.base}/bots", json=bot, headers=headers).json()
        assert "id" in world, world
    keys = tmp_path / datadir.KEY_FILE
    assert stat.S_IMODE(keys.stat().st_mode) == 0o600
    assert first.key in keys.read_text()
    with served(auth=True, data_dir=tmp_path, first=False) as second:
        log = "".join(second.output)
        assert "API key br_" not in log  # printed once, at the first start
        assert f"kept in {keys}" in log
        assert str(tmp_path / datadir.DATABASE_FILE) in log
        headers = {"Authorization": f"Bearer {first.key}"}
        found = httpx.get(f"{second.base}/bots/{world['id']}", headers=headers)
        assert found.status_code == 200, found.text
        assert found.json() == world


async def test_restart_serves_what_was_written_exactly(tmp_path):
    async with Running(tmp_path) as client:
        world = await seed_world(client)
        root = (await client.post("/bot-requests", json=request_body(world))).json()
        body = request_body(world, originalRequest=root["id"], metadata={"n": 2**40})
        followup = (await client.post("/bot-requests", json=body)).json()
        patched = await client.patch(f"/bot-requests/{root['id']}", json={"tags": ["kept"]})
        assert patched.status_code == 200
        feedback = await client.post(f"/bot-requests/{followup['id']}/feedback", json={"score": 1})
        assert feedback.status_code == 201
        before = {
            path: (await client.get(path)).json()
            for path in (
                f"/bot-requests/{root['id']}",
                f"/bot-requests/{followup['id']}",
                f"/bot-requests/{root['id']}/thread",
                "/bot-requests?limit=10",
                f"/bot-requests/stats?organization={world['org']['id']}",
            )
        }
    async with Running(tmp_path) as client:
        for path, answer in before.items():
            again = await client.get(path)
            assert again.status_code == 200, (path, again.text)
            assert again.json() == answer, path


# --- one process per directory, and what serve checks before it prints anything -------


def test_second_process_on_a_data_directory_is_refused_naming_the_holder(tmp_path):
    with served(auth=True, data_dir=tmp_path) as running:
        holder = f"process {running.process.pid} (botrequests serve)"
        again = cli("serve", "--port", str(free_port()), directory=tmp_path)
        assert again.returncode == 2
        line = one_line(again)
        assert holder in line
        assert str(tmp_path) in line
        assert "API key" not in again.stdout + again.stderr
        for command in (
            ["import", str(ROOT / "tests/data/mongoose/organizations.json")],
            ["create-api-key", "--organization", "0" * 24],
            ["purge"],
            ["repair-threads"],
        ):
            refused = cli(*command, directory=tmp_path)
            assert refused.returncode == 2, (command, refused.stderr)
            assert holder in one_line(refused)
        # A dump reads a consistent snapshot beside the running service.
        dumped = cli("dump", str(tmp_path.parent / "beside"), directory=tmp_path)
        assert dumped.returncode == 0, dumped.stderr
        # The running service is untouched.
        assert httpx.get(f"{running.base}/readyz").status_code == 200


def test_serve_on_a_port_in_use_prints_no_key_and_creates_nothing(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = cli("serve", "--port", str(port), directory=tmp_path / "data")
    assert done.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port}" in one_line(done)
    assert "API key" not in done.stdout + done.stderr
    assert not (tmp_path / "data").exists()


# --- directories that cannot be used ------------------------------------------------------


def test_data_directory_that_cannot_be_used_stops_start_up_in_one_line(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("someone's files")
    other_sqlite = tmp_path / "other"
    other_sqlite.mkdir()
    sqlite3.connect(other_sqlite / datadir.DATABASE_FILE).execute("CREATE TABLE t (x)").close()
    cases = [
        (blocker / "data", "cannot create it"),
        (foreign, "holds other files (notes.txt)"),
        (other_sqlite, "another application"),
    ]
    for directory, reason in cases:
        done = cli("serve", "--port", str(free_port()), directory=directory)
        assert done.returncode == 2, done.stderr
        line = one_line(done)
        assert reason in line, line
        assert str(directory) in line, line
        assert "API key" not in done.stdout
    assert sorted(os.listdir(foreign)) == ["notes.txt"]


def test_unwritable_data_directory_is_named(tmp_path):
    directory = tmp_path / "frozen"
    directory.mkdir()
    # Root writes through permission bits: the immutable attribute stops it too.
    if subprocess.run(["chattr", "+i", str(directory)], capture_output=True).returncode != 0:
        directory.chmod(0o500)
        if os.access(directory, os.W_OK):
            pytest.skip("no way to make a directory unwritable here (chattr, permissions)")
    try:
        done = cli("serve", "--port", str(free_port()), directory=directory)
        assert done.returncode == 2
        line = one_line(done)
        assert str(directory) in line, line
        assert "not writable" in line, line
    finally:
        subprocess.run(["chattr", "-i", str(directory)], capture_output=True)
        directory.chmod(0o700)


async def test_damaged_database_file_stops_start_up_with_its_path_and_sqlite_message(tmp_path):
    async with Running(tmp_path) as client:
        world = await seed_world(client)
        for _ in range(30):
            body = request_body(world, response={"text": "x" * 2000})
            assert (await client.post("/bot-requests", json=body)).status_code == 201
    database = tmp_path / datadir.DATABASE_FILE
    size = database.stat().st_size
    assert size > 16 * 4096
    with open(database, "r+b") as damaged:  # every page past the first few: garbage
        damaged.seek(4 * 4096)
        damaged.write(b"\xa5" * (size - 4 * 4096))
    done = cli("serve", "--port", str(free_port()), directory=tmp_path)
    assert done.returncode == 2
    line = one_line(done)
    assert str(database) in line, line
    assert "damaged" in line, line
    assert "malformed" in line or "not a database" in line, line
    # Nothing was changed: the damaged file is left for its owner to restore.
    assert database.stat().st_size == size


def test_import_into_a_throwaway_database_refuses_saying_why(tmp_path):
    done = cli(
        "import",
        str(ROOT / "tests/data/mongoose/organizations.json"),
        directory=tmp_path,
        env={"MONGODB_URI": "mongomock://"},
    )
    assert done.returncode == 2
    line = one_line(done)
    assert "throwaway" in line
    assert "nothing it did would be kept" in line
    assert not tmp_path.joinpath(datadir.DATABASE_FILE).exists()


# --- a commit that cannot be made ---------------------------------------------------------


async def _pages_limit(app, pages: int | None, spare: int = 0) -> None:
    """SQLite's own limit on the file's size (PRAGMA max_page_count; None: its size now,
    and `spare` pages more): past it a commit fails with SQLITE_FULL, "database or disk
    is full", as on a full disk."""

    def limit(connection) -> None:
        current = connection.execute("PRAGMA page_count").fetchone()[0]
        connection.execute(f"PRAGMA max_page_count={pages or current + spare}")

    await asyncio.to_thread(app.state.mongo.holder.durable.call, limit)


async def test_full_disk_on_commit_answers_503_applies_nothing_and_reads_go_on(tmp_path):
    running = Running(tmp_path)
    async with running as client:
        world = await seed_world(client)
        kept = (await client.post("/bot-requests", json=request_body(world))).json()
        await _pages_limit(running.app, None)
        big = request_body(world, response={"text": "y" * 200_000})
        full = await client.post("/bot-requests", json=big)
        assert full.status_code == 503, full.text
        assert "database or disk is full" in full.json()["detail"]
        assert "not applied" in full.json()["detail"]
        batch = await client.post("/bot-requests/batch", json={"items": [big, big]})
        assert batch.status_code == 503
        patch = await client.patch(
            f"/bot-requests/{kept['id']}", json={"response": big["response"]}
        )
        assert patch.status_code == 503
        # Reads are served, and none of it is there.
        listed = await client.get("/bot-requests")
        assert listed.status_code == 200
        assert [item["id"] for item in listed.json()["items"]] == [kept["id"]]
        assert (await client.get(f"/bot-requests/{kept['id']}")).json() == kept
        await _pages_limit(running.app, 1_000_000)
        later = await client.post("/bot-requests", json=big)
        assert later.status_code == 201
    async with Running(tmp_path) as client:
        listed = (await client.get("/bot-requests")).json()["items"]
        assert [item["id"] for item in listed] == [later.json()["id"], kept["id"]]
        assert (await client.get(f"/bot-requests/{kept['id']}")).json() == kept


async def test_concurrent_writes_on_a_full_disk_are_each_kept_or_answered_503(tmp_path):
    """Writes that queue behind a failing commit were made on top of it: undone with it.
    Whatever the timing, each write answered 201 is there after a restart, each 503 is not,
    and memory agrees with the disk meanwhile."""
    running = Running(tmp_path)
    async with running as client:
        world = await seed_world(client)
        await _pages_limit(running.app, None, spare=60)  # room for some of them
        bodies = [
            request_body(world, requestKey=f"w{n}", response={"text": "z" * (n % 3) * 90_000})
            for n in range(24)
        ]
        answers = await asyncio.gather(*(client.post("/bot-requests", json=b) for b in bodies))
        assert {answer.status_code for answer in answers} <= {201, 503}
        assert 503 in {answer.status_code for answer in answers}
        kept = {a.json()["id"] for a in answers if a.status_code == 201}
        listed = (await client.get("/bot-requests?limit=100")).json()["items"]
        assert {item["id"] for item in listed} == kept
        await _pages_limit(running.app, 1_000_000)
        retried = [b for b, a in zip(bodies, answers, strict=True) if a.status_code == 503]
        again = await asyncio.gather(*(client.post("/bot-requests", json=b) for b in retried))
        assert {answer.status_code for answer in again} == {201}
        kept |= {answer.json()["id"] for answer in again}
    async with Running(tmp_path) as client:
        listed = (await client.get("/bot-requests?limit=100")).json()["items"]
        assert {item["id"] for item in listed} == kept
        assert len(kept) == len(bodies)


# --- dump, read back, and moved to a MongoDB server --------------------------------------


async def test_dump_is_read_by_bson_and_imported_into_the_wire_server(tmp_path, wire):
    from pymongo import MongoClient

    from tests.conftest import REAL_MONGODB_URI

    if wire is None and not REAL_MONGODB_URI:
        pytest.skip("needs the wire lane's server")
    data = tmp_path / "data"
    running = Running(data)
    async with running as client:
        world = await seed_world(client)
        root = (await client.post("/bot-requests", json=request_body(world))).json()
        body = request_body(world, originalRequest=root["id"])
        assert (await client.post("/bot-requests", json=body)).status_code == 201
        assert (
            await client.post(f"/bot-requests/{root['id']}/feedback", json={"score": -1})
        ).status_code == 201
        database = running.app.state.mongo["botrequests"]
        stored = {
            name: await database[name].find({}).to_list(None)
            for name in await database.list_collection_names()
        }
        stored_indexes = {name: await database[name].index_information() for name in stored}
    target = tmp_path / "dump"
    done = cli("dump", str(target), directory=data)
    assert done.returncode == 0, done.stderr
    for name, documents in stored.items():
        if not documents and not (target / "botrequests" / f"{name}.bson").exists():
            continue
        with open(target / "botrequests" / f"{name}.bson", "rb") as handle:
            read = list(bson.decode_file_iter(handle, bson.CodecOptions(tz_aware=True)))
        assert read == documents, name
    uri = REAL_MONGODB_URI or wire.uri
    name = f"moved_{os.getpid()}"
    server = MongoClient(uri, tz_aware=True)
    try:
        server.drop_database(name)
        imported = cli(
            "import",
            str(target),
            directory=data,
            env={"MONGODB_URI": uri, "MONGODB_DATABASE": name},
        )
        assert imported.returncode == 0, imported.stdout + imported.stderr
        for collection, documents in stored.items():
            found = list(server[name][collection].find({}).sort("_id", 1))
            assert found == sorted(documents, key=lambda d: d["_id"]), collection
            indexes = server[name][collection].index_information()
            for index, spec in stored_indexes[collection].items():
                assert index in indexes, (collection, index)
                assert list(indexes[index]["key"]) == list(spec["key"]), (collection, index)
                assert bool(indexes[index].get("unique")) == bool(spec.get("unique"))
    finally:
        server.drop_database(name)
        server.close()
    shutil.rmtree(target)
