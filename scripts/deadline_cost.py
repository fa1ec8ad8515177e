"""What QUERY_TIMEOUT_MS costs on the embedded backend: a filtered, sorted page and a
stats pipeline over 30 000 documents, with a deadline (checked as mongomock scans) and
without, alternating in one run; medians of 7.

    python scripts/deadline_cost.py [--documents N]
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import mongomock  # noqa: E402
from bson import ObjectId  # noqa: E402

from botrequests.storage import embedded, mongomock_deadline  # noqa: E402, F401 (installs the fixes)

ROUNDS = 7


def main(documents: int) -> None:
    collection = mongomock.MongoClient().db.requests
    bot = ObjectId()
    collection.insert_many(
        [
            {"bot": bot if i % 5 == 0 else ObjectId(), "success": i % 2 == 0, "createdAt": i}
            for i in range(documents)
        ]
    )

    def page() -> list:
        query = collection.find({"bot": bot, "success": True})
        return list(query.sort([("createdAt", -1)]).limit(100))

    def stats() -> list:
        pipeline = [
            {"$match": {"success": True}},
            {"$group": {"_id": "$bot", "n": {"$sum": 1}}},
        ]
        return list(collection.aggregate(pipeline))

    times: dict[tuple[str, bool], list[float]] = {}
    for _ in range(ROUNDS):
        for deadline in (True, False):
            for name, call in (("page of 100, filtered", page), ("stats by bot", stats)):
                started = time.perf_counter()
                mongomock_deadline.run_with_deadline(600_000 if deadline else None, call)
                times.setdefault((name, deadline), []).append(time.perf_counter() - started)
    print(f"| {documents:,} documents | with a deadline | without | ratio |")
    print("|---|---|---|---|")
    for name in ("page of 100, filtered", "stats by bot"):
        timed = statistics.median(times[(name, True)])
        plain = statistics.median(times[(name, False)])
        print(f"| {name} | {timed * 1000:.1f} ms | {plain * 1000:.1f} ms | {timed / plain:.2f}x |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--documents", type=int, default=30_000)
    main(parser.parse_args().documents)
