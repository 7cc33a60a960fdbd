"""The embedded worker keeps up, and a SIGKILL in the middle of a catch-up loses nothing and sends
nothing twice (issue 11, item 3).

`lifecycle worker` (the no-server default: SQLite, the file-system broker, the file email backend)
starts with 1,000 customers due now; it is killed with SIGKILL once some but not all of their emails
are written, and started again. Every customer must then have exactly one email: one `.eml` file per
recipient in the outbox, and one `sent` email delivery per recipient in the database. No speed is
asserted, only a generous timeout.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from typing import NamedTuple

import pytest
import sqlalchemy as sa

from bench.delivery import due_fleet
from lifecycle.db import dispose_engines

pytestmark = pytest.mark.slow

CUSTOMERS = 1_000
TIMEOUT = 600.0  # generous: the machine may be busy; no speed is asserted


def _spawn(tmp_path, name: str) -> subprocess.Popen:
    env = {**os.environ, "LIFECYCLE_TICK_SECONDS": "2"}
    log = open(tmp_path / f"{name}.log", "w")  # noqa: SIM115 - closed with the process
    return subprocess.Popen(
        [sys.executable, "-m", "lifecycle", "worker"],
        env=env,
        cwd=tmp_path,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _wait_for(predicate, what: str, logs=(), timeout: float = TIMEOUT, every: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(every)
    text = "\n".join(p.read_text()[-3000:] for p in logs if p.exists())
    raise AssertionError(f"timed out waiting for {what}\n{text}")


def _recipients(outbox) -> Counter:
    """Customer recipients of the .eml files: `file-<id>-<hash>-<recipient>.eml`."""
    names = [p.name for p in outbox.glob("*.eml")] if outbox.exists() else []
    return Counter(n.split("-", 3)[3].removesuffix(".eml") for n in names if "-ops@due-" in n)


def _sent_emails(url: str) -> list:
    """The customers' email deliveries, read as a plain WAL reader (the application's BEGIN IMMEDIATE
    would wait for the worker's write transactions)."""
    raw = sqlite3.connect(sa.engine.make_url(url).database, timeout=60)
    try:
        return [
            Row(*r)
            for r in raw.execute(
                "SELECT d.recipient, d.status, d.possible_duplicate FROM delivery d JOIN notice n ON n.id = d.notice_id "
                "WHERE d.channel = 'email' AND n.audience = 'customer'"
            ).fetchall()
        ]
    finally:
        raw.close()


class Row(NamedTuple):
    recipient: str
    status: str
    possible_duplicate: bool


def test_a_worker_killed_mid_catch_up_and_started_again_sends_every_customer_exactly_one_email(
    sqlite_db, tmp_path
):
    due_fleet(sqlite_db, CUSTOMERS, dt.datetime.now(dt.UTC))
    dispose_engines()
    outbox = tmp_path / "outbox"
    expected = {f"ops@due-{i:06d}.example" for i in range(1, CUSTOMERS + 1)}

    first = _spawn(tmp_path, "first")
    try:
        _wait_for(
            lambda: sum(_recipients(outbox).values()) >= 20, "the first emails", [tmp_path / "first.log"]
        )
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
    written = sum(_recipients(outbox).values())
    assert 0 < written < CUSTOMERS, f"killed mid-run: {written} of {CUSTOMERS} emails written"
    claimed = [r for r in _sent_emails(sqlite_db) if r.status == "sending"]
    assert claimed, "the killed worker held claims (now of a dead process)"

    second = _spawn(tmp_path, "second")
    try:
        _wait_for(
            lambda: sum(1 for r in _sent_emails(sqlite_db) if r.status == "sent") >= CUSTOMERS,
            "every customer's email recorded sent",
            [tmp_path / "second.log"],
            every=0.5,
        )
    finally:
        os.killpg(second.pid, signal.SIGTERM)
        try:
            second.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(second.pid, signal.SIGKILL)
            second.wait()

    files = _recipients(outbox)
    assert set(files) == expected
    assert [r for r, n in files.items() if n != 1] == [], "one .eml file per customer"
    rows = _sent_emails(sqlite_db)
    per_recipient = Counter(r.recipient for r in rows if r.status == "sent")
    assert set(per_recipient) == expected and set(per_recipient.values()) == {1}
    assert {r.status for r in rows} == {"sent"}
    assert not any(r.possible_duplicate for r in rows), "a file email is settled by its file, never resent"
    dispose_engines()
