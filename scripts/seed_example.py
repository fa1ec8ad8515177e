"""Record the seed's example (the Hellow world bot, John Doe, one image,
`{"color": "Green"}`) and print the populated JSON.

    python scripts/seed_example.py                                  # in-process, embedded
    python scripts/seed_example.py http://127.0.0.1:8000 --key br_… # a running service

Against a running service with access control on, pass the API key the service printed at
start-up (`--key`, or BOTREQUESTS_API_KEY): the example is recorded in that key's
organization, so the same key reads it back. With only the admin token (`--admin-token`,
or BOTREQUESTS_ADMIN_TOKEN) the script creates the organization Test, issues it a key and
prints that key.
"""

import argparse
import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx


class Refused(Exception):
    """What the service said no to, in one line."""


@asynccontextmanager
async def _client(base_url: str | None, key: str | None) -> AsyncIterator[httpx.AsyncClient]:
    if base_url:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        async with httpx.AsyncClient(base_url=base_url, timeout=10, headers=headers) as client:
            yield client
        return
    from botrequests.app import create_app
    from botrequests.config import Settings

    app = create_app(Settings(mongodb_uri="mongomock://", BOTREQUESTS_AUTH="off", _env_file=None))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("29.251.124.244", 1234))
        async with httpx.AsyncClient(transport=transport, base_url="http://embedded") as client:
            yield client


def _check(response: httpx.Response) -> Any:
    if response.status_code == 401:
        raise Refused(
            "the service has access control on and this key is missing or wrong: pass "
            "--key with the API key it printed at start-up (or set BOTREQUESTS_API_KEY)"
        )
    if response.is_error:
        try:
            detail = response.json().get("detail")
        except ValueError:
            detail = response.text[:200]
        raise Refused(
            f"{response.request.method} {response.request.url.path}: "
            f"{response.status_code} {detail}"
        )
    return response.json()


async def _post(client: httpx.AsyncClient, path: str, body: dict[str, Any]) -> dict[str, Any]:
    return _check(await client.post(path, json=body))


async def main(
    base_url: str | None, key: str | None = None, admin_token: str | None = None
) -> dict[str, Any]:
    """The populated request; with only an admin token, in a new organization Test whose
    new key is printed on stderr."""
    if base_url and not key and admin_token:
        async with _client(base_url, admin_token) as admin:
            org = await _post(admin, "/organizations", {"name": "Test"})
            key = (await _post(admin, f"/organizations/{org['id']}/api-keys", {}))["key"]
        print(f"organization Test ({org['id']}), its API key: {key}", file=sys.stderr)
    async with _client(base_url, key) as client:
        # With a key, the key's own organization; without (access control off), a new one.
        org = None if key else await _post(client, "/organizations", {"name": "Test"})
        owner = {"organization": org["id"]} if org else {}
        user = await _post(client, "/users", {"name": "John Doe", **owner})
        slug = "hellow_world_bot"
        existing = _check(await client.get("/bots", params={"limit": 500}))
        bot = next((b for b in existing["items"] if b["slug"] == slug), None)
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
                **owner,
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
        _check(done)
        return _check(await client.get(f"/bot-requests/{request['id']}"))


def cli(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Record the seed's example request and print it populated."
    )
    parser.add_argument(
        "url", nargs="?", help="a running service (default: in-process, embedded backend)"
    )
    parser.add_argument(
        "--key",
        default=os.environ.get("BOTREQUESTS_API_KEY"),
        help="API key (default $BOTREQUESTS_API_KEY): the one the service printed at start-up",
    )
    parser.add_argument(
        "--admin-token",
        default=os.environ.get("BOTREQUESTS_ADMIN_TOKEN"),
        help="without a key: the admin token, to make an organization Test and its key",
    )
    args = parser.parse_args(argv)
    try:
        answer = asyncio.run(main(args.url, args.key, args.admin_token))
    except Refused as exc:
        print(f"seed_example: {exc}", file=sys.stderr)
        return 1
    except httpx.TransportError as exc:
        print(f"seed_example: cannot reach {args.url}: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(answer, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(cli())
