"""Where the time of a populated page of 100 goes, part by part, in one run.

In process (the app over httpx's ASGI transport, the embedded backend in memory, access
control off), N requests recorded through `POST /bot-requests/batch` as
scripts/growth.py records them (5 bots, 50 users). Then, medians of 5 rounds of 50 calls
each: the whole `GET /bot-requests?limit=100` through HTTP, the service's page alone
(`botrequest_service.page`), and the parts of that page one by one: the find of its
documents (the embedded worker's walk and copies, and the hop to it), their validation,
their serialization, population's lookups (one find per referenced collection, each
record validated and served) and the replacement of references with records plus the
JSON encoding. The last row is the HTTP call less the parts: the framework, the
middleware, the query's parsing, the ASGI transport and the client.

    python scripts/page_cost.py [--requests 2000] [--docs]
"""

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from botrequests import botrequest_service, populate  # noqa: E402
from botrequests.app import create_app  # noqa: E402
from botrequests.config import Settings  # noqa: E402
from botrequests.documents import BotRequest, reader  # noqa: E402
from botrequests.schemas import BotRequestFilters  # noqa: E402
from botrequests.serialize import dump  # noqa: E402
from botrequests.storage import db  # noqa: E402
from scripts import docs_table  # noqa: E402
from scripts.growth import BATCH, body  # noqa: E402

LIMIT = 100


async def world(client: httpx.AsyncClient) -> dict[str, Any]:
    org = (await client.post("/organizations", json={"name": "Cost"})).json()["id"]
    users = [
        (await client.post("/users", json={"name": f"U{n}", "organization": org})).json()["id"]
        for n in range(50)
    ]
    question = {"name": "question", "inputType": "text", "required": False}
    bots = []
    for n in range(5):
        made = {"name": f"B{n}", "slug": f"b{n}", "organization": org, "inputs": [question]}
        bots.append((await client.post("/bots", json=made)).json()["id"])
    return {"org": org, "users": users, "bots": bots}


async def timed(call: Callable[[], Awaitable[Any]], rounds: int, calls: int) -> float:
    """Median milliseconds of one call, over `rounds` rounds of `calls` calls."""
    medians = []
    for _ in range(rounds):
        began = time.perf_counter()
        for _ in range(calls):
            await call()
        medians.append((time.perf_counter() - began) / calls * 1000)
    return statistics.median(medians)


async def measure(requests: int, rounds: int, calls: int) -> dict[str, float]:
    settings = Settings(
        mongodb_uri="mongomock://", BOTREQUESTS_AUTH="off", _env_file=None, log_level="warning"
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://cost") as client:
            names = await world(client)
            for start in range(0, requests, BATCH):
                items = [body(names, n) for n in range(start, min(requests, start + BATCH))]
                answer = await client.post("/bot-requests/batch", json={"items": items})
                answer.raise_for_status()
            filters = BotRequestFilters()
            query = botrequest_service.filter_query(filters)

            async def http() -> None:
                answer = await client.get("/bot-requests", params={"limit": LIMIT})
                answer.raise_for_status()

            async def page() -> None:
                await botrequest_service.page(filters, LIMIT, None, populate.PATHS)

            async def find() -> list[dict]:
                return await db.find_raw(
                    BotRequest, query, {}, batch_size=LIMIT + 1,
                    sort=botrequest_service.NEWEST_FIRST, limit=LIMIT + 1, timed=True,
                )  # fmt: skip

            rows = (await find())[:LIMIT]
            read = reader(BotRequest).model_validate
            docs = [read(row) for row in rows]
            found = await populate.lookups(docs, populate.PATHS)
            assert len(docs) == LIMIT, f"{len(docs)} requests stored; need {LIMIT}"

            async def validate() -> None:
                [read(row) for row in rows]

            async def serialize() -> None:
                [dump(doc) for doc in docs]

            async def lookups() -> None:
                await populate.lookups(docs, populate.PATHS)

            async def apply_and_encode() -> None:
                served = [dump(doc) for doc in docs]  # (timed again here; taken off below)
                orjson.dumps({"items": [populate.apply(item, found) for item in served]})

            parts = {
                "find (walk, copies, the worker's hop)": find,
                "validation (pydantic)": validate,
                "serialization (serialize.dump)": serialize,
                "population lookups (3 finds, records validated and served)": lookups,
                "references replaced, JSON encoded": apply_and_encode,
            }
            await timed(http, 1, calls)  # warm: every index and cache made
            out = {"whole call through HTTP (in process)": await timed(http, rounds, calls)}
            out["the service's page alone"] = await timed(page, rounds, calls)
            for name, call in parts.items():
                out[name] = await timed(call, rounds, calls)
            out["references replaced, JSON encoded"] -= out["serialization (serialize.dump)"]
            out["the rest: framework, middleware, parsing, transport, client"] = out[
                "whole call through HTTP (in process)"
            ] - sum(out[name] for name in parts)
    return out


def table(out: dict[str, float], requests: int) -> str:
    whole = out["whole call through HTTP (in process)"]
    lines = [
        f"page of {LIMIT} populated, {requests:,} requests stored, embedded backend in "
        "memory, in process; medians",
        "",
        "| part | ms per page | share of the HTTP call |",
        "|---|---:|---:|",
    ]
    for name, value in out.items():
        lines.append(f"| {name} | {value:.2f} | {value / whole:.0%} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=50)
    docs_table.add_argument(parser)
    args = parser.parse_args()
    text = table(asyncio.run(measure(args.requests, args.rounds, args.calls)), args.requests)
    print(text)
    if args.docs:
        docs_table.write("page-cost", text, args.docs)


if __name__ == "__main__":
    main()
