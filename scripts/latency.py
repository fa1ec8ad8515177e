"""Latency under load, measured with a load generator that is not the bottleneck.

    python scripts/latency.py                # wrk if installed, three alternating rounds
    python scripts/latency.py --rounds 1 --seconds 2   # quicker, noisier

`botrequests serve` (embedded backend, one uvicorn worker, logs at warning) against a bare
FastAPI endpoint (`scripts/bare_app.py`, one uvicorn worker) serving the very bytes the
service answered, from memory. Cases: a populated `GET /bot-requests/{id}` and a populated
page of 100, each with access control off and on (a key lookup per call); and the
service's stack alone (`scripts/floor_app.py`: its middleware, routing and dependencies
answering the GET's bytes with no database, population or serializer), which splits the
gap between the framework and the service's own work. Each round runs every case against
the bare endpoint, alternating; the table gives the median over rounds of p50, p99 and
requests/s, and the ratios case / bare.

The load generator is `wrk` (Debian: `apt-get install wrk`): one thread, 8 connections. If
it is missing, a fallback of separate Python processes drives the load and the table says
its figures are a floor (the client's own cost is in them on both sides).
"""

import argparse
import json
import multiprocessing
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from scripts import docs_table  # noqa: E402
from tests.servers import free_port, served  # noqa: E402

CONNECTIONS = 8


@dataclass
class Run:
    p50: float  # ms
    p99: float  # ms
    rps: float


def _ms(text: str) -> float:
    value = float(re.match(r"[\d.]+", text).group())  # type: ignore[union-attr]
    unit = text[len(re.match(r"[\d.]+", text).group()) :]  # type: ignore[union-attr]
    return value * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}[unit]


def wrk(url: str, headers: dict[str, str], seconds: float) -> Run:
    args = ["wrk", "-t1", f"-c{CONNECTIONS}", f"-d{max(1, round(seconds))}s", "--latency"]
    for name, value in headers.items():
        args += ["-H", f"{name}: {value}"]
    out = subprocess.run([*args, url], capture_output=True, text=True, check=True).stdout
    p50 = re.search(r"^\s+50%\s+(\S+)", out, re.M)
    p99 = re.search(r"^\s+99%\s+(\S+)", out, re.M)
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors or not (p50 and p99 and rps):
        raise RuntimeError(f"wrk against {url}:\n{out}")
    return Run(_ms(p50.group(1)), _ms(p99.group(1)), float(rps.group(1)))


def _client(
    url: str, headers: dict[str, str], seconds: float, queue: multiprocessing.Queue
) -> None:
    latencies = []
    with httpx.Client(headers=headers, timeout=30) as http:
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            begin = time.perf_counter()
            http.get(url).raise_for_status()
            latencies.append(time.perf_counter() - begin)
    queue.put(latencies)


def processes(url: str, headers: dict[str, str], seconds: float) -> Run:
    """The fallback: one Python process per connection, each a blocking client."""
    queue: multiprocessing.Queue = multiprocessing.Queue()
    workers = [
        multiprocessing.Process(target=_client, args=(url, headers, seconds, queue))
        for _ in range(CONNECTIONS)
    ]
    for worker in workers:
        worker.start()
    latencies = sorted(x for _ in workers for x in queue.get())
    for worker in workers:
        worker.join()
    pick = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000  # noqa: E731
    return Run(pick(0.5), pick(0.99), len(latencies) / seconds)


@contextmanager
def fixed(payload: bytes, app: str, path: str) -> Iterator[str]:
    """A uvicorn process (one worker, logs at warning) of `app`, which serves `payload`
    at `path`; its URL."""
    with tempfile.NamedTemporaryFile("wb", suffix=".json", delete=False) as file:
        file.write(payload)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MONGODB_", "BOTREQUESTS_"))}
    env |= {"BENCH_PAYLOAD": file.name, "BOTREQUESTS_AUTH": "off"}
    args = ["-m", "uvicorn", app, "--port", str(port), "--log-level", "warning"]
    process = subprocess.Popen([sys.executable, *args], cwd=ROOT, env=env)
    url = f"http://127.0.0.1:{port}{path}"
    try:
        for _ in range(200):
            try:
                if httpx.get(url, timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        yield url
    finally:
        process.terminate()
        process.wait()
        os.unlink(file.name)


def bare(payload: bytes) -> Any:
    """A bare FastAPI endpoint serving `payload` (scripts/bare_app.py)."""
    return fixed(payload, "scripts.bare_app:app", "/same")


def stack(payload: bytes, path: str) -> Any:
    """The service's own stack serving `payload` with no work (scripts/floor_app.py)."""
    return fixed(payload, "scripts.floor_app:app", f"{path}/same")


def seed(base: str, headers: dict[str, str], org_id: str | None) -> dict[str, str]:
    """Records like the seed example's, and 100 requests; the URLs of the two cases."""
    with httpx.Client(base_url=base, headers=headers, timeout=60) as http:

        def post(path: str, body: dict) -> dict:
            response = http.post(path, json=body)
            response.raise_for_status()
            return response.json()

        # With access control on, the development key's organization (a key cannot make one).
        org = {"id": org_id} if org_id else post("/organizations", {"name": "Bench"})
        user = post("/users", {"name": "Ada", "organization": org["id"]})
        color = {"name": "color", "inputType": "text", "required": True, "defaultValue": "G"}
        bots = [
            post("/bots", {"name": f"b{i}", "slug": f"b{i}", "creditCost": i, "inputs": [color]})
            for i in range(5)
        ]
        files = [post("/files", {"fileName": f"f{i}", "s3Key": f"k{i}"}) for i in range(5)]
        invoice = post("/invoices", {"organization": org["id"], "credits": 5, "status": "paid"})
        items = [
            {
                "bot": bots[i % 5]["id"],
                "createdBy": user["id"],
                "organization": org["id"],
                "images": [files[i % 5]["id"]],
                "invoice": invoice["id"],
                "inputs": {"color": "Blue"},
                "ip": "10.0.0.1",
                "success": i % 4 != 0,
                "response": {"text": "x" * 200, "i": i},
            }
            for i in range(100)
        ]
        made = post("/bot-requests/batch", {"items": items})
        one = made["items"][0]["id"]
    return {
        "GET /bot-requests/{id}": f"/bot-requests/{one}",
        "page of 100": "/bot-requests?limit=100",
    }


def measure(rounds: int, seconds: float, load) -> list[tuple[str, Run, Run]]:
    results: dict[str, list[tuple[Run, Run]]] = {}
    for auth in (False, True):
        with served(auth=auth) as service:
            headers = {"Authorization": f"Bearer {service.key}"} if auth else {}
            printed = re.search(r"for organization '[^']*' \((\w+)\)", "".join(service.output))
            org_id = printed.group(1) if auth and printed else None
            for case, path in seed(service.base, headers, org_id).items():
                url = service.base + path
                payload = httpx.get(url, headers=headers).content
                json.loads(payload)  # the service answered JSON, not an error
                name = f"{case}, access control {'on' if auth else 'off'}"
                # The stack alone is measured once, beside the GET with access control off.
                alone = stack(payload, path) if not auth and "{id}" in case else nullcontext()
                with bare(payload) as ceiling, alone as floor:
                    sides = [(name, url, headers)]
                    if floor is not None:
                        sides.append((f"{case}: the service's stack alone, no work", floor, {}))
                    for _, side, side_headers in sides:  # warm up every side
                        load(side, side_headers, 1)
                    load(ceiling, {}, 1)
                    for _ in range(rounds):
                        for label, side, side_headers in sides:
                            ours = load(side, side_headers, seconds)
                            theirs = load(ceiling, {}, seconds)
                            results.setdefault(label, []).append((ours, theirs))
                            print(f"  {label}: {ours} vs {theirs}", file=sys.stderr, flush=True)
    out = []
    for name, pairs in results.items():

        def median(side: int, field: str, pairs: list = pairs) -> float:
            return statistics.median(getattr(pair[side], field) for pair in pairs)

        out.append(
            (
                name,
                Run(median(0, "p50"), median(0, "p99"), median(0, "rps")),
                Run(median(1, "p50"), median(1, "p99"), median(1, "rps")),
            )
        )
    return out


def load_generator(wanted: str = "auto") -> tuple[Any, str]:
    """`wrk` when installed, else the process fallback; and how to name it in a table."""
    if wanted == "wrk" or (wanted == "auto" and shutil.which("wrk")):
        return wrk, f"wrk, 1 thread, {CONNECTIONS} connections"
    return processes, f"{CONNECTIONS} Python client processes (no wrk: figures are a floor)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=6)
    parser.add_argument("--generator", choices=["auto", "wrk", "processes"], default="auto")
    docs_table.add_argument(parser)
    args = parser.parse_args()
    os.environ["LOG_LEVEL"] = "warning"  # no log line per request, on either side
    load, method = load_generator(args.generator)
    rows = measure(args.rounds, args.seconds, load)
    lines = [
        f"latency — {method}, {args.seconds:g} s per run, median of {args.rounds} "
        f"alternating rounds; one uvicorn worker each, embedded backend, {os.cpu_count()} cores",
        "",
        "| case | p50 / p99 / req/s | bare p50 / p99 / req/s | p50 ratio | req/s ratio |",
        "|---|---|---|---|---|",
        *(
            f"| {name} | {ours.p50:.2f} / {ours.p99:.2f} ms / {ours.rps:,.0f} "
            f"| {theirs.p50:.2f} / {theirs.p99:.2f} ms / {theirs.rps:,.0f} "
            f"| {ours.p50 / theirs.p50:.2f}× | {theirs.rps / ours.rps:.2f}× fewer |"
            for name, ours, theirs in rows
        ),
    ]
    print("\n" + "\n".join(lines))
    if args.docs is not None:
        docs_table.write("latency", "\n".join(lines), args.docs)


if __name__ == "__main__":
    main()
