"""Record the seed's example (the Hellow world bot, John Doe, organization Test, one image,
`{"color": "Green"}`) and print the populated JSON.

    python scripts/seed_example.py                       # embedded backend, in-process
    python scripts/seed_example.py http://127.0.0.1:8000 # against a running service

Against a service with access control on, set BOTREQUESTS_ADMIN_TOKEN to its admin token.
"""

import asyncio
import json
import os
import sys
from contextlib import asynccontextmanager
from typing import Any

import httpx


@asynccontextmanager
async def _client(base_url: str | None):
    if base_url:
        # With access control on, organizations are created with the admin token.
        token = os.environ.get("BOTREQUESTS_ADMIN_TOKEN")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with httpx.AsyncClient(base_url=base_url, timeout=10, headers=headers) as client:
            yield client
        return
    from botrequests.app import create_app
    from botrequests.config import Settings

    app = create_app(Settings(mongodb_uri="", BOTREQUESTS_AUTH="off", _env_file=None))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("29.251.124.244", 1234))
        async with httpx.AsyncClient(transport=transport, base_url="http://embedded") as client:
            yield client


async def _post(client: httpx.AsyncClient, path: str, body: dict[str, Any]) -> dict[str, Any]:
    response = await client.post(path, json=body)
    response.raise_for_status()
    return response.json()


async def main(base_url: str | None) -> dict[str, Any]:
    async with _client(base_url) as client:
        org = await _post(client, "/organizations", {"name": "Test"})
        user = await _post(client, "/users", {"name": "John Doe", "organization": org["id"]})
        slug = "hellow_world_bot"
        existing = await client.get("/bots", params={"limit": 500})
        bot = next((b for b in existing.json()["items"] if b["slug"] == slug), None)
        if bot is None:
            color = {
                "inputGroup": 0,
                "inputType": "text",
                "step": 1,
                "label": "Colour",
                "name": "color",
                "defaultValue": "Green",
                "placeholder": "black",
                "required": True,
                "options": [],
            }
            bot = await _post(
                client,
                "/bots",
                {"name": "Hellow world bot", "slug": slug, "creditCost": 10, "inputs": [color]},
            )
        image = await _post(
            client,
            "/files",
            {
                "createdBy": user["id"],
                "fileName": "e24faa5b-fa69-4024-8e10-abcd",
                "s3Key": "e24faa5b-fa69-4024-8e10-abcdefg",
            },
        )
        # Recorded when the user asks, before the bot has answered ...
        request = await _post(
            client,
            "/bot-requests",
            {
                "bot": bot["id"],
                "createdBy": user["id"],
                "organization": org["id"],
                "inputs": {"color": "Green"},
                "ip": "29.251.124.244",
                "success": False,
                "response": {},
            },
        )
        # ... and completed when the answer lands.
        done = await client.patch(
            f"/bot-requests/{request['id']}",
            json={"success": True, "response": {"message": "Hellow word"}, "images": [image["id"]]},
        )
        done.raise_for_status()
        return (await client.get(f"/bot-requests/{request['id']}")).json()


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else None)), indent=2))
