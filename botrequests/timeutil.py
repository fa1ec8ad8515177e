"""Timestamps as Mongoose keeps them: UTC, millisecond precision (all a BSON date holds)."""

from datetime import UTC, datetime, timedelta


def now() -> datetime:
    moment = datetime.now(UTC)
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def later_than(previous: datetime | None) -> datetime:
    """Now, or one millisecond after `previous` if the clock has not moved past it (a
    fast PATCH, or another worker's clock ahead of ours): `updatedAt` only moves forward."""
    moment = now()
    if previous is not None:
        if previous.tzinfo is None:
            previous = previous.replace(tzinfo=UTC)
        if moment <= previous:
            moment = previous + timedelta(milliseconds=1)
    return moment
