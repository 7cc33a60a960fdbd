"""Bounded listings (issue 11, item 5): listings stream their rows, take --limit and filters, and the
default `lifecycle plan` is a summary per day, stage and channel.

The fleet is big enough that the listing crosses the chunks it is read in (1,000 notices)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import sqlalchemy as sa

from lifecycle import registry
from lifecycle.db import session_scope
from lifecycle.models import Notice, NoticeStatus
from tests import world as w
from tests.conftest import utc

FLEET = 150  # customers; 2 milestones x 4 stages each: 1,200 planned notices
ZONES = ("Asia/Shanghai", "Europe/Berlin", "America/New_York", "UTC", "Asia/Tokyo")
AT = "2026-01-01"


def build_fleet(n: int = FLEET) -> None:
    w.product()
    w.milestone(utc(2027, 6, 30).date(), kind="end-of-life")
    w.milestone(utc(2027, 3, 31).date(), kind="end-of-maintenance")
    with session_scope() as s:
        for i in range(n):
            key = f"c{i:04d}"
            registry.upsert_customer(s, key=key, name=key.title(), timezone=ZONES[i % len(ZONES)], locale="en",
                                     account_rep=f"rep{i % 3}@vendor.example", at=w.START)
            for j in range(1 + i % 2):
                registry.upsert_contact(s, customer=key, email=f"ops{j}@{key}.example", at=w.START)
            registry.add_deployment(s, customer=key, product="acp", version="3.16", at=w.START)


def planned_count() -> int:
    with session_scope() as s:
        return s.execute(sa.select(sa.func.count()).select_from(Notice)
                         .where(Notice.status == NoticeStatus.PLANNED)).scalar_one()


@pytest.fixture
def fleet(db, cli):
    build_fleet()
    assert cli("plan", "--at", AT, "--json", "--summary").code == 0  # plans the notices
    return planned_count()


def test_plan_without_flags_is_a_summary_per_day_stage_and_channel(fleet, cli):
    assert fleet == FLEET * 8
    result = cli("plan", "--at", AT)
    assert result.code == 0, result
    assert "c0001" not in result.out  # no customer lines
    assert f"{fleet} planned notice(s)" in result.out
    summary = json.loads(cli("plan", "--at", AT, "--json", "--summary").out)["summary"]
    assert sum(g["notices"] for g in summary) == fleet
    assert {g["notice"] for g in summary} == {"6m", "3m", "1m", "1w"}
    # a portal recipient per notice; an email per contact (half the customers have two)
    assert sum(g["channels"]["portal"] for g in summary) == fleet
    assert sum(g["channels"]["email"] for g in summary) == FLEET // 2 * 8 + FLEET // 2 * 16
    assert all(g["customers"] <= g["notices"] for g in summary)
    assert len(summary) < fleet / 10  # a line per day and stage, not per notice
    mine = json.loads(cli("plan", "--at", AT, "--json", "--customer", "c0007").out)["notices"]
    assert len(mine) == 8 and {n["customer"] for n in mine} == {"c0007"}
    by_product = json.loads(cli("plan", "--at", AT, "--json", "--product", "acp", "--until", "2026-10-01").out)
    assert by_product["notices"] and all(n["due_at"] <= "2026-10-02" for n in by_product["notices"])
    detail = cli("plan", "--at", AT, "--detail", "--limit", "3")
    assert detail.code == 0 and "3 planned notice(s)" in detail.out, detail
    unknown = cli("plan", "--at", AT, "--customer", "nobody")
    assert unknown.code == 2 and "nobody" in unknown.err, unknown
    both = cli("plan", "--at", AT, "--detail", "--summary")
    assert both.code == 2 and "--summary" in both.err, both


def test_plan_json_streams_every_notice_in_order_across_chunks(fleet, cli, tmp_path):
    result = cli("plan", "--at", AT, "--json")
    assert result.code == 0, result
    doc = json.loads(result.out)
    notices = doc["notices"]
    assert len(notices) == fleet > 1000
    assert len({n["notice_id"] for n in notices}) == fleet
    keys = [(n["due_at"], n["customer"], n["notice_id"]) for n in notices]
    assert keys == sorted(keys)
    # recipients looked up for every chunk, the last one too
    assert all(n["channels"][0]["channel"] == "portal" for n in notices)
    assert sum(1 for n in notices[-50:] for c in n["channels"] if c["channel"] == "email") >= 50
    assert doc["planned"]["created"] == 0  # planned by the fixture already
    # one notice per line: a reader can take the rows as they come
    assert result.out.count("\n") >= fleet
    limited = json.loads(cli("plan", "--at", AT, "--json", "--limit", "7").out)["notices"]
    assert limited == notices[:7]

    # `lifecycle plan --json | head -1`: the first line comes, then the command ends without a traceback
    proc = subprocess.Popen([sys.executable, "-m", "lifecycle", "plan", "--at", AT, "--json"], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=os.environ.copy())
    first = proc.stdout.readline()
    assert first.startswith(b'{"at": ')
    proc.stdout.close()  # more than a pipe's buffer is still to come
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) in (0, 141)
    assert proc.returncode == 141  # 1,200 notices do not fit in the pipe: it was cut off
    assert "Traceback" not in err and "error" not in err, err
