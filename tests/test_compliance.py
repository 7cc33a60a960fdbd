"""The compliance report over a simulated two-year run: every row that is not on time says why."""

import datetime as dt

from lifecycle import registry
from lifecycle.db import session_scope
from lifecycle.reports import compliance
from tests import world as w
from tests.conftest import utc

D = dt.date


def _two_years():
    """Daily ticks at 23:00 UTC (after 09:00 everywhere from Sydney to Los Angeles) for two years,
    with moves, a withdrawal, a late customer, a late deployment and a lapsed contract."""
    start = utc(2026, 1, 1)
    w.product(versions=("3.16", "3.18", "4.0"), at=start, upgrade_to="4.0")
    w.milestone(D(2026, 12, 31), kind="end-of-sale", at=start)  # on time for the early ones
    w.milestone(D(2027, 6, 30), kind="end-of-full-support", at=start)  # moved later, then earlier
    w.milestone(D(2027, 3, 31), version="3.18", kind="end-of-sale", at=start)  # withdrawn
    w.milestone(D(2027, 9, 30), version="3.18", at=start)
    w.customer("early", "Asia/Shanghai", deploy=(("acp", "3.16"), ("acp", "3.18")), at=start)
    w.customer("berlin", "Europe/Berlin", deploy=(("acp", "3.16"),), at=start)
    w.customer(
        "lapsed",
        "America/Los_Angeles",
        deploy=(("acp", "3.16"), ("acp", "3.18")),
        at=start,
        start=D(2025, 1, 1),
        end=D(2026, 5, 31),
    )
    events = {
        D(2026, 3, 1): lambda at: w.move(
            D(2027, 9, 30), kind="end-of-full-support", at=at, reason="more time"
        ),
        D(2026, 9, 10): lambda at: w.withdraw(version="3.18", kind="end-of-sale", at=at, reason="still sold"),
        D(2026, 11, 5): lambda at: w.customer(
            "latecomer", "Australia/Sydney", deploy=(("acp", "3.16"),), at=at
        ),
        D(2027, 7, 20): lambda at: _deploy("berlin", "3.18", at),  # after the 30 June deadline
        D(2027, 5, 1): lambda at: w.move(
            D(2027, 7, 15), kind="end-of-full-support", at=at, reason="security", short=True
        ),
        D(2027, 6, 1): lambda at: w.milestone(
            D(2027, 8, 15), version="4.0", kind="end-of-sale", at=at, reason="product line consolidated"
        ),
        D(2027, 6, 2): lambda at: _deploy("early", "4.0", at),
    }
    day = D(2026, 1, 1)
    while day <= D(2027, 12, 31):
        at = dt.datetime(day.year, day.month, day.day, 23, tzinfo=dt.UTC)
        if day in events:
            events[day](at - dt.timedelta(hours=12))
        w.run(at)
        day += dt.timedelta(days=1)


def _deploy(key, version, at):
    with session_scope() as s:
        registry.add_deployment(s, customer=key, product="acp", version=version, at=at)


def test_a_two_year_run_explains_every_row_that_is_not_on_time(db):
    _two_years()
    with session_scope() as s:
        report = compliance(s, utc(2028, 1, 1))
    rows = {(r["customer"], r["version"], r["milestone"]): r for r in report["rows"]}
    for r in report["rows"]:
        if r["status"] not in ("on-time", "withdrawn"):
            assert r["cause"], r
    assert rows[("early", "3.16", "end-of-sale")]["status"] == "on-time"
    assert rows[("berlin", "3.16", "end-of-sale")]["status"] == "on-time"
    assert rows[("early", "3.18", "end-of-sale")]["status"] == "withdrawn"
    late = rows[("latecomer", "3.16", "end-of-sale")]
    assert late["status"] == "late" and "added late" in late["cause"]
    assert rows[("lapsed", "3.18", "end-of-life")] == {
        **rows[("lapsed", "3.18", "end-of-life")],
        "status": "not-notified",
        "cause": "service lapsed",
    }
    moved = rows[("berlin", "3.16", "end-of-full-support")]
    assert moved["status"] == "late" and moved["cause"].startswith("short notice: moved")
    dep = rows[("berlin", "3.18", "end-of-life")]
    assert dep["status"] == "late" and "deployment added late" in dep["cause"]
    short = rows[("early", "4.0", "end-of-sale")]
    assert short["status"] == "late" and short["cause"].startswith("short notice: registered")
    assert "product line consolidated" in short["cause"]
    assert sum(report["totals"].values()) == len(report["rows"])
    assert report["totals"]["on-time"] >= 3 and report["totals"]["late"] >= 3


def test_the_compliance_cli_prints_json_with_totals(db, cli):
    w.product()
    w.milestone(D(2027, 9, 30))
    w.customer("acme")
    w.run(utc(2027, 3, 31))
    import json

    r = cli("report", "compliance", "--json", "--at", "2027-04-01")
    assert r.code == 0, r
    data = json.loads(r.out)
    assert data["totals"] == {"on-time": 1} and data["rows"][0]["deadline"] == "2027-06-30"
