"""The embedded backend's data directory: where it is, who holds it, what it may hold.

A data directory holds `botrequests.sqlite3` (with SQLite's `-wal` and `-shm` files
beside it), `lock`, and `development-key`. One process at a time uses it: the one
holding an exclusive `flock` on `lock`, whose first line names that process. The lock is
the kernel's, so it goes with the process however the process ends (`kill -9` too).
"""

import contextlib
import errno
import fcntl
import os
from pathlib import Path

DATABASE_FILE = "botrequests.sqlite3"
LOCK_FILE = "lock"
KEY_FILE = "development-key"
# What may be in a data directory besides our files: SQLite's own, and nothing else.
_OURS = {DATABASE_FILE, f"{DATABASE_FILE}-wal", f"{DATABASE_FILE}-shm", LOCK_FILE, KEY_FILE}


class DataDirError(Exception):
    """A data directory that cannot be used; the message is one line naming it."""


def default() -> Path:
    """The user's data directory for botrequests (`~/.local/share/botrequests` on Linux)."""
    import platformdirs

    return Path(platformdirs.user_data_dir("botrequests", appauthor=False))


def prepare(directory: Path) -> Path:
    """The directory, created if need be, checked to be ours and writable."""
    directory = directory.expanduser().absolute()
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _unusable(directory, "cannot create it", exc) from None
    if not directory.is_dir():
        raise DataDirError(f"data directory {directory}: not a directory")
    try:
        present = {entry.name for entry in os.scandir(directory)}
    except OSError as exc:
        raise _unusable(directory, "cannot read it", exc) from None
    if present and DATABASE_FILE not in present and present - _OURS:
        shown = ", ".join(sorted(present - _OURS)[:3])
        raise DataDirError(
            f"data directory {directory} holds other files ({shown}) and no "
            f"{DATABASE_FILE}: set BOTREQUESTS_DATA_DIR to an empty or new directory"
        )
    return directory


class Lock:
    """The exclusive lock on a data directory, held until `release` or the process ends."""

    def __init__(self, directory: Path, purpose: str) -> None:
        path = directory / LOCK_FILE
        try:
            self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise _unusable(directory, "not writable", exc) from None
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = _holder(self._fd)
            os.close(self._fd)
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise _unusable(directory, "cannot lock it", exc) from None
            raise DataDirError(
                f"data directory {directory} is in use by {holder or 'another process'}: "
                "one process at a time (stop it, or set BOTREQUESTS_DATA_DIR to another)"
            ) from None
        try:
            os.ftruncate(self._fd, 0)
            os.pwrite(self._fd, f"process {os.getpid()} ({purpose})\n".encode(), 0)
        except OSError as exc:
            self.release()
            raise _unusable(directory, "not writable", exc) from None

    def release(self) -> None:
        if self._fd >= 0:
            with contextlib.suppress(OSError):
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = -1


def _holder(fd: int) -> str:
    with contextlib.suppress(OSError, UnicodeDecodeError):
        return os.pread(fd, 200, 0).decode().strip().splitlines()[0]
    return ""


def _unusable(directory: Path, what: str, exc: OSError) -> DataDirError:
    return DataDirError(f"data directory {directory}: {what}: {exc.strerror or exc}")


def write_private(path: Path, text: str) -> None:
    """Write `text` to `path`, readable by its owner only (0600), on disk before returning."""
    temporary = path.with_name(path.name + ".new")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, text.encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temporary, path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
