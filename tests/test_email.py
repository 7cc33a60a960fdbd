"""Email content as a customer receives it: the `.eml` files of the file backend, parsed back."""

from __future__ import annotations

import datetime as dt
import email
from email import policy as email_policy
from pathlib import Path

from icalendar import Calendar
from markupsafe import escape

from lifecycle import registry
from lifecycle.db import session_scope
from tests import world as w
from tests.conftest import utc

D = dt.date


def _messages(tmp_path: Path) -> list[email.message.EmailMessage]:
    return [
        email.message_from_bytes(p.read_bytes(), policy=email_policy.default)
        for p in sorted((tmp_path / "outbox").glob("*.eml"))
    ]


def _parts(msg):
    text = msg.get_body(preferencelist=("plain",)).get_content()
    body_html = msg.get_body(preferencelist=("html",)).get_content()
    ics = [p for p in msg.iter_attachments() if p.get_content_type() == "text/calendar"]
    return text, body_html, ics


def test_a_zh_cn_customer_gets_a_chinese_email_and_an_en_customer_an_english_one(db, tmp_path):
    w.product()
    w.milestone(D(2027, 9, 30))
    w.customer("acme", "Asia/Shanghai", locale="zh-CN")
    w.customer("globex", "Europe/Berlin", locale="en")
    w.run(utc(2027, 3, 31))
    by_to = {m["To"].addresses[0].addr_spec: m for m in _messages(tmp_path)}
    zh, en = by_to["ops@acme.example"], by_to["ops@globex.example"]
    assert "生命周期" in zh["Subject"] and "ACP 3.16" in zh["Subject"] and "2027年9月30日" in zh["Subject"]
    zh_text, zh_html, _ = _parts(zh)
    assert "尊敬的" in zh_text and "建议升级至" in zh_text and "确认升级计划" in zh_html
    assert en["Subject"] == "ACP 3.16: end of life on 30 September 2027 (183 days left)"
    en_text, en_html, _ = _parts(en)
    assert (
        "Recommended upgrade: ACP 3.18" in en_text
        and "/ack/" in en_text
        and "/calendars/customers/" in en_text
    )


def test_every_notice_email_carries_an_ics_attachment_of_type_text_calendar(db, tmp_path):
    w.product()
    w.milestone(D(2027, 9, 30))
    w.customer("acme")
    w.run(utc(2027, 3, 31))
    [msg] = _messages(tmp_path)
    _, _, [ics] = _parts(msg)
    assert ics.get_content_type() == "text/calendar" and ics.get_filename() == "lifecycle.ics"
    cal = Calendar.from_ical(ics.get_content())
    assert str(cal["METHOD"]) == "PUBLISH"
    [event] = cal.walk("VEVENT")
    assert event.decoded("DTSTART") == D(2027, 9, 30) and int(event["SEQUENCE"]) == 1


def test_two_notices_due_the_same_day_arrive_as_one_email_listing_both(db, tmp_path):
    w.product()
    w.milestone(D(2027, 9, 30), kind="end-of-life")
    w.milestone(D(2027, 9, 30), kind="end-of-maintenance")
    w.customer("acme")
    w.run(utc(2027, 3, 31))
    [msg] = _messages(tmp_path)
    text, _, [ics] = _parts(msg)
    assert "end of life" in text and "end of maintenance" in text and "and 1 more" in msg["Subject"]
    assert len(Calendar.from_ical(ics.get_content()).walk("VEVENT")) == 2
    assert len(w.deliveries("email")) == 2 and len(w.inbox("acme")) == 2


def test_hostile_names_and_reasons_are_escaped_in_html_and_kept_in_text(db, tmp_path):
    hostile = 'Evil <script>alert("x")</script>, Inc; "quoted"\n第二行'
    at = utc(2026, 1, 1)
    with session_scope() as s:
        registry.upsert_product(s, slug="acp", name='<b>ACP</b> & "Co"', at=at)
        registry.upsert_release(s, product="acp", version="3.16", at=at)
        registry.add_milestone(
            s, product="acp", version="3.16", kind="end-of-life", date=D(2027, 9, 30), at=at
        )
    w.customer("evil", "Asia/Shanghai")
    with session_scope() as s:
        c = registry.get_customer(s, "evil")
        c.name = hostile
        s.add(c)
    w.run(utc(2027, 3, 31))
    hostile_reason = '<img src=x onerror=alert(1)>; "because", 再见\nsecond line'
    w.move(D(2027, 10, 31), at=utc(2027, 4, 1), reason="internal", customer_reason=hostile_reason)
    w.run(utc(2027, 4, 1, 12))
    for msg in _messages(tmp_path):
        text, body_html, [ics] = _parts(msg)
        assert "<script>" not in body_html and "&lt;script&gt;" in body_html
        assert "<b>ACP</b>" not in body_html and str(escape('<b>ACP</b> & "Co"')) in body_html
        assert '<b>ACP</b> & "Co"' in text  # plain text keeps the text as it is
        assert "onerror" not in body_html or "&lt;img" in body_html
        cal = Calendar.from_ical(ics.get_content())
        [event] = cal.walk("VEVENT")
        assert str(event["SUMMARY"]).startswith('<b>ACP</b> & "Co" 3.16')  # round-trips through iCal escaping
    changed = [m for m in _messages(tmp_path) if "changed" in m["Subject"].lower()]
    assert changed and 'because", 再见' in _parts(changed[0])[0]
