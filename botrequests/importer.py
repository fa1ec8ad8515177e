"""Load mongoexport files (Extended JSON, canonical or relaxed; one document per line or a
JSON array) or a mongodump directory (`botrequests dump`'s: `.bson` files, with the
indexes of each `.metadata.json`) as they are, then report what the service could not
serve.

Every document of every file is parsed and checked first (`importfile.py`): a refused
file loads nothing, and neither do the others unless `--partial` is asked for.
"""

from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from beanie import Document
from bson import ObjectId
from pydantic import ValidationError

from botrequests import importfile
from botrequests.config import settings
from botrequests.documents import (
    DOCUMENT_MODELS,
    ENTITY_MODELS,
    Bot,
    BotRequest,
    File,
    Invoice,
    User,
)
from botrequests.storage import db

ImportFileError = importfile.ImportFileError

# Detail lines a report shows; the rest are counted (`import --report PATH` writes all).
SHOWN = 20

COLLECTIONS: dict[str, type[Document]] = {m.Settings.name: m for m in ENTITY_MODELS}
# A dump holds every collection of the service (its keys and feedback too).
DUMPED: dict[str, type[Document]] = {m.Settings.name: m for m in DOCUMENT_MODELS}

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
    indexes: list[dict[str, Any]] = field(default_factory=list)  # a dump's, to create
    indexes_made: int = 0


@dataclass
class Report:
    files: list[Loaded] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # "file:line: what"
    kinds: Counter[str] = field(default_factory=Counter)  # problems per kind
    refused: list[str] = field(default_factory=list)  # with --partial: not loaded, why

    def details(self) -> list[str]:
        """Every line: each skipped _id, each problem, each refusal."""
        skipped = [
            f"{loaded.path}:{line}: _id {oid} exists, skipped"
            for loaded in self.files
            for line, oid in loaded.skipped
        ]
        return skipped + self.problems + [f"refused, not loaded: {r}" for r in self.refused]

    def lines(self, shown: int | None = SHOWN) -> list[str]:
        """A summary: per file what was written, problems counted per kind, the first
        `shown` detail lines (None: all of them)."""
        out = [
            f"{loaded.path}: {loaded.inserted} inserted, {loaded.updated} updated, "
            f"{len(loaded.skipped)} skipped (already there) into {loaded.collection}"
            + (f", {loaded.indexes_made} index(es) created" if loaded.indexes_made else "")
            for loaded in self.files
        ]
        details = self.details()
        out += details if shown is None else details[:shown]
        if shown is not None and len(details) > shown:
            out.append(f"... and {len(details) - shown} more (--report PATH writes every line)")
        for kind, count in sorted(self.kinds.items()):
            out.append(f"{count} × {kind}")
        unservable = sum(n for kind, n in self.kinds.items() if kind not in SERVABLE)
        out.append(f"{unservable} document(s) the service cannot serve as they are")
        if self.refused:
            files = len({line.split(":")[0] for line in self.refused})
            out.append(f"{files} file(s) refused and not loaded ({len(self.refused)} reasons)")
        return out


def expand(paths: list[Path]) -> list[Path]:
    """The files named: a directory stands for the `.bson` files of a dump in it (in it,
    or one level down: `DIR/<database>/<collection>.bson`)."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            found = sorted(path.glob("*.bson")) + sorted(path.glob("*/*.bson"))
            files += found or [path]  # refused below: "cannot read"
        else:
            files.append(path)
    return files


def parse_file(path: Path, collection: str | None, max_depth: int) -> Loaded | list[str]:
    """A file's documents, checked (nothing written), or every reason it is refused."""
    name = collection or path.name.split(".")[0]
    if path.suffix == ".bson" and name in DUMPED:
        read = importfile.read_bson(path, name, max_depth)
        if read.refusals:
            return read.refusals
        indexes = importfile.read_index_metadata(path.with_name(f"{name}.metadata.json"))
        if isinstance(indexes, str):
            return [indexes]
        return Loaded(read.path, name, read.docs, indexes=indexes)
    if path.is_dir():
        return [f"{path}: a directory without .bson files (a dump has DIR/<database>/*.bson)"]
    if name not in COLLECTIONS:
        return [
            f"{path}: unknown collection {name!r} (one of {', '.join(COLLECTIONS)}); "
            "name the file after its collection or pass --collection"
        ]
    read = importfile.read(path, name, max_depth)
    return read.refusals or Loaded(read.path, name, read.docs)


MAX_REFUSALS_SHOWN = 50


def _repeated_ids(files: list[Loaded]) -> list[tuple[str, str]]:
    """An `_id` in two files of one collection (each file alone was checked): the second
    file is refused, naming where the first has it."""
    first: dict[tuple[str, type, Any], str] = {}
    refused: list[tuple[str, str]] = []  # (file, reason)
    for loaded in files:
        for line, doc in loaded.docs:
            if "_id" not in doc:
                continue
            key = (loaded.collection, type(doc["_id"]), doc["_id"])
            if key in first and not first[key].startswith(f"{loaded.path}:"):
                reason = f"{loaded.path}:{line}: _id: the same _id as {first[key]}"
                refused.append((loaded.path, reason))
            first.setdefault(key, f"{loaded.path}:{line}")
    return refused


async def load(
    paths: list[Path],
    collection: str | None = None,
    upsert: bool = False,
    partial: bool = False,
    max_depth: int | None = None,
    progress: Callable[[str], None] | None = None,
) -> Report:
    """Check every file first, then write, then check what was loaded. A refused file
    (bad JSON or Extended JSON, a value the API would refuse) stops the whole import
    before anything is written, or, with `partial`, only itself (listed in the report).

    Writes are by `_id`, so an import cut short (a lost connection) is finished by running
    it again: what is there is skipped (or `$set` again with `upsert`)."""
    max_depth = max_depth or settings.max_json_depth
    files: list[Loaded] = []
    refused: list[str] = []
    say = progress or (lambda _: None)
    paths = expand(paths)
    for number, path in enumerate(paths, 1):
        say(f"checking {path} ({number} of {len(paths)})")
        parsed = parse_file(path, collection, max_depth)
        if isinstance(parsed, Loaded):
            files.append(parsed)
        else:
            refused += parsed
    repeated = _repeated_ids(files)
    if repeated:
        refused += [line for _, line in repeated]
        twice = {path for path, _ in repeated}
        files = [loaded for loaded in files if loaded.path not in twice]
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
        say(f"loading {loaded.path}: {len(loaded.docs)} document(s)")
        model = DUMPED[loaded.collection]
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
        if loaded.indexes:
            loaded.indexes_made, refused_indexes = await db.create_missing_indexes(
                model, loaded.indexes
            )
            report.refused += [f"{loaded.path}: index {line}" for line in refused_indexes]
    say("checking references")
    found = await check(files)
    report.problems = [text for _, text in found]
    report.kinds = Counter(kind for kind, _ in found)
    return report


MISSING, INVALID, NOT_AN_ID, DANGLING = (
    "missing required field",
    "invalid value",
    "reference that is not an ObjectId",
    "dangling reference (served as its id, not an error)",
)
SERVABLE = {DANGLING}


async def check(files: list[Loaded]) -> list[tuple[str, str]]:
    """What the service could not serve as it is (missing required fields, invalid values,
    references of the wrong type), and references to records that do not exist (served as
    their ids, reported so that an import of a part of a database is noticed); one query
    per referenced collection."""
    problems: list[tuple[str, str]] = []
    wanted: dict[str, set[ObjectId]] = defaultdict(set)
    pending: list[tuple[str, int, str, str, ObjectId]] = []
    for loaded in files:
        model = _MODELS.get(loaded.collection)
        refs = REFERENCES.get(loaded.collection, {})
        for line, doc in loaded.docs:
            where = f"{loaded.path}:{line}"
            problems += [
                (MISSING, f"{where}: {name}: required field missing")
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
                        problems.append((INVALID, f"{where}: {loc}: {error['msg']}"))
            for name, target in refs.items():
                value = doc.get(name)
                values = value if isinstance(value, list) else [value]
                for item in values:
                    if item is None:
                        continue
                    if not isinstance(item, ObjectId):
                        problems.append(
                            (NOT_AN_ID, f"{where}: {name} is not an ObjectId: {item!r}")
                        )
                        continue
                    wanted[target].add(item)
                    pending.append((where, line, name, target, item))
    found = {
        target: await db.existing_ids(COLLECTIONS[target], list(ids))
        for target, ids in wanted.items()
    }
    for where, _, name, target, item in pending:
        if item not in found[target]:
            problems.append((DANGLING, f"{where}: {name} {item} names no document in {target}"))
    return problems
