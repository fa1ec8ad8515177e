"""Load mongoexport files (Extended JSON, canonical or relaxed; one document per line or a
JSON array) as they are, then report what the service could not serve.

Every document of every file is parsed and checked first (`importfile.py`): a refused
file loads nothing, and neither do the others unless `--partial` is asked for.
"""

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from beanie import Document
from bson import ObjectId
from pydantic import ValidationError

from botrequests import db, importfile
from botrequests.config import settings
from botrequests.documents import ENTITY_MODELS, Bot, BotRequest, File, Invoice, User

ImportFileError = importfile.ImportFileError

COLLECTIONS: dict[str, type[Document]] = {m.Settings.name: m for m in ENTITY_MODELS}

# collection -> {reference field: referenced collection}
REFERENCES: dict[str, dict[str, str]] = {
    "users": {"organization": "organizations"},
    "bots": {"organization": "organizations"},
    "files": {"createdBy": "users", "organization": "organizations"},
    "invoices": {"organization": "organizations"},
    "botrequests": {
        "bot": "bots",
        "createdBy": "users",
        "organization": "organizations",
        "invoice": "invoices",
        "images": "files",
        "originalRequest": "botrequests",
        "relatedRequests": "botrequests",
    },
}
# What the entity documents say is required (Mongoose's `required: true`): a document
# without it is reported, even where the service can still serve what it has.
REQUIRED: dict[str, tuple[str, ...]] = {
    "organizations": ("name",),
    "users": ("name",),
    "bots": ("name", "slug"),
    "files": ("fileName", "s3Key"),
    "invoices": ("organization", "credits", "status"),
    "botrequests": ("bot", "ip", "success", "response"),
}
_MODELS = {m.Settings.name: m for m in (User, Bot, File, Invoice, BotRequest)}


@dataclass
class Loaded:
    path: str
    collection: str
    docs: list[tuple[int, dict[str, Any]]]  # (line, document)
    inserted: int = 0
    updated: int = 0
    skipped: list[tuple[int, str]] = field(default_factory=list)  # existing _ids


@dataclass
class Report:
    files: list[Loaded] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # "file:line: what"
    refused: list[str] = field(default_factory=list)  # with --partial: not loaded, why

    def lines(self) -> list[str]:
        out = []
        for loaded in self.files:
            out.append(
                f"{loaded.path}: {loaded.inserted} inserted, {loaded.updated} updated, "
                f"{len(loaded.skipped)} skipped (already there) into {loaded.collection}"
            )
            out += [
                f"{loaded.path}:{line}: _id {oid} exists, skipped" for line, oid in loaded.skipped
            ]
        out += self.problems
        out.append(f"{len(self.problems)} document(s) the service cannot serve as they are")
        if self.refused:
            out += [f"refused, not loaded: {line}" for line in self.refused]
            files = len({line.split(":")[0] for line in self.refused})
            out.append(f"{files} file(s) refused and not loaded ({len(self.refused)} reasons)")
        return out


def parse_file(path: Path, collection: str | None, max_depth: int) -> Loaded | list[str]:
    """A file's documents, checked (nothing written), or every reason it is refused."""
    name = collection or path.name.split(".")[0]
    if name not in COLLECTIONS:
        return [
            f"{path}: unknown collection {name!r} (one of {', '.join(COLLECTIONS)}); "
            "name the file after its collection or pass --collection"
        ]
    read = importfile.read(path, name, max_depth)
    return read.refusals or Loaded(read.path, name, read.docs)


MAX_REFUSALS_SHOWN = 50


async def load(
    paths: list[Path],
    collection: str | None = None,
    upsert: bool = False,
    partial: bool = False,
    max_depth: int | None = None,
) -> Report:
    """Check every file first, then write, then check what was loaded. A refused file
    (bad JSON or Extended JSON, a value the API would refuse) stops the whole import
    before anything is written, or, with `partial`, only itself (listed in the report).

    Writes are by `_id`, so an import cut short (a lost connection) is finished by running
    it again: what is there is skipped (or `$set` again with `upsert`)."""
    max_depth = max_depth or settings.max_json_depth
    files: list[Loaded] = []
    refused: list[str] = []
    for path in paths:
        parsed = parse_file(path, collection, max_depth)
        if isinstance(parsed, Loaded):
            files.append(parsed)
        else:
            refused += parsed
    if refused and not partial:
        shown = refused[:MAX_REFUSALS_SHOWN]
        more = len(refused) - len(shown)
        raise ImportFileError(
            "\n".join(shown)
            + (f"\n... and {more} more" if more else "")
            + "\nnothing was loaded (--partial loads the files that were not refused)"
        )
    report = Report(files, refused=refused)
    for loaded in files:
        model = COLLECTIONS[loaded.collection]
        for _, doc in loaded.docs:
            doc.setdefault("_id", ObjectId())
        ids = [doc["_id"] for _, doc in loaded.docs]
        existing = await db.existing_ids(model, ids)
        fresh = [doc for _, doc in loaded.docs if doc["_id"] not in existing]
        if fresh:
            loaded.inserted = len(await db.insert_raw(model, fresh))
        old = [(line, doc) for line, doc in loaded.docs if doc["_id"] in existing]
        if upsert and old:
            loaded.updated = await db.set_raw(model, [doc for _, doc in old])
        elif old:
            loaded.skipped = [(line, str(doc["_id"])) for line, doc in old]
    report.problems = await check(files)
    return report


async def check(files: list[Loaded]) -> list[str]:
    """What the service could not serve: missing required fields, references of the wrong
    type, references to records that do not exist (one query per referenced collection)."""
    problems: list[str] = []
    wanted: dict[str, set[ObjectId]] = defaultdict(set)
    pending: list[tuple[str, int, str, str, ObjectId]] = []
    for loaded in files:
        model = _MODELS.get(loaded.collection)
        refs = REFERENCES.get(loaded.collection, {})
        for line, doc in loaded.docs:
            where = f"{loaded.path}:{line}"
            problems += [
                f"{where}: {name}: required field missing"
                for name in REQUIRED.get(loaded.collection, ())
                if doc.get(name) is None
            ]
            if model is not None:
                try:
                    model.model_validate(doc)
                except ValidationError as exc:
                    for error in exc.errors():
                        if error["type"] == "missing":
                            continue  # reported above
                        loc = ".".join(str(part) for part in error["loc"])
                        problems.append(f"{where}: {loc}: {error['msg']}")
            for name, target in refs.items():
                value = doc.get(name)
                values = value if isinstance(value, list) else [value]
                for item in values:
                    if item is None:
                        continue
                    if not isinstance(item, ObjectId):
                        problems.append(f"{where}: {name} is not an ObjectId: {item!r}")
                        continue
                    wanted[target].add(item)
                    pending.append((where, line, name, target, item))
    found = {
        target: await db.existing_ids(COLLECTIONS[target], list(ids))
        for target, ids in wanted.items()
    }
    for where, _, name, target, item in pending:
        if item not in found[target]:
            problems.append(f"{where}: {name} {item} names no document in {target}")
    return problems
