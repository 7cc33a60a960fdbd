"""Files and folders that hold secrets or customer data, created readable by their owner only.

The signing key, the SQLite database (customers, contacts, agreements), the state folder (the key, the
broker's queued messages) and the outbox (customers' emails) must not be readable by every account on
the machine, whatever the umask says. Each is created with its mode from the start, never chmod-ed
after data is in it. Existing files and folders keep the mode their operator gave them.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600


def private_dir(path: Path) -> Path:
    """`path` as a folder; created mode 700 if missing (its missing parents get the usual mode)."""
    path = Path(path)
    if not path.is_dir():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            path.mkdir(mode=PRIVATE_DIR)
        except FileExistsError:
            pass  # another process made it first
        else:
            os.chmod(path, PRIVATE_DIR)  # mkdir's mode is masked by the umask
    return path


def create_private(path: Path) -> bool:
    """Create an empty file mode 600 unless it exists; True if this call created it."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE)
    except FileExistsError:
        return False
    os.fchmod(fd, PRIVATE_FILE)
    os.close(fd)
    return True


def _write_temp(path: Path, data: bytes) -> Path:
    """`data` in a new mode-600 file beside `path`, flushed to disk."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE)
    try:
        os.fchmod(fd, PRIVATE_FILE)
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    return tmp


def write_private_once(path: Path, data: bytes) -> bool:
    """Write a mode-600 file with `data` only if `path` does not exist yet; True if this call wrote it.

    The content is complete before the name appears (a hard link of a finished temporary file, which
    fails when the name exists), so a process that loses the race reads the winner's whole file,
    never an empty or half-written one.
    """
    tmp = _write_temp(path, data)
    try:
        os.link(tmp, path)
    except FileExistsError:
        return False
    finally:
        tmp.unlink(missing_ok=True)
    return True


def replace_private(path: Path, data: bytes) -> None:
    """Replace `path` atomically with a mode-600 file holding `data`."""
    tmp = _write_temp(path, data)
    try:
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
