"""`botrequests dump DIR`: the data directory as a `mongodump` directory.

`DIR/<database>/<collection>.bson` holds the documents exactly as stored (BSON, one after
another) and `<collection>.metadata.json` the indexes, as mongodump writes them, so that
`mongorestore DIR` loads them into MongoDB and `botrequests import DIR` reads them back.
Read from SQLite directly in one read transaction: a consistent state even while a
service writes to the directory (WAL lets one writer and readers work at once).
"""

import sqlite3
from dataclasses import dataclass
from pathlib import Path

import bson
from bson import json_util
from bson.son import SON

from botrequests.storage import datadir, durable
from botrequests.storage.datadir import DataDirError


@dataclass
class Dumped:
    database: str
    collection: str
    documents: int
    indexes: int

    def line(self) -> str:
        return (
            f"{self.database}.{self.collection}: {self.documents} document(s), "
            f"{self.indexes} index(es)"
        )


def metadata(name: str, indexes: dict[str, dict]) -> str:
    """A collection's `metadata.json` as mongodump writes it (canonical Extended JSON)."""
    listed = [SON([("v", 2), ("key", SON([("_id", 1)])), ("name", "_id_")])]
    for index_name, spec in indexes.items():
        entry = SON([("v", 2), ("key", SON(list(spec["key"]))), ("name", index_name)])
        entry.update({k: v for k, v in spec.items() if k != "key"})
        listed.append(entry)
    document = SON(
        [("indexes", listed), ("collectionName", name), ("type", "collection"), ("options", {})]
    )
    return json_util.dumps(document, json_options=json_util.CANONICAL_JSON_OPTIONS)


def dump(data: Path, target: Path) -> list[Dumped]:
    """Write every collection of the data directory `data` under `target` (which must be
    empty or new); what was written, per collection."""
    path = data.expanduser().absolute() / datadir.DATABASE_FILE
    if not path.is_file():
        raise DataDirError(f"{path}: no botrequests database there (BOTREQUESTS_DATA_DIR)")
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise DataDirError(f"{target}: not an empty directory; name a new or empty one")
    try:
        connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
    except sqlite3.Error as exc:
        raise DataDirError(f"{path}: cannot open it: {exc}") from None
    done: list[Dumped] = []
    try:
        if connection.execute("PRAGMA application_id").fetchone()[0] != durable.APPLICATION_ID:
            raise DataDirError(f"{path}: not a botrequests database")
        connection.execute("BEGIN")  # one snapshot for every collection
        rows = connection.execute(
            "SELECT database, name, tbl, indexes FROM collections ORDER BY database, name"
        ).fetchall()
        for database, name, table, blob in rows:
            folder = target / database
            folder.mkdir(parents=True, exist_ok=True)
            count = 0
            with open(folder / f"{name}.bson", "wb") as out:
                for (document,) in connection.execute(f'SELECT doc FROM "{table}" ORDER BY rowid'):
                    out.write(document)
                    count += 1
            indexes = durable.decode_indexes(blob)
            (folder / f"{name}.metadata.json").write_text(metadata(name, indexes))
            done.append(Dumped(database, name, count, len(indexes) + 1))
        connection.execute("COMMIT")
    except (sqlite3.DatabaseError, bson.errors.BSONError) as exc:
        raise DataDirError(f"{path}: SQLite could not read it: {exc}") from None
    except OSError as exc:
        raise DataDirError(f"{target}: cannot write: {exc.strerror or exc}") from None
    finally:
        connection.close()
    return done
