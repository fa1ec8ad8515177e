"""Feedback on requests: a score in [-1, 1] (thumbs are -1 and 1), an optional comment and
who gave it; many per request, in the service's own `feedback` collection."""

from typing import Any

from beanie import PydanticObjectId

from botrequests import erasure
from botrequests.auth import scoped
from botrequests.documents import BotRequest, Feedback, User
from botrequests.errors import Conflict, InvalidInput, not_found
from botrequests.schemas import FeedbackCreate
from botrequests.storage import db
from botrequests.timeutil import now


async def add(request: BotRequest, body: FeedbackCreate) -> Feedback:
    """Record feedback; then check that its request is still there (a retention sweep or
    an erasure may have deleted it meanwhile): if not, the feedback is deleted too and
    the answer is 404, so no feedback outlives its request (retention.py)."""
    checked_at = erasure.clock()
    if body.by is not None:
        (users,) = await db.find_each([(User, scoped(User, {"_id": body.by}), {"organization": 1})])
        if not users or users[0].get("organization") != request.organization:
            raise InvalidInput(
                ["body", "by"], f"user {body.by} is not a user of this request's organization"
            )
    record = Feedback(
        request=request.id,  # type: ignore[arg-type]
        organization=request.organization,
        **body.model_dump(exclude_none=True),
        createdAt=now(),
    )
    await record.insert()
    (still,) = await db.find_each([(BotRequest, {"_id": request.id}, {"_id": 1})])
    if not still or await erasure.landed_late(checked_at, [body.by]):
        await db.delete_many(Feedback, {"_id": record.id})
        if not still:
            raise not_found("bot request", request.id)
        raise Conflict(erasure.ERASED.format(user=body.by))
    return record


async def of(request: BotRequest) -> list[Feedback]:
    return await Feedback.find({"request": request.id}).sort("createdAt").to_list()


async def remove(request: BotRequest, identifier: PydanticObjectId) -> None:
    if not await db.delete_many(Feedback, {"_id": identifier, "request": request.id}):
        raise not_found("feedback", identifier)


async def summaries(ids: list[Any]) -> dict[Any, dict[str, Any]]:
    """Per request id: `{count, averageScore}` of its feedback (one aggregation)."""
    if not ids:
        return {}
    rows = await db.aggregate(
        Feedback,
        [
            {"$match": {"request": {"$in": ids}}},
            {"$group": {"_id": "$request", "count": {"$sum": 1}, "total": {"$sum": "$score"}}},
        ],
    )
    return {
        row["_id"]: {"count": row["count"], "averageScore": round(row["total"] / row["count"], 4)}
        for row in rows
    }
