"""Bots and their input definitions."""

from typing import Annotated

from fastapi import APIRouter, Query

from botrequests import records
from botrequests.deps import JSON, BotDep, created
from botrequests.responses import BotPage, BotPublic, PromptPreview
from botrequests.schemas import SLUG_PATTERN, BotCreate, BotUpdate
from botrequests.serialize import dump_bot

BOT_CURSOR_PATTERN = SLUG_PATTERN.removesuffix("$") + r"\.[0-9a-f]{24}$"

router = APIRouter(prefix="/bots", tags=["bots"])


@router.post("", status_code=201, response_model=BotPublic)
async def create_bot(body: BotCreate) -> JSON:
    """Create a bot with its input definitions (slug must be unique: 409 otherwise)."""
    answer = dump_bot(await records.create_bot(body))
    return created(answer, f"/bots/{answer['id']}")


@router.get("", response_model=BotPage)
async def list_bots(
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    cursor: Annotated[str | None, Query(pattern=BOT_CURSOR_PATTERN, description="`next`")] = None,
    q: Annotated[
        str | None, Query(max_length=100, description="name or slug contains (any case)")
    ] = None,
) -> JSON:
    """List bots by slug (`q` finds them by name or slug); follow `next` for more."""
    bots, more = await records.list_bots(limit, cursor, q)
    next_page = records.bot_cursor(bots[-1]) if more else None
    return JSON({"items": [dump_bot(bot) for bot in bots], "next": next_page})


@router.get("/{id}", response_model=BotPublic)
async def read_bot(bot: BotDep) -> JSON:
    """Read one bot."""
    return JSON(dump_bot(bot))


@router.patch("/{id}", response_model=BotPublic)
async def update_bot(bot: BotDep, body: BotUpdate) -> JSON:
    """Change a bot; `inputs` replaces the list; `null` clears an optional field."""
    return JSON(dump_bot(await records.update_bot(bot, body)))


@router.get(
    "/{id}/prompt-preview",
    response_model=PromptPreview,
    responses={422: {"description": "inputs do not fit the bot's definitions"}},
)
async def prompt_preview(
    bot: BotDep,
    inputs: Annotated[
        str,
        Query(max_length=100_000, description='input values as a JSON object: {"color": "Green"}'),
    ] = "{}",
) -> JSON:
    """The prompt this bot would build from the given inputs; nothing is written."""
    return JSON(await records.prompt_preview(bot, inputs))
