"""OpenTelemetry ingestion against the batch API, in one run.

    python scripts/otlp_bench.py            # about two minutes
    python scripts/otlp_bench.py --docs     # also writes docs/benchmarks.md (region `otlp`)
    python scripts/otlp_bench.py --smoke    # a few seconds, used by the test suite

One `botrequests serve` (the durable default, one worker, access control off, logs at
warning). `wrk` (one thread, 8 connections) posts, for `--seconds` each, in turn and
twice over: OTLP/HTTP protobuf exports of 512 model-call spans (the SDK's default
`OTEL_BSP_MAX_EXPORT_BATCH_SIZE`) to `POST /v1/traces`, and `POST /bot-requests/batch` of
512 items, each item the very request a span of the same shape becomes (the receiver's own
mapping made them, `requestKey` included). Every body is posted once: a repeated export
would be a retry, answered from its `requestKey`s without writing. Spans are conversations
of 8 turns (64 per export): the receiver also threads them, which the batch items are not.
The figures are records per second; the ratio compares the medians of the same run.
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
MOST_PER_SECOND = 20_000


def exports(count: int, size: int, tag: str) -> list[bytes]:
    """`count` distinct protobuf exports of `size` model-call spans."""
    start = time.time_ns() - 3600 * 10**9
    made = []
    for number in range(count):
        spans = []
        for index in range(size):
            conversation = f"{tag}-{number}-{index // TURNS}"
            attributes = chat_attributes(
                f"Where is my order {number}-{index}? It was due on Monday.",
                "Your order left the warehouse this morning and arrives tomorrow.",
                **{"gen_ai.conversation.id": conversation, "gen_ai.request.temperature": 0.2},
            )
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


def measure(seconds: float, rounds: int) -> dict:
    most = max(2, int(MOST_PER_SECOND * seconds * rounds / SPANS) + 1)
    results: dict = {"otlp": [], "batch": [], "bodies": most}
    with tempfile.TemporaryDirectory(prefix="botrequests-otlp-bench-") as scratch:
        folder = Path(scratch)
        with served(data_dir=folder / "data") as site:
            # The bot the spans' service.name makes: the batch items name it too.
            warm = httpx.post(
                f"{site.base}/v1/traces",
                content=exports(1, SPANS, "warm")[0],
                headers={"content-type": decode.PROTOBUF},
                timeout=120,
            )
            warm.raise_for_status()
            bots = httpx.get(f"{site.base}/bots").json()["items"]
            bot_id = next(bot["id"] for bot in bots if bot["slug"] == "support-bot")
            made = exports(2 * most, SPANS, "bench")
            otlp_paths, batch_paths = [], []
            for number, body in enumerate(made[:most]):
                path = folder / f"export-{number}.pb"
                path.write_bytes(body)
                otlp_paths.append(path)
            for number, body in enumerate(made[most:]):
                path = folder / f"batch-{number}.json"
                path.write_bytes(batch_items(body, bot_id))
                batch_paths.append(path)
            per_round = most // rounds
            for turn in range(rounds):
                chunk = slice(turn * per_round, (turn + 1) * per_round)
                rate, _ = run(f"{site.base}/v1/traces", otlp_paths[chunk], decode.PROTOBUF, seconds)
                results["otlp"].append(rate * SPANS)
                rate, _ = run(
                    f"{site.base}/bot-requests/batch", batch_paths[chunk], decode.JSON, seconds
                )
                results["batch"].append(rate * SPANS)
            results["export_bytes"] = statistics.median(p.stat().st_size for p in otlp_paths)
            results["batch_bytes"] = statistics.median(p.stat().st_size for p in batch_paths)
    results["trips"] = asyncio.run(round_trips((64, SPANS)))
    return results


def table(results: dict) -> str:
    otlp, batch = statistics.median(results["otlp"]), statistics.median(results["batch"])
    trips = results["trips"]
    rows = [
        "| path | records/s (median) | each run | body |",
        "|---|---|---|---|",
        f"| `POST /v1/traces`, exports of {SPANS} spans | {otlp:,.0f} | "
        + ", ".join(f"{r:,.0f}" for r in results["otlp"])
        + f" | {results['export_bytes'] / 1024:,.0f} KiB protobuf |",
        f"| `POST /bot-requests/batch`, {SPANS} items | {batch:,.0f} | "
        + ", ".join(f"{r:,.0f}" for r in results["batch"])
        + f" | {results['batch_bytes'] / 1024:,.0f} KiB JSON |",
        "",
        f"Ratio, spans through `/v1/traces` to batch items: **{otlp / batch:.2f}×**. Database "
        f"round trips of one export: {trips[64]} for 64 spans, {trips[SPANS]} for {SPANS}.",
    ]
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=2)
    docs_table.add_argument(parser)
    parser.add_argument("--smoke", action="store_true", help="a few seconds, for the tests")
    args = parser.parse_args()
    if args.smoke:
        args.seconds, args.rounds = 1.0, 1
    os.environ.setdefault("LOG_LEVEL", "warning")
    text = table(measure(args.seconds, args.rounds))
    print(text)
    if args.docs:
        docs_table.write("otlp", text, args.docs)


if __name__ == "__main__":
    main()
