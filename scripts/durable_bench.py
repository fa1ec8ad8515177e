"""What keeping the embedded backend on disk costs: the durable default against the same
backend in memory (`MONGODB_URI=mongomock://`), measured in one run.

    python scripts/durable_bench.py               # about three minutes
    python scripts/durable_bench.py --docs        # also writes docs/benchmarks.md
    python scripts/durable_bench.py --smoke       # tiny sizes, used by the test suite

Throughput of single `POST /bot-requests` and of `POST /bot-requests/batch` with 1 000
items, driven by `wrk` (one thread, 8 connections, a Lua script posting the body) against
`botrequests serve` (one worker, logs at warning) on a data directory on this machine's
disk, and on the in-memory backend, alternating, the median of the rounds; every write
on disk is committed (fsync, `synchronous=FULL`) before it is answered. Then start-up
with 100 000 stored requests (time until `/readyz` answers 200, and the process's peak
memory), and the data directory's size against the BSON size of the documents it holds.
"""

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import bson
import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from scripts import docs_table  # noqa: E402
from tests.servers import served  # noqa: E402

POST_JSON = 'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'


def wrk_post(url: str, payload: dict, seconds: float) -> float:
    """Requests/s of `wrk` posting `payload` to `url` (every answer must be 2xx)."""
    return wrk_script(url, POST_JSON + f"wrk.body = [==[{json.dumps(payload)}]==]\n", seconds)


def wrk_script(url: str, lua: str, seconds: float) -> float:
    """Requests/s of `wrk` (one thread, 8 connections) running the Lua script `lua`
    against `url` (every answer must be 2xx)."""
    return float(wrk_run(url, lua, seconds).split("Requests/sec:")[1].split()[0])


def wrk_run(url: str, lua: str, seconds: float) -> str:
    """`wrk`'s report (one thread, 8 connections, the Lua script `lua`); every answer 2xx."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(lua)
    try:
        out = subprocess.run(
            ["wrk", "-t1", "-c8", f"-d{max(1, round(seconds))}s", "-s", script.name, url],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    finally:
        os.unlink(script.name)
    if "Non-2xx" in out or "Requests/sec" not in out:
        raise RuntimeError(f"wrk against {url}:\n{out}")
    return out


def world(base: str) -> dict[str, str]:
    """An organization, a user and a bot; what a request body names."""
    with httpx.Client(base_url=base, timeout=60) as http:
        org = http.post("/organizations", json={"name": "Bench"}).json()["id"]
        user = http.post("/users", json={"name": "U", "organization": org}).json()["id"]
        bot = http.post("/bots", json={"name": "B", "slug": "b", "organization": org}).json()
    return {"org": org, "user": user, "bot": bot["id"]}


def body(names: dict[str, str], n: int = 0) -> dict:
    return {
        "bot": names["bot"],
        "organization": names["org"],
        "createdBy": names["user"],
        "ip": "192.0.2.1",
        "success": True,
        "metadata": {"question": f"What is the answer to question {n}?"},
        "response": {"message": "The answer is 42, as it was before. " * 4},
        "usage": {"model": "gpt-4o-mini", "promptTokens": 120, "completionTokens": 40},
    }


def throughput(memory: bool, seconds: float, batch: int) -> tuple[float, float]:
    """(single POSTs/s, batch items/s) on a fresh service."""
    with (
        tempfile.TemporaryDirectory(prefix="durable-bench-", dir=Path.home()) as data,
        served(data_dir=None if memory else Path(data), memory=memory) as server,
    ):
        names = world(server.base)
        single = wrk_post(f"{server.base}/bot-requests", body(names), seconds)
        items = {"items": [body(names, n) for n in range(batch)]}
        # Three times as long: a batch takes a third of a second, and a count of a dozen
        # answers would move by a tenth with one more.
        batches = wrk_post(f"{server.base}/bot-requests/batch", items, seconds * 3)
    return single, batches * batch


def stored(directory: Path, requests: int) -> int:
    """A data directory holding `requests` requests (written through the service's own
    storage layer in chunks, as an import is); the BSON bytes of all its documents."""
    from botrequests.app import create_app
    from botrequests.config import Settings
    from botrequests.documents import BotRequest
    from botrequests.storage import db

    async def fill() -> int:
        settings = Settings(
            BOTREQUESTS_DATA_DIR=str(directory),
            BOTREQUESTS_AUTH="off",
            retention_sweep_seconds=0,
            _env_file=None,
        )
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://b") as http:
                org = (await http.post("/organizations", json={"name": "Big"})).json()["id"]
                user = (await http.post("/users", json={"name": "U", "organization": org})).json()
                bot = {"name": "B", "slug": "b", "organization": org}
                bot_id = (await http.post("/bots", json=bot)).json()["id"]
                names = {"org": org, "user": user["id"], "bot": bot_id}
                first = await http.post("/bot-requests", json=body(names))
                template = await db.find_raw(
                    BotRequest, {"_id": bson.ObjectId(first.json()["id"])}, {}
                )
            chunk = 10_000
            for start in range(1, requests, chunk):
                docs = []
                for n in range(start, min(start + chunk, requests)):
                    doc = dict(template[0], _id=bson.ObjectId())
                    doc["metadata"] = {"question": f"What is the answer to question {n}?"}
                    docs.append(doc)
                await db.insert_raw(BotRequest, docs)
            database = app.state.mongo[settings.mongodb_database]
            total = 0
            for name in await database.list_collection_names():
                async for doc in database[name].find({}):
                    total += len(bson.encode(doc))
            return total

    return asyncio.run(fill())


def start_up(directory: Path) -> tuple[float, float]:
    """Seconds from `botrequests serve` to `/readyz` 200 on `directory`, and peak RSS (MiB)."""
    began = time.monotonic()
    with served(data_dir=directory, first=False) as server:
        seconds = time.monotonic() - began
        status = Path(f"/proc/{server.process.pid}/status").read_text()
        peak = next(line for line in status.splitlines() if line.startswith("VmHWM"))
    return seconds, int(peak.split()[1]) / 1024


def size_on_disk(directory: Path) -> int:
    return sum(path.stat().st_size for path in directory.iterdir() if path.is_file())


def _n(value: float) -> str:
    return f"{value:,.0f}".replace(",", " ")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes (the test suite)")
    docs_table.add_argument(parser)
    args = parser.parse_args()
    if args.smoke:
        args.rounds, args.seconds, args.requests = 1, 1, 300
    if shutil.which("wrk") is None:
        raise SystemExit("durable_bench.py needs wrk (Debian: apt-get install wrk)")
    os.environ["LOG_LEVEL"] = "warning"  # no log line per request
    batch = 50 if args.smoke else 1000
    rounds: dict[bool, list[tuple[float, float]]] = {True: [], False: []}
    for _ in range(args.rounds):
        for memory in (True, False):  # alternating: the machine's drift hits both
            rounds[memory].append(throughput(memory, args.seconds, batch))
    median = {
        memory: tuple(statistics.median(run[i] for run in runs) for i in (0, 1))
        for memory, runs in rounds.items()
    }
    with tempfile.TemporaryDirectory(prefix="durable-bench-big-", dir=Path.home()) as big:
        directory = Path(big)
        documents = stored(directory, args.requests)
        seconds, peak = start_up(directory)
        on_disk = size_on_disk(directory)
    single_disk, batch_disk = median[False]
    single_memory, batch_memory = median[True]
    rows = [
        ("single `POST /bot-requests` (requests/s)", single_memory, single_disk, "≥ 70 %"),
        (f"`POST /bot-requests/batch` of {batch} (items/s)", batch_memory, batch_disk, "≥ 90 %"),
    ]
    lines = [
        "| what | in memory (`mongomock://`) | on disk (the default) | on disk / in memory "
        "| target |",
        "|---|---:|---:|---:|---|",
    ]
    for what, memory_value, disk_value, target in rows:
        lines.append(
            f"| {what} | {_n(memory_value)} | {_n(disk_value)} | "
            f"{disk_value / memory_value:.0%} | {target} |"
        )
    lines += [
        "",
        f"| with {_n(args.requests)} requests stored | figure | target |",
        "|---|---:|---|",
        f"| start-up until `/readyz` answers 200 | {seconds:.1f} s | ≤ 10 s |",
        f"| the process's peak memory after start-up | {_n(peak)} MiB | |",
        f"| data directory / the documents' BSON | {on_disk / 2**20:.1f} MiB / "
        f"{documents / 2**20:.1f} MiB = {on_disk / documents:.2f}× | ≤ 2× |",
    ]
    table = "\n".join(lines)
    print(table)
    if args.docs:
        docs_table.write("durable", table, args.docs)


if __name__ == "__main__":
    main()
