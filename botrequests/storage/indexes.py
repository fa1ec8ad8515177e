"""Which of the service's indexes to create on a database another application already
uses, and what it costs when one cannot be.

The service moves in beside a Mongoose application: an index that application made (an
equivalent one under another name, one with other options, or one that took the name)
must not stop start-up. Each wanted index is compared with what is there before anything
is created; `db.ensure_indexes` makes the calls. Pure functions: no driver here.
"""

from dataclasses import dataclass
from typing import Any

from pymongo import IndexModel

# The options that change what an index means (others, such as `background`, do not).
_MEANINGFUL = ("unique", "sparse", "partialFilterExpression", "expireAfterSeconds", "collation")

# What is lost while a unique index is missing: the rule it keeps. Indexes not named here
# only serve queries: without them the same answers come slower (a collection scan).
UNIQUE_COSTS = {
    "organization_1_slug_1": "two bots of one organization may share a slug",
    "organization_1_requestKey_1": (
        "two writes racing with the same requestKey may both be stored (a retry after the "
        "first is stored is still answered 409)"
    ),
    "hash_1": "none in practice (a key's hash is 256 random bits)",
}


@dataclass(frozen=True)
class Decision:
    collection: str
    name: str
    action: str  # "present" | "create" | "equivalent" | "missing"
    detail: str = ""
    cost: str = ""

    def line(self) -> str:
        text = f"{self.collection}.{self.name}"
        if self.detail:
            text += f" ({self.detail})"
        if self.cost:
            text += f": {self.cost}"
        return text


def _key(spec: Any) -> tuple[tuple[str, Any], ...]:
    """An index key as a comparable tuple (directions 1 and 1.0 are the same)."""
    pairs = spec.items() if isinstance(spec, dict) else spec
    return tuple(
        (field, int(direction) if isinstance(direction, int | float) else direction)
        for field, direction in pairs
    )


def _options(info: dict[str, Any]) -> dict[str, Any]:
    options = {name: info[name] for name in _MEANINGFUL if name in info}
    if not options.get("unique"):
        options.pop("unique", None)
    if not options.get("sparse"):
        options.pop("sparse", None)
    return options


def cost_of(name: str, unique: bool) -> str:
    if unique:
        return "not enforced: " + UNIQUE_COSTS.get(name, "the rule it keeps is not enforced")
    return "queries it serves scan the collection instead (same answers, slower)"


def decide(collection: str, wanted: IndexModel, existing: dict[str, dict[str, Any]]) -> Decision:
    """Compare one wanted index with the collection's indexes (`index_information()`)."""
    doc = wanted.document
    name, key, options = doc["name"], _key(doc["key"]), _options(doc)
    unique = bool(options.get("unique"))
    same_name = existing.get(name)
    if same_name is not None and _key(same_name["key"]) == key and _options(same_name) == options:
        return Decision(collection, name, "present")
    alike = [(other, info) for other, info in existing.items() if _key(info["key"]) == key]
    for other, info in alike:
        if _options(info) == options:
            return Decision(collection, name, "equivalent", f"the same index exists as {other}")
    if alike:
        other, info = alike[0]
        theirs = _options(info)
        if unique and not theirs.get("unique"):
            cost = cost_of(name, unique)
        elif theirs.get("unique") and not unique:
            cost = f"queries are served; {other}'s uniqueness also applies to this service"
        else:
            cost = "queries are served by it; its other options apply"
        detail = f"{other} has these keys with {theirs or 'no options'}"
        return Decision(collection, name, "equivalent", detail, cost)
    if same_name is not None:
        detail = f"the name is taken by an index on {_describe(same_name)}"
        return Decision(collection, name, "missing", detail, cost_of(name, unique))
    return Decision(collection, name, "create", cost=cost_of(name, unique))


def _describe(info: dict[str, Any]) -> str:
    keys = ", ".join(f"{field}: {direction}" for field, direction in _key(info["key"]))
    options = _options(info)
    return "{" + keys + "}" + (f" {options}" if options else "")


# Search (`q=`) on MongoDB: a text index over every string of a request (`$**`: the input
# values and the response have no fixed paths), without a language (no stemming, no stop
# words: every word as written, as words.py reads them). Its language field is one no
# record holds: a request with a `language` field of any value would otherwise pick how it
# is indexed, and an unknown language refuses the insert.
SEARCH_INDEX = "botrequests_search"
SEARCH_INDEX_MODEL = IndexModel(
    [("$**", "text")],
    name=SEARCH_INDEX,
    default_language="none",
    language_override="_botrequestsLanguage",
)
SEARCH_COST = (
    "search (q=) reads every request of the organization that its other filters leave "
    "(same answers, slower)"
)


def _is_text(info: dict[str, Any]) -> bool:
    return any(field == "_fts" for field, _ in _key(info.get("key", ())))


def decide_search(collection: str, existing: dict[str, dict[str, Any]]) -> Decision:
    """The text index search uses: present (ours), to create, or missing when the
    collection already has a text index of its own (MongoDB allows one per collection)
    or the name is taken."""
    ours = existing.get(SEARCH_INDEX)
    if ours is not None and _is_text(ours) and ours.get("default_language") == "none":
        return Decision(collection, SEARCH_INDEX, "present")
    others = [name for name, info in existing.items() if _is_text(info) and name != SEARCH_INDEX]
    if ours is not None or others:
        taken = ours is not None and not others
        detail = (
            f"the name is taken by an index on {_describe(ours)}"
            if taken and ours is not None and not _is_text(ours)
            else f"the collection has a text index already ({(others or [SEARCH_INDEX])[0]}); "
            "MongoDB allows one per collection"
        )
        return Decision(collection, SEARCH_INDEX, "missing", detail, SEARCH_COST)
    return Decision(collection, SEARCH_INDEX, "create", cost=SEARCH_COST)
