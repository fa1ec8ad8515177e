"""A MongoDB wire-protocol server for the test session: SecantusDB (a test dependency only,
GPL-2.0, beta), started on a free port with temporary storage and stopped at the end."""

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from pymongo import MongoClient
from pymongo.errors import PyMongoError

from tests.servers import free_port

STOP_GRACE_S = 10  # SecantusDB can be slow to exit: TERM, then KILL after this


@dataclass
class WireServer:
    uri: str
    port: int
    storage: Path
    process: subprocess.Popen | None

    def stop(self) -> None:
        """Stop the server (TERM, then KILL after a bound); its storage stays."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=STOP_GRACE_S)

    def start(self) -> None:
        """Start it (again) on the same port and storage, and wait until it answers."""
        log = open(self.storage.parent / "secantusd.log", "ab")  # noqa: SIM115 (kept open)
        self.process = subprocess.Popen(
            [
                _launcher(),
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--storage-path",
                str(self.storage),
                "--log-level",
                "WARNING",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.storage.parent,
        )
        deadline = time.monotonic() + 180  # a busy machine may take this long
        while True:
            try:
                with MongoClient(self.uri, serverSelectionTimeoutMS=500) as probe:
                    probe.admin.command("ping")
                return
            except PyMongoError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        "SecantusDB did not start: "
                        + (self.storage.parent / "secantusd.log").read_text(errors="replace")
                    ) from None
                time.sleep(0.2)


def _launcher() -> str:
    found = shutil.which("secantusd-py") or str(Path(sys.executable).parent / "secantusd-py")
    if not os.path.exists(found):
        raise RuntimeError("secantusd-py not found: pip install -e '.[test]' installs SecantusDB")
    return found


@contextmanager
def wire_server() -> Iterator[WireServer]:
    home = Path(tempfile.mkdtemp(prefix="botrequests-wire-"))
    port = free_port()
    server = WireServer(
        f"mongodb://127.0.0.1:{port}/?directConnection=true", port, home / "data", None
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(home, ignore_errors=True)
