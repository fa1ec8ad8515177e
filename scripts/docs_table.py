"""Write a benchmark table into docs/benchmarks.md, between its markers.

`<!-- generated: NAME -->` … `<!-- end: NAME -->`: the region is replaced whole, with the
date, the machine and the command that produced it; the rest of the page is kept.
"""

import argparse
import os
import platform
import re
import sys
from datetime import UTC, datetime
from pathlib import Path

PAGE = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"


def machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"


def write(name: str, table: str, page: Path = PAGE) -> None:
    """Replace region `name` of `page` with `table`, headed by when, where and how."""
    command = " ".join(["python", *(Path(a).as_posix() for a in sys.argv)])
    day = datetime.now(UTC).strftime("%Y-%m-%d")
    body = f"Measured {day} on {machine()}: `{command}`\n\n{table.strip()}\n"
    text = page.read_text()
    pattern = re.compile(
        rf"(<!-- generated: {re.escape(name)} -->\n).*?(<!-- end: {re.escape(name)} -->)", re.S
    )
    if not pattern.search(text):
        raise SystemExit(f"{page}: no region '{name}' to write")
    page.write_text(pattern.sub(lambda m: m.group(1) + body + m.group(2), text))


def add_argument(parser: argparse.ArgumentParser) -> None:
    """`--docs [PAGE]`: also write the script's table into PAGE (docs/benchmarks.md)."""
    parser.add_argument(
        "--docs",
        nargs="?",
        type=Path,
        const=PAGE,
        metavar="PAGE",
        help="also write the table into docs/benchmarks.md (or PAGE), with date and machine",
    )
