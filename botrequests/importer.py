"""Load mongoexport files (Extended JSON, canonical or relaxed; one document per line or a
JSON array) as they are, then report what the service could not serve.

A malformed file (bad JSON or Extended JSON, an item that is not an object) loads nothing:
every document of a file is parsed before any is written.
"""

import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from beanie import Document
from bson import ObjectId, json_util
from bson.errors import InvalidId
from pydantic import ValidationError

from botrequests import db
from botrequests.documents import ENTITY_MODELS, Bot, BotRequest, File, Invoice, User

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


class ImportFileError(Exception):
    """A file that cannot be loaded; nothing of it was written."""


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
        return out


def parse_file(path: Path, collection: str | None = None) -> Loaded:
    name = collection or path.name.split(".")[0]
    if name not in COLLECTIONS:
        raise ImportFileError(
            f"{path}: unknown collection {name!r} (one of {', '.join(COLLECTIONS)}); "
            "name the file after its collection or pass --collection"
        )
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ImportFileError(f"{path}: cannot read: {exc}") from exc
    docs: list[tuple[int, Any]] = []
    if text.lstrip().startswith("["):
        try:
            items = json_util.loads(text)
        except (ValueError, TypeError, InvalidId) as exc:
            line = getattr(exc, "lineno", "?")
            raise ImportFileError(f"{path}:{line}: not valid (Extended) JSON: {exc}") from exc
        # A JSON array: report items by the line they start on, where json can tell.
        starts = _array_item_lines(text)
        docs = [(starts[i] if i < len(starts) else i + 1, item) for i, item in enumerate(items)]
    else:
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                docs.append((number, json_util.loads(line)))
            except (ValueError, TypeError, InvalidId) as exc:
                raise ImportFileError(f"{path}:{number}: not valid (Extended) JSON: {exc}") from exc
    for number, doc in docs:
        if not isinstance(doc, dict):
            raise ImportFileError(f"{path}:{number}: a document must be a JSON object")
        if "_id" in doc and not isinstance(doc["_id"], ObjectId | str | int):
            raise ImportFileError(f"{path}:{number}: _id must be an ObjectId")
    return Loaded(str(path), name, docs)


def _array_item_lines(text: str) -> list[int]:
    """The line each top-level item of a JSON array starts on."""
    decoder = json.JSONDecoder()
    lines, index = [], text.index("[") + 1
    # Lines counted from the previous item on, not from the start: linear in the file.
    counted, line = 0, 1
    while True:
        while index < len(text) and text[index] in " \t\r\n,":
            index += 1
        if index >= len(text) or text[index] == "]":
            return lines
        line += text.count("\n", counted, index)
        counted = index
        lines.append(line)
        try:
            _, index = decoder.raw_decode(text, index)
        except ValueError:
            return lines


async def load(paths: list[Path], collection: str | None = None, upsert: bool = False) -> Report:
    """Parse every file first (a malformed one raises before anything is written), then
    write, then check what was loaded."""
    files = [parse_file(path, collection) for path in paths]
    report = Report(files)
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
