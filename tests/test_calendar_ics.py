"""Pure event building (lifecycle.calendar.ics): rows and `at` in, bytes out; no database, no clock.

Rows are plain model objects built in memory. Every calendar is also checked by three parsers.
"""

from __future__ import annotations

import datetime as dt

import vobject

from lifecycle.calendar import ics
from lifecycle.calendar.ics import MilestoneRow, ReleaseRow
from lifecycle.config import get_settings
from lifecycle.models import Customer, Milestone, MilestoneChange, Product, Release
from tests.conftest import utc
from tests.icscheck import check_ics

REGISTERED = utc(2026, 1, 5, 8)
BASE = "http://127.0.0.1:8000"
K8S = Product(id=1, slug="kubernetes", name="Kubernetes", created_at=REGISTERED)


def release(
    id_: int,
    version: str,
    released: dt.date | None = None,
    *,
    ended: str | None = None,
    upgrade_to: str | None = None,
) -> Release:
    return Release(
        id=id_,
        product_id=K8S.id,
        version=version,
        released=released,
        ended=ended,
        upgrade_to=upgrade_to,
        created_at=REGISTERED,
    )


def milestone(
    id_: int, rel: Release | None, kind: str, date: dt.date, *, status: str = "planned", revision: int = 1
) -> MilestoneRow:
    m = Milestone(
        id=id_,
        product_id=K8S.id,
        release_id=rel.id if rel else None,
        scope=rel.id if rel else 0,
        kind=kind,
        date=date,
        status=status,
        revision=revision,
        registered_at=REGISTERED,
        changed_at=REGISTERED + dt.timedelta(days=revision - 1),
        needs_plan=False,
    )
    change = MilestoneChange(
        milestone_id=id_,
        revision=revision,
        action="withdrawn" if status == "withdrawn" else "created",
        new_date=date,
        reason=None,
        at=m.changed_at,
    )
    return MilestoneRow(m, K8S, rel, change)


def customer(locale: str = "en") -> Customer:
    return Customer(
        id=7,
        key="acme",
        name="ACME Bank",
        timezone="Asia/Shanghai",
        locale=locale,
        account_rep="rep@vendor.example",
        calendar_token="t",
        created_at=REGISTERED,
    )


R135 = release(20, "1.35", dt.date(2025, 12, 17), upgrade_to="1.36")
R136 = release(21, "1.36", dt.date(2026, 4, 22))
EOL_135 = milestone(200, R135, "end-of-life", dt.date(2027, 2, 28))
EOL_136 = milestone(201, R136, "end-of-life", dt.date(2027, 6, 28))
AT = utc(2027, 1, 10, 12)  # 1.35's end of life is 7 weeks away: some stages passed, the 1-week one not


def events(data: bytes) -> dict[str, object]:
    return {str(e["UID"]): e for e in check_ics(data).events}


# --------------------------------------------------------------------------------------------- history


def test_an_upcoming_milestone_has_one_alarm_per_stage_and_its_acknowledgement_link():
    ack = f"{BASE}/ack/signed"
    data = ics.customer_feed(customer(), [EOL_135], [], at=AT, has_deployments=True, ack_urls={R135.id: ack})
    ev = events(data)[ics.uid(EOL_135.milestone.id)]
    assert len(list(ev.walk("VALARM"))) == len(get_settings().stage_list)
    assert f"Acknowledge your upgrade plan: {ack}" in str(ev["DESCRIPTION"])


def test_a_milestone_is_still_upcoming_on_its_own_date_and_history_from_the_next_utc_day():
    on_the_day = utc(2027, 2, 28, 23, 59)
    next_day = utc(2027, 3, 1)
    assert not ics.is_history(EOL_135, on_the_day) and ics.is_history(EOL_135, next_day)
    ack = {R135.id: f"{BASE}/ack/signed"}
    same = events(
        ics.customer_feed(customer(), [EOL_135], [], at=on_the_day, has_deployments=True, ack_urls=ack)
    )
    past = events(
        ics.customer_feed(customer(), [EOL_135], [], at=next_day, has_deployments=True, ack_urls=ack)
    )
    uid = ics.uid(EOL_135.milestone.id)
    assert list(same[uid].walk("VALARM")) and "/ack/" in str(same[uid]["DESCRIPTION"])
    assert list(past[uid].walk("VALARM")) == [] and "/ack/" not in str(past[uid]["DESCRIPTION"])
    assert str(past[uid]["STATUS"]) == "CONFIRMED" and past[uid].start == dt.date(2027, 2, 28)  # still shown


def test_history_follows_the_utc_date_of_at_whatever_its_offset():
    shanghai_morning = dt.datetime(
        2027, 3, 1, 7, tzinfo=dt.timezone(dt.timedelta(hours=8))
    )  # 23:00 UTC on 28 Feb
    assert not ics.is_history(EOL_135, shanghai_morning)


def test_every_milestone_of_a_release_that_ended_without_a_date_is_history_and_says_so():
    ended = release(5, "1.20", dt.date(2020, 12, 8), ended="end-of-life")
    future = milestone(50, ended, "end-of-maintenance", dt.date(2031, 1, 1))
    data = ics.customer_feed(
        customer(),
        [future],
        [ReleaseRow(ended, K8S)],
        at=AT,
        has_deployments=True,
        ack_urls={ended.id: f"{BASE}/ack/signed"},
    )
    evs = events(data)
    ev = evs[ics.uid(50)]
    assert list(ev.walk("VALARM")) == [] and "/ack/" not in str(ev["DESCRIPTION"])
    assert "Kubernetes 1.20 has reached end of life; no date was published." in str(ev["DESCRIPTION"])
    assert "no date was published" in str(evs[ics.release_uid(5)]["DESCRIPTION"])


def test_a_withdrawn_milestone_in_the_past_stays_cancelled_with_its_revision_as_sequence():
    withdrawn = milestone(
        60, R135, "end-of-full-support", dt.date(2026, 6, 30), status="withdrawn", revision=3
    )
    ev = events(ics.product_feed(K8S, [withdrawn], [], at=AT))[ics.uid(60)]
    assert str(ev["STATUS"]) == "CANCELLED" and int(ev["SEQUENCE"]) == 3
    assert str(ev["SUMMARY"]).startswith("Withdrawn: ") and list(ev.walk("VALARM")) == []


# ------------------------------------------------------------------------------------- release dates


def test_a_release_with_a_release_date_has_one_all_day_event_with_a_stable_uid():
    undated = release(22, "1.37")
    evs = events(ics.product_feed(K8S, [EOL_136], [ReleaseRow(R136, K8S), ReleaseRow(undated, K8S)], at=AT))
    assert set(evs) == {ics.uid(201), "release-21@127.0.0.1"}  # 1.37 has no release date: no event
    ev = evs["release-21@127.0.0.1"]
    assert str(ev["SUMMARY"]) == "Kubernetes 1.36 released"
    assert ev.start == dt.date(2026, 4, 22) and ev.end == dt.date(2026, 4, 23)
    assert str(ev["DESCRIPTION"]) == "Kubernetes 1.36 was released on 22 April 2026."
    assert ev["DTSTAMP"].dt == REGISTERED and int(ev["SEQUENCE"]) == 0 and list(ev.walk("VALARM")) == []
    assert str(ev["TRANSP"]) == "TRANSPARENT"


def test_a_chinese_customer_reads_release_events_and_ended_notes_in_chinese():
    ended = release(5, "1.20", dt.date(2020, 12, 8), ended="end-of-life")
    data = ics.customer_feed(
        customer("zh-CN"), [], [ReleaseRow(R135, K8S), ReleaseRow(ended, K8S)], at=AT, has_deployments=True
    )
    evs = events(data)
    assert str(evs[ics.release_uid(R135.id)]["SUMMARY"]) == "Kubernetes 1.35 发布"
    assert "Kubernetes 1.35 于 2025年12月17日 发布。" in str(evs[ics.release_uid(R135.id)]["DESCRIPTION"])
    assert "建议升级到：Kubernetes 1.36。" in str(evs[ics.release_uid(R135.id)]["DESCRIPTION"])
    assert "Kubernetes 1.20：生命周期终止已生效，未公布具体日期。" in str(
        evs[ics.release_uid(5)]["DESCRIPTION"]
    )
    desc = vobject.readOne(data.decode()).contents["x-wr-caldesc"][0].value
    assert desc.endswith("已结束但未公布日期：1.20（生命周期终止）。") and "ended" not in desc.lower()


def test_the_product_feed_description_names_the_product_page_and_the_releases_ended_without_a_date():
    ended = [
        ReleaseRow(release(5, "1.20", ended="end-of-life"), K8S),
        ReleaseRow(release(6, "1.21", ended="end-of-maintenance"), K8S),
    ]
    data = ics.product_feed(K8S, [EOL_136], ended, at=AT)
    vcal = vobject.readOne(data.decode())
    assert vcal.contents["x-wr-caldesc"][0].value == (
        f"Release dates and lifecycle milestones of Kubernetes: {BASE}/products/kubernetes\n"
        "Ended without a published date: 1.20 (end of life), 1.21 (end of maintenance)."
    )
    assert vcal.contents["description"][0].value == vcal.contents["x-wr-caldesc"][0].value


# ------------------------------------------------------------------------------------------ empty feeds


def test_a_product_with_nothing_dated_gets_one_informational_event_on_its_registration_date():
    data = ics.product_feed(K8S, [], [ReleaseRow(release(22, "1.37"), K8S)], at=AT)
    [ev] = check_ics(data).events
    assert str(ev["UID"]) == "product-1@127.0.0.1" and ev.start == REGISTERED.date()
    assert str(ev["SUMMARY"]) == "Kubernetes: no lifecycle dates published yet"
    assert "registered on 5 January 2026" in str(ev["DESCRIPTION"])
    assert list(ev.walk("VALARM")) == [] and str(ev["URL"]) == f"{BASE}/products/kubernetes"
    assert ev["DTSTAMP"].dt == REGISTERED


def test_a_customer_with_nothing_dated_gets_one_informational_event_in_their_language():
    [none_en] = check_ics(ics.customer_feed(customer(), [], [], at=AT, has_deployments=False)).events
    [none_zh] = check_ics(ics.customer_feed(customer("zh-CN"), [], [], at=AT, has_deployments=False)).events
    [undated] = check_ics(
        ics.customer_feed(customer(), [], [ReleaseRow(release(22, "1.37"), K8S)], at=AT, has_deployments=True)
    ).events
    assert str(none_en["UID"]) == "customer-7@127.0.0.1" and none_en.start == REGISTERED.date()
    assert "No deployments are registered for ACME Bank" in str(none_en["DESCRIPTION"])
    assert str(none_zh["SUMMARY"]) == "ACME Bank：暂无生命周期日期" and "尚未登记任何部署" in str(
        none_zh["DESCRIPTION"]
    )
    assert "None of the versions ACME Bank runs has a release date" in str(undated["DESCRIPTION"])
    assert str(none_en["URL"]) == f"{BASE}/portal"


def test_the_placeholder_goes_as_soon_as_there_is_a_real_event():
    evs = events(ics.product_feed(K8S, [EOL_136], [], at=AT))
    assert list(evs) == [ics.uid(201)]


# ----------------------------------------------------------------------------------------- stability


def test_the_same_rows_on_the_same_utc_day_give_the_same_bytes():
    rows, rels = [EOL_135, EOL_136], [ReleaseRow(R135, K8S), ReleaseRow(R136, K8S)]
    morning = ics.product_feed(K8S, rows, rels, at=utc(2027, 1, 10, 0, 1))
    evening = ics.product_feed(K8S, list(reversed(rows)), list(reversed(rels)), at=utc(2027, 1, 10, 23, 59))
    assert morning == evening
    assert ics.product_feed(K8S, rows, rels, at=utc(2027, 3, 1)) != morning  # 1.35's end of life passed


def test_events_are_sorted_by_date_then_uid():
    rows, rels = [EOL_136, EOL_135], [ReleaseRow(R136, K8S), ReleaseRow(R135, K8S)]
    starts = [e.start for e in check_ics(ics.product_feed(K8S, rows, rels, at=AT)).events]
    assert (
        starts
        == sorted(starts)
        == [dt.date(2025, 12, 17), dt.date(2026, 4, 22), dt.date(2027, 2, 28), dt.date(2027, 6, 28)]
    )


def test_public_events_link_to_the_product_page_and_customer_events_to_the_release_in_the_portal():
    product_level = milestone(70, None, "end-of-sale", dt.date(2028, 1, 31))
    public = events(ics.product_feed(K8S, [EOL_135, product_level], [ReleaseRow(R135, K8S)], at=AT))
    private = events(
        ics.customer_feed(
            customer(), [EOL_135, product_level], [ReleaseRow(R135, K8S)], at=AT, has_deployments=True
        )
    )
    assert {str(e["URL"]) for e in public.values()} == {f"{BASE}/products/kubernetes"}
    assert (
        str(private[ics.uid(200)]["URL"])
        == str(private[ics.release_uid(20)]["URL"])
        == f"{BASE}/portal#release-20"
    )
    assert str(private[ics.uid(70)]["URL"]) == f"{BASE}/portal"


def test_an_attachment_is_not_a_subscription_and_carries_no_placeholder():
    data = ics.attachment([EOL_135], at=AT)
    assert b"REFRESH-INTERVAL" not in data and b"X-WR-CALNAME" not in data
    assert list(events(data)) == [ics.uid(200)]


def test_short_lines_fold_exactly_as_icalendar_folds_them():
    """lifecycle.calendar.ics returns content lines shorter than 75 octets at once; every line must
    come out as icalendar's own folding makes it."""
    import random

    from icalendar.parser import content_line

    import lifecycle.calendar.ics  # noqa: F401 - installs the short-line path

    fold = content_line._foldline
    assert fold.short_lines_first
    rnd = random.Random(7)
    alphabet = "abcXYZ 09,;:\\^\"'é中文😀\t"
    lines = [
        "",
        "x",
        "a" * 73,
        "a" * 74,
        "a" * 75,
        "a" * 76,
        "中" * 24,
        "中" * 25,
        "中" * 26,
        "é" * 37,
        "é" * 38,
    ]
    lines += ["".join(rnd.choice(alphabet) for _ in range(rnd.randint(0, 120))) for _ in range(3000)]
    for line in lines:
        for limit in (75, 10):
            assert fold(line, limit) == fold.original(line, limit), (line, limit)


def test_an_attachment_is_the_calendar_of_its_events_byte_for_byte_and_its_kept_events_never_go_stale():
    """`ics.attachment` puts the calendar together from each event's content lines, builds each event
    once for every customer (kept by everything it is made of) and writes only the DESCRIPTION (the
    customer's ack link) again. Every customer's bytes must be exactly icalendar's for the same events,
    also after a row changed in any way an event shows."""
    from icalendar import Calendar

    moved = milestone(202, R136, "end-of-support", dt.date(2027, 3, 31), revision=2)
    moved.change.action, moved.change.old_date = "moved", dt.date(2027, 1, 31)
    moved.change.reason = "Customers asked, with a long reason; commas, semicolons and a backslash \\ too"
    withdrawn = milestone(203, R136, "end-of-sale", dt.date(2027, 2, 1), status="withdrawn", revision=3)
    past = milestone(204, R135, "end-of-sale", dt.date(2026, 12, 1))
    ended = release(22, "1.20", dt.date(2021, 4, 8), ended="end-of-life")
    of_ended = milestone(205, ended, "end-of-maintenance", dt.date(2027, 5, 1))
    product_level = milestone(206, None, "end-of-life", dt.date(2028, 1, 31))
    rows = [EOL_136, moved, EOL_135, withdrawn, past, of_ended, product_level]
    stages = get_settings().stage_list

    def expected(locale: str, acks: dict[int, str], at: dt.datetime) -> bytes:
        cal = ics._calendar()
        for _, ev in sorted(
            (
                (r.milestone.date, ics.uid(r.milestone.id)),
                ics.milestone_event(
                    r,
                    at=at,
                    locale=locale,
                    audience="customer",
                    stages=stages,
                    ack_url=acks.get(r.release.id) if r.release else None,
                ),
            )
            for r in rows
        ):
            cal.add_component(ev)
        return cal.to_ical()

    assert isinstance(Calendar.from_ical(expected("en", {}, AT)), Calendar)
    ics._EVENTS.clear()
    for n, (locale, at) in enumerate(
        [("en", AT), ("de", AT), ("zh-CN", AT), ("en", AT), ("en", utc(2027, 3, 1)), ("de", AT)]
    ):
        acks = {
            r.id: f"{BASE}/ack/customer-{n}-{'x' * (n * 7)}-{r.id}" for r in (R135, R136, ended) if n % 2 == 0
        }
        want = expected(locale, acks, at)
        got = ics.attachment(rows, at=at, locale=locale, audience="customer", ack_urls=acks)
        assert got == want, (locale, at)
        if acks:
            assert acks[R136.id].encode()[:40] in got.replace(b"\r\n ", b"")  # the link, unfolded
    assert ics._EVENTS, "events were kept"
    assert ics.attachment([], at=AT) == ics._calendar().to_ical()
    # Every change an event shows gives new bytes, never the kept ones.
    changes = [
        lambda: setattr(K8S, "name", "Kubernetes Engine"),
        lambda: setattr(R136, "upgrade_to", "1.37"),
        lambda: setattr(R135, "ended", "end-of-life"),
        lambda: setattr(moved.change, "reason", "another reason"),
        lambda: setattr(EOL_136.milestone, "date", dt.date(2027, 7, 1)),
        lambda: setattr(withdrawn.milestone, "status", "planned"),
    ]
    saved = (K8S.name, R136.upgrade_to, R135.ended, EOL_136.milestone.date)
    try:
        for change in changes:
            before = ics.attachment(rows, at=AT, locale="en", audience="customer")
            change()
            after = ics.attachment(rows, at=AT, locale="en", audience="customer")
            assert after == expected("en", {}, AT) and after != before
    finally:
        K8S.name, R136.upgrade_to, R135.ended, EOL_136.milestone.date = saved
