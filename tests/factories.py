"""Records made through the HTTP API, as a client would make them."""

from typing import Any

import httpx


async def post(client: httpx.AsyncClient, path: str, body: dict[str, Any]) -> dict[str, Any]:
    response = await client.post(path, json=body)
    assert response.status_code == 201, response.text
    return response.json()


async def seed_world(client: httpx.AsyncClient) -> dict[str, dict[str, Any]]:
    """The seed example's records: organization Test, John Doe, the Hellow world bot, one
    image and an invoice."""
    org = await post(client, "/organizations", {"name": "Test"})
    user = await post(
        client,
        "/users",
        {"name": "John Doe", "email": "john.doe@example.com", "organization": org["id"]},
    )
    bot = await post(
        client,
        "/bots",
        {
            "name": "Hellow world bot",
            "slug": "hellow_world_bot",
            "creditCost": 10,
            "inputs": [
                {
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
            ],
        },
    )
    image = await post(
        client,
        "/files",
        {
            "createdBy": user["id"],
            "fileName": "e24faa5b-fa69-4024-8e10-abcd",
            "s3Key": "e24faa5b-fa69-4024-8e10-abcdefg",
        },
    )
    invoice = await post(
        client, "/invoices", {"organization": org["id"], "credits": 20, "status": "paid"}
    )
    return {"org": org, "user": user, "bot": bot, "image": image, "invoice": invoice}


def request_body(world: dict[str, dict[str, Any]], **extra: Any) -> dict[str, Any]:
    """A POST /bot-requests body naming the seed world's records."""
    return {
        "bot": world["bot"]["id"],
        "createdBy": world["user"]["id"],
        "organization": world["org"]["id"],
        "inputs": {"color": "Green"},
        "ip": "29.251.124.244",
        "success": True,
        "response": {"message": "Hellow word"},
        **extra,
    }


async def record(
    client: httpx.AsyncClient, world: dict[str, dict[str, Any]], **extra: Any
) -> dict[str, Any]:
    return await post(client, "/bot-requests", request_body(world, **extra))


async def template_bot(
    client: httpx.AsyncClient, slug: str, inputs: list[dict[str, Any]], template: str
) -> str:
    """A bot with these input definitions and prompt template; its id."""
    body = {"name": slug.title(), "slug": slug, "inputs": inputs, "promptTemplate": template}
    return (await post(client, "/bots", body))["id"]
