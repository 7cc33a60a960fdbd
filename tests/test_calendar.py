"""The iCalendar channel: feeds, exports, attachments, HTTP caching — on SQLite and PostgreSQL.

Every generated calendar is checked byte by byte (CRLF only, lines of at most 75 octets, UTF-8),
must hold at least one component (RFC 5545), and is parsed by three independent parsers: icalendar,
the strict `ical` package and vobject. The pure event building has its own tests (test_calendar_ics.py).
"""

from __future__ import annotations

import datetime as dt
import json
import time

import icalendar
import pytest
import vobject
from fastapi.testclient import TestClient
from ical.calendar_stream import IcsCalendarStream
from sqlmodel import select

from lifecycle import links, policy, registry, scheduler
from lifecycle.calendar import exports, feeds, ics
from lifecycle.config import get_settings, reset_settings
from lifecycle.db import session_scope
from lifecycle.errors import NotFound
from lifecycle.models import Milestone, MilestoneChange
from lifecycle.web.app import create_app
from tests.conftest import utc
from tests.icscheck import check_ics

AT = utc(2026, 6, 1)
LATER = utc(2026, 7, 1, 12)
HOSTILE_PRODUCT = '<script>alert("x")</script>; Evil, "Inc" \\ 平台'
HOSTILE_REASON = 'delayed; see "notes", <b>bold</b>\nsecond line \\ 中文\r\nthird\x07 line'


def _setup(s, product_name: str = "Alauda Container Platform") -> None:
    registry.upsert_product(s, slug="acp", name=product_name, at=AT)
    registry.upsert_release(s, product="acp", version="3.16", upgrade_to="3.18", at=AT)
    registry.upsert_release(s, product="acp", version="3.18", at=AT)
    registry.upsert_product(s, slug="dbx", name="Database X", at=AT)
    registry.upsert_release(s, product="dbx", version="1.0", at=AT)
    for version, kind, date in [
        ("3.16", "end-of-full-support", dt.date(2027, 3, 31)),
        ("3.16", "end-of-life", dt.date(2027, 9, 30)),
        ("3.18", "end-of-life", dt.date(2029, 1, 31)),
        (None, "end-of-sale", dt.date(2028, 6, 30)),
    ]:
        registry.add_milestone(s, product="acp", version=version, kind=kind, date=date, at=AT)
    registry.add_milestone(
        s, product="dbx", version="1.0", kind="end-of-life", date=dt.date(2027, 12, 31), at=AT
    )
    for key, name, locale in [
        ("acme", "ACME Bank", "en"),
        ("beta", "Beta 银行", "zh-CN"),
        ("gone", "Gone", "en"),
    ]:
        registry.upsert_customer(
            s,
            key=key,
            name=name,
            timezone="Asia/Shanghai",
            locale=locale,
            account_rep="rep@vendor.example",
            at=AT,
        )
    registry.add_deployment(s, customer="acme", product="acp", version="3.16", at=AT)
    registry.add_deployment(s, customer="beta", product="acp", version="3.18", at=AT)
    registry.add_deployment(s, customer="gone", product="dbx", version="1.0", at=AT)
    registry.remove_deployment(s, customer="gone", product="dbx", version="1.0", at=AT)


def _events(data: bytes) -> dict[str, icalendar.Event]:
    return {str(e["UID"]): e for e in check_ics(data).events}


def _customer(s, key: str):
    return registry.get_customer(s, key)


def _milestone(s, version, kind):
    return registry.get_milestone(s, "acp", version, kind)


# ------------------------------------------------------------------------------------------ the events


def test_the_product_feed_has_one_all_day_event_per_milestone_with_alarms_at_the_stages(db):
    with session_scope() as s:
        _setup(s)
        eol = _milestone(s, "3.16", "end-of-life")
        data = feeds.product_feed(s, "acp", AT)
    events = _events(data)
    assert len(events) == 4  # three release milestones and the product-level one, not dbx's
    ev = events[f"milestone-{eol.id}@127.0.0.1"]
    assert str(ev["SUMMARY"]) == "Alauda Container Platform 3.16: end of life"
    assert ev.start == dt.date(2027, 9, 30) and ev.end == dt.date(2027, 10, 1)
    assert b"DTSTART;VALUE=DATE:20270930\r\nDTEND;VALUE=DATE:20271001\r\n" in data
    assert int(ev["SEQUENCE"]) == 1 and str(ev["STATUS"]) == "CONFIRMED"
    assert ev["DTSTAMP"].dt == AT and ev["LAST-MODIFIED"].dt == AT
    assert "Recommended upgrade: Alauda Container Platform 3.18" in str(ev["DESCRIPTION"])
    assert "30 September 2027" in str(ev["DESCRIPTION"]) and "/ack/" not in data.decode()
    assert str(ev["URL"]) == links.product_page_url("acp") == "http://127.0.0.1:8000/products/acp"
    # One DISPLAY alarm per stage, ringing at 09:00 on the stage date (relative to the all-day start).
    start = dt.datetime(2027, 9, 30)
    rings = [start + a["TRIGGER"].dt for a in ev.walk("VALARM")]
    assert rings == [
        dt.datetime.combine(policy.stage_date(ev.start, st), dt.time(9)) for st in get_settings().stage_list
    ]
    assert rings[1] == dt.datetime(2027, 6, 30, 9)  # the contractual 3-month stage
    assert all(str(a["ACTION"]) == "DISPLAY" and str(a["DESCRIPTION"]) for a in ev.walk("VALARM"))


def test_events_are_sorted_by_date_and_the_calendar_is_named(db):
    with session_scope() as s:
        _setup(s)
        data = feeds.product_feed(s, "acp", AT)
    starts = [e.start for e in check_ics(data).events]
    assert starts == sorted(starts)
    assert b"\r\nNAME:Alauda Container Platform lifecycle\r\n" in data
    assert b"\r\nX-WR-CALNAME:Alauda Container Platform lifecycle\r\n" in data
    for prop in (b"VERSION:2.0", b"CALSCALE:GREGORIAN", b"METHOD:PUBLISH", b"PRODID:-//lifecycle//"):
        assert b"\r\n" + prop in data


def test_refresh_interval_and_published_ttl_are_written_exactly(db):
    with session_scope() as s:
        _setup(s)
        built = [feeds.product_feed(s, "acp", AT), feeds.customer_feed(s, _customer(s, "acme"), AT)]
    for data in built:
        assert b"\r\nREFRESH-INTERVAL;VALUE=DURATION:P1D\r\n" in data
        assert b"\r\nX-PUBLISHED-TTL:P1D\r\n" in data
        assert check_ics(data).refresh_interval == dt.timedelta(days=1)


def test_the_customer_feed_holds_the_releases_they_run_and_their_products_milestones(db):
    with session_scope() as s:
        _setup(s)
        acme, gone = _customer(s, "acme"), _customer(s, "gone")
        data = feeds.customer_feed(s, acme, AT)
        summaries = sorted(str(e["SUMMARY"]) for e in check_ics(data).events)
        gone_events = check_ics(feeds.customer_feed(s, gone, AT)).events
    assert summaries == [
        "Alauda Container Platform 3.16: end of full support",
        "Alauda Container Platform 3.16: end of life",
        "Alauda Container Platform: end of sale",
    ]
    # A removed deployment leaves the feed: only the informational event of an empty feed remains.
    assert [str(e["SUMMARY"]) for e in gone_events] == ["Gone: no lifecycle dates yet"]
    assert b"\r\nX-WR-TIMEZONE:Asia/Shanghai\r\n" in data and b"NAME:ACME Bank: product lifecycle" in data


def test_a_customer_feed_links_to_the_portal_and_to_a_valid_acknowledgement_page(db):
    with session_scope() as s:
        _setup(s)
        acme = _customer(s, "acme")
        release = registry.get_release(s, registry.get_product(s, "acp"), "3.16")
        events = check_ics(feeds.customer_feed(s, acme, AT)).events
        for ev in events:
            desc = str(ev["DESCRIPTION"])
            if ": end of sale" in str(ev["SUMMARY"]):  # product-level: no release to plan an upgrade of
                assert "/ack/" not in desc and str(ev["URL"]) == f"{get_settings().base_url}/portal"
                continue
            assert str(ev["URL"]) == f"{get_settings().base_url}/portal#release-{release.id}"
            [ack] = [line.split(": ", 1)[1] for line in desc.splitlines() if line.startswith("Acknowledge")]
            assert ack.startswith(f"{get_settings().base_url}/ack/")
            assert links.read_ack_token(s, ack.rsplit("/", 1)[1]) == (acme.id, release.id)


def test_a_chinese_customer_reads_the_feed_in_chinese(db):
    with session_scope() as s:
        _setup(s)
        events = check_ics(feeds.customer_feed(s, _customer(s, "beta"), AT)).events
    summaries = sorted(str(e["SUMMARY"]) for e in events)
    assert summaries == [
        "Alauda Container Platform 3.18：生命周期终止",
        "Alauda Container Platform：停止销售",
    ]
    assert "2029年1月31日" in str(next(e for e in events if "3.18" in str(e["SUMMARY"]))["DESCRIPTION"])


# --------------------------------------------------------------------------------------------- changes


def test_moving_a_milestone_keeps_the_uid_and_raises_the_sequence(db):
    with session_scope() as s:
        _setup(s)
        eol = _milestone(s, "3.16", "end-of-life")
        before = _events(feeds.product_feed(s, "acp", AT))[ics.uid(eol.id)]
    with session_scope() as s:
        registry.move_milestone(
            s,
            _milestone(s, "3.16", "end-of-life"),
            date=dt.date(2027, 12, 31),
            reason="customer demand",
            at=LATER,
        )
    with session_scope() as s:
        after = _events(feeds.product_feed(s, "acp", AT))[ics.uid(eol.id)]
    assert int(after["SEQUENCE"]) == int(before["SEQUENCE"]) + 1 == 2
    assert after.start == dt.date(2027, 12, 31) and after.end == dt.date(2028, 1, 1)
    assert after["DTSTAMP"].dt == LATER and after["LAST-MODIFIED"].dt == LATER
    desc = str(after["DESCRIPTION"])
    assert "changed from 30 September 2027" in desc and "Reason: customer demand" in desc


def test_a_withdrawn_milestone_stays_as_a_cancelled_event_with_a_higher_sequence_and_no_alarms(db):
    with session_scope() as s:
        _setup(s)
        registry.withdraw_milestone(s, _milestone(s, "3.16", "end-of-life"), reason="superseded", at=LATER)
    with session_scope() as s:
        eol = _milestone(s, "3.16", "end-of-life")
        built = [feeds.product_feed(s, "acp", AT), feeds.customer_feed(s, _customer(s, "acme"), AT)]
    for data in built:
        ev = _events(data)[ics.uid(eol.id)]
        assert str(ev["STATUS"]) == "CANCELLED" and int(ev["SEQUENCE"]) == 2
        assert list(ev.walk("VALARM")) == [] and "/ack/" not in str(ev["DESCRIPTION"])
        assert "withdrawn" in str(ev["DESCRIPTION"]) and "Reason: superseded" in str(ev["DESCRIPTION"])
    strict = IcsCalendarStream.calendar_from_ics(built[0].decode())
    assert [e.status.value for e in strict.events if e.uid == ics.uid(eol.id)] == ["CANCELLED"]


def test_an_unchanged_feed_is_byte_identical_at_different_wall_clock_times(db, monkeypatch):
    with session_scope() as s:
        _setup(s)
    month_start = dt.datetime.now(dt.UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    builds = []
    for offset in (dt.timedelta(hours=1), dt.timedelta(days=20, hours=7, seconds=13)):
        monkeypatch.setattr(time, "time", lambda offset=offset: (month_start + offset).timestamp())
        with session_scope() as s:
            builds.append(
                (
                    feeds.product_feed(s, "acp", AT),
                    feeds.customer_feed(s, _customer(s, "acme"), AT),
                    feeds.attachment(s, [1, 2], AT, _customer(s, "acme")),
                )
            )
    assert builds[0] == builds[1]
    with session_scope() as s:  # and twice in a row at the real time
        assert feeds.customer_feed(s, _customer(s, "acme"), AT) == feeds.customer_feed(
            s, _customer(s, "acme"), AT
        )


# ------------------------------------------------------------------------------------------ hostile text


def test_hostile_names_and_reasons_are_escaped(db):
    with session_scope() as s:
        _setup(s, product_name=HOSTILE_PRODUCT)
        registry.upsert_customer(
            s,
            key="acme",
            name='ACME; "Bank", <i>x</i> 银行',
            timezone="Asia/Shanghai",
            locale="en",
            account_rep="rep@vendor.example",
            at=AT,
        )
        registry.move_milestone(
            s,
            _milestone(s, "3.16", "end-of-life"),
            date=dt.date(2027, 10, 31),
            reason=HOSTILE_REASON.replace("\x07", ""),
            at=LATER,
        )
        # Input validation refuses control characters now; older rows may still hold one.
        change = s.exec(select(MilestoneChange).order_by(MilestoneChange.id.desc())).first()
        change.reason = HOSTILE_REASON
        s.add(change)
    with session_scope() as s:
        eol = _milestone(s, "3.16", "end-of-life")
        built = [
            feeds.product_feed(s, "acp", AT),
            feeds.customer_feed(s, _customer(s, "acme"), AT),
            feeds.attachment(s, [eol.id], AT, _customer(s, "acme")),
        ]
    for data in built:
        ev = _events(data)[ics.uid(eol.id)]
        assert str(ev["SUMMARY"]) == f"{HOSTILE_PRODUCT} 3.16: end of life"
        desc = str(ev["DESCRIPTION"])
        assert 'Reason: delayed; see "notes", <b>bold</b>\nsecond line \\ 中文\nthird line' in desc
        unfolded = data.replace(b"\r\n ", b"")
        assert b'SUMMARY:<script>alert("x")</script>\\; Evil\\, "Inc" \\\\ \xe5\xb9\xb3' in unfolded
        assert b"\x07" not in data
        vevents = vobject.readOne(data.decode(), validate=True).vevent_list
        vevent = next(v for v in vevents if v.uid.value == ics.uid(eol.id))
        assert vevent.summary.value == f"{HOSTILE_PRODUCT} 3.16: end of life"
        assert "second line \\ 中文\nthird line" in vevent.description.value
    assert b'\r\nNAME:ACME\\; "Bank"\\, <i>x</i> \xe9\x93\xb6\xe8\xa1\x8c: product lifecycle\r\n' in built[1]
    # NAME (RFC 7986) and X-WR-CALNAME are TEXT; icalendar reads them verbatim, so ask vobject and ical.
    name = 'ACME; "Bank", <i>x</i> 银行: product lifecycle'
    assert vobject.readOne(built[1].decode()).x_wr_calname.value == name
    assert IcsCalendarStream.calendar_from_ics(built[1].decode()).name == [name]


# ----------------------------------------------------------------------------------------- attachment


def test_the_email_attachment_publishes_just_the_given_milestones(db):
    with session_scope() as s:
        _setup(s)
        eol, fs = _milestone(s, "3.16", "end-of-life"), _milestone(s, "3.16", "end-of-full-support")
        acme = _customer(s, "acme")
        data = feeds.attachment(s, [eol.id, fs.id, eol.id], AT, customer=acme)
        anonymous = feeds.attachment(s, [eol.id], AT)
    assert ics.MIME_TYPE == "text/calendar"
    assert b"\r\nMETHOD:PUBLISH\r\n" in data
    assert sorted(_events(data)) == sorted([ics.uid(eol.id), ics.uid(fs.id)])
    assert "/ack/" in data.decode() and "/ack/" not in anonymous.decode()
    assert list(_events(anonymous)) == [ics.uid(eol.id)]
    assert b"REFRESH-INTERVAL" not in data and b"X-WR-CALNAME" not in data  # not a subscription


# ---------------------------------------------------------------------------------------------- exports


def test_exports_write_every_feed_once_and_rewrite_only_what_changed(db, tmp_path):
    out = tmp_path / "exports"
    with session_scope() as s:
        _setup(s)
        first = exports.export_all(s, out, at=AT)
    names = sorted(p.relative_to(out).as_posix() for p in first)
    assert names == [
        "customers/acme.ics",
        "customers/beta.ics",
        "customers/gone.ics",
        "products/acp.ics",
        "products/dbx.ics",
    ]
    for path in first:
        check_ics(path.read_bytes())
    with session_scope() as s:
        assert feeds.customer_feed(s, _customer(s, "acme"), AT) == (out / "customers/acme.ics").read_bytes()
        assert feeds.product_feed(s, "acp", AT) == (out / "products/acp.ics").read_bytes()
        assert exports.export_all(s, out, at=AT) == []  # nothing changed, nothing rewritten
    with session_scope() as s:
        registry.move_milestone(
            s, _milestone(s, "3.16", "end-of-life"), date=dt.date(2027, 12, 31), reason="later", at=LATER
        )
    with session_scope() as s:
        again = exports.refresh_exports(s, out, at=AT).written
    assert sorted(p.relative_to(out).as_posix() for p in again) == ["customers/acme.ics", "products/acp.ics"]
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]


def test_refresh_exports_writes_to_the_configured_calendar_dir(db):
    with session_scope() as s:
        _setup(s)
        written = exports.refresh_exports(s, at=AT).written
    assert (get_settings().calendar_dir / "products" / "acp.ics") in written
    assert all(p.is_relative_to(get_settings().calendar_dir) for p in written)


def test_an_unknown_product_feed_is_not_found(db):
    with pytest.raises(NotFound), session_scope() as s:
        feeds.product_feed(s, "nope", AT)


# -------------------------------------------------------------------------------------------------- HTTP


@pytest.fixture
def clock(monkeypatch):
    """The web's clock (read once per request at the edge), frozen and settable: `clock.now = ...`."""

    class Clock:
        now = AT + dt.timedelta(hours=12)

    monkeypatch.setattr("lifecycle.web.calendars.now", lambda: Clock.now)
    return Clock


@pytest.fixture
def client(db, clock):
    with TestClient(create_app()) as c:
        yield c


def test_the_product_feed_is_served_with_validators_and_answers_304(client):
    with session_scope() as s:
        _setup(s)
    r = client.get("/calendars/products/acp.ics")
    assert r.status_code == 200 and r.headers["content-type"] == "text/calendar; charset=utf-8"
    check_ics(r.content)
    etag = r.headers["etag"]
    assert etag.startswith('"') and not etag.startswith("W/")
    assert r.headers["last-modified"] == "Mon, 01 Jun 2026 00:00:00 GMT"
    assert r.headers["cache-control"] == "public, max-age=300"
    again = client.get("/calendars/products/acp.ics")
    assert again.headers["etag"] == etag and again.content == r.content

    not_modified = client.get("/calendars/products/acp.ics", headers={"If-None-Match": etag})
    assert not_modified.status_code == 304 and not_modified.content == b""
    assert not_modified.headers["etag"] == etag
    assert (
        client.get("/calendars/products/acp.ics", headers={"If-None-Match": f'"x", W/{etag}'}).status_code
        == 304
    )
    ims = client.get("/calendars/products/acp.ics", headers={"If-Modified-Since": r.headers["last-modified"]})
    assert ims.status_code == 304
    assert (
        client.get(
            "/calendars/products/acp.ics", headers={"If-Modified-Since": "Sun, 31 May 2026 00:00:00 GMT"}
        ).status_code
        == 200
    )

    with session_scope() as s:
        registry.move_milestone(
            s, _milestone(s, "3.16", "end-of-life"), date=dt.date(2027, 12, 31), reason="later", at=LATER
        )
    changed = client.get("/calendars/products/acp.ics", headers={"If-None-Match": etag})
    assert changed.status_code == 200 and changed.headers["etag"] != etag
    assert changed.headers["last-modified"] == "Wed, 01 Jul 2026 12:00:00 GMT"


def test_an_unknown_product_feed_is_a_404(client):
    assert client.get("/calendars/products/nope.ics").status_code == 404


def test_the_customer_feed_is_private_and_answers_304(client):
    with session_scope() as s:
        _setup(s)
        url = links.calendar_url(_customer(s, "acme").calendar_token)
    path = url.removeprefix(get_settings().base_url)
    r = client.get(path)
    assert r.status_code == 200 and r.headers["content-type"] == "text/calendar; charset=utf-8"
    assert r.headers["cache-control"] == "private, max-age=300"
    assert r.headers["referrer-policy"] == "no-referrer"
    assert len(_events(r.content)) == 3
    assert client.get(path, headers={"If-None-Match": r.headers["etag"]}).status_code == 304
    assert client.head(path).headers["etag"] == r.headers["etag"]


def test_an_unknown_calendar_token_is_a_404(client):
    with session_scope() as s:
        _setup(s)
    assert client.get("/calendars/customers/not-a-token.ics").status_code == 404
    assert client.get("/calendars/customers/.ics").status_code == 404


def test_a_revoked_calendar_token_is_a_404_and_the_new_one_works(client):
    with session_scope() as s:
        _setup(s)
        old = _customer(s, "acme").calendar_token
    with session_scope() as s:
        new = registry.rotate_calendar_token(s, _customer(s, "acme"), LATER)
    assert client.get(f"/calendars/customers/{old}.ics").status_code == 404
    assert client.get(f"/calendars/customers/{new}.ics").status_code == 200


def test_a_customer_without_deployments_gets_one_informational_event_dated_by_their_registration(client):
    with session_scope() as s:
        _setup(s)
        gone = _customer(s, "gone")
    r = client.get(f"/calendars/customers/{gone.calendar_token}.ics")
    [event] = check_ics(r.content).events
    assert r.status_code == 200 and r.headers["last-modified"] == "Mon, 01 Jun 2026 00:00:00 GMT"
    assert str(event["UID"]) == f"customer-{gone.id}@127.0.0.1" and event.start == AT.date()
    assert "No deployments are registered for Gone" in str(event["DESCRIPTION"])
    assert list(event.walk("VALARM")) == [] and str(event["TRANSP"]) == "TRANSPARENT"
    assert str(event["URL"]) == f"{get_settings().base_url}/portal"


# --------------------------------------------------------------------------------------------------- CLI


def test_the_calendar_commands_export_print_and_revoke_feed_urls(db, cli, tmp_path):
    with session_scope() as s:
        _setup(s)
        old = _customer(s, "acme").calendar_token

    r = cli("calendar", "export", "--out", str(tmp_path / "out"))
    assert r.code == 0 and "5 calendar files written" in r.out, r
    assert (tmp_path / "out" / "customers" / "acme.ics").exists()

    r = cli("calendar", "url", "acme", "--json")
    assert r.code == 0, r
    urls = json.loads(r.out)
    assert urls["url"] == links.calendar_url(old)
    assert urls["webcal_url"] == "webcal://" + links.calendar_url(old).split("://", 1)[1]

    r = cli("calendar", "revoke", "acme")
    assert r.code == 0, r
    with session_scope() as s:
        new = _customer(s, "acme").calendar_token
    assert (
        new != old and links.calendar_url(new) in r.out and links.webcal_url(links.calendar_url(new)) in r.out
    )
    with TestClient(create_app()) as client:
        assert client.get(f"/calendars/customers/{old}.ics").status_code == 404
        assert client.get(f"/calendars/customers/{new}.ics").status_code == 200

    r = cli("calendar", "url", "nobody")
    assert r.code == 2 and "nobody" in r.err


# ------------------------------------------------------------------------------- history and release dates


def _alarms_and_acks(data: bytes) -> dict[str, tuple[int, bool]]:
    """Summary -> (number of alarms, has an acknowledgement link) of each event."""
    return {
        str(e["SUMMARY"]): (len(list(e.walk("VALARM"))), "/ack/" in str(e["DESCRIPTION"]))
        for e in check_ics(data).events
    }


def test_a_milestone_that_passed_stays_in_the_feeds_without_alarms_or_acknowledgement_link(db):
    after_full_support = utc(2027, 4, 1)  # 3.16's end of full support (31 March 2027) has passed
    with session_scope() as s:
        _setup(s)
        acme = _customer(s, "acme")
        before = _alarms_and_acks(feeds.customer_feed(s, acme, AT))
        after = _alarms_and_acks(feeds.customer_feed(s, acme, after_full_support))
        public = _alarms_and_acks(feeds.product_feed(s, "acp", after_full_support))
    stages = len(get_settings().stage_list)
    fs, eol = (
        "Alauda Container Platform 3.16: end of full support",
        "Alauda Container Platform 3.16: end of life",
    )
    assert before[fs] == (stages, True) and before[eol] == (stages, True)
    assert after[fs] == (0, False) and after[eol] == (stages, True)
    assert public[fs] == (0, False)


def test_a_withdrawn_milestone_that_passed_stays_cancelled_with_its_revision_as_sequence(db):
    with session_scope() as s:
        _setup(s)
        registry.withdraw_milestone(
            s, _milestone(s, "3.16", "end-of-full-support"), reason="merged", at=LATER
        )
    with session_scope() as s:
        fs = _milestone(s, "3.16", "end-of-full-support")
        ev = _events(feeds.product_feed(s, "acp", utc(2028, 1, 1)))[ics.uid(fs.id)]
    assert str(ev["STATUS"]) == "CANCELLED" and int(ev["SEQUENCE"]) == 2 and list(ev.walk("VALARM")) == []


def test_release_dates_are_events_in_the_product_feed_and_in_the_feeds_of_customers_who_run_them(db):
    with session_scope() as s:
        _setup(s)
        registry.upsert_release(s, product="acp", version="3.16", released=dt.date(2024, 1, 15), at=LATER)
        registry.upsert_release(s, product="dbx", version="1.0", released=dt.date(2025, 5, 1), at=LATER)
        r316 = registry.get_release(s, registry.get_product(s, "acp"), "3.16")
        public = _events(feeds.product_feed(s, "acp", AT))
        acme = _events(feeds.customer_feed(s, _customer(s, "acme"), AT))
        beta = _events(feeds.customer_feed(s, _customer(s, "beta"), AT))
    uid = f"release-{r316.id}@127.0.0.1"
    assert str(public[uid]["SUMMARY"]) == "Alauda Container Platform 3.16 released"
    assert public[uid].start == dt.date(2024, 1, 15) and len(public) == 5  # 4 milestones, 1 release date
    assert str(acme[uid]["URL"]) == f"{get_settings().base_url}/portal#release-{r316.id}"
    assert uid not in beta and not [u for u in public if u.startswith("release-") and u != uid]  # not dbx's


def test_a_release_that_ended_without_a_date_is_history_and_marked_in_its_feeds(db):
    with session_scope() as s:
        _setup(s)
        r316 = registry.get_release(s, registry.get_product(s, "acp"), "3.16")
        r316.ended = "end-of-life"  # as the endoflife.date import records `isEol: true, eolFrom: null`
        s.add(r316)
    with session_scope() as s:
        events = _alarms_and_acks(feeds.customer_feed(s, _customer(s, "acme"), AT))
        public = feeds.product_feed(s, "acp", AT)
        zh = feeds.customer_feed(s, _customer(s, "beta"), AT)
    assert events["Alauda Container Platform 3.16: end of life"] == (0, False)
    assert events["Alauda Container Platform: end of sale"] == (len(get_settings().stage_list), False)
    description = vobject.readOne(public.decode()).contents["x-wr-caldesc"][0].value
    assert description.endswith("Ended without a published date: 3.16 (end of life).")
    assert "3.16" not in vobject.readOne(zh.decode()).contents["x-wr-caldesc"][0].value  # beta runs 3.18


# ---------------------------------------------------------------------------------- refresh by what changed


def _names(paths, out) -> list[str]:
    return sorted(p.relative_to(out).as_posix() for p in paths)


def test_a_moved_milestone_re_renders_only_its_products_calendar_and_those_of_customers_who_run_it(
    db, tmp_path
):
    out = tmp_path / "exports"
    with session_scope() as s:
        _setup(s)
        assert exports.export(s, out, at=AT).rendered == 5
        eol = _milestone(s, "3.16", "end-of-life")
        registry.move_milestone(s, eol, date=dt.date(2027, 12, 31), reason="later", at=LATER)
    with session_scope() as s:
        refresh = exports.refresh_exports(s, out, at=AT, milestone_ids=[eol.id])
        assert (refresh.checked, refresh.rendered) == (2, 2)
        assert _names(refresh.written, out) == ["customers/acme.ics", "products/acp.ics"]
        assert (out / "customers/acme.ics").read_bytes() == feeds.customer_feed(s, _customer(s, "acme"), AT)
        # A product-level milestone concerns every customer who runs any release of the product; their
        # calendars' inputs have not changed, so none is rendered.
        sale = _milestone(s, None, "end-of-sale")
        refresh = exports.refresh_exports(s, out, at=AT, milestone_ids=[sale.id])
    assert (refresh.checked, refresh.rendered, refresh.written) == (3, 0, [])  # acp, acme, beta


def test_a_new_deployment_re_renders_only_the_deploying_customers_calendar(db, tmp_path):
    out = tmp_path / "exports"
    with session_scope() as s:
        _setup(s)
        scheduler.plan(s, AT)
        exports.export_all(s, out, at=AT)
        registry.add_deployment(s, customer="beta", product="acp", version="3.16", at=LATER)
    with session_scope() as s:  # the planner re-plans every milestone of 3.16 and acp's product-level one
        replanned = [m.id for m in s.exec(select(Milestone).where(Milestone.needs_plan.is_(True))).all()]
        refresh = exports.refresh_exports(s, out, at=AT, milestone_ids=replanned)
    assert (refresh.checked, refresh.rendered) == (3, 1) and _names(refresh.written, out) == [
        "customers/beta.ics"
    ]


def test_named_customers_and_missing_files_are_candidates_too(db, tmp_path):
    out = tmp_path / "exports"
    with session_scope() as s:
        _setup(s)
        exports.export_all(s, out, at=AT)
        (out / "products/dbx.ics").unlink()
        refresh = exports.refresh_exports(
            s, out, at=AT, milestone_ids=[], customer_ids=[_customer(s, "beta").id]
        )
    assert (refresh.checked, refresh.rendered) == (2, 1) and _names(refresh.written, out) == [
        "products/dbx.ics"
    ]
    with session_scope() as s:
        registry.upsert_customer(
            s,
            key="newco",
            name="NewCo",
            timezone="UTC",
            locale="en",
            account_rep="rep@vendor.example",
            at=LATER,
        )
        refresh = exports.refresh_exports(s, out, at=AT, milestone_ids=[])
    assert refresh.rendered == 1 and _names(refresh.written, out) == ["customers/newco.ics"]
    check_ics((out / "customers/newco.ics").read_bytes())


def test_a_new_utc_day_checks_every_calendar_and_renders_those_a_passed_milestone_changed(db, tmp_path):
    out = tmp_path / "exports"
    with session_scope() as s:
        _setup(s)
        exports.export_all(s, out, at=AT)
    assert exports.Manifest.read(out).as_of == AT.date() and len(exports.Manifest.read(out).files) == 5
    assert exports.day_changed(utc(2026, 6, 1, 23, 59), out) is False
    next_day = utc(2027, 4, 1, 0, 5)
    assert exports.day_changed(next_day, out) is True
    with session_scope() as s:
        refresh = exports.refresh_exports(s, out, at=next_day, milestone_ids=[])
        again = exports.refresh_exports(s, out, at=next_day + dt.timedelta(hours=1), milestone_ids=[])
    assert (refresh.checked, refresh.rendered) == (5, 2) and exports.Manifest.read(
        out
    ).as_of == next_day.date()
    assert _names(refresh.written, out) == [
        "customers/acme.ics",
        "products/acp.ics",
    ]  # 3.16 full support passed
    fs = "Alauda Container Platform 3.16: end of full support"
    assert _alarms_and_acks((out / "customers/acme.ics").read_bytes())[fs] == (0, False)
    assert (again.checked, again.rendered) == (0, 0)


def test_new_settings_render_every_calendar_again_and_an_export_repairs_a_file_edited_by_hand(
    db, tmp_path, monkeypatch
):
    out = tmp_path / "exports"
    with session_scope() as s:
        _setup(s)
        exports.export_all(s, out, at=AT)
    (out / "customers/acme.ics").write_bytes(b"edited by hand")
    with session_scope() as s:
        assert exports.refresh_exports(s, out, at=AT).rendered == 0  # the inputs did not change
        assert _names(exports.export_all(s, out, at=AT), out) == ["customers/acme.ics"]
    monkeypatch.setenv("LIFECYCLE_BASE_URL", "https://lifecycle.vendor.example")
    reset_settings()
    with session_scope() as s:
        refresh = exports.refresh_exports(s, out, at=AT)
    assert refresh.rendered == len(refresh.written) == 5
    assert b"https://lifecycle.vendor.example/products/acp" in (out / "products/acp.ics").read_bytes()


def test_a_tick_refreshes_what_the_planner_re_planned_and_checks_everything_on_a_new_day(db):
    from lifecycle import ticks

    with session_scope() as s:
        _setup(s)
        exports.export_all(s, at=AT)
        eol = _milestone(s, "3.16", "end-of-life")
        registry.move_milestone(s, eol, date=dt.date(2027, 12, 31), reason="later", at=AT)
    planned = scheduler.PlanResult(milestones=1)
    planned.milestone_ids = [eol.id]  # what the planner reports it re-planned
    result = ticks.TickResult(at=AT, plan=planned)
    ticks.refresh_calendar_exports(result)
    assert (result.exports_rendered, result.exports_refreshed) == (2, 2)

    unknown = ticks.TickResult(at=AT, plan=scheduler.PlanResult(milestones=1))  # no milestone_ids: check all
    ticks.refresh_calendar_exports(unknown)
    assert (unknown.exports_rendered, unknown.exports_refreshed) == (0, 0)

    idle = ticks.TickResult(at=AT + dt.timedelta(hours=3))  # nothing re-planned, same day: not even a check
    ticks.refresh_calendar_exports(idle)
    assert idle.exports_rendered == 0

    new_day = ticks.TickResult(at=utc(2027, 4, 1, 0, 1))
    ticks.refresh_calendar_exports(new_day)
    assert new_day.exports_rendered == 2 and new_day.as_dict()["exports_refreshed"] == 2
    assert exports.Manifest.read(get_settings().calendar_dir).as_of == dt.date(2027, 4, 1)


def test_a_real_tick_after_a_move_rewrites_just_the_affected_exports(db):
    from lifecycle import ticks

    out = get_settings().calendar_dir
    with session_scope() as s:
        _setup(s)
    ticks.prepare(AT)  # plans everything, renders every calendar once
    with session_scope() as s:
        registry.move_milestone(
            s,
            _milestone(s, "3.16", "end-of-life"),
            date=dt.date(2027, 12, 31),
            reason="later",
            at=AT + dt.timedelta(hours=1),
        )
    result = ticks.prepare(AT + dt.timedelta(hours=2))
    assert result.exports_refreshed == result.exports_rendered == 2
    assert (out / "customers/acme.ics").read_bytes().count(b"DTSTART;VALUE=DATE:20271231") == 1


# --------------------------------------------------------------------------------- HTTP validators and history


def test_the_feed_validators_change_when_a_milestone_becomes_history(client, clock):
    with session_scope() as s:
        _setup(s)
    clock.now = utc(2027, 3, 31, 23)
    before = client.get("/calendars/products/acp.ics")
    clock.now = utc(2027, 4, 1, 8)  # 3.16's end of full support (31 March) is history now
    after = client.get("/calendars/products/acp.ics", headers={"If-None-Match": before.headers["etag"]})
    assert before.headers["last-modified"] == "Mon, 01 Jun 2026 00:00:00 GMT"
    assert after.status_code == 200 and after.headers["etag"] != before.headers["etag"]
    assert after.headers["last-modified"] == "Thu, 01 Apr 2027 00:00:00 GMT"
    assert (
        client.get(
            "/calendars/products/acp.ics", headers={"If-None-Match": after.headers["etag"]}
        ).status_code
        == 304
    )
    assert (
        client.get(
            "/calendars/products/acp.ics", headers={"If-Modified-Since": before.headers["last-modified"]}
        ).status_code
        == 200
    )


def test_a_customer_feeds_last_modified_counts_the_signing_of_this_months_acknowledgement_links(
    client, monkeypatch
):
    with session_scope() as s:
        _setup(s)
        acme, gone = _customer(s, "acme"), _customer(s, "gone")
    monkeypatch.setattr(time, "time", lambda: utc(2026, 8, 15, 10).timestamp())
    assert (
        client.get(f"/calendars/customers/{acme.calendar_token}.ics").headers["last-modified"]
        == "Sat, 01 Aug 2026 00:00:00 GMT"
    )
    assert (
        client.get(f"/calendars/customers/{gone.calendar_token}.ics").headers["last-modified"]
        == "Mon, 01 Jun 2026 00:00:00 GMT"
    )  # no acknowledgement link in an empty feed


def test_an_emails_attachment_reuses_milestone_copies_only_while_every_value_is_the_same(db):
    """Issue 11: a delivery run builds each milestone's session-free copy from its column values, and
    reuses a copy across runs only while the milestone, its product, its release and its latest change
    read exactly the same: a rename, a move or a withdrawal between two runs is in the next email."""
    with session_scope() as s:
        _setup(s)
        mid = registry.get_milestone(s, "acp", "3.16", "end-of-life").id
    ref = feeds.CustomerRef(1, "en")

    def attachment(memo=None) -> tuple[str, list]:
        with session_scope() as s:
            memo = {} if memo is None else memo
            data = feeds.attachment(s, [mid], AT, customer=ref, memo=memo).decode()
        return data.replace("\r\n ", ""), list(memo["ics-rows"].values())

    first, [row1] = attachment()
    assert "Alauda Container Platform" in first and "20270930" in first
    again, [row2] = attachment()  # another run, nothing changed: the same copy
    assert row2 is row1 and again == first
    with session_scope() as s:
        registry.upsert_product(s, slug="acp", name="ACP Renamed", at=LATER)
    renamed, [row3] = attachment()
    assert row3 is not row1 and "ACP Renamed" in renamed and "Alauda Container Platform" not in renamed
    with session_scope() as s:
        registry.move_milestone(
            s,
            registry.get_milestone(s, "acp", "3.16", "end-of-life"),
            date=dt.date(2027, 12, 31),
            reason="slip",
            at=LATER,
        )
    moved, [row4] = attachment()
    assert (
        row4.milestone.date == dt.date(2027, 12, 31)
        and row4.change is not None
        and row4.change.action == "moved"
    )
    assert "20271231" in moved and "20270930" not in moved
    with session_scope() as s:
        registry.withdraw_milestone(
            s, registry.get_milestone(s, "acp", "3.16", "end-of-life"), reason="kept alive", at=LATER
        )
    withdrawn, [row5] = attachment()
    assert row5.milestone.status == "withdrawn" and "STATUS:CANCELLED" in withdrawn
    # The copies belong to no session: they are read after theirs closed, and a new session's edits do
    # not reach them.
    assert (
        row1.product.name == "Alauda Container Platform" and row4.milestone.revision > row1.milestone.revision
    )
