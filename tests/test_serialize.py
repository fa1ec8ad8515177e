"""The serializer's conversions and key order, on documents built here (the served shapes
as a whole are checked against Mongoose in test_mongoose.py and test_mongoose_peer.py)."""

from collections import OrderedDict
from datetime import UTC, datetime, timedelta, timezone

from beanie import PydanticObjectId
from bson import ObjectId
from bson.tz_util import utc as bson_utc

from botrequests.documents import BotRequest, reader
from botrequests.serialize import dump, iso, plain

MOMENT = datetime(2026, 1, 2, 3, 4, 5, 678_999)


def test_iso_serves_every_offset_as_utc_milliseconds():
    assert iso(MOMENT) == "2026-01-02T03:04:05.678Z"  # stored dates are naive UTC
    assert iso(MOMENT.replace(tzinfo=UTC)) == "2026-01-02T03:04:05.678Z"
    assert iso(MOMENT.replace(tzinfo=bson_utc)) == "2026-01-02T03:04:05.678Z"
    east = timezone(timedelta(hours=5, minutes=30))
    assert iso(MOMENT.replace(tzinfo=east)) == "2026-01-01T21:34:05.678Z"
    west = timezone(timedelta(hours=-3))
    assert iso(MOMENT.replace(tzinfo=west)) == "2026-01-02T06:04:05.678Z"
    assert iso(datetime(1, 1, 1)) == "0001-01-01T00:00:00.000Z"


def test_plain_converts_subclasses_as_their_base_types():
    identifier = ObjectId()
    value = OrderedDict(
        [("id", PydanticObjectId(identifier)), ("at", (MOMENT, [identifier])), ("n", 1)]
    )
    assert plain(value) == {"id": str(identifier), "at": [iso(MOMENT), [str(identifier)]], "n": 1}
    assert type(plain(value)) is dict


def test_dump_of_a_read_document_keeps_stored_order_and_serves_later_fields_last():
    stored = {
        "_id": ObjectId(),
        "success": True,
        "userAgent": "curl",  # outside the schema: served in its place
        "bot": ObjectId(),
        "usage": {"model": "m", "extra": {}},
        "createdAt": MOMENT,
        "__v": 0,
    }
    read = reader(BotRequest).model_validate(stored)
    served = dump(read)
    assert list(served) == [
        "images",
        "relatedRequests",
        "success",
        "userAgent",
        "bot",
        "usage",
        "createdAt",
        "id",
    ]
    assert served["usage"] == {"model": "m"}  # an empty object is left out
    read.sessionKey = "s1"  # set since it was read: after the stored keys
    assert list(dump(read))[-2:] == ["sessionKey", "id"]
    assert dump(read)["sessionKey"] == "s1"
