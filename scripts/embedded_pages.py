"""Pages on the embedded backend as its data grows: the newest-first walk in index order
(botrequests/storage/mongomock_newest.py) against mongomock's own scan and sort, in one run.

In process (httpx's ASGI transport, access control off), N requests of one organization
over 5 bots written straight into the collection; each page asked 3 times per side,
medians, alternating the sides. `?populate=none` so that the rows time the query. The
last row is what keeping the index costs a write: 200 single inserts with it and without.

    python scripts/embedded_pages.py [--sizes 10000 100000]
"""

import argparse
import asyncio
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx  # noqa: E402
from bson import ObjectId  # noqa: E402

from botrequests.app import create_app  # noqa: E402
from botrequests.config import Settings  # noqa: E402
from botrequests.storage import mongomock_newest  # noqa: E402

PAGES = {
    "newest 50": {},
    "bot filter, 50": {"bot": None},
    "success=false, 50": {"success": "false"},
    "tag=, 50": {"tag": "checkout"},
}


async def measure(size: int) -> dict[str, tuple[float, float]]:
    settings = Settings(
        mongodb_uri="mongomock://", BOTREQUESTS_AUTH="off", _env_file=None, log_level="warning"
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        raw = app.state.mongo[settings.mongodb_database].botrequests
        bots = [ObjectId() for _ in range(5)]
        t0 = datetime(2025, 1, 1, tzinfo=UTC)
        for start in range(0, size, 5000):
            await raw.insert_many(
                [
                    {
                        "bot": bots[i % 5],
                        "success": i % 10 != 0,
                        "response": {"i": i},
                        "ip": "10.0.0.1",
                        "tags": ["checkout"] if i % 7 == 0 else [],
                        "createdAt": t0 + timedelta(seconds=i),
                    }
                    for i in range(start, min(size, start + 5000))
                ]
            )
        plain_walkable = mongomock_newest.walkable
        times: dict[tuple[str, bool], list[float]] = {}
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://pages") as client:
            for _ in range(3):
                for walked in (True, False):
                    mongomock_newest.walkable = plain_walkable if walked else lambda a, k: None
                    for name, params in PAGES.items():
                        query = {"limit": 50, "populate": "none", **params}
                        if "bot" in query:
                            query["bot"] = str(bots[2])
                        started = time.perf_counter()
                        answer = await client.get("/bot-requests", params=query)
                        elapsed = time.perf_counter() - started
                        answer.raise_for_status()
                        assert len(answer.json()["items"]) == 50
                        times.setdefault((name, walked), []).append(elapsed)
            mongomock_newest.walkable = plain_walkable
            # What keeping the index costs a write: single inserts with it and without, each
            # dated the oldest, the most expensive place in the index's list.
            sync = raw._sync()
            for _ in range(3):
                for kept in (True, False):
                    if kept:
                        await client.get("/bot-requests", params={"limit": 1})  # built
                    else:
                        mongomock_newest._drop(sync)
                    started = time.perf_counter()
                    for _ in range(200):
                        await raw.insert_one({"bot": bots[0], "success": True, "createdAt": t0})
                    elapsed = (time.perf_counter() - started) / 200
                    times.setdefault(("insert_one", kept), []).append(elapsed)
    return {
        name: (statistics.median(times[(name, True)]), statistics.median(times[(name, False)]))
        for name in [*PAGES, "insert_one"]
    }


def main(sizes: list[int]) -> None:
    print("| requests stored | call | with the index | without (mongomock's scan) | ratio |")
    print("|---|---|---|---|---|")
    for size in sizes:
        for name, (walked, plain) in asyncio.run(measure(size)).items():
            print(
                f"| {size:,} | {name} | {walked * 1000:.2f} ms | {plain * 1000:.2f} ms "
                f"| {walked / plain:.3g}x |"
            )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    main(parser.parse_args().sizes)
