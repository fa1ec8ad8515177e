"""OpenTelemetry ingestion against the batch API, in one run.

    python scripts/otlp_bench.py            # about two minutes
    python scripts/otlp_bench.py --docs     # also writes docs/benchmarks.md (region `otlp`)
    python scripts/otlp_bench.py --smoke    # a few seconds, used by the test suite

One `botrequests serve` (the durable default, one worker, access control off, logs at
warning). `wrk` (one thread, 8 connections) posts, for `--seconds` each, in turn and
twice over: OTLP/HTTP protobuf exports of 512 model-call spans (the SDK's default
`OTEL_BSP_MAX_EXPORT_BATCH_SIZE`) to `POST /v1/traces`, without a conversation id and as
conversations, and `POST /bot-requests/batch` of
512 items, each item the very request a span of the same shape becomes (the receiver's own
mapping made them, `requestKey` included), and batches of those items with each turn but
a conversation's first naming a stored request as its original (the attaching work the
receiver does for a thread; the originals are stored beforehand, outside the measure).
Every body is posted once: a repeated export would be a retry, answered from its
`requestKey`s without writing. Spans are conversations of 8 turns (64 per export). The
figures are records per second; the ratios compare the medians of the same run.
In-process, on the embedded backend, the database round trips of one export of 64 and of
512 spans.
"""

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from botrequests.otlp import decode, mapping  # noqa: E402
from scripts import docs_table  # noqa: E402
from scripts.durable_bench import wrk_run  # noqa: E402
from tests.otlp_export import chat_attributes, protobuf, span  # noqa: E402
from tests.servers import served  # noqa: E402

SPANS = 512
TURNS = 8
# Upper bound on what one run may send per second (records), so that no body repeats.
MOST_PER_SECOND = 4_000


def exports(count: int, size: int, tag: str, threaded: bool = True) -> list[bytes]:
    """`count` distinct protobuf exports of `size` model-call spans (conversations of
    TURNS turns, or with `threaded` false no conversation id: each its own request)."""
    start = time.time_ns() - 3600 * 10**9
    made = []
    for number in range(count):
        spans = []
        for index in range(size):
            attributes = chat_attributes(
                f"Where is my order {number}-{index}? It was due on Monday.",
                "Your order left the warehouse this morning and arrives tomorrow.",
                **{"gen_ai.request.temperature": 0.2},
            )
            if threaded:
                attributes["gen_ai.conversation.id"] = f"{tag}-{number}-{index // TURNS}"
            spans.append(span(attributes, start_ns=start + index * 1_000_000))
        made.append(protobuf(spans))
    return made


def batch_items(export: bytes, bot: str) -> bytes:
    """The batch body of the records the export's spans become (as the receiver maps them)."""
    now_ns = time.time_ns()
    items = []
    for item in decode.spans(export, decode.PROTOBUF, 32):
        body = mapping.record(item, "192.0.2.1", now_ns, 0).body
        items.append({**body, "bot": bot})
    return orjson.dumps({"items": items})


def lua(paths: list[Path], content_type: str) -> str:
    """A wrk script posting each body once, in turn (it cycles past the last)."""
    listing = "\n".join(f'  "{path}",' for path in paths)
    return f"""wrk.method = "POST"
wrk.headers["Content-Type"] = "{content_type}"
local paths = {{
{listing}
}}
local bodies = {{}}
for k, path in ipairs(paths) do
  local file = io.open(path, "rb")
  bodies[k] = file:read("*a")
  file:close()
end
local sent = 0
request = function()
  sent = sent + 1
  return wrk.format(nil, nil, nil, bodies[((sent - 1) % #bodies) + 1])
end
"""


def run(url: str, paths: list[Path], content_type: str, seconds: float) -> tuple[float, int]:
    """Bodies per second under wrk, and how many were sent (never more than there are)."""
    out = wrk_run(url, lua(paths, content_type), seconds)
    sent = int(out.split(" requests in ")[0].split()[-1])
    if sent > len(paths):
        raise RuntimeError(f"{sent} bodies sent, {len(paths)} made: raise MOST_PER_SECOND")
    return float(out.split("Requests/sec:")[1].split()[0]), sent


async def round_trips(sizes: tuple[int, ...]) -> dict[int, int]:
    """Database round trips of one export of each size (in-process, embedded backend)."""
    from botrequests.app import create_app
    from botrequests.config import Settings
    from botrequests.storage import db

    settings = Settings(mongodb_uri="mongomock://", BOTREQUESTS_AUTH="off", _env_file=None)
    app = create_app(settings)
    counts = {}
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("192.0.2.1", 1))
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as http:
            headers = {"content-type": decode.PROTOBUF}
            await http.post("/v1/traces", content=exports(1, 8, "warm")[0], headers=headers)
            for size in sizes:
                body = exports(1, size, f"trips{size}")[0]
                with db.count_round_trips() as counter:
                    answer = await http.post("/v1/traces", content=body, headers=headers)
                assert answer.status_code == 200, answer.content
                counts[size] = counter.count
    return counts


def follow_ups(export: bytes, bot: str, originals: list[str]) -> bytes:
    """`batch_items` with every turn but each conversation's first naming a stored request
    as its original: the attaching work the receiver does for a thread."""
    document = orjson.loads(batch_items(export, bot))
    followers = [n for n in range(len(document["items"])) if n % TURNS]
    for number, original in zip(followers, originals, strict=True):
        document["items"][number]["originalRequest"] = original
    return orjson.dumps(document)


def seeded(base: str, export: bytes, bot: str, count: int) -> list[str]:
    """Ids of `count` requests stored now (outside the measure), to be originals."""
    items = orjson.loads(batch_items(export, bot))["items"][:count]
    answer = httpx.post(f"{base}/bot-requests/batch", json={"items": items}, timeout=120)
    answer.raise_for_status()
    return [item["id"] for item in answer.json()["items"]]


KINDS = ("plain", "batch", "otlp", "follow")


def measure(seconds: float, rounds: int, spans: int = SPANS) -> dict:
    most = max(2, int(MOST_PER_SECOND * seconds * rounds / spans) + 1)
    results: dict = {kind: [] for kind in KINDS}
    results["spans"] = spans
    with tempfile.TemporaryDirectory(prefix="botrequests-otlp-bench-") as scratch:
        folder = Path(scratch)
        with served(data_dir=folder / "data") as site:
            # The bot the spans' service.name makes: the batch items name it too.
            warm = httpx.post(
                f"{site.base}/v1/traces",
                content=exports(1, spans, "warm")[0],
                headers={"content-type": decode.PROTOBUF},
                timeout=120,
            )
            warm.raise_for_status()
            bots = httpx.get(f"{site.base}/bots").json()["items"]
            bot = next(found["id"] for found in bots if found["slug"] == "support-bot")
            made = exports(4 * most, spans, "bench")
            alone = exports(most, spans, "alone", threaded=False)
            followers = spans - spans // TURNS
            bodies = {
                "plain": alone,
                "otlp": made[:most],
                "batch": [batch_items(e, bot) for e in made[most : 2 * most]],
                "follow": [
                    follow_ups(e, bot, seeded(site.base, seed, bot, followers))
                    for e, seed in zip(made[2 * most : 3 * most], made[3 * most :], strict=True)
                ],
            }
            paths: dict[str, list[Path]] = {}
            for kind, written in bodies.items():
                paths[kind] = []
                for number, body in enumerate(written):
                    path = folder / f"{kind}-{number}"
                    path.write_bytes(body)
                    paths[kind].append(path)
            targets = {
                "plain": (f"{site.base}/v1/traces", decode.PROTOBUF),
                "otlp": (f"{site.base}/v1/traces", decode.PROTOBUF),
                "batch": (f"{site.base}/bot-requests/batch", decode.JSON),
                "follow": (f"{site.base}/bot-requests/batch", decode.JSON),
            }
            per_round = most // rounds
            for turn in range(rounds):
                chunk = slice(turn * per_round, (turn + 1) * per_round)
                for kind in KINDS:
                    url, content_type = targets[kind]
                    rate, _ = run(url, paths[kind][chunk], content_type, seconds)
                    results[kind].append(rate * spans)
            results["bytes"] = {
                kind: statistics.median(p.stat().st_size for p in paths[kind]) for kind in KINDS
            }
    results["trips"] = asyncio.run(round_trips((64, 512)))
    return results


def table(results: dict) -> str:
    spans = results["spans"]
    median = {kind: statistics.median(results[kind]) for kind in KINDS}
    labels = {
        "plain": f"`POST /v1/traces`, exports of {spans} spans, no conversation id",
        "otlp": f"`POST /v1/traces`, exports of {spans} spans (threaded: "
        f"{spans - spans // TURNS} follow-ups)",
        "batch": f"`POST /bot-requests/batch`, {spans} items",
        "follow": f"`POST /bot-requests/batch`, {spans} items, {spans - spans // TURNS} of them "
        "follow-ups of stored requests",
    }
    rows = ["| path | records/s (median) | each run | body |", "|---|---|---|---|"]
    for kind in KINDS:
        kind_of = "protobuf" if kind in ("plain", "otlp") else "JSON"
        rows.append(
            f"| {labels[kind]} | {median[kind]:,.0f} | "
            + ", ".join(f"{r:,.0f}" for r in results[kind])
            + f" | {results['bytes'][kind] / 1024:,.0f} KiB {kind_of} |"
        )
    trips = results["trips"]
    rows += [
        "",
        "Spans through `/v1/traces` to batch items of the same requests: "
        f"**{median['plain'] / median['batch']:.2f}×** without conversations, "
        f"**{median['otlp'] / median['follow']:.2f}×** as threads (batch items that are "
        "follow-ups, as the spans are); threaded spans to plain batch items: "
        f"{median['otlp'] / median['batch']:.2f}×. Database round trips of one export: "
        f"{trips[64]} for 64 spans, {trips[512]} for 512.",
    ]
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=2)
    docs_table.add_argument(parser)
    parser.add_argument("--smoke", action="store_true", help="a few seconds, for the tests")
    args = parser.parse_args()
    spans = SPANS
    if args.smoke:
        args.seconds, args.rounds, spans = 1.0, 1, 32
    os.environ.setdefault("LOG_LEVEL", "warning")
    text = table(measure(args.seconds, args.rounds, spans))
    print(text)
    if args.docs:
        docs_table.write("otlp", text, args.docs)


if __name__ == "__main__":
    main()
