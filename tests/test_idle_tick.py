"""A tick with nothing due is answered from the idle note without opening the database (issue 11, item 6;
lifecycle.idle, lifecycle.ticks.quiet_until and remember).

The rule that matters: answering from the note never changes what is sent. The determinism test runs
the churn scenario of test_churn.py twice with ticks at the same instants, once always in full and once
as `lifecycle tick` does (the note when it holds, the full tick otherwise), and compares every notice,
delivery and work item."""

from __future__ import annotations

import datetime as dt
import functools
import json
import os
import shutil
import subprocess
import sys

import pytest
import sqlalchemy as sa

from lifecycle import idle, ticks
from lifecycle.config import reset_settings
from lifecycle.db import dispose_engines, session_scope
from lifecycle.models import Customer, Delivery, Escalation, Milestone, Notice
from tests import world as w
from tests.conftest import utc
from tests.test_churn import _scenario

D = dt.date


def _state_dir() -> str:
    return os.environ["LIFECYCLE_STATE_DIR"]


def _cli_tick(t: dt.datetime, counts: dict) -> None:
    """What `lifecycle tick --at t` does (lifecycle.launch, then lifecycle.cli.schedule.tick_cmd)."""
    if idle.answer(["--at", t.isoformat()]):
        counts["answered"] += 1
        return
    counts["full"] += 1
    ticks.remember(t, ticks.tick(t))


def _cadence(start, end, events, *, step, tick_at):
    """Ticks every `step` from `start` to `end`; registry changes applied at the first tick after them."""
    events = sorted(events, key=lambda e: e[0])
    t = start
    while t <= end:
        while events and events[0][0] <= t:
            events.pop(0)[1]()
        tick_at(t)
        t += step


def _signature() -> dict:
    """Everything a tick decides, without ids: notices, deliveries, work items, inbox."""
    with session_scope() as s:
        c = s.connection()
        notices = c.execute(
            sa.select(Notice.key, Notice.status, Notice.status_reason, Notice.released_at, Notice.sent_at)
        ).all()
        deliveries = c.execute(
            sa.select(
                Notice.key, Delivery.channel, Delivery.recipient, Delivery.status, Delivery.attempts
            ).join(Notice, Notice.id == Delivery.notice_id)
        ).all()
        items = c.execute(
            sa.select(
                Customer.key, Milestone.kind, Escalation.state, Escalation.resolution, Escalation.resolved_at
            )
            .join(Customer, Customer.id == Escalation.customer_id)
            .join(Milestone, Milestone.id == Escalation.milestone_id)
        ).all()
    return {k: sorted(map(tuple, v), key=repr) for k, v in [("n", notices), ("d", deliveries), ("e", items)]}


def test_answering_from_the_note_sends_exactly_what_full_ticks_send(
    sqlite_db, sqlite_template, tmp_path, monkeypatch, capsys
):
    step = dt.timedelta(hours=17)  # every hour of the day comes round; some ticks share a UTC day
    _scenario(functools.partial(_cadence, step=step, tick_at=lambda t: ticks.tick(t)))
    full = _signature()
    dispose_engines()
    shutil.copy(sqlite_template, tmp_path / "second.db")
    monkeypatch.setenv("LIFECYCLE_DATABASE_URL", f"sqlite:///{tmp_path / 'second.db'}")
    reset_settings()
    counts = {"answered": 0, "full": 0}
    _scenario(functools.partial(_cadence, step=step, tick_at=lambda t: _cli_tick(t, counts)))
    noted = _signature()
    for part in ("n", "d", "e"):
        assert (
            sorted(set(full[part]) - set(noted[part]), key=repr),
            sorted(set(noted[part]) - set(full[part]), key=repr),
        ) == ([], []), part
    assert noted == full
    assert any(n[1] == "sent" for n in full["n"]) and full["e"]  # something happened: not a vacuous test
    # Both ways were taken many times: ticks answered from the note (nothing due, the same UTC day), and
    # full ticks (work due, a registry change, or a new day for the calendars).
    assert counts["answered"] > 50 and counts["full"] > 50, counts
    assert "tick at" in capsys.readouterr().out


def test_quiet_until_is_the_next_thing_that_can_fall_due(sqlite_db):
    w.product()
    w.milestone(D(2027, 6, 30))
    w.customer("acme", "Asia/Shanghai")
    at = utc(2026, 12, 1)
    ticks.tick(at)
    with session_scope() as s:
        until = ticks.quiet_until(s, at)
        first = s.execute(sa.select(sa.func.min(Notice.due_at)).where(Notice.status == "planned")).scalar()
    first = first if first.tzinfo else first.replace(tzinfo=dt.UTC)
    assert until == min(first, utc(2026, 12, 2))  # the next planned notice, or the next UTC day
    # A milestone to plan: it cannot be said.
    w.milestone(D(2027, 3, 31), kind="end-of-sale")
    with session_scope() as s:
        assert ticks.quiet_until(s, at) is None


def test_an_open_work_item_bounds_the_quiet_by_the_midnight_after_its_milestone_in_its_timezone(sqlite_db):
    w.product()
    w.milestone(D(2027, 3, 15))
    w.customer("kiri", "Pacific/Kiritimati")  # UTC+14: the first place where a date passes
    w.customer("hono", "Pacific/Honolulu")  # UTC-10: one of the last
    w.run_every_instant(utc(2027, 3, 10))
    with session_scope() as s:
        assert s.execute(sa.select(sa.func.count()).where(Escalation.state != "resolved")).scalar() == 2
        s.execute(sa.update(Notice).where(Notice.status == "planned").values(status="skipped"))
    at = utc(2027, 3, 15, 1)
    with session_scope() as s:
        assert ticks.quiet_until(s, at) == utc(2027, 3, 15, 10)  # 16 March begins in Kiritimati
    ticks.tick(utc(2027, 3, 15, 10))
    with session_scope() as s:
        assert ticks.quiet_until(s, utc(2027, 3, 15, 10)) == utc(2027, 3, 16)  # the calendars' next day
    ticks.tick(utc(2027, 3, 16))
    with session_scope() as s:
        assert ticks.quiet_until(s, utc(2027, 3, 16)) == utc(2027, 3, 16, 10)  # 16 March ends in Honolulu
        resolved = dict(
            s.execute(
                sa.select(Customer.key, Escalation.resolution).join(
                    Customer, Customer.id == Escalation.customer_id
                )
            ).all()
        )
    assert resolved == {"kiri": "passed", "hono": None}


def test_sends_in_flight_or_due_retries_leave_no_quiet(sqlite_db):
    w.product()
    w.milestone(D(2027, 6, 30))
    w.customer("acme")
    ticks.tick(utc(2027, 1, 1))
    with session_scope() as s:
        s.execute(sa.update(Delivery).values(status="sending"))
        assert ticks.quiet_until(s, utc(2027, 1, 1)) is None
        s.execute(sa.update(Delivery).values(status="pending", next_attempt_at=utc(2027, 1, 1, 0, 5)))
        assert ticks.quiet_until(s, utc(2027, 1, 1)) == utc(2027, 1, 1, 0, 5)


def _note(db_url: str) -> dict | None:
    return idle.read_note(idle.Path(_state_dir()), idle.database_file(db_url))


def test_the_note_holds_only_while_nothing_changed(sqlite_db, capsys):
    w.product()
    w.milestone(D(2027, 6, 30))
    w.customer("acme")
    at = utc(2026, 12, 1, 6)
    ticks.remember(at, ticks.tick(at))
    note = _note(sqlite_db)
    assert note is not None and note["at"] == at.isoformat()
    db = idle.database_file(sqlite_db)
    later = at + dt.timedelta(hours=1)
    assert idle.quiet(note, db, later)
    assert not idle.quiet(note, db, at - dt.timedelta(seconds=1))  # before the noted tick
    assert not idle.quiet(note, db, dt.datetime.fromisoformat(note["until"]))  # something falls due
    # Any write, here by another "process" (a connection of our own), ends it.
    w.customer("hooli")
    dispose_engines()
    assert not idle.quiet(note, db, later)
    assert not idle.answer(["--at", later.isoformat()])
    assert capsys.readouterr().out == ""
    # Another setting, another code version or another database: the note does not apply.
    ticks.remember(later, ticks.tick(later))
    note = _note(sqlite_db)
    assert idle.quiet(note, db, later)
    os.environ["LIFECYCLE_SEND_HOUR"] = "10"
    try:
        assert not idle.quiet(note, db, later)
    finally:
        del os.environ["LIFECYCLE_SEND_HOUR"]
    assert not idle.quiet(note, db.with_name("other.db"), later)
    assert not idle.quiet({**note, "version": 0}, db, later)


def test_a_damaged_note_means_a_full_tick(sqlite_db):
    at = utc(2026, 12, 1)
    ticks.remember(at, ticks.tick(at))
    path = idle.note_path(idle.Path(_state_dir()), idle.database_file(sqlite_db))
    assert path.exists() and oct(path.stat().st_mode & 0o777) == "0o600"
    for damage in ("", "{", "[]", '{"version": 1}', json.dumps({"version": 1, "at": "x", "until": "y"})):
        path.write_text(damage)
        assert idle.answer(["--at", at.isoformat()]) is False


def test_only_the_tick_options_it_knows_are_answered(sqlite_db):
    at = utc(2026, 12, 1)
    ticks.remember(at, ticks.tick(at))
    assert idle.answer(["--at", "2026-12-01T01:00Z"])
    for args in (
        ["--help"],
        ["--at"],
        ["--at", "yesterday"],
        ["--at", "0001-01-01"],
        ["--json", "--json"],
        ["x"],
    ):
        assert idle.answer(args) is False, args


def test_postgresql_and_memory_databases_write_no_note(db):
    at = utc(2026, 12, 1)
    ticks.remember(at, ticks.tick(at))
    if db.startswith("postgresql"):
        assert idle.database_file(db) is None
        assert not any(p.name.startswith("quiet-") for p in idle.Path(_state_dir()).glob("*"))
    assert idle.database_file("sqlite://") is None and idle.database_file("sqlite:///:memory:") is None
    assert idle.database_file("sqlite:///file:x?mode=ro&uri=true") is None


# ----------------------------------------------------------------------------------- the real command


def _importtime(cwd, *args) -> tuple[subprocess.CompletedProcess, set[str]]:
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "lifecycle", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=120,
    )
    loaded = {
        line.split("|")[-1].strip().split(".")[0]
        for line in proc.stderr.splitlines()
        if line.startswith("import time:")
    }
    return proc, loaded


@pytest.mark.parametrize("as_json", [False, True])
def test_the_answer_is_the_full_ticks_own_output(cli, tmp_path, sqlite_db, as_json):
    reset_settings()
    flags = ["--json"] if as_json else []
    full = cli("tick", "--at", "2027-01-02T06:00", *flags)
    assert full.code == 0, full
    proc, loaded = _importtime(tmp_path, "tick", "--at", "2027-01-02T06:00", *flags)
    assert proc.returncode == 0, proc.stderr
    assert "sqlalchemy" not in loaded and "lifecycle" in loaded, sorted(loaded)
    assert proc.stdout == full.out
    # A registry change: the next tick runs in full (it opens the database) and plans.
    assert cli("product", "add", "acp", "--name", "ACP").code == 0
    proc, loaded = _importtime(tmp_path, "tick", "--at", "2027-01-02T07:00", *flags)
    assert proc.returncode == 0 and "sqlalchemy" in loaded, proc.stderr
