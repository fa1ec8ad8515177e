"""Benchmark: where the time goes, against the naive ways of doing the same work.

    python scripts/bench.py            # embedded backend (mongomock), about two minutes
    python scripts/bench.py --backend wire   # a SecantusDB server it starts (test extra)
    MONGODB_URI=mongodb://... python scripts/bench.py   # a real server (database bench_*)
    python scripts/bench.py --smoke    # tiny sizes, used by the test suite

Prints one table: single POSTs vs a batch, a populated page of 100 vs fetching each
reference one by one (and vs the same page unpopulated), a thread of depth 200 via the
thread endpoint vs walking `originalRequest` one query at a time, and p50/p99 latency of
`GET /bot-requests/{id}` under load from `wrk` against `botrequests serve` vs a bare
FastAPI endpoint serving the same JSON from memory (`scripts/latency.py` has the fuller
table: pages, access control on). On a
server, round trips are counted twice: by the driver's command listener and by the
server's own `serverStatus.opcounters`. On the embedded backend, how a read's cost grows
with the stored data (`scripts/growth.py` has the fuller table).
"""

import argparse
import asyncio
import logging
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from botrequests.app import create_app  # noqa: E402
from botrequests.config import Settings  # noqa: E402
from botrequests.documents import Bot, BotRequest, File, Invoice, Organization, User  # noqa: E402
from botrequests.serialize import dump, dump_bot  # noqa: E402
from botrequests.storage import db  # noqa: E402
from scripts import docs_table, latency  # noqa: E402

ROWS: list[tuple[str, str, str, str]] = []
SERVER_OPS: dict[str, Any] = {"uri": None}  # set when the server's own counters are read


def server_ops() -> int | None:
    """The server's operation count so far (serverStatus.opcounters), or None."""
    if SERVER_OPS["uri"] is None:
        return None
    if "probe" not in SERVER_OPS:
        from pymongo import MongoClient

        # One connection kept open, heartbeats rare: its own traffic stays out of the count.
        SERVER_OPS["probe"] = MongoClient(SERVER_OPS["uri"], heartbeatFrequencyMS=600_000)
        SERVER_OPS["probe"].admin.command("ping")
    counters = SERVER_OPS["probe"].admin.command("serverStatus")["opcounters"]
    return sum(int(v) for v in counters.values())


def trips(listener: int, before: int | None) -> str:
    """Round trips as the driver counted them, and as the server did (less the
    serverStatus read itself)."""
    after = server_ops()
    if before is None or after is None:
        return f"{listener} trips"
    return f"{listener} trips (server: {after - before - 1})"


def row(name: str, value: str, trips: str = "", note: str = "") -> None:
    ROWS.append((name, value, trips, note))
    print(f"  {name}: {value} {trips} {note}", file=sys.stderr, flush=True)


@contextmanager
def timed() -> Any:
    box = {"seconds": 0.0}
    start = time.perf_counter()
    yield box
    box["seconds"] = time.perf_counter() - start


async def world(client: httpx.AsyncClient, tag: str) -> dict[str, dict]:
    async def post(path: str, body: dict) -> dict:
        response = await client.post(path, json=body)
        response.raise_for_status()
        return response.json()

    org = await post("/organizations", {"name": "Bench"})
    user = await post("/users", {"name": "Ada", "organization": org["id"]})
    color = {"name": "color", "inputType": "text", "required": True, "defaultValue": "Green"}
    bots = [
        await post(
            "/bots",
            {"name": f"bot {i}", "slug": f"{tag}-bot-{i}", "creditCost": i, "inputs": [color]},
        )
        for i in range(5)
    ]
    files = [await post("/files", {"fileName": f"f{i}", "s3Key": f"k{i}"}) for i in range(5)]
    invoice = await post("/invoices", {"organization": org["id"], "credits": 5, "status": "paid"})
    return {"org": org, "user": user, "bots": bots, "files": files, "invoice": invoice}


def body(w: dict, i: int, **extra: Any) -> dict:
    return {
        "bot": w["bots"][i % 5]["id"],
        "createdBy": w["user"]["id"],
        "organization": w["org"]["id"],
        "images": [w["files"][i % 5]["id"]],
        "invoice": w["invoice"]["id"],
        "inputs": {"color": "Blue"},
        "ip": "10.0.0.1",
        "success": i % 4 != 0,
        "response": {"text": "x" * 200, "i": i},
        **extra,
    }


async def bench_ingest(client: httpx.AsyncClient, w: dict, n: int) -> None:
    with timed() as single:
        for i in range(n):
            (await client.post("/bot-requests", json=body(w, i))).raise_for_status()
    batch_size = min(1000, n * 10)
    batches = max(1, (n * 10) // batch_size)
    with timed() as batched:
        for b in range(batches):
            items = [body(w, b * batch_size + i) for i in range(batch_size)]
            response = await client.post("/bot-requests/batch", json={"items": items})
            assert response.json()["created"] == batch_size
    single_rps = n / single["seconds"]
    batch_rps = batches * batch_size / batched["seconds"]
    row("single POST /bot-requests (HTTP)", f"{single_rps:,.0f} req/s", "", f"{n} requests")
    row(
        "POST /bot-requests/batch (HTTP)",
        f"{batch_rps:,.0f} req/s",
        "",
        f"{batches} x {batch_size} items; {batch_rps / single_rps:.1f}x single",
    )


async def naive_page(limit: int) -> list[dict]:
    """The naive way to the same JSON: the page, then each reference of each request
    fetched by itself (whole records, no projection)."""
    docs = await BotRequest.find().sort([("createdAt", -1), ("_id", -1)]).limit(limit).to_list()
    return [await naive_populate(doc) for doc in docs]


async def naive_populate(doc: BotRequest) -> dict:
    """One request served populated, each reference fetched by itself."""
    out = dump(doc)
    for path, model in (("bot", Bot), ("createdBy", User), ("organization", Organization)):
        ref = getattr(doc, path)
        found = await model.get(ref) if ref is not None else None
        if found is not None:
            full = dump_bot(found) if path == "bot" else dump(found)
            keep = ("creditCost", "inputs", "name", "slug") if path == "bot" else ("name",)
            out[path] = {k: full[k] for k in (*keep, "id") if k in full}
    out["images"] = [dump(await File.get(image)) for image in doc.images or []]
    if doc.invoice is not None:
        out["invoice"] = dump(await Invoice.get(doc.invoice))
    return out


async def bench_page(client: httpx.AsyncClient, repeat: int) -> None:
    async def page(params: dict) -> tuple[float, str]:
        times = []
        for _ in range(repeat):
            before = server_ops()
            with db.count_round_trips() as counter, timed() as t:
                response = await client.get("/bot-requests", params={"limit": 100, **params})
                assert len(response.json()["items"]) == 100
            times.append(t["seconds"])
        return statistics.median(times), trips(counter.count, before)

    populated, populated_trips = await page({})
    same = (await client.get("/bot-requests", params={"limit": 100})).json()["items"]
    assert await naive_page(100) == same, "the naive way must build the same JSON"
    bare, bare_trips = await page({"populate": "none"})
    naive_times = []
    for _ in range(repeat):
        before = server_ops()
        with db.count_round_trips() as counter, timed() as t:
            await naive_page(100)
        naive_times.append(t["seconds"])
    naive = statistics.median(naive_times)
    row(
        "page of 100, populated",
        f"{populated * 1000:.1f} ms",
        populated_trips,
        f"{populated / bare:.2f}x unpopulated",
    )
    row("page of 100, unpopulated", f"{bare * 1000:.1f} ms", bare_trips)
    row(
        "page of 100, naive population",
        f"{naive * 1000:.1f} ms",
        trips(counter.count, before),
        f"{naive / populated:.1f}x slower than populated",
    )


async def bench_thread(client: httpx.AsyncClient, w: dict, depth: int, repeat: int) -> None:
    items = []
    parent = None
    for i in range(depth + 1):
        response = await client.post("/bot-requests", json=body(w, i, originalRequest=parent))
        parent = response.json()["id"]
        items.append(parent)
    leaf = items[-1]
    times = []
    for _ in range(repeat):
        before = server_ops()
        with db.count_round_trips() as counter, timed() as t:
            response = await client.get(f"/bot-requests/{leaf}/thread")
            assert len(response.json()["items"]) == depth + 1
        times.append(t["seconds"])
    endpoint, endpoint_trips = statistics.median(times), trips(counter.count, before)
    naive_times = []
    for _ in range(repeat):
        before = server_ops()
        with db.count_round_trips() as walk, timed() as t:
            doc = await BotRequest.get(leaf)
            chain = [await naive_populate(doc)]
            while doc is not None and doc.originalRequest is not None:
                doc = await BotRequest.get(doc.originalRequest)
                chain.append(await naive_populate(doc))
            assert len(chain) == depth + 1
        naive_times.append(t["seconds"])
    naive = statistics.median(naive_times)
    row(
        f"thread of depth {depth}, endpoint (populated)",
        f"{endpoint * 1000:.1f} ms",
        endpoint_trips,
    )
    row(
        f"thread of depth {depth}, walk originalRequest",
        f"{naive * 1000:.1f} ms",
        trips(walk.count, before),
        "one query per step, each reference fetched by itself",
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start(args: list[str], port: int, env: dict) -> subprocess.Popen:
    process = subprocess.Popen(
        args, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    for _ in range(200):
        try:
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
            return process
        except httpx.TransportError:
            time.sleep(0.05)
    process.kill()
    raise RuntimeError(f"server on port {port} did not start")


async def bench_served(seconds: float, ingest: int) -> None:
    """Against `botrequests serve` over real HTTP, as bot products call it: ingest (single
    POSTs one after another vs batches), then GET latency under load from `wrk` (or, if
    it is not installed, separate client processes: a floor; `scripts/latency.py`)."""
    generate, method = latency.load_generator()
    env = dict(os.environ)
    env["LOG_LEVEL"] = "warning"
    env["BOTREQUESTS_AUTH"] = "off"
    # The embedded backend in memory, as in-process: scripts/durable_bench.py measures
    # what keeping it on disk adds.
    env["MONGODB_URI"] = env.get("MONGODB_URI") or "mongomock://"
    port = free_port()
    server = start([sys.executable, "-m", "botrequests", "serve", "--port", str(port)], port, env)
    base = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=base, timeout=60) as client:
            w = await world(client, f"lat{port}")
            created = (await client.post("/bot-requests", json=body(w, 1))).json()
            served = (await client.get(f"/bot-requests/{created['id']}")).content
        url = f"{base}/bot-requests/{created['id']}"
        generate(url, {}, 1)  # warm up
        ours = generate(url, {}, seconds)
        # After the latency run, so that its GETs read the same small collection on every
        # backend and in every run.
        async with httpx.AsyncClient(base_url=base, timeout=60) as client:
            await bench_ingest(client, w, ingest)
    finally:
        server.terminate()
        server.wait()
    with tempfile.NamedTemporaryFile("wb", suffix=".json", delete=False) as payload:
        payload.write(served)
    bare_port = free_port()
    env["BENCH_PAYLOAD"] = payload.name
    bare = start(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "scripts.bare_app:app",
            "--port",
            str(bare_port),
            "--log-level",
            "warning",
        ],
        bare_port,
        env,
    )
    try:
        generate(f"http://127.0.0.1:{bare_port}/same", {}, 1)
        ceiling = generate(f"http://127.0.0.1:{bare_port}/same", {}, seconds)
    finally:
        bare.terminate()
        bare.wait()
        os.unlink(payload.name)
    row(
        "GET /bot-requests/{id}, botrequests serve",
        f"p50 {ours.p50:.2f} ms, p99 {ours.p99:.2f} ms, {ours.rps:,.0f} req/s",
        "",
        method,
    )
    row(
        "same JSON from a bare FastAPI endpoint",
        f"p50 {ceiling.p50:.2f} ms, p99 {ceiling.p99:.2f} ms, {ceiling.rps:,.0f} req/s",
        "",
        f"p50 ratio {ours.p50 / ceiling.p50:.2f}x, req/s ratio {ceiling.rps / ours.rps:.2f}x",
    )


async def bench_growth(sizes: list[int]) -> None:
    """The embedded backend's cost as its data grows: a GET by id and a filtered page.
    Measured in one process, at each size in turn."""
    settings = Settings(
        mongodb_uri="mongomock://",
        mongodb_database="growth",
        BOTREQUESTS_AUTH="off",
        LOG_LEVEL="warning",
        _env_file=None,
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://growth") as client:
            w = await world(client, "growth")
            stored = 0
            for size in sizes:
                while stored < size:
                    count = min(1000, size - stored)
                    items = [body(w, stored + i) for i in range(count)]
                    response = await client.post("/bot-requests/batch", json={"items": items})
                    assert response.json()["created"] == count
                    stored += count
                one = (await client.get("/bot-requests", params={"limit": 1})).json()["items"][0]
                gets, pages = [], []
                for _ in range(5):
                    with timed() as t:
                        (await client.get(f"/bot-requests/{one['id']}")).raise_for_status()
                    gets.append(t["seconds"])
                    with timed() as t:
                        params = {"limit": 100, "bot": w["bots"][0]["id"]}
                        (await client.get("/bot-requests", params=params)).raise_for_status()
                    pages.append(t["seconds"])
                row(
                    f"embedded, {size:,} requests stored",
                    f"GET by id {statistics.median(gets) * 1000:.1f} ms",
                    "",
                    f"filtered page of 100 {statistics.median(pages) * 1000:.1f} ms",
                )


async def main(smoke: bool, backend: str, docs: Path | None) -> None:
    if docs is not None and backend != "wire" and os.environ.get("MONGODB_URI"):
        raise SystemExit("--docs writes the embedded or the wire table: unset MONGODB_URI")
    if backend == "wire":
        sys.path.insert(0, str(ROOT))
        from tests.wire import wire_server

        with wire_server() as server:
            os.environ["MONGODB_URI"] = server.uri  # for `botrequests serve` too
            SERVER_OPS["uri"] = server.uri
            table = await run(smoke, f"SecantusDB {server_version(server.uri)} (wire protocol)")
    else:
        name = "MongoDB" if os.environ.get("MONGODB_URI") else "embedded (mongomock)"
        table = await run(smoke, name)
    if docs is not None:
        docs_table.write(f"bench-{backend}", table, docs)


def server_version(uri: str) -> str:
    from pymongo import MongoClient

    with MongoClient(uri) as probe:
        info = probe.admin.command("buildInfo")
    return str(info.get("secantusVersion", info["version"]))


async def run(smoke: bool, backend: str) -> str:
    uri = os.environ.get("MONGODB_URI", "")
    # Access control off: an API key adds one indexed lookup (one round trip) per call.
    settings = Settings(
        mongodb_uri=uri or "mongomock://",
        mongodb_database=f"bench_{os.getpid()}",
        BOTREQUESTS_AUTH="off",
        _env_file=None,
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            w = await world(client, "bench")
            for i in range(150 if smoke else 3000):  # a collection to page through
                (await client.post("/bot-requests", json=body(w, i))).raise_for_status()
            await bench_page(client, 1 if smoke else 15)
            await bench_thread(client, w, 5 if smoke else 200, 1 if smoke else 5)
        if uri:
            await app.state.mongo.drop_database(settings.mongodb_database)
    await bench_served(1 if smoke else 6, 10 if smoke else 300)
    if not uri:
        await bench_growth([100, 300] if smoke else [1_000, 10_000, 30_000])

    lines = [
        f"botrequests benchmark — backend: {backend}; {platform.machine()}, "
        f"{os.cpu_count()} cores, Python {platform.python_version()}",
        "",
        "| what | result | round trips | note |",
        "|---|---|---|---|",
        *(f"| {name} | {value} | {trips} | {note} |" for name, value, trips, note in ROWS),
    ]
    print("\n" + "\n".join(lines))
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, no meaningful timing")
    parser.add_argument(
        "--backend",
        choices=["embedded", "wire"],
        default="embedded",
        help="wire: start a SecantusDB server (pip install -e '.[test]') and run against it; "
        "MONGODB_URI=... runs against any other server",
    )
    docs_table.add_argument(parser)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one log line per request skews timing
    arguments = parser.parse_args()
    asyncio.run(main(arguments.smoke, arguments.backend, arguments.docs))
