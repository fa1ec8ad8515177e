"""`botrequests serve` in its own process, for the tests that go over real HTTP."""

import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).parent.parent
FIXTURES = Path(__file__).parent / "data" / "mongoose"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Served:
    base: str
    key: str | None  # the development key printed at start-up (access control on)
    output: list[str]
    process: subprocess.Popen
    data_dir: Path | None


@contextmanager
def served(
    *args: str,
    auth: bool = False,
    data_dir: Path | None = None,
    first: bool = True,
    memory: bool = False,
) -> Iterator[Served]:
    """Start `botrequests serve` on a free port on the embedded backend, kept in `data_dir`
    (default: a new one, removed after), or with `memory` in memory only (`mongomock://`);
    with `auth`, access control on as by default, and the development key it prints on a
    `first` start."""
    if data_dir is None and not memory:
        with (
            tempfile.TemporaryDirectory(prefix="botrequests-served-") as fresh,
            served(*args, auth=auth, data_dir=Path(fresh), first=first) as server,
        ):
            yield server
        return
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MONGODB_", "BOTREQUESTS_"))}
    if memory:
        env["MONGODB_URI"] = "mongomock://"
    else:
        env["BOTREQUESTS_DATA_DIR"] = str(data_dir)
    if not auth:
        env["BOTREQUESTS_AUTH"] = "off"
    process = subprocess.Popen(
        [sys.executable, "-m", "botrequests", "serve", "--port", str(port), *args],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output: list[str] = []
    key: list[str] = []

    def drain() -> None:  # a full pipe would block the server's logging
        for line in process.stdout or ():
            output.append(line)
            if "API key br_" in line:
                key.append(line.split("API key ")[1].split()[0])

    threading.Thread(target=drain, daemon=True).start()
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120  # a busy machine may take this long to start it
        while True:
            try:
                if httpx.get(f"{base}/readyz").status_code == 200 and (key or not (auth and first)):
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError("botrequests serve did not start:\n" + "".join(output))
            time.sleep(0.1)
        yield Served(base, key[0] if key else None, output, process, data_dir)
    finally:
        process.terminate()
        process.wait(timeout=10)
