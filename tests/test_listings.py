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


def test_the_summary_counts_the_same_read_through_the_status_index_or_the_table_in_order(fleet, monkeypatch):
    """Mostly planned (a fleet just registered): the summary reads the notice table in order. Mostly
    sent: through the status index. Either way the same groups and counts, also with --until, and with
    some notices no longer planned."""
    from lifecycle.cli import schedule

    def both(until=None, customer=None):
        with session_scope() as s:
            monkeypatch.setattr(schedule, "SCAN_SHARE", 0.0)  # always the table in order
            scanned = schedule.plan_summary(s, until, customer)
            monkeypatch.setattr(schedule, "SCAN_SHARE", 2.0)  # never
            indexed = schedule.plan_summary(s, until, customer)
        monkeypatch.undo()
        assert scanned == indexed and scanned
        return scanned

    with session_scope() as s:
        assert schedule._mostly_planned(s.connection(), None, None)
        assert not schedule._mostly_planned(s.connection(), "c0001", None)
    whole = both()
    assert sum(g["notices"] for g in whole) == fleet
    assert both(until=utc(2026, 12, 31)) != whole
    both(customer="c0003")
    with session_scope() as s:  # four fifths of the notices sent: the index is the quicker way
        ids = s.execute(sa.select(Notice.id).order_by(Notice.id)).scalars().all()
        s.execute(
            sa.update(Notice)
            .where(Notice.id.in_(ids[: len(ids) * 4 // 5]))
            .values(status=NoticeStatus.SENT, sent_at=utc(2026, 1, 1))
        )
    with session_scope() as s:
        assert not schedule._mostly_planned(s.connection(), None, None)
    assert sum(g["notices"] for g in both()) == fleet - len(ids) * 4 // 5


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
    if db.startswith("sqlite"):  # refused before any query: the same on every database
        assert cli("report", "compliance", "--at", at, "--status", "fine").code == 2

    inbox = json.loads(cli("inbox", "c0001", "--json").out)
    assert len(inbox) == 1 and not inbox[0]["read"]
    assert json.loads(cli("inbox", "c0001", "--json", "--limit", "0").out) == inbox
    assert cli("inbox", "nobody").code == 2


# ------------------------------------------------------------- milestones, escalations, agreements report

REPORT_AT = "2026-10-01T12:00:00+00:00"


def build_more() -> None:
    """The fleet, plus what pages of milestones, escalations and agreements need to cross: releases whose
    natural order is not the order they were registered in (3.9 after 3.16), a second deployment for
    every fourth customer with the same next milestone date (a group a page may cut), more products,
    and an escalation per customer in every state."""
    from lifecycle.models import Escalation, Notice

    build_fleet()
    w.product("acp", versions=("3.9",))
    w.milestone(utc(2027, 3, 31).date(), version="3.9", kind="end-of-maintenance")
    for slug in ("beta", "alpha"):
        w.product(slug, versions=("1.10", "1.9", "2.0"), upgrade_to="2.0")
        for version in ("1.10", "1.9"):
            for month, kind in ((6, "end-of-sale"), (9, "end-of-maintenance"), (12, "end-of-life")):
                w.milestone(utc(2027, month, 1).date(), product=slug, version=version, kind=kind)
        w.milestone(utc(2028, 1, 1).date(), product=slug, version=None, kind="end-of-life")
    with session_scope() as s:
        for i in range(0, FLEET, 4):
            registry.add_deployment(s, customer=f"c{i:04d}", product="acp", version="3.9", at=w.START)
        milestone = registry.get_milestone(s, "acp", "3.16", "end-of-maintenance")
        at = utc(2027, 3, 10)
        for i in range(FLEET):
            cid = registry.get_customer(s, f"c{i:04d}").id
            s.add(
                Notice(
                    key=f"escalation:{i}",
                    customer_id=cid,
                    milestone_id=milestone.id,
                    release_id=milestone.release_id,
                    kind="escalation",
                    audience="rep",
                    slot="1m",
                    due_at=at,
                    status="sent",
                    created_at=at,
                )
            )
        from lifecycle import escalations

        assert escalations.sync(s, at)["created"] == FLEET
        for e in s.exec(sa.select(Escalation)).scalars():
            e.state = ("open", "in-progress", "resolved")[e.customer_id % 3]
            s.add(e)


def _client():
    from fastapi.testclient import TestClient

    from lifecycle.web.app import create_app

    return TestClient(create_app())


def test_milestones_escalations_and_the_agreements_report_page_with_a_cursor(db):
    from lifecycle import dashboard, escalations

    build_more()
    client = _client()
    pm = _pm_token()

    pages = _pages(client, "/api/milestones", "milestones", limit=5)
    with session_scope() as s:
        whole = registry.milestone_rows(s, utc(2026, 10, 1))
    assert len(whole) == 2 + 1 + 2 * 7 and [len(p) for p in pages] == [5, 5, 5, 2]
    listed = [m for p in pages for m in p]
    assert [m["id"] for m in listed] == [m["id"] for m in whole]  # every one once, in order
    order = [(m["product"], m["version"], m["kind"]) for m in listed if m["product"] == "alpha"]
    assert order[:4] == [
        ("alpha", "1.9", "end-of-sale"),
        ("alpha", "1.9", "end-of-maintenance"),
        ("alpha", "1.9", "end-of-life"),
        ("alpha", "1.10", "end-of-sale"),
    ]
    assert order[-1] == ("alpha", None, "end-of-life")
    assert [m["product"] for m in listed].index("acp") < [m["product"] for m in listed].index("alpha")
    one = client.get("/api/milestones", params={"product": "beta", "limit": 1000}, headers=pm).json()
    assert len(one["milestones"]) == 7 and one["next_cursor"] is None
    assert {m["product"] for m in one["milestones"]} == {"beta"}

    pages = _pages(client, "/api/escalations", "escalations", limit=40)
    assert [len(p) for p in pages] == [40, 40, 40, 30]
    items = [e for p in pages for e in p]
    with session_scope() as s:
        expected = escalations.jsonable(escalations.rows(s, at=utc(2027, 3, 10)))
    assert [e["id"] for e in items] == [e["id"] for e in expected] and len({e["id"] for e in items}) == FLEET
    assert [e["state"] for e in items] == sorted((e["state"] for e in items), key=escalations.STATES.index)
    busy = _pages(client, "/api/escalations", "escalations", limit=7, state="in-progress")
    assert {e["state"] for p in busy for e in p} == {"in-progress"} and sum(map(len, busy)) == FLEET // 3

    pages = _pages(client, "/api/reports/agreements", "rows", limit=7, at=REPORT_AT)
    rows = [r for p in pages for r in p]
    with session_scope() as s:
        expected = dashboard.jsonable(dashboard.agreement_rows(s, at=utc(2026, 10, 1, 12)))
    assert len(rows) == FLEET + len(range(0, FLEET, 4)) == len(expected)
    assert rows == expected  # every row once, in the report's order, though pages cut customers in two
    assert [r["version"] for r in rows if r["customer"] == "c0000"] == ["3.9", "3.16"]
    assert {len(p) for p in pages[:-1]} == {7}
    unagreed = _pages(client, "/api/reports/agreements", "rows", limit=50, at=REPORT_AT, agreement="none")
    assert sum(map(len, unagreed)) == len(rows)
    assert _pages(client, "/api/reports/agreements", "rows", at=REPORT_AT, risk="red") == [[]]

    schema = client.get("/openapi.json").json()["components"]["schemas"]
    for name in ("MilestonePage", "EscalationPage", "AgreementsReport"):
        assert "next_cursor" in schema[name]["properties"], name


@pytest.mark.parametrize("url", ["/api/milestones", "/api/escalations", "/api/reports/agreements"])
def test_a_cursor_that_was_not_handed_out_is_a_422_naming_the_cursor(db, url):
    from lifecycle import paging

    w.product()
    client = _client()
    pm = _pm_token()
    for cursor in (
        "garbage!!",
        "x" * 1000,
        paging.encode(["acp"]),  # too short
        paging.encode([1, 2, 3, 4]),  # wrong types
        paging.encode(["acp", None, "end-of-days", 1]),
        paging.encode([True, "2027-13-01", "c", 1]),
        "eyJhIjoxfQ",  # {"a":1}
        "%00",
    ):
        r = client.get(url, params={"cursor": cursor}, headers=pm)
        assert r.status_code == 422, (cursor, r.text)
        assert r.json()["detail"][0]["loc"] == ["query", "cursor"], r.text
    assert client.get(url, params={"limit": 0}, headers=pm).status_code == 422
    assert client.get(url, params={"limit": 100_000}, headers=pm).status_code == 422
    empty = client.get(url, headers=pm).json()
    assert empty["next_cursor"] is None


def test_milestone_list_and_the_agreements_report_stream_with_limits_and_filters(db, cli):
    build_more()
    full = cli("milestone", "list", "--json", "--at", AT)
    assert full.code == 0, full
    milestones = json.loads(full.out)
    assert len(milestones) == 17 and full.out.count("\n") >= 17  # a milestone per line
    assert json.loads(cli("milestone", "list", "--json", "--limit", "3").out) == [
        {**m, "past": False} for m in milestones[:3]
    ]
    beta = json.loads(cli("milestone", "list", "--json", "--product", "beta", "--status", "planned").out)
    assert len(beta) == 7 and {m["product"] for m in beta} == {"beta"}
    assert json.loads(cli("milestone", "list", "--json", "--status", "withdrawn").out) == []
    table = cli("milestone", "list", "--at", AT, "--limit", "2")
    assert table.code == 0 and "Milestones" in table.out and "beta" not in table.out, table
    if db.startswith("sqlite"):  # refused before any query: the same on every database
        bad = cli("milestone", "list", "--status", "gone")
        assert bad.code == 2 and "--status" in bad.err and "Traceback" not in bad.err, bad
    assert cli("milestone", "list", "--product", "nobody").code == 2

    at = "2026-10-01T12:00Z"
    result = cli("report", "agreements", "--at", at, "--json")
    assert result.code == 0, result
    rows = json.loads(result.out)
    assert len(rows) == FLEET + len(range(0, FLEET, 4)) and result.out.count("\n") >= len(rows)
    assert json.loads(cli("report", "agreements", "--at", at, "--json", "--limit", "5").out) == rows[:5]
    mine = json.loads(
        cli(
            "report", "agreements", "--at", at, "--json", "--rep", "rep1@vendor.example", "--status", "none"
        ).out
    )
    assert mine == [r for r in rows if r["rep"] == "rep1@vendor.example"]
    amber = json.loads(
        cli("report", "agreements", "--at", at, "--json", "--risk", "amber", "--limit", "4").out
    )
    assert amber == [r for r in rows if r["risk"] == "amber"][:4]
    as_csv = cli("report", "agreements", "--at", at, "--csv", "--product", "acp", "--limit", "3")
    assert as_csv.code == 0 and len(as_csv.out.splitlines()) == 4, as_csv
    shown = cli("report", "agreements", "--at", at, "--limit", "2")
    assert shown.code == 0 and "c0000" in shown.out and "c0002" not in shown.out, shown
    for flag, value in (("--risk", "purple"), ("--status", "maybe")) if db.startswith("sqlite") else ():
        bad = cli("report", "agreements", flag, value)
        assert bad.code == 2 and flag in bad.err and "Traceback" not in bad.err, bad
