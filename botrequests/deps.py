"""Dependencies: strict path ids, load-or-404 records, the `populate` query, JSON output."""

from typing import Annotated, Any

import orjson
from beanie import PydanticObjectId
from fastapi import Depends, Path, Query, Request
from fastapi.responses import Response

from botrequests import populate, records
from botrequests.auth import scoped
from botrequests.config import Settings
from botrequests.documents import Bot, BotRequest, File, Invoice, Organization, User, reader
from botrequests.errors import not_found
from botrequests.schemas import OBJECT_ID_PATTERN
from botrequests.storage import db


class JSON(Response):
    """orjson-encoded JSON: the serializer already made every value JSON-ready."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def created(body: dict[str, Any], location: str) -> JSON:
    """201 with `Location`: where the new record (or the list it joined) is read back."""
    return JSON(body, status_code=201, headers={"Location": location})


# Every dependency is `async def`: a plain `def` one is run in the thread pool, a hop
# there and back on every request for what takes microseconds.
async def object_id(
    id: Annotated[str, Path(pattern=OBJECT_ID_PATTERN, description="24 hex digits")],
) -> PydanticObjectId:
    return PydanticObjectId(id.lower())


ObjectIdPath = Annotated[PydanticObjectId, Depends(object_id)]


def _loader(model: type) -> Any:
    async def load(identifier: ObjectIdPath) -> Any:
        return await records.get_or_404(model, identifier)

    return load


OrganizationDep = Annotated[Organization, Depends(_loader(Organization))]
UserDep = Annotated[User, Depends(_loader(User))]
BotDep = Annotated[Bot, Depends(_loader(Bot))]
FileDep = Annotated[File, Depends(_loader(File))]
InvoiceDep = Annotated[Invoice, Depends(_loader(Invoice))]


async def load_bot_request(identifier: ObjectIdPath) -> BotRequest:
    (rows,) = await db.find_each([(BotRequest, scoped(BotRequest, {"_id": identifier}), None)])
    if not rows:
        raise not_found("bot request", identifier)
    # Validated (a stored document of the wrong type is a clear 500), not a Beanie
    # document: reads never save, and `reader` skips Beanie's second validation.
    return reader(BotRequest).model_validate(rows[0])  # type: ignore[return-value]


BotRequestDep = Annotated[BotRequest, Depends(load_bot_request)]


async def populate_paths(
    populate_: Annotated[
        str | None,
        Query(
            alias="populate",
            max_length=200,
            description="Comma list of bot, createdBy, organization, images, invoice; "
            "empty or 'none' for raw ids. Absent: all.",
        ),
    ] = None,
) -> tuple[str, ...]:
    return populate.parse_paths(populate_)


PopulatePaths = Annotated[tuple[str, ...], Depends(populate_paths)]


async def app_settings(request: Request) -> Settings:
    return request.app.state.settings


SettingsDep = Annotated[Settings, Depends(app_settings)]
