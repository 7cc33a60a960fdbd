"""The compliance report for product managers on the web: per product and milestone, how many customers
were told on time, late (with the cause), not told (with the cause) and are pending; a drill-down to the
customers; CSV; and the same data from `lifecycle report compliance --json` and the API."""

from __future__ import annotations

import csv
import io
import json
import re

import pytest
from fastapi.testclient import TestClient

from lifecycle import clock, registry, reports, tokens
from lifecycle.config import reset_settings
from lifecycle.db import session_scope
from lifecycle.web.app import create_app
from tests import world as w
from tests.conftest import utc
from tests.test_registry_pages import text_of
from tests.test_web_pages import csrf_of

D = __import__("datetime").date
NOW = utc(2027, 8, 15, 12)  # the instant the report is read


def _history():
    """acme and globex told on time; initech signed up late; umbrella's service had lapsed; hooli's
    3.18 end of life is more than 6 months away (pending)."""
    w.product()
    w.milestone(D(2027, 9, 30))
    w.milestone(D(2028, 12, 31), version="3.18")
    w.customer("acme", "Asia/Shanghai")
    w.customer("globex", "Europe/Berlin")
    w.customer("umbrella", "UTC", end=D(2026, 12, 31))
    w.customer("hooli", "America/Los_Angeles", deploy=(("acp", "3.18"),))

    def initech():
        w.customer("initech", "Europe/London", at=utc(2027, 8, 1, 5))

    w.replay_every_instant(w.START, NOW, [(utc(2027, 8, 1, 5), initech)])
    with session_scope() as s:
        secrets = {
            role: tokens.create_token(s, role=role, at=NOW, **kw)[1]
            for role, kw in (("pm", {}), ("rep", {"rep": "rep@vendor.example"}))
        }
    return secrets


@pytest.fixture
def at_now(monkeypatch):
    """The web's clock at NOW (a simulated clock, as `lifecycle serve --at` sets it)."""
    monkeypatch.setenv("LIFECYCLE_CLOCK_OFFSET", str(clock.offset_to(NOW)))
    reset_settings()


def log_in(secret: str) -> TestClient:
    client = TestClient(create_app())
    form = client.get("/login")
    assert client.post("/login", data={"token": secret, "csrf": csrf_of(form.text)}).status_code == 200
    return client


def test_the_compliance_page_counts_each_milestone_and_drills_down_to_the_customers(sqlite_db, at_now):
    secrets = _history()
    pm = log_in(secrets["pm"])
    page = pm.get("/registry/compliance")
    assert page.status_code == 200 and 'aria-current="page">Compliance' in page.text
    eol = re.search(
        r'<tr data-product="acp" data-version="3.16" data-milestone="end-of-life".*?</tr>', page.text, re.S
    ).group(0)
    counts = dict(re.findall(r'data-status="([a-z-]+)">(?:<a [^>]*>)?(\d+)', eol))
    assert counts == {"on-time": "2", "late": "1", "not-notified": "1", "pending": "0", "withdrawn": "0"}
    causes = text_of(eol)
    assert "customer added late (2027-08-01)" in causes and "service lapsed" in causes
    pending = re.search(r'<tr data-product="acp" data-version="3.18".*?</tr>', page.text, re.S).group(0)
    assert re.search(r'data-status="pending"><a [^>]*>1<', pending)
    assert "ACP 3.16" in text_of(eol) and "end of life" in text_of(eol)

    late_link = re.search(r'href="(/registry/compliance\?[^"]*status=late[^"]*)"', eol).group(1)
    drill = pm.get(late_link.replace("&amp;", "&"))
    rows = re.findall(r'<tr data-customer="([^"]+)" data-status="([^"]+)">', drill.text)
    assert rows == [("initech", "late")]
    detail = text_of(drill.text.split('id="customers"')[1])
    assert "ACP 3.16 · end of life on 2027-09-30 · told late" in detail
    assert "Initech" in detail and "customer added late (2027-08-01)" in detail
    everyone = pm.get("/registry/compliance?product=acp&version=3.16&milestone=end-of-life")
    assert {
        c for c, _ in re.findall(r'<tr data-customer="([^"]+)" data-status="([^"]+)">', everyone.text)
    } == {"acme", "globex", "initech", "umbrella"}


def test_the_compliance_csv_holds_the_reports_rows_for_the_chosen_milestone(sqlite_db, at_now):
    secrets = _history()
    pm = log_in(secrets["pm"])
    response = pm.get("/registry/compliance.csv?product=acp&version=3.16&milestone=end-of-life")
    assert response.headers["content-type"].startswith("text/csv")
    assert "compliance-2027-08-15.csv" in response.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(response.content.decode("utf-8-sig"))))
    with session_scope() as s:
        expected = [r for r in reports.compliance(s, NOW)["rows"] if r["version"] == "3.16"]
    assert [(r["customer"], r["status"], r["cause"]) for r in rows] == [
        (r["customer"], r["status"], r["cause"] or "") for r in expected
    ]
    assert list(rows[0])[:3] == ["customer", "customer_name", "account_rep"]


def test_reps_and_customers_do_not_see_the_compliance_page(sqlite_db, at_now):
    secrets = _history()
    rep = log_in(secrets["rep"])
    assert rep.get("/registry/compliance").status_code == 403
    assert rep.get("/registry/compliance.csv").status_code == 403
    assert TestClient(create_app()).get("/registry/compliance", follow_redirects=False).status_code == 303


def test_the_api_and_the_cli_give_the_same_compliance_data(db, cli):
    secrets = _history()
    at = NOW.isoformat()
    from_cli = json.loads(cli("report", "compliance", "--json", "--at", at).out)
    api = TestClient(create_app())
    pm = {"Authorization": f"Bearer {secrets['pm']}"}
    from_api = api.get("/api/reports/compliance", params={"at": at}, headers=pm)
    assert from_api.status_code == 200
    page = from_api.json()
    assert page.pop("next_cursor") is None  # one page holds them all
    assert page == from_cli
    assert from_cli["totals"] == {"late": 1, "not-notified": 1, "on-time": 2, "pending": 1}
    summary = api.get("/api/reports/compliance", params={"at": at, "summary": "true"}, headers=pm).json()
    assert summary.pop("next_cursor") is None
    assert summary == json.loads(cli("report", "compliance", "--summary", "--json", "--at", at).out)
    [eol] = [g for g in summary["summary"] if (g["version"], g["milestone"]) == ("3.16", "end-of-life")]
    assert (eol["customers"], eol["on-time"], eol["late"], eol["not-notified"]) == (4, 2, 1, 1)
    assert eol["causes"]["late"] == [{"cause": "customer added late (2027-08-01)", "customers": 1}]
    rep = api.get("/api/reports/compliance", headers={"Authorization": f"Bearer {secrets['rep']}"})
    assert rep.status_code == 403
    table = cli("report", "compliance", "--summary", "--at", at)
    assert table.code == 0 and "acp 3.16" in table.out and "customer added late" in table.out


def test_the_summary_keeps_releases_in_version_order_and_kinds_in_lifecycle_order():
    rows = [
        {
            "product": "acp",
            "version": v,
            "milestone": k,
            "milestone_date": "2027-01-01",
            "deadline": "2026-10-01",
            "status": "on-time",
            "cause": None,
        }
        for v, k in (
            ("3.9", "end-of-life"),
            ("3.16", "end-of-life"),
            ("3.9", "end-of-sale"),
            (None, "end-of-sale"),
        )
    ]
    assert [(g["version"], g["milestone"]) for g in reports.compliance_summary({"rows": rows})] == [
        (None, "end-of-sale"),
        ("3.9", "end-of-sale"),
        ("3.9", "end-of-life"),
        ("3.16", "end-of-life"),
    ]
    assert registry.version_key("3.9") < registry.version_key("3.16")
