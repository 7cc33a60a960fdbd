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
            registry.upsert_customer(
                s,
                key=key,
                name=key.title(),
                timezone=ZONES[i % len(ZONES)],
                locale="en",
                account_rep=f"rep{i % 3}@vendor.example",
                at=w.START,
            )
            for j in range(1 + i % 2):
                registry.upsert_contact(s, customer=key, email=f"ops{j}@{key}.example", at=w.START)
            registry.add_deployment(s, customer=key, product="acp", version="3.16", at=w.START)


def planned_count() -> int:
    with session_scope() as s:
        return s.execute(
            sa.select(sa.func.count()).select_from(Notice).where(Notice.status == NoticeStatus.PLANNED)
        ).scalar_one()


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
    by_product = json.loads(
        cli("plan", "--at", AT, "--json", "--product", "acp", "--until", "2026-10-01").out
    )
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
    proc = subprocess.Popen(
        [sys.executable, "-m", "lifecycle", "plan", "--at", AT, "--json"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=os.environ.copy(),
    )
    first = proc.stdout.readline()
    assert first.startswith(b'{"at": ')
    proc.stdout.close()  # more than a pipe's buffer is still to come
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) in (0, 141)
    assert proc.returncode == 141  # 1,200 notices do not fit in the pipe: it was cut off
    assert "Traceback" not in err and "error" not in err, err


def _pm_token() -> dict:
    from lifecycle import tokens

    with session_scope() as s:
        _token, secret = tokens.create_token(s, role="pm", at=w.START)
    return {"Authorization": f"Bearer {secret}"}


def _pages(client, url: str, key: str, **params) -> list[dict]:
    pages, cursor = [], None
    while True:
        response = client.get(
            url, params={**params, **({"cursor": cursor} if cursor else {})}, headers=_pm_token()
        )
        assert response.status_code == 200, response.text
        body = response.json()
        pages.append(body[key])
        cursor = body["next_cursor"]
        if cursor is None:
            return pages


def test_api_lists_page_with_a_cursor(db):
    from fastapi.testclient import TestClient

    from lifecycle.web.app import create_app

    build_fleet()
    w.run(utc(2026, 10, 1))  # the 6-month stages of end of maintenance went out: reports have rows
    client = TestClient(create_app())
    pages = _pages(client, "/api/customers", "customers", limit=40)
    assert [len(p) for p in pages] == [40, 40, 40, 30]
    keys = [c["key"] for p in pages for c in p]
    assert keys == sorted(keys) and len(set(keys)) == FLEET
    assert client.get("/api/customers", params={"limit": 0}, headers=_pm_token()).status_code == 422

    at = "2026-10-01T12:00:00+00:00"
    pages = _pages(client, "/api/reports/compliance", "rows", limit=60, at=at)
    assert len(pages) == 3
    rows = [r for p in pages for r in p]
    whole = client.get(
        "/api/reports/compliance", params={"at": at, "limit": 5000}, headers=_pm_token()
    ).json()
    assert whole["next_cursor"] is None and rows == whole["rows"]
    assert len(rows) == FLEET * 2 and {r["customer"] for r in pages[0]} == {f"c{i:04d}" for i in range(60)}
    schema = client.get("/openapi.json").json()["components"]["schemas"]
    assert "next_cursor" in schema["CustomerPage"]["properties"]
    assert "next_cursor" in schema["ComplianceReport"]["properties"]


def test_compliance_and_inbox_listings_stream_with_limits_and_filters(db, cli):
    build_fleet()
    w.run(utc(2026, 10, 1))
    at = "2026-10-01T12:00:00+00:00"
    result = cli("report", "compliance", "--at", at, "--json")
    assert result.code == 0, result
    doc = json.loads(result.out)
    assert len(doc["rows"]) == FLEET * 2 and sum(doc["totals"].values()) == FLEET * 2
    assert result.out.count("\n") >= FLEET * 2  # a row per line, written as computed
    keys = [(r["customer"], r["milestone_date"]) for r in doc["rows"]]
    assert keys == sorted(keys)  # the chunks of customers come in key order
    told = json.loads(
        cli("report", "compliance", "--at", at, "--json", "--status", "on-time", "--limit", "5").out
    )
    assert len(told["rows"]) == 5 and told["totals"] == {"on-time": 5}
    one = json.loads(cli("report", "compliance", "--at", at, "--json", "--customer", "c0042").out)
    assert {r["customer"] for r in one["rows"]} == {"c0042"} and len(one["rows"]) == 2
    assert cli("report", "compliance", "--at", at, "--status", "fine").code == 2

    inbox = json.loads(cli("inbox", "c0001", "--json").out)
    assert len(inbox) == 1 and not inbox[0]["read"]
    assert json.loads(cli("inbox", "c0001", "--json", "--limit", "0").out) == inbox
    assert cli("inbox", "nobody").code == 2
