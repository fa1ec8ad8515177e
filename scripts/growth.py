"""The embedded default as its data grows: every read and write of a team's day, at 1 000,
10 000, 100 000 and 300 000 stored requests, in one run.

    python scripts/growth.py                      # about twenty minutes
    python scripts/growth.py --docs               # also writes docs/benchmarks.md
    python scripts/growth.py --sizes 1000 10000   # other sizes
    python scripts/growth.py --smoke              # tiny sizes, used by the test suite

For each size, a fresh data directory and `botrequests serve` on it (the default: kept on
disk, every write committed before it is answered; one worker; access control off; logs
at warning). N requests of one organization are recorded through `POST /bot-requests/batch`
(1 000 a batch): 5 bots, 50 users, sessions of 15, a tenth failed, tags on one in seven,
three models, latencies 100–999 ms, `metadata.tier` 0–3, feedback on one in a hundred;
then a thread of 20 follow-ups. Then, one client (keep-alive), the median of 5 calls after
one more: the newest page of 50 and the same page under each filter (`populate=none`: the
rows time the query; the share of requests each filter matches is given), a page of 100
populated, the thread, stats by bot and by day, GET by id; the NDJSON export of every
request (records/s); under `wrk` (one thread, 8 connections): GET by id and the newest page
of 50 (p50, p99, requests/s), single `POST /bot-requests` (without and with a new
`requestKey` each: a keyed insert checks that its key is not taken) and batches of 1 000
(items/s).
Last, the service is stopped and started again on the same directory: seconds until
`/readyz` answers, and the process's memory.
"""

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from scripts import docs_table, latency  # noqa: E402
from scripts.durable_bench import POST_JSON, wrk_post, wrk_script  # noqa: E402
from tests.servers import served  # noqa: E402

BATCH = 1000
MODELS = ("gpt-4o", "gpt-4o-mini", "claude-sonnet")


def body(names: dict[str, Any], n: int) -> dict[str, Any]:
    tags = ["checkout"] if n % 7 == 0 else []
    return {
        "bot": names["bots"][n % 5],
        "organization": names["org"],
        "createdBy": names["users"][n % 50],
        "ip": "192.0.2.1",
        "success": n % 10 != 0,
        "inputs": {"question": f"Where is my order number {n}?"},
        "response": {"message": "Your order left the warehouse this morning. " * 3},
        "sessionKey": f"session-{n // 15}",
        "usage": {
            "model": MODELS[n % 3],
            "promptTokens": 100 + n % 50,
            "completionTokens": 40,
            "latencyMs": 100 + n % 900,
            "cost": 0.0012,
        },
        "metadata": {"tier": n % 4},
        **({"tags": tags} if tags else {}),
    }


def wrk_keyed(url: str, payload: dict[str, Any], seconds: float) -> float:
    """Requests/s of `wrk` posting `payload` with a new `requestKey` each time (every
    answer must be 2xx): what a client that retries safely sends."""
    marker = "@@N@@"
    before, after = json.dumps(
        {**payload, "requestKey": f"growth-{time.time_ns()}-{marker}"}
    ).split(marker)
    lua = POST_JSON + (
        f"local before, after = [==[{before}]==], [==[{after}]==]\n"
        "local n = 0\n"
        "request = function()\n  n = n + 1\n"
        "  return wrk.format(nil, nil, nil, before .. n .. after)\nend\n"
    )
    return wrk_script(url, lua, seconds)


def world(http: httpx.Client) -> dict[str, Any]:
    org = http.post("/organizations", json={"name": "Growth"}).json()["id"]
    users = [
        http.post("/users", json={"name": f"U{n}", "organization": org}).json()["id"]
        for n in range(50)
    ]
    question = {"name": "question", "inputType": "text", "required": False}
    bots = [
        http.post(
            "/bots",
            json={"name": f"B{n}", "slug": f"b{n}", "organization": org, "inputs": [question]},
        ).json()["id"]
        for n in range(5)
    ]
    return {"org": org, "users": users, "bots": bots}


def record(http: httpx.Client, names: dict[str, Any], size: int) -> dict[str, Any]:
    """N requests, feedback on one in a hundred, a thread of 20; ids and a 1 % window."""
    ids: list[str] = []
    window: list[str] = []  # from, to: around the batches holding the middle 1 %
    middle = range(size // 2, size // 2 + max(1, size // 100))
    for start in range(0, size, BATCH):
        end = min(size, start + BATCH)
        if start <= middle.start < end:
            window.append(datetime.now(UTC).isoformat())
        items = [body(names, n) for n in range(start, end)]
        answer = http.post("/bot-requests/batch", json={"items": items})
        answer.raise_for_status()
        if answer.json()["failed"]:
            raise RuntimeError(f"a batch was refused: {answer.text[:500]}")
        ids += [item["id"] for item in answer.json()["items"]]
        if start <= middle.stop - 1 < end:
            window.append(datetime.now(UTC).isoformat())
    for request in ids[::100]:
        http.post(f"/bot-requests/{request}/feedback", json={"score": 1}).raise_for_status()
    root = parent = ids[-1]
    for n in range(20):
        follow = {**body(names, n), "originalRequest": parent}
        parent = http.post("/bot-requests", json=follow).json()["id"]
    return {"ids": ids, "root": root, "window": window}


def timed(http: httpx.Client, path: str, params: dict[str, Any] | None = None) -> float:
    """Median milliseconds of 5 calls, after one more."""
    times = []
    for attempt in range(6):
        began = time.perf_counter()
        answer = http.get(path, params=params)
        elapsed = time.perf_counter() - began
        answer.raise_for_status()
        if attempt:
            times.append(elapsed * 1000)
    return statistics.median(times)


def matched(http: httpx.Client, params: dict[str, Any], size: int) -> str:
    """The share of stored requests a filter matches (from the stats, which count them)."""
    groups = http.get("/bot-requests/stats", params={**params, "groupBy": "organization"})
    groups.raise_for_status()
    total = sum(item["requests"] for item in groups.json()["items"])
    return f"{total / max(size, 1):.1%}"


def memory(pid: int) -> tuple[float, float]:
    """(resident, peak resident) MiB of process `pid`."""
    fields = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    return (int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024)


def measure(size: int, seconds: float) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="growth-", dir=Path.home()) as data:
        directory = Path(data)
        with (
            served(data_dir=directory) as server,
            httpx.Client(base_url=server.base, timeout=600) as http,
        ):
            names = world(http)
            began = time.perf_counter()
            seeded = record(http, names, size)
            out["seeding (items/s)"] = size / (time.perf_counter() - began)
            some = seeded["ids"][len(seeded["ids"]) // 3]
            page: dict[str, Any] = {"limit": 50, "populate": "none"}
            filters: dict[str, dict[str, Any]] = {
                "newest 50": {},
                "bot": {"bot": names["bots"][2]},
                "createdBy": {"createdBy": names["users"][7]},
                "sessionKey": {"sessionKey": f"session-{size // 45}"},
                "success=false": {"success": "false"},
                "tag=checkout": {"tag": "checkout"},
                "model": {"model": MODELS[1]},
                "latency 100–189 ms": {"minLatencyMs": 100, "maxLatencyMs": 189},
                "metadata.tier=2": {"metadata.tier": "2"},
                "from–to": {"from": seeded["window"][0], "to": seeded["window"][1]},
            }
            shares = {}
            for name, params in filters.items():
                row = f"page of 50: {name}"
                shares[row] = matched(http, params, size) if params else "100%"
                out[row] = timed(http, "/bot-requests", {**page, **params})
            out["page of 100, populated"] = timed(http, "/bot-requests", {"limit": 100})
            out["thread of 20 follow-ups"] = timed(http, f"/bot-requests/{seeded['root']}/thread")
            out["stats by bot"] = timed(http, "/bot-requests/stats", {"groupBy": "bot"})
            out["stats by day"] = timed(http, "/bot-requests/stats", {"groupBy": "day"})
            out["GET by id"] = timed(http, f"/bot-requests/{some}")
            began = time.perf_counter()
            with http.stream("GET", "/bot-requests/export") as stream:
                lines = sum(chunk.count(b"\n") for chunk in stream.iter_bytes())
            out["export (records/s)"] = lines / (time.perf_counter() - began)
            get = latency.wrk(f"{server.base}/bot-requests/{some}", {}, seconds)
            out["wrk GET by id"] = get
            newest = latency.wrk(f"{server.base}/bot-requests?limit=50&populate=none", {}, seconds)
            out["wrk newest 50"] = newest
            single = wrk_post(f"{server.base}/bot-requests", body(names, 1), seconds)
            out["wrk single POST (requests/s)"] = single
            keyed = wrk_keyed(f"{server.base}/bot-requests", body(names, 2), seconds)
            out["wrk single POST with requestKey (requests/s)"] = keyed
            # (The smoke run's batches are small: eight of 1 000 at once may not all be
            # answered within its two seconds on a busy machine, leaving no figure.)
            posted = BATCH if seconds >= 5 else 100
            items = {"items": [body(names, n) for n in range(posted)]}
            out[f"wrk batch of {posted:,} (items/s)".replace(",", " ")] = (
                wrk_post(f"{server.base}/bot-requests/batch", items, seconds * 2) * posted
            )
        began = time.monotonic()
        with served(data_dir=directory, first=False) as again:
            out["start-up (s)"] = time.monotonic() - began
            resident, peak = memory(again.process.pid)
            out["memory after start-up (MiB)"] = resident
            out["peak memory at start-up (MiB)"] = peak
    return {"shares": shares, **out}


def cell(value: Any, name: str) -> str:
    if isinstance(value, latency.Run):
        return f"{value.p50:.1f} / {value.p99:.1f} ms, {value.rps:,.0f}/s"
    if "/s" in name or "MiB" in name:
        return f"{value:,.0f}"
    if name.endswith("(s)"):
        return f"{value:.1f}"
    return f"{value:.1f}"


def scale(value: Any) -> float:
    return value.p50 if isinstance(value, latency.Run) else float(value)


def table(results: dict[int, dict[str, Any]]) -> str:
    sizes = sorted(results)
    names = [name for name in results[sizes[0]] if name != "shares"]
    shares = results[sizes[-1]]["shares"]  # of the largest size
    # Growth is read from 10 000 on (below, fixed costs hide it) when the run has it.
    base = next((size for size in sizes if size >= 10_000 and size != sizes[-1]), sizes[0])
    head = "| stored requests | " + " | ".join(f"{size:,}" for size in sizes)
    lines = [
        head + f" | {sizes[-1]:,} / {base:,} |",
        "|---|" + "---:|" * len(sizes) + "---:|",
    ]
    for name in names:
        values = [results[size][name] for size in sizes]
        unit = "" if ("/s" in name or "(s)" in name or "MiB" in name or "wrk" in name) else " ms"
        first, last = scale(results[base][name]), scale(values[-1])
        ratio = f"{last / first:.2f}×" if first else ""
        cells = " | ".join(cell(value, name) for value in values)
        share = f" ({shares[name]} match)" if name in shares else ""
        lines.append(f"| {name}{share}{unit and ' (ms)'} | {cells} | {ratio} |")
    lines.append(
        f"\nThe data grows {sizes[-1] / base:,.0f}× from {base:,} to {sizes[-1]:,}; "
        "`wrk` cells are p50 / p99 latency and requests/s."
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10_000, 100_000, 300_000])
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes (the test suite)")
    docs_table.add_argument(parser)
    args = parser.parse_args()
    if args.smoke:
        args.sizes, args.seconds = [120, 240], 1
    if shutil.which("wrk") is None:
        raise SystemExit("growth.py needs wrk (Debian: apt-get install wrk)")
    os.environ["LOG_LEVEL"] = "warning"  # no log line per request
    results = {}
    for size in args.sizes:
        results[size] = measure(size, args.seconds)
        print(f"measured {size:,}", file=sys.stderr, flush=True)
    text = table(results)
    print(text)
    if args.docs:
        docs_table.write("growth", text, args.docs)


if __name__ == "__main__":
    main()
