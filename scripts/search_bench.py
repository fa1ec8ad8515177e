"""Search (`q=`) on the embedded backend: with its word index, and without one (the path
search takes on a server without a text index), on the same data in one run.

    python scripts/search_bench.py                   # 10 000 and 100 000 requests
    python scripts/search_bench.py --docs            # also writes docs/benchmarks.md
    python scripts/search_bench.py --smoke           # tiny sizes, used by the test suite

In process (the app over `httpx.ASGITransport`, the embedded backend in memory, access
control off, one client): N requests recorded through `POST /bot-requests/batch` (1 000 a
batch), each a question and an answer of 20-odd words drawn from 2 000, and one word that
marks 0.1 %, 1 % or 10 % of them. Then the median of 5 calls after one more: the newest
page of 50 of a search for a word of each share, of two words (1 % and 10 %), of a word
with a bot filter, and stats of the 1 % word; each with the word index, then with search
told there is none (`db.search_candidates` answering None: every request read, newest
first, in growing reads, and checked). A page of a word so common that naming its
requests costs more than walking to them is served by the walk either way. Also the first
search after the index is dropped (it is built then), and batch ingest with and without
the word index kept (a search after the first batch builds it, so every later batch
keeps it up to date).
"""

import argparse
import asyncio
import os
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

os.environ.setdefault("BOTREQUESTS_AUTH", "off")
os.environ.setdefault("LOG_LEVEL", "warning")

import httpx  # noqa: E402

from botrequests.app import create_app  # noqa: E402
from botrequests.config import Settings  # noqa: E402
from botrequests.storage import db, mongomock_keys, mongomock_words  # noqa: E402
from scripts import docs_table  # noqa: E402

BATCH = 1000
MARKERS = {"zebra": 1000, "walrus": 100, "otter": 10}  # one request in N holds it


def vocabulary(rng: random.Random) -> list[str]:
    letters = "abcdefghijklmnopqrstuvwxyz"
    return ["".join(rng.choice(letters) for _ in range(rng.randint(3, 9))) for _ in range(2000)]


def body(bots: list[str], words: list[str], rng: random.Random, n: int) -> dict[str, Any]:
    said = " ".join(rng.choice(words) for _ in range(12))
    marks = [word for word, every in MARKERS.items() if n % every == every // 2]
    return {
        "bot": bots[n % 5],
        "success": n % 10 != 0,
        "ip": "192.0.2.1",
        "prompt": f"Question {n}: {said} {' '.join(marks)}?",
        "response": {"text": " ".join(rng.choice(words) for _ in range(10))},
    }


async def median_ms(call: Any, times: int = 5) -> float:
    await call()
    spent = []
    for _ in range(times):
        began = time.perf_counter()
        await call()
        spent.append((time.perf_counter() - began) * 1000)
    return statistics.median(spent)


async def record(http: httpx.AsyncClient, size: int, rng: random.Random) -> tuple[list, float]:
    """The bots and N requests, in batches; the batches' items/s after the first. After the
    first batch a search runs, so that every later batch keeps the indexes — the word
    index too, where the backend keeps one."""
    words = vocabulary(rng)
    bots = []
    for n in range(5):
        bots.append(
            (await http.post("/bots", json={"name": f"B{n}", "slug": f"b{n}"})).json()["id"]
        )
    began, indexed = time.perf_counter(), 0
    for start in range(0, size, BATCH):
        items = [body(bots, words, rng, n) for n in range(start, min(size, start + BATCH))]
        answer = await http.post("/bot-requests/batch", json={"items": items})
        assert answer.status_code == 200, answer.text
        if start == 0:
            await http.get("/bot-requests", params={"q": "walrus", "limit": 1})
            began, indexed = time.perf_counter(), len(items)
    rate = (size - indexed) / (time.perf_counter() - began) if size > indexed else 0.0
    return bots, rate


async def measure(size: int) -> dict[str, Any]:
    app = create_app(Settings(mongodb_uri="mongomock://"))
    out: dict[str, Any] = {}
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://b", timeout=600) as http:
            bots, out["ingest, word index kept (items/s)"] = await record(
                http, size, random.Random(size)
            )
            store = _store()

            async def get(path: str, **params: Any) -> None:
                answer = await http.get(path, params=params)
                assert answer.status_code == 200, answer.text

            mongomock_keys.forget(store)
            began = time.perf_counter()
            await get("/bot-requests", q="walrus", limit=50, populate="none")
            out["first search after start (index built, ms)"] = (time.perf_counter() - began) * 1000
            cases = {
                "word in 0.1 %, page of 50": {"q": "zebra"},
                "word in 1 %, page of 50": {"q": "walrus"},
                "word in 10 %, page of 50": {"q": "otter"},
                "two words (1 % and 10 %), page of 50": {"q": "walrus otter"},
                "word in 1 % and a bot, page of 50": {"q": "walrus", "bot": bots[1]},
            }
            real = db.search_candidates

            async def none(*args: Any) -> None:
                return None

            for label, params in cases.items():
                with_index = await median_ms(
                    lambda p=params: get("/bot-requests", limit=50, populate="none", **p)
                )
                db.search_candidates = none  # type: ignore[assignment]
                try:
                    scan = await median_ms(
                        lambda p=params: get("/bot-requests", limit=50, populate="none", **p)
                    )
                finally:
                    db.search_candidates = real  # type: ignore[assignment]
                out[label] = (with_index, scan)
            with_index = await median_ms(lambda: get("/bot-requests/stats", q="walrus"))
            db.search_candidates = none  # type: ignore[assignment]
            try:
                scan = await median_ms(lambda: get("/bot-requests/stats", q="walrus"))
            finally:
                db.search_candidates = real  # type: ignore[assignment]
            out["stats of the word in 1 %"] = (with_index, scan)
            out["no search: newest page of 50"] = await median_ms(
                lambda: get("/bot-requests", limit=50, populate="none")
            )
    return out


def app_models() -> Any:
    from botrequests.documents import BotRequest

    return BotRequest


def _store() -> Any:
    return db.collection(app_models())._sync()._store


async def ingest_without_index(size: int) -> float:
    """Batch ingest with the word index not kept (what it costs to keep it)."""
    kept = set(mongomock_words.COLLECTIONS)
    mongomock_words.COLLECTIONS.clear()
    try:
        app = create_app(Settings(mongodb_uri="mongomock://"))
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(
                transport=transport, base_url="http://b", timeout=600
            ) as http:
                return (await record(http, size, random.Random(size)))[1]
    finally:
        mongomock_words.COLLECTIONS.update(kept)


def both_ways(size: int) -> dict[str, Any]:
    """Every figure at one size: the searches, then ingest without the word index."""
    figures = asyncio.run(measure(size))
    figures["ingest, no word index (items/s)"] = asyncio.run(ingest_without_index(size))
    print(f"measured {size:,}", file=sys.stderr, flush=True)
    return figures


def table(results: dict[int, dict[str, Any]]) -> str:
    sizes = sorted(results)
    head = "| at N requests | " + " | ".join(f"{n:,}" for n in sizes) + " |"
    lines = [head, "|---" * (len(sizes) + 1) + "|"]
    names = list(results[sizes[0]])
    for name in names:
        cells = []
        for n in sizes:
            value = results[n][name]
            if isinstance(value, tuple):
                indexed, scan = value
                cells.append(f"{indexed:.1f} ms; scan {scan:.1f} ms ({scan / indexed:.0f}×)")
            elif "/s" in name:
                cells.append(f"{value:,.0f}")
            else:
                cells.append(f"{value:.1f}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes (the test suite)")
    docs_table.add_argument(parser)
    args = parser.parse_args()
    if args.smoke:
        args.sizes = [2000, 3000]
    text = table({size: both_ways(size) for size in args.sizes})
    print(text)
    if args.docs:
        docs_table.write("search", text, args.docs)


if __name__ == "__main__":
    main()
