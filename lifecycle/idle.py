"""A tick with nothing to do, answered in a few milliseconds (issue 11, item 6).

`lifecycle tick` from cron every minute mostly finds nothing due, and importing SQLAlchemy and the
models alone takes most of a second on a small machine. So after every CLI tick on a SQLite file, the
tick writes down until when nothing can be due (`lifecycle.ticks.quiet_until`: the next planned notice,
the next retry, the next UTC day for the calendars, ...) together with the database files' identity
(inode, size, modification time in ns) and a fingerprint of the settings and the code. The next
`lifecycle tick` reads that note with the standard library only and answers "nothing due" without
opening the database when all of these hold:

- the note is for this database file, these `LIFECYCLE_*` settings and this version of the code;
- neither the database file nor its write-ahead log changed since (any write by any process, a
  registry change, an import, an acknowledgement, a worker's delivery, changes them);
- the tick's instant is not earlier than the noted tick's and earlier than the noted "quiet until".

Anything else (PostgreSQL, another option than `--at` and `--json`, a note missing or stale) runs the
full tick, which writes a new note. The answer printed is the full tick's own output for a tick that
did nothing (its JSON shape is taken from the full tick when the note is written).

Only the standard library is imported here: this module runs before anything else is.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import sys
import time
from pathlib import Path

VERSION = 1
# A write within the file system's timestamp granularity of the last one could leave the modification
# time unchanged: the snapshot is taken at least this long after the newest write it sees.
SETTLE_NS = 30_000_000
_DEFAULT_URL = "sqlite:///lifecycle.db"
_SQLITE_PREFIXES = ("sqlite:///", "sqlite+pysqlite:///")


def _env(name: str, environ=None) -> str | None:
    """A setting as pydantic-settings reads it: the variable's name in any case."""
    environ = os.environ if environ is None else environ
    wanted = name.upper()
    for key, value in environ.items():
        if key.upper() == wanted:
            return value
    return None


def database_file(url: str | None) -> Path | None:
    """The SQLite file behind a database URL (absolute); None for anything else (PostgreSQL, memory,
    `file:` URIs, query options)."""
    url = _DEFAULT_URL if url is None else url
    for prefix in _SQLITE_PREFIXES:
        if url.startswith(prefix):
            rest = url[len(prefix) :]
            if not rest or "?" in rest or rest.startswith(("file:", ":memory:")):
                return None
            return Path(os.path.abspath(rest))
    return None


def _code_version() -> str:
    from lifecycle import __version__

    migrations = Path(__file__).resolve().parent.parent / "migrations" / "versions"
    try:
        names = sorted(p.name for p in migrations.glob("*.py"))
    except OSError:
        names = []
    return __version__ + ":" + ",".join(names)


def fingerprint(environ=None) -> str:
    """The settings (every LIFECYCLE_* variable and SENDGRID_API_KEY, hashed) and the code's version."""
    environ = os.environ if environ is None else environ
    items = sorted(
        (k.upper(), v)
        for k, v in environ.items()
        if k.upper().startswith("LIFECYCLE_")
        and k.upper() != "LIFECYCLE_DEBUG"
        or k.upper() == "SENDGRID_API_KEY"
    )
    return hashlib.sha256(json.dumps([_code_version(), items]).encode()).hexdigest()


def snapshot(db: Path) -> list:
    """The identity of the database file and its write-ahead log: [name, inode, size, mtime ns] each,
    None for a missing file. Readers never change them; every committed write does."""
    out: list[list] = []
    for path in (db, Path(str(db) + "-wal")):
        try:
            st = path.stat()
        except FileNotFoundError:
            out.append([path.name, None])
            continue
        out.append([path.name, st.st_ino, st.st_size, st.st_mtime_ns])
    return out


def settled_snapshot(db: Path) -> list:
    """`snapshot`, taken at least SETTLE_NS after the newest modification it shows, so that any later
    write shows as a newer modification time."""
    snap = snapshot(db)
    newest = max((entry[3] for entry in snap if entry[1] is not None), default=0)
    wait = newest + SETTLE_NS - time.time_ns()
    if wait > 0:
        time.sleep(wait / 1e9)
    return snap


def note_path(state_dir: Path, db: Path) -> Path:
    return state_dir / f"quiet-{hashlib.sha256(str(db).encode()).hexdigest()[:16]}.json"


def write_note(
    state_dir: Path, db: Path, *, at: dt.datetime, until: dt.datetime, files: list, shape: dict
) -> Path:
    """Write the note atomically (a temporary file renamed over the old one), mode 600."""
    state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = note_path(state_dir, db)
    note = {
        "version": VERSION,
        "database": str(db),
        "fingerprint": fingerprint(),
        "at": at.isoformat(),
        "until": until.isoformat(),
        "files": files,
        "shape": shape,
    }
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(note, f)
    os.replace(tmp, path)
    return path


def forget(state_dir: Path, db: Path) -> None:
    note_path(state_dir, db).unlink(missing_ok=True)


def read_note(state_dir: Path, db: Path) -> dict | None:
    try:
        note = json.loads(note_path(state_dir, db).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return note if isinstance(note, dict) and note.get("version") == VERSION else None


def quiet(note: dict | None, db: Path, at: dt.datetime) -> bool:
    """True when the note proves that a tick at `at` has nothing to do."""
    if not note or note.get("version") != VERSION or note.get("database") != str(db):
        return False
    if note.get("fingerprint") != fingerprint():
        return False
    try:
        since = dt.datetime.fromisoformat(note["at"])
        until = dt.datetime.fromisoformat(note["until"])
    except (KeyError, TypeError, ValueError):
        return False
    return since <= at < until and note.get("files") == snapshot(db)


# ------------------------------------------------------------------------------------ the command


def _at(args: list[str]) -> tuple[dt.datetime | None, bool] | None:
    """(`--at` or None, `--json`) from the tick's arguments; None for anything this path does not take
    (the full command then parses and, if need be, refuses them)."""
    at, as_json, i = None, False, 0
    while i < len(args):
        arg = args[i]
        if arg == "--json" and not as_json:
            as_json = True
        elif arg == "--at" and at is None and i + 1 < len(args):
            at, i = args[i + 1], i + 1
        elif arg.startswith("--at=") and at is None:
            at = arg[len("--at=") :]
        else:
            return None
        i += 1
    if at is None:
        return None, as_json
    # As lifecycle.validation.instant: a date is midnight, naive is UTC. Its year bounds need no check:
    # an instant is answered only inside a noted tick's quiet, which a valid tick's instant began.
    try:
        parsed = dt.datetime.fromisoformat(at.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)), as_json


def _now() -> dt.datetime | None:
    """lifecycle.clock.now(): the real time shifted by LIFECYCLE_CLOCK_OFFSET."""
    raw = _env("LIFECYCLE_CLOCK_OFFSET")
    try:
        offset = float(raw) if raw not in (None, "") else 0.0
    except ValueError:
        return None
    return dt.datetime.now(dt.UTC) + dt.timedelta(seconds=offset)


def summary(result: dict) -> list[str]:
    """The lines `lifecycle tick` prints for a tick's result (TickResult.as_dict())."""
    p, r, d = result["plan"], result["release"], result["deliver"]
    skipped = ", ".join(f"{k} {n}" for k, n in sorted(r["skipped"].items())) or "none"
    channels = ", ".join(f"{k} {n}" for k, n in sorted(d["by_channel"].items())) or "nothing"
    return [
        f"tick at {result['at']}",
        f"  planned: {p['created']} new, {p['updated']} updated, {p['cancelled']} cancelled notices "
        f"over {p['milestones']} milestone(s); {p['changes']} date-change and {p['withdrawals']} withdrawal notices",
        f"  released: {r['released']} notices ({r['escalations']} escalations); skipped: {skipped}",
        f"  delivered: {channels}; {d['messages']} message(s), {d['retried']} to retry, {d['failed']} failed"
        + (f", {d['unknown']} outcome unknown" if d.get("unknown") else "")
        + (f", {d['cancelled']} cancelled" if d.get("cancelled") else ""),
    ]


def answer(args: list[str]) -> bool:
    """`lifecycle tick [--at T] [--json]`: print the answer and return True when the note proves there is
    nothing to do; return False (printing nothing) when the full tick must run."""
    parsed = _at(args)
    if parsed is None:
        return False
    at, as_json = parsed
    at = at or _now()
    db = database_file(_env("LIFECYCLE_DATABASE_URL"))
    if at is None or db is None:
        return False
    state_dir = Path(_env("LIFECYCLE_STATE_DIR") or ".lifecycle")
    note = read_note(state_dir, db)
    if not quiet(note, db, at):
        return False
    result = dict(note["shape"], at=at.isoformat())  # type: ignore[index]
    try:
        if as_json:
            sys.stdout.write(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
        else:
            sys.stdout.write("\n".join(summary(result)) + "\n")
        sys.stdout.flush()
    except BrokenPipeError:
        pass
    return True
