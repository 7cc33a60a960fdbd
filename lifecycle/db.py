"""Engine and sessions.

SQLite (the embedded default) runs in WAL mode and every transaction starts with `BEGIN IMMEDIATE`,
so that several processes (worker, CLI, web) serialise their writes instead of failing on a lock
upgrade; its file is upgraded to the newest schema automatically on first use. PostgreSQL is upgraded
by the operator (`lifecycle db upgrade`), and a stale schema is reported clearly.

A new SQLite file is created mode 600 before SQLite writes anything to it (it holds customers and their
contacts); SQLite gives its -wal and -shm files the same mode.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy import event
from sqlmodel import Session

from lifecycle.config import get_settings
from lifecycle.files import create_private

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"

_engines: dict[str, sa.Engine] = {}
_checked: set[str] = set()
_lock = threading.Lock()


class SchemaOutOfDate(RuntimeError):
    pass


def _sqlite_path(url: str) -> Path | None:
    """The file behind a SQLite URL; None for an in-memory database or a `file:` URI."""
    database = sa.engine.make_url(url).database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database)


def _make_engine(url: str) -> sa.Engine:
    if url.startswith("sqlite"):
        path = _sqlite_path(url)
        if path is not None and path.parent.is_dir():
            create_private(path)  # an empty file is an empty database; SQLite keeps its mode
        engine = sa.create_engine(url, connect_args={"timeout": 60, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn, _record):
            dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=60000")
            cur.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn):
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    return sa.create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=10)


def alembic_config(url: str):
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(url: str | None = None, revision: str = "head") -> None:
    from alembic import command

    url = url or get_settings().database_url
    engine = get_engine(url, check=False)
    cfg = alembic_config(url)
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)
    _checked.add(url)


def schema_state(engine: sa.Engine) -> tuple[str | None, str | None]:
    """(current revision, head revision) of the database behind `engine`."""
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config(str(engine.url))).get_current_head()
    with engine.connect() as conn:
        current = MigrationContext.configure(conn).get_current_revision()
    return current, head


_REVISION = re.compile(r"""^(down_revision|revision)\s*(?::[^=]*)?=\s*(?:None|['"]([^'"]+)['"])\s*$""", re.M)


def _head_from_files() -> str | None:
    """The head revision read from the migration files without importing alembic (a quarter second of every
    command's start-up); None when the files do not say plainly (then alembic decides)."""
    revisions, parents = set(), set()
    for path in (MIGRATIONS_DIR / "versions").glob("*.py"):
        found = dict((m.group(1), m.group(2)) for m in _REVISION.finditer(path.read_text(encoding="utf-8")))
        if "revision" not in found or found["revision"] is None or "down_revision" not in found:
            return None
        revisions.add(found["revision"])
        if found["down_revision"]:
            parents.add(found["down_revision"])
    heads = revisions - parents
    return heads.pop() if len(heads) == 1 else None


def _up_to_date(engine: sa.Engine) -> bool:
    """True when the database is plainly at the head revision (a cheap look before alembic's own)."""
    head = _head_from_files()
    if head is None:
        return False
    try:
        with engine.connect() as conn:
            rows = conn.exec_driver_sql("SELECT version_num FROM alembic_version").all()
    except sa.exc.DBAPIError:
        return False
    return [r[0] for r in rows] == [head]


def get_engine(url: str | None = None, *, check: bool = True) -> sa.Engine:
    url = url or get_settings().database_url
    with _lock:
        engine = _engines.get(url)
        if engine is None:
            engine = _engines[url] = _make_engine(url)
    if check and url not in _checked and _up_to_date(engine):
        _checked.add(url)
    if check and url not in _checked:
        current, head = schema_state(engine)
        if current != head:
            if engine.dialect.name == "sqlite":
                upgrade(url)
            else:
                raise SchemaOutOfDate(
                    f"the database schema is at {current or 'nothing'}, the code needs {head}: "
                    "run `lifecycle db upgrade`"
                )
        _checked.add(url)
    return engine


def dispose_engines() -> None:
    with _lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()
        _checked.clear()


@contextmanager
def session_scope(url: str | None = None) -> Iterator[Session]:
    """A session whose transaction commits on success and rolls back on any error."""
    with Session(get_engine(url), expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


def get_session() -> Iterator[Session]:
    """FastAPI dependency."""
    with session_scope() as session:
        yield session
