"""The ceiling of the stack for the benchmark: FastAPI + uvicorn serving a fixed JSON body
from memory (the bytes `GET /bot-requests/{id}` answered), no database, no serializer."""

import os
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import Response

PAYLOAD = Path(os.environ["BENCH_PAYLOAD"]).read_bytes()
app = FastAPI()


@app.get("/same")
async def same() -> Response:
    """The same JSON, from memory."""
    return Response(PAYLOAD, media_type="application/json")
