"""The real Mongoose as a test peer: pinned versions installed with npm into a cache folder
outside the repository (never a committed node_modules), driven through tests/mongoose/peer.js.

Install them (CI does; the tests also do on first use): `python -m tests.mongoose_peer`.
`BOTREQUESTS_MONGOOSE_CACHE` moves the cache (default ~/.cache/botrequests).
"""

import fcntl
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

# The last release of each major from 6 on. Mongoose 5 (end of life) serves the same
# values but puts a document's array paths first whatever their stored place; the
# fixtures, made with 9.12, follow 6 and later (docs/recording/mongoose.md).
VERSIONS = ("6.13.11", "7.8.13", "8.24.10", "9.12.1")
PEER = Path(__file__).parent / "mongoose" / "peer.js"
CACHE = Path(os.environ.get("BOTREQUESTS_MONGOOSE_CACHE", Path.home() / ".cache" / "botrequests"))


class PeerUnavailable(Exception):
    """Node, npm or the package is missing: the reason, for a skip that says it."""


def folder(version: str) -> Path:
    return CACHE / f"mongoose-{version}"


def install(version: str) -> Path:
    """The folder holding `node_modules/mongoose` at `version`, installed if missing."""
    if shutil.which("node") is None:
        raise PeerUnavailable("needs Node.js (`node` on PATH) to run the real Mongoose")
    target = folder(version)
    marker = target / "node_modules" / "mongoose" / "package.json"
    target.mkdir(parents=True, exist_ok=True)
    with open(target / ".lock", "w") as lock:  # parallel sessions install it once
        fcntl.flock(lock, fcntl.LOCK_EX)
        if marker.exists() and json.loads(marker.read_text())["version"] == version:
            return target
        npm = shutil.which("npm")
        if npm is None:
            raise PeerUnavailable(f"needs npm to install mongoose@{version}")
        (target / "package.json").write_text('{"private": true}\n')
        done = subprocess.run(
            [npm, "install", "--no-audit", "--no-fund", "--silent", f"mongoose@{version}"],
            cwd=target,
            capture_output=True,
            text=True,
            timeout=300,
        )
        if done.returncode != 0 or not marker.exists():
            raise PeerUnavailable(
                f"npm install mongoose@{version} failed: {done.stderr.strip()[-300:]}"
            )
    return target


def run(version: str, uri: str, ops: list[dict[str, Any]]) -> list[Any]:
    """Run operations in one Node process against `uri`; their results, in order."""
    done = subprocess.run(
        ["node", str(PEER), uri],
        input=json.dumps(ops),
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "MONGOOSE_DIR": str(install(version))},
    )
    if done.returncode != 0:
        raise AssertionError(f"mongoose {version} failed:\n{done.stderr[-3000:]}")
    answer = json.loads(done.stdout)
    assert answer["version"] == version
    return answer["results"]


if __name__ == "__main__":
    # Never fails the caller (.ci/run): without Node or the registry the Mongoose lane's
    # tests skip and say why.
    for wanted in VERSIONS:
        try:
            print(f"mongoose {wanted}: {install(wanted)}", file=sys.stderr)
        except (PeerUnavailable, OSError, subprocess.SubprocessError) as exc:
            print(f"mongoose {wanted}: not installed ({exc}); its tests will skip", file=sys.stderr)
