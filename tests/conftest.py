"""Shared fixtures.

`db` runs a test on SQLite and on PostgreSQL. PostgreSQL gets a schema of its own per test run
(migrated once, truncated between tests); SQLite a fresh copy of a migrated file per test. Without a
PostgreSQL server the PostgreSQL variants skip with a reason, except in CI (`CI=true`), where a
missing service is a failure.
"""

from __future__ import annotations

import datetime as dt
import os
import random
import secrets
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from lifecycle import db as dbmod
from lifecycle.config import reset_settings

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
PG_ADMIN_URL = os.environ.get(
    "LIFECYCLE_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("LIFECYCLE_TEST_REDIS_URL", "redis://127.0.0.1:6379")
RUN_ID = f"{os.getpid()}_{secrets.token_hex(3)}"


def need_service(name: str, reason: str) -> None:
    """Skip on a laptop without the service; fail in CI, where every service is required."""
    if IN_CI:
        pytest.fail(f"{name} is required in CI but unavailable: {reason}", pytrace=False)
    pytest.skip(f"{name} unavailable: {reason}")


def utc(*args) -> dt.datetime:
    return dt.datetime(*args, tzinfo=dt.UTC)


# --------------------------------------------------------------------------------------- databases


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("template") / "template.db"
    dbmod.upgrade(f"sqlite:///{path}")
    dbmod.dispose_engines()
    return path


@pytest.fixture(scope="session")
def pg_schema_url():
    """A PostgreSQL URL whose search_path is a schema of this test run, migrated to head."""
    schema = f"lc_test_{RUN_ID}"
    try:
        admin = sa.create_engine(PG_ADMIN_URL, connect_args={"connect_timeout": 3})
        with admin.begin() as conn:
            conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    except Exception as exc:  # noqa: BLE001
        yield exc
        return
    url = f"{PG_ADMIN_URL}?options=-csearch_path%3D{schema}"
    dbmod.upgrade(url)
    yield url
    dbmod.dispose_engines()
    with admin.begin() as conn:
        conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    admin.dispose()


def _truncate_pg(url: str) -> None:
    engine = dbmod.get_engine(url, check=False)
    with engine.begin() as conn:
        tables = [
            r[0]
            for r in conn.exec_driver_sql(
                "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() AND tablename <> 'alembic_version'"
            )
        ]
        if tables:
            conn.exec_driver_sql(
                "TRUNCATE " + ", ".join(f'"{t}"' for t in tables) + " RESTART IDENTITY CASCADE"
            )


def _use(url: str, monkeypatch) -> None:
    monkeypatch.setenv("LIFECYCLE_DATABASE_URL", url)
    reset_settings()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db(request, tmp_path, monkeypatch, sqlite_template):
    """The database URL of this test, on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        path = tmp_path / "lifecycle.db"
        shutil.copy(sqlite_template, path)
        url = f"sqlite:///{path}"
    else:
        url = request.getfixturevalue("pg_schema_url")
        if isinstance(url, Exception):
            need_service("PostgreSQL", str(url).splitlines()[0])
        _truncate_pg(url)
    _use(url, monkeypatch)
    yield url
    if request.param == "sqlite":
        dbmod.dispose_engines()


@pytest.fixture
def fresh_db(db, tmp_path, monkeypatch, sqlite_template):
    """Start the test's database afresh (same kind), to run a second scenario in one test."""

    def reset() -> None:
        if db.startswith("sqlite"):
            dbmod.dispose_engines()
            path = tmp_path / f"fresh-{secrets.token_hex(3)}.db"
            shutil.copy(sqlite_template, path)
            _use(f"sqlite:///{path}", monkeypatch)
        else:
            _truncate_pg(db)

    return reset


@pytest.fixture
def sqlite_db(tmp_path, monkeypatch, sqlite_template):
    """SQLite only, for tests of things that do not depend on the database."""
    path = tmp_path / "lifecycle.db"
    shutil.copy(sqlite_template, path)
    url = f"sqlite:///{path}"
    _use(url, monkeypatch)
    yield url
    dbmod.dispose_engines()


@pytest.fixture
def pg_db(monkeypatch, pg_schema_url):
    """PostgreSQL only (concurrency tests)."""
    if isinstance(pg_schema_url, Exception):
        need_service("PostgreSQL", str(pg_schema_url).splitlines()[0])
    _truncate_pg(pg_schema_url)
    _use(pg_schema_url, monkeypatch)
    return pg_schema_url


@pytest.fixture(autouse=True)
def _isolated_dirs(tmp_path, monkeypatch):
    """Outbox, calendar exports and state of each test stay in its own temporary folder."""
    monkeypatch.setenv("LIFECYCLE_OUTBOX_DIR", str(tmp_path / "outbox"))
    monkeypatch.setenv("LIFECYCLE_CALENDAR_DIR", str(tmp_path / "calendar_exports"))
    monkeypatch.setenv("LIFECYCLE_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("LIFECYCLE_SECRET_KEY", "test-secret-key-not-for-production")
    # Policy tests tick at the instant of a change; the hold has tests of its own (test_changes.py).
    monkeypatch.setenv("LIFECYCLE_CHANGE_HOLD", "0")
    monkeypatch.delenv("LIFECYCLE_BROKER_URL", raising=False)
    monkeypatch.delenv("LIFECYCLE_EMAIL_BACKEND", raising=False)
    reset_settings()
    yield
    reset_settings()


# -------------------------------------------------------------------------------------------- Redis

REDIS_LEASE_SECONDS = 3600


@pytest.fixture
def redis_db(monkeypatch):
    """A Redis database number (1-15) for this test alone, flushed before and after, as the broker.

    Several test runs share one Redis: the number is leased with SET NX (and an expiry, in case a run
    dies) on a key in database 0, and given back only by the run that holds it."""
    import redis

    admin = redis.Redis.from_url(f"{REDIS_URL}/0", socket_connect_timeout=2)
    try:
        admin.ping()
    except Exception as exc:  # noqa: BLE001
        need_service("Redis", str(exc))
    token = f"{RUN_ID}:{secrets.token_hex(4)}"
    numbers = list(range(1, 16))
    random.shuffle(numbers)
    leased = None
    deadline = time.monotonic() + 120
    while leased is None:
        leased = next(
            (
                n
                for n in numbers
                if admin.set(f"lifecycle-test:redis-db:{n}", token, nx=True, ex=REDIS_LEASE_SECONDS)
            ),
            None,
        )
        if leased is None:
            if time.monotonic() > deadline:
                pytest.fail("no free Redis database number (1-15) for two minutes")
            time.sleep(0.2)
    client = redis.Redis.from_url(f"{REDIS_URL}/{leased}", socket_connect_timeout=2)
    client.flushdb()
    monkeypatch.setenv("LIFECYCLE_BROKER_URL", f"{REDIS_URL}/{leased}")
    reset_settings()
    try:
        yield client
    finally:
        client.flushdb()
        admin.eval(
            "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0",
            1,
            f"lifecycle-test:redis-db:{leased}",
            token,
        )


# ------------------------------------------------------------------------------------------- the CLI


class CliResult:
    def __init__(self, proc: subprocess.CompletedProcess):
        self.code, self.out, self.err = proc.returncode, proc.stdout, proc.stderr

    def __repr__(self) -> str:
        return f"<exit {self.code}\nstdout:\n{self.out}\nstderr:\n{self.err}>"


@pytest.fixture
def cli(tmp_path):
    """Run `lifecycle ...` as a user would, in a subprocess with the test's environment."""

    def run(
        *args: str, input: str | None = None, env: dict | None = None, cwd: Path | None = None
    ) -> CliResult:
        full_env = {**os.environ, "COLUMNS": "200", **(env or {})}
        proc = subprocess.run(
            [sys.executable, "-m", "lifecycle", *map(str, args)],
            capture_output=True,
            text=True,
            input=input,
            env=full_env,
            cwd=cwd or tmp_path,
            timeout=300,
        )
        return CliResult(proc)

    return run


# ------------------------------------------------------------------------------- service test summary

_service_outcomes: dict[str, dict[str, int]] = {}


def pytest_runtest_logreport(report):
    if report.when != "call" and not (report.when == "setup" and report.outcome != "passed"):
        return
    for service in ("postgres", "redis", "browser"):
        if service in report.keywords:
            counts = _service_outcomes.setdefault(service, {})
            counts[report.outcome] = counts.get(report.outcome, 0) + 1


def pytest_terminal_summary(terminalreporter):
    """Say how many tests of each real service ran, so a CI log shows they were not skipped."""
    if not _service_outcomes:
        return
    terminalreporter.write_sep("-", "tests against real services")
    for service, counts in sorted(_service_outcomes.items()):
        terminalreporter.write_line(f"{service}: " + ", ".join(f"{n} {k}" for k, n in sorted(counts.items())))
