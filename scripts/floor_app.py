"""The service's own stack with none of its work, for the latency benchmark: the app
`botrequests serve` runs (its middleware, routing, access-control and readiness
dependencies, embedded backend started) with one more route, `GET
/bot-requests/{id}/same`, which takes the id and `?populate=` as the real GET does and
answers the bytes the service answered, from memory: no database read, no population,
no serializer. Between the bare endpoint and the service, it shows how much of the gap
is the framework's and how much is the service's own work. (It is matched after the
router's other routes, the real GET's included: if anything, a little slower.)"""

import os
from pathlib import Path

from fastapi.responses import Response

from botrequests.app import create_app
from botrequests.deps import ObjectIdPath, PopulatePaths
from botrequests.routes import bot_requests

PAYLOAD = Path(os.environ["BENCH_PAYLOAD"]).read_bytes()


@bot_requests.router.get("/{id}/same", include_in_schema=False)
async def same(identifier: ObjectIdPath, paths: PopulatePaths) -> Response:
    """The same JSON, from memory, past the same middleware and dependencies."""
    return Response(PAYLOAD, media_type="application/json")


app = create_app()
