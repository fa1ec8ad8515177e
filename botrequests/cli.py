"""The `botrequests` command: serve, import, dump, repair-threads, purge, create-api-key."""

import argparse
import asyncio
import logging
import os
import re
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError
from pymongo.errors import PyMongoError

from botrequests import __version__, setting_checks

if TYPE_CHECKING:
    from botrequests.config import Settings


def _serve(args: argparse.Namespace, settings: "Settings") -> int:
    import uvicorn

    # Imported here: they read the settings at import time (see `main`).
    from botrequests import serving
    from botrequests.storage import datadir, durable

    if args.workers > 1 and settings.embedded:
        print(
            "botrequests: --workers > 1 needs MONGODB_URI: each worker would hold its own "
            "embedded database, and requests would land in different ones.",
            file=sys.stderr,
        )
        return 2
    if args.import_paths:
        if not settings.embedded:
            print(
                "botrequests: serve --import loads into the embedded backend only; "
                "use `botrequests import` for MONGODB_URI.",
                file=sys.stderr,
            )
            return 2
        # The app loads these in its lifespan (the embedded database lives in its process).
        os.environ["BOTREQUESTS_IMPORT_PATHS"] = os.pathsep.join(args.import_paths)
    host, port = args.host or settings.host, args.port or settings.port
    # Before anything is printed or created: the port is free, then the data directory.
    listening = None
    if not args.reload:
        try:
            listening = serving.listen(host, port)
        except OSError as exc:
            reason = exc.strerror or exc
            print(f"botrequests: cannot listen on {host}:{port}: {reason}", file=sys.stderr)
            return 2
    try:
        if settings.durable:
            store = durable.open_store(settings.data_path, "botrequests serve")
            if args.reload:
                store.close()  # the reloader's worker process opens it
    except datadir.DataDirError as exc:
        print(f"botrequests: {exc}", file=sys.stderr)
        return 2
    base = f"http://{'[' + host + ']' if ':' in host else host}:{port}"
    if settings.durable:
        backend = f"embedded, kept in {settings.data_path}"
    elif settings.embedded:
        backend = f"embedded in memory ({settings.mongodb_uri}: gone when the service stops)"
    else:
        backend = "MongoDB"
    logging.getLogger("botrequests").info(
        "botrequests %s on %s: API docs %s/docs, viewer %s/ui; access control %s; backend %s",
        __version__,
        base,
        base,
        base,
        "on" if settings.auth_enabled else "OFF (BOTREQUESTS_AUTH=off: anyone can read and write)",
        backend,
    )
    options: dict[str, Any] = {
        "log_level": settings.log_level,
        "access_log": False,  # botrequests.access logs one structured line per request
        **serving.uvicorn_options(),
    }
    if listening is None:
        uvicorn.run("botrequests.app:app", host=host, port=port, reload=True, **options)
        return 0
    config = uvicorn.Config(
        "botrequests.app:app",
        host=host,
        port=port,
        workers=args.workers if args.workers > 1 else None,
        **options,
    )
    if args.workers > 1:
        from uvicorn.supervisors import Multiprocess

        Multiprocess(config, target=uvicorn.Server(config).run, sockets=[listening]).run()
        return 0
    server = uvicorn.Server(config)
    server.run(sockets=[listening])
    return 0 if server.started else 3


def _dump(args: argparse.Namespace, settings: "Settings") -> int:
    from pathlib import Path

    from botrequests.storage import datadir, dump

    if not settings.durable:
        print(
            "botrequests dump: writes the embedded backend's data directory (no MONGODB_URI); "
            "for a MongoDB server use mongodump",
            file=sys.stderr,
        )
        return 2
    try:
        dumped = dump.dump(settings.data_path, Path(args.target))
    except datadir.DataDirError as exc:
        print(f"botrequests dump: {exc}", file=sys.stderr)
        return 1
    for collection in dumped:
        print(collection.line())
    print(f"{sum(c.documents for c in dumped)} document(s) written to {args.target}")
    return 0


def _checked(check: Callable[[str], str]) -> Callable[[str], str]:
    """An option checked as the setting it stands for is (argparse: one line, exit 2)."""

    def parse(value: str) -> str:
        try:
            return check(value)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return parse


def _bounded(low: int, high: int) -> Callable[[str], int]:
    def parse(value: str) -> int:
        if not re.fullmatch(r"\d{1,9}", value) or not low <= int(value) <= high:
            raise argparse.ArgumentTypeError(f"a whole number from {low} to {high}")
        return int(value)

    return parse


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="botrequests",
        description="The record of every interaction between AI bots and their users. "
        "Settings come from the environment or .env (see .env.example).",
        epilog="`botrequests COMMAND --help` tells a command's options.",
    )
    parser.add_argument("--version", action="version", version=f"botrequests {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the HTTP service (uvicorn)")
    serve.add_argument(
        "--host", type=_checked(setting_checks.host), help="address to bind (setting HOST)"
    )
    serve.add_argument("--port", type=_bounded(1, 65535), help="port (setting PORT)")
    serve.add_argument("--reload", action="store_true", help="restart on code changes")
    serve.add_argument("--workers", type=_bounded(1, 256), default=1, help="worker processes")
    serve.add_argument(
        "--import",
        dest="import_paths",
        nargs="+",
        metavar="PATH",
        help="load mongoexport files into the embedded backend at start-up",
    )

    load = commands.add_parser(
        "import", help="load mongoexport files (Extended JSON) into the configured database"
    )
    load.add_argument("paths", nargs="+", metavar="PATH")
    load.add_argument("--collection", help="collection for every file (default: file name)")
    load.add_argument(
        "--report",
        metavar="PATH",
        help="write every line of the report to PATH (the output shows the first 20)",
    )
    load.add_argument(
        "--upsert", action="store_true", help="$set existing _ids instead of skipping them"
    )
    load.add_argument(
        "--partial",
        action="store_true",
        help="load the files that pass every check even if others are refused (exit 2); "
        "without it one refused file loads nothing",
    )

    key = commands.add_parser(
        "create-api-key", help="issue an API key for an organization and print it once"
    )
    key.add_argument("--organization", required=True, help="the organization's id")
    key.add_argument(
        "--scope",
        choices=["ingest", "read", "full"],
        default="full",
        help="ingest: record requests and outcomes only; read: reads only; full (default): both",
    )

    purge = commands.add_parser(
        "purge",
        help="delete requests older than their organization's retentionDays (threads repaired)",
    )
    purge.add_argument(
        "--dry-run", action="store_true", help="print what would be deleted, delete nothing"
    )

    dump = commands.add_parser(
        "dump",
        help="write the embedded backend's data directory as a mongodump directory "
        "(mongorestore loads it into MongoDB; import reads it back)",
    )
    dump.add_argument("target", metavar="DIR", help="a new or empty directory")

    commands.add_parser(
        "repair-threads",
        help="rebuild every relatedRequests from the originalRequest fields (idempotent)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        # Imported here: the module makes its settings instance at import time, and a bad
        # setting must end in one line per problem, not in a traceback.
        from botrequests.config import Settings

        settings = Settings()
    except ValidationError as exc:
        # One line per bad setting, named as it is set, never a traceback.
        for error in exc.errors():
            name = "_".join(str(part) for part in error["loc"]).upper()
            # Secrets (the admin token, a URI with a password) are never echoed.
            shown = "" if "TOKEN" in name or "URI" in name else f"={error.get('input')!r}"
            message = error["msg"].removeprefix("Value error, ")
            print(f"botrequests: setting {name}{shown}: {message}", file=sys.stderr)
        return 2
    # uvicorn's TRACE (5) is below DEBUG; logging knows it by number only.
    level = 5 if settings.log_level == "trace" else settings.log_level.upper()
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    if args.command == "serve":
        return _serve(args, settings)
    if args.command == "dump":
        return _dump(args, settings)
    return asyncio.run(_run_async(args, settings))


async def _create_api_key(organization: str, scope: str = "full") -> int:
    from beanie import PydanticObjectId

    from botrequests import auth
    from botrequests.documents import Organization

    if not re.fullmatch(r"[0-9a-fA-F]{24}", organization):
        print("botrequests: --organization must be an id (24 hex digits)", file=sys.stderr)
        return 2
    found = await Organization.get(PydanticObjectId(organization.lower()))
    if found is None:
        print(f"botrequests: no organization {organization}", file=sys.stderr)
        return 1
    record, key = await auth.issue_key(found.id, scope)
    print(
        f"API key ({scope}) for {found.name} ({found.id}), id {record.id}; "
        "shown once, store it now:"
    )
    print(key)
    return 0


async def _purge(dry_run: bool) -> int:
    from botrequests import retention

    if dry_run:
        purged = await retention.purge(dry_run=True)
    else:
        swept = await retention.sweep()
        if swept is None:
            print(
                "botrequests purge: a sweep is running elsewhere (a service worker or another "
                "purge); nothing done, try again later",
                file=sys.stderr,
            )
            return 1
        purged = swept
    for line in purged:
        print(line.line())
    verb = "would be deleted" if dry_run else "deleted"
    print(f"{sum(p.requests for p in purged)} request(s) {verb} in {len(purged)} organization(s)")
    skipped = [p for p in purged if p.problem is not None]
    if skipped:
        print(
            f"botrequests purge: {len(skipped)} organization(s) skipped (above); the others "
            "were swept",
            file=sys.stderr,
        )
        return 1
    return 0


async def _run_async(args: argparse.Namespace, settings: "Settings") -> int:
    from botrequests.storage import datadir, db

    if settings.embedded and not settings.durable:
        print(
            f"botrequests {args.command}: MONGODB_URI={settings.mongodb_uri} is a throwaway "
            "in-memory database, gone when this command ends: nothing it did would be kept. "
            "Unset MONGODB_URI to work on the data directory (BOTREQUESTS_DATA_DIR), "
            "or use `serve --import` to load files into a throwaway service.",
            file=sys.stderr,
        )
        return 2
    try:
        client = db.create_client(settings, purpose=f"botrequests {args.command}")
    except datadir.DataDirError as exc:
        print(f"botrequests {args.command}: {exc}", file=sys.stderr)
        return 2
    try:
        return await _run_command(args, settings, client)
    except PyMongoError as exc:
        # One line, never a traceback: what failed and that a re-run is safe.
        reason = str(exc).splitlines()[0][:300] if str(exc) else ""
        print(
            f"botrequests {args.command}: database error: {type(exc).__name__}: {reason} "
            "(nothing half-done is lost: the command is safe to re-run)",
            file=sys.stderr,
        )
        return 1
    finally:
        db.close_client(client)


def _status_line(command: str) -> Callable[[str], None]:
    """Progress on a terminal: one line on stderr, rewritten, cleared at the end."""
    width = 0

    def show(text: str) -> None:
        nonlocal width
        line = f"{command}: {text}"[:120]
        print(f"\r{line.ljust(width)}", end="", file=sys.stderr, flush=True)
        width = len(line)

    return show


def _progress(command: str) -> Callable[[int, int, int], None]:
    """Progress on stderr: one line rewritten on a terminal, else a line now and then."""
    tty = sys.stderr.isatty()
    calls = 0

    def show(done: int, total: int, changed: int) -> None:
        nonlocal calls
        calls += 1
        line = f"{command}: checked {done} of {total} requests, {changed} repaired"
        if tty:
            print(f"\r{line}", end="" if done < total else "\n", file=sys.stderr, flush=True)
        elif calls % 20 == 1 or done >= total:
            print(line, file=sys.stderr, flush=True)

    return show


async def _run_command(args: argparse.Namespace, settings: "Settings", client: Any) -> int:
    from pathlib import Path

    from botrequests import importer, repair
    from botrequests.storage import db

    await db.init_db(client, settings)
    await repair.after_unclean_stop(client)
    if args.command == "import":
        try:
            paths = [Path(p) for p in args.paths]
            report = await importer.load(
                paths,
                args.collection,
                args.upsert,
                args.partial,
                settings.max_json_depth,
                progress=_status_line("import") if sys.stderr.isatty() else None,
            )
            if sys.stderr.isatty():
                print(file=sys.stderr)  # ends the progress line
        except importer.ImportFileError as exc:
            print(f"botrequests import: {exc}", file=sys.stderr)
            return 1
        if args.report:
            Path(args.report).write_text("\n".join(report.lines(shown=None)) + "\n")
        print("\n".join(report.lines()))
        if args.report:
            print(f"every line of the report: {args.report}")
        return 2 if report.refused else 0
    if args.command == "create-api-key":
        return await _create_api_key(args.organization, args.scope)
    if args.command == "purge":
        return await _purge(args.dry_run)
    repairs = await repair.repair_related_requests(_progress("repair-threads"))
    for fixed in repairs:
        print(
            f"{fixed.id}: added {fixed.added}, removed {fixed.removed}, "
            f"deduplicated {fixed.deduplicated}"
        )
    print(f"{len(repairs)} request(s) repaired")
    return 0
