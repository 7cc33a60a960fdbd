"""Safe changes for product managers: a preview that writes nothing, a hold on the notices a change
makes due at once, and undo within the hold."""

from __future__ import annotations

import datetime as dt
import json

import pytest
import sqlalchemy as sa

from lifecycle import changes, registry
from lifecycle.config import reset_settings
from lifecycle.db import get_engine, session_scope
from lifecycle.errors import InputError
from lifecycle.models import Milestone
from tests import world as w
from tests.conftest import utc

D = dt.date


@pytest.fixture
def hold(monkeypatch):
    monkeypatch.setenv("LIFECYCLE_CHANGE_HOLD", "10m")
    reset_settings()


def dump() -> list:
    """Every row of every table: a preview must leave it identical."""
    engine = get_engine()
    out = []
    with engine.connect() as conn:
        for table in sorted(sa.inspect(engine).get_table_names()):
            out.append((table, sorted(map(repr, conn.execute(sa.text(f'SELECT * FROM "{table}"')).all()))))
    return out


def _registry():
    w.product()
    w.milestone(D(2027, 9, 30))
    w.customer("acme", "Asia/Shanghai")
    w.customer("globex", "Europe/Berlin", emails=["a@globex.example", "b@globex.example"])
    w.customer("initech", "America/Los_Angeles", deploy=(("acp", "3.18"),))
    w.run(utc(2027, 3, 31, 2))  # the 6m stage went out


def test_a_dry_run_writes_nothing_and_says_who_would_be_told_what(db, cli, hold):
    _registry()
    before = dump()
    r = cli(
        "milestone",
        "move",
        "acp",
        "3.16",
        "end-of-life",
        "2027-06-30",
        "--reason",
        "security",
        "--allow-short-notice",
        "--at",
        "2027-04-10T03:00Z",
        "--dry-run",
    )
    assert r.code == 0, r
    assert dump() == before
    assert "Preview (nothing is written):" in r.out and "affected customers: 2 (acme, globex)" in r.out
    assert "at once, held until 2027-04-10 03:10 UTC" in r.out and "changed: 2 customer(s)" in r.out
    r = cli(
        "milestone",
        "move",
        "acp",
        "3.16",
        "end-of-life",
        "2027-06-30",
        "--reason",
        "security",
        "--allow-short-notice",
        "--at",
        "2027-04-10T03:00Z",
        "--dry-run",
        "--json",
    )
    preview = json.loads(r.out)
    assert preview["affected_customers"]["count"] == 2
    assert preview["at_once"]["deliveries"] == {"portal": 2, "email": 3}
    assert [(n["kind"], n["stage"]) for n in preview["planned"]] == [("stage", "1m"), ("stage", "1w")]
    assert preview["escalations"]["customers"] == ["acme", "globex"]
    assert dump() == before


def test_a_dry_run_shows_the_error_the_change_would_meet(db, cli):
    _registry()
    r = cli(
        "milestone",
        "move",
        "acp",
        "3.16",
        "end-of-life",
        "2027-05-01",
        "--reason",
        "x",
        "--at",
        "2027-04-10",
        "--dry-run",
    )
    assert r.code == 2 and "less than 3 months" in r.err


def test_an_import_dry_run_writes_nothing(db, cli, hold):
    from tests.conftest import ROOT

    before = dump()
    r = cli("import", ROOT / "examples" / "registry.yaml", "--at", "2026-12-01", "--dry-run")
    assert r.code == 0, r
    assert "affected customers: 6" in r.out and dump() == before


def test_notices_a_change_makes_due_at_once_wait_for_the_hold_then_go(db, hold):
    _registry()
    w.move(D(2027, 6, 30), at=utc(2027, 4, 10, 3), reason="security", short=True)
    w.run(utc(2027, 4, 10, 3, 5))
    assert [n.kind for n in w.sent("acme")] == ["stage"]
    [change] = [n for n in w.notices("acme") if n.kind == "changed"]
    assert change.status == "planned" and change.due_at == utc(2027, 4, 10, 3, 10)
    w.run(utc(2027, 4, 10, 3, 10))
    assert [n.kind for n in w.sent("acme")] == ["stage", "changed"]


def test_undo_within_the_hold_tells_no_customer_anything(db, hold, tmp_path):
    _registry()
    emails = len(list((tmp_path / "outbox").rglob("*.eml")))
    w.move(D(2027, 6, 30), at=utc(2027, 4, 10, 3), reason="typo", short=True)
    w.run(utc(2027, 4, 10, 3, 5))
    with session_scope() as s:
        change = registry.current_change(s, registry.get_milestone(s, "acp", "3.16", "end-of-life"))
        result = changes.undo(s, change.id, at=utc(2027, 4, 10, 3, 8), by="pm@vendor.example")
    assert result["reverted"][0]["date"] == "2027-09-30"
    w.run(utc(2027, 4, 10, 4), utc(2027, 4, 11))
    assert [n.kind for n in w.sent("acme")] == ["stage"] and [n.kind for n in w.sent("globex")] == ["stage"]
    assert len(list((tmp_path / "outbox").rglob("*.eml"))) == emails
    with session_scope() as s:
        m = registry.get_milestone(s, "acp", "3.16", "end-of-life")
        assert (m.date, m.revision, m.short_notice_reason) == (D(2027, 9, 30), 3, None)
    w.run(utc(2027, 6, 30, 2))  # the 3m stage of the restored date goes as if nothing happened
    assert [n.slot for n in w.sent("acme")] == ["6m", "3m"]


def test_undo_after_the_hold_is_refused_with_the_reason(db, cli, hold):
    _registry()
    r = cli(
        "milestone", "withdraw", "acp", "3.16", "end-of-life", "--reason", "x", "--at", "2027-04-10T03:00Z"
    )
    assert r.code == 0 and "held until 2027-04-10T03:10+00:00 (undo: lifecycle change undo" in r.out
    change_id = int(r.out.split("lifecycle change undo ")[1].split(")")[0])
    late = cli("change", "undo", str(change_id), "--at", "2027-04-10T03:11Z")
    assert late.code == 2 and "the hold of change" in late.err and "ended at 2027-04-10T03:10" in late.err
    ok = cli("change", "undo", str(change_id), "--at", "2027-04-10T03:09Z")
    assert ok.code == 0 and "undone" in ok.out
    again = cli("change", "undo", str(change_id), "--at", "2027-04-10T03:09Z")
    assert again.code == 2 and "already undone" in again.err
    listing = json.loads(cli("change", "list", "--json", "--at", "2027-04-10T03:09Z").out)
    assert [(c["action"], c["state"]) for c in listing[:2]] == [("undo", "applied"), ("withdraw", "undone")]


def test_undoing_an_added_milestone_removes_it(db, hold):
    _registry()
    with session_scope() as s:
        m, _ = registry.add_milestone(
            s,
            product="acp",
            version="3.18",
            kind="end-of-life",
            date=D(2027, 6, 1),
            at=utc(2027, 4, 10),
            allow_short_notice=True,
            reason="oops",
        )
        change = registry.current_change(s, m)
    w.run(utc(2027, 4, 10, 0, 5))
    with session_scope() as s:
        changes.undo(s, change.id, at=utc(2027, 4, 10, 0, 6))
    w.run(utc(2027, 4, 10, 1))
    assert w.sent("initech") == []
    with session_scope() as s:
        [only] = s.exec(sa.select(Milestone)).scalars().all()
        assert (only.kind, only.date) == ("end-of-life", D(2027, 9, 30))


def test_a_later_change_must_be_undone_first(db, hold):
    _registry()
    w.move(D(2027, 10, 31), at=utc(2027, 4, 10), reason="first")
    with session_scope() as s:
        first = registry.current_change(s, registry.get_milestone(s, "acp", "3.16", "end-of-life")).id
    w.move(D(2027, 11, 30), at=utc(2027, 4, 10, 0, 1), reason="second")
    with session_scope() as s, pytest.raises(InputError) as err:
        changes.undo(s, first, at=utc(2027, 4, 10, 0, 2))
    assert "changed again since" in err.value.message
