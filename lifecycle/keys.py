"""The signing secret: it signs acknowledgement links, web sessions and the pages' flash messages.

It is never a database row: whoever holds a backup of the database must not be able to forge a
product manager's session or a customer's acknowledgement. It comes from

- `LIFECYCLE_SECRET_KEY`, with `LIFECYCLE_SECRET_KEY_PREVIOUS` (comma-separated) for the values it
  replaced, accepted until the operator removes them; or, when that is unset,
- a key file (`LIFECYCLE_SECRET_KEY_FILE`, default `<state_dir>/secret.key`), created on first use
  with mode 600 inside the mode-700 state folder.

First use is race-free on any database: the new file is written under a temporary name and
hard-linked into place, which fails if another process got there first, and the loser reads the
winner's file. Four processes that start at once on a fresh installation agree on one key.

The file holds one key per line. The first line signs; every further line is a previous key and the
instant it stops being accepted (`<key> <ISO datetime>`). `rotate` rewrites the file atomically and
running processes see the change on their next use (the file's size and mtime are checked each time).
A key is never logged or printed; `fingerprint` names one without giving it away.

With several machines (web on one, workers on another), every process must see the same key: set
LIFECYCLE_SECRET_KEY, or point LIFECYCLE_SECRET_KEY_FILE at one shared file.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import secrets
import threading
from dataclasses import dataclass
from pathlib import Path

from sqlmodel import Session, col

from lifecycle.config import get_settings
from lifecycle.errors import InputError, LifecycleError
from lifecycle.files import private_dir, replace_private, write_private_once

LEGACY_SETTING = "secret_key"  # the AppSetting row older versions kept the key in


@dataclass(frozen=True)
class KeyRing:
    current: str
    previous: tuple[tuple[str, dt.datetime | None], ...]  # (key, accepted until; None: until removed)
    source: str  # "environment" or the key file's path

    def accepted(self, at: dt.datetime) -> list[str]:
        """Keys that verify at `at`, for itsdangerous: oldest first, the signing key last."""
        old = [key for key, until in self.previous if until is None or until > at]
        return [*reversed(old), self.current]


def fingerprint(key: str) -> str:
    """A short name for a key, safe to show: the start of its SHA-256."""
    return hashlib.sha256(key.encode()).hexdigest()[:12]


def new_key() -> str:
    return secrets.token_urlsafe(48)


# ---------------------------------------------------------------------------------------- reading

_cache: dict[Path, tuple[tuple[int, int, int], KeyRing]] = {}
_lock = threading.Lock()


def load(session: Session | None = None) -> KeyRing:
    """The key ring in force. Creates the key file when there is none (see the module docstring);
    with a `session`, a key that an older version stored in the database moves into the new file, so
    links already sent stay valid."""
    settings = get_settings()
    if settings.secret_key:
        values = (settings.secret_key_previous or "").split(",")
        previous = tuple((k.strip(), None) for k in values if k.strip())
        return KeyRing(current=settings.secret_key, previous=previous, source="environment")
    path = settings.secret_key_path
    ring = _read(path)
    if ring is None:
        legacy = _legacy_key(session) if session is not None else None
        private_dir(path.parent)
        write_private_once(path, ((legacy or new_key()) + "\n").encode())  # the loser of a race reads below
        if legacy is not None and session is not None:
            _forget_legacy(session)
        ring = _read(path)
        if ring is None:
            raise LifecycleError(f"the key file {path} disappeared while it was being created")
    return ring


def current(session: Session | None = None) -> str:
    """The key that signs."""
    return load(session).current


def accepted(at: dt.datetime, session: Session | None = None) -> list[str]:
    """The keys that verify at `at` (the signing key last), for itsdangerous's `secret_key=`."""
    return load(session).accepted(at)


def _read(path: Path) -> KeyRing | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    stamp = (st.st_ino, st.st_size, st.st_mtime_ns)
    with _lock:
        cached = _cache.get(path)
        if cached and cached[0] == stamp:
            return cached[1]
    ring = _parse(path, path.read_text(encoding="utf-8"))
    with _lock:
        _cache[path] = (stamp, ring)
    return ring


def _parse(path: Path, text: str) -> KeyRing:
    """The ring in a key file; errors name the line, never the key."""
    lines = [
        (n, line.strip())
        for n, line in enumerate(text.splitlines(), 1)
        if line.strip() and not line.lstrip().startswith("#")
    ]
    if not lines:
        raise LifecycleError(f"the key file {path} is empty: delete it to have a new key made, or restore it")
    current_no, current_line = lines[0]
    if " " in current_line:
        raise LifecycleError(f"{path} line {current_no}: the first key must stand alone on its line")
    previous = []
    for n, line in lines[1:]:
        key, _, until = line.partition(" ")
        try:
            when = dt.datetime.fromisoformat(until.strip()) if until.strip() else None
        except ValueError:
            when = None
        if when is None or when.tzinfo is None:
            raise LifecycleError(
                f"{path} line {n}: a previous key needs the instant it expires, "
                "with a UTC offset (`<key> 2027-01-31T00:00:00+00:00`)"
            )
        previous.append((key, when))
    return KeyRing(current=current_line, previous=tuple(previous), source=str(path))


# ------------------------------------------------------------------------------- the old database row


def _legacy_key(session: Session) -> str | None:
    from lifecycle.models import AppSetting

    row = session.get(AppSetting, LEGACY_SETTING)
    return row.value if row is not None and row.value else None


def _forget_legacy(session: Session) -> None:
    """Delete the key from the database (in the caller's transaction; `rotate` repeats it)."""
    import sqlalchemy as sa

    from lifecycle.models import AppSetting

    session.exec(sa.delete(AppSetting).where(col(AppSetting.key) == LEGACY_SETTING))


# -------------------------------------------------------------------------------------------- rotation


def rotate(at: dt.datetime, grace: dt.timedelta, session: Session | None = None) -> KeyRing:
    """A new signing key; the one it replaces (and earlier ones still in their grace) stays accepted
    until `at + grace`. Previous keys already expired at `at` are dropped."""
    settings = get_settings()
    if settings.secret_key:
        raise InputError(
            "LIFECYCLE_SECRET_KEY",
            "the key comes from the environment: rotate it by setting a new "
            "value and putting the old one in LIFECYCLE_SECRET_KEY_PREVIOUS (comma-separated) "
            "until the grace period is over",
        )
    if grace < dt.timedelta(0):
        raise InputError("grace", "cannot be negative")
    old = load(session)
    until = at + grace
    kept = [(key, when) for key, when in old.previous if when is not None and when > at]
    if grace > dt.timedelta(0):
        kept.insert(0, (old.current, until))
    lines = [new_key()] + [f"{key} {when.astimezone(dt.UTC).isoformat()}" for key, when in kept]
    replace_private(settings.secret_key_path, ("\n".join(lines) + "\n").encode())
    if session is not None:
        _forget_legacy(session)
    ring = _read(settings.secret_key_path)
    assert ring is not None
    return ring


def describe(ring: KeyRing, at: dt.datetime) -> dict:
    """What `lifecycle secret status` shows: where the key comes from and fingerprints, never keys."""
    return {
        "source": ring.source,
        "current": fingerprint(ring.current),
        "previous": [
            {
                "fingerprint": fingerprint(key),
                "accepted_until": when,
                "expired": when is not None and when <= at,
            }
            for key, when in ring.previous
        ],
    }
