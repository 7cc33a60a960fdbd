"""The MIME message of the file and SMTP backends (lifecycle.mailers.mime), read back by the stdlib's
modern parser as a mail client would."""

from __future__ import annotations

import datetime as dt
import email
from email import policy

from lifecycle.mailers import Attachment, Email
from lifecycle.mailers.mime import to_mime


def _parse(msg) -> email.message.EmailMessage:
    return email.message_from_bytes(msg.as_bytes(), policy=policy.default)


def _email(**changes) -> Email:
    base = {
        "to": "ops@acme.example",
        "to_name": "Zoë Müller-Lüdenscheidt",
        "subject": "ACP 1.4: Ende der Wartung am 31. März 2027 (noch 94 Tage) und 2 weitere Hinweise zum Lebenszyklus",
        "text": "Sehr geehrte Kundin,\n\n* ACP 1.4 — Ende der Wartung\n" + "lang " * 300 + "\nEnde",
        "html": "<p>Sehr geehrte Kundin,</p>\n<p>ACP 1.4 &mdash; Ende</p>",
        "from_email": "lifecycle@vendor.example",
        "from_name": "Produkt-Lebenszyklus",
        "reply_to": "rep@vendor.example",
        "reply_to_name": "Jürgen Rep",
        "attachments": [
            Attachment("lifecycle.ics", b"BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n", "text/calendar")
        ],
        "custom_args": {"delivery_ids": "12,13"},
        "message_id": "<lifecycle-12-abc@vendor.example>",
        "date": dt.datetime(2027, 1, 1, 9, 30, tzinfo=dt.UTC),
    }
    return Email(**(base | changes))


def test_a_german_digest_reads_back_with_every_header_body_and_the_calendar():
    e = _email()
    msg = _parse(to_mime(e))
    assert msg.get_content_type() == "multipart/mixed"
    assert str(msg["Subject"]) == e.subject
    assert msg["To"].addresses[0].display_name == e.to_name and msg["To"].addresses[0].addr_spec == e.to
    assert msg["From"].addresses[0].display_name == "Produkt-Lebenszyklus"
    assert msg["Reply-To"].addresses[0].display_name == "Jürgen Rep"
    assert msg["Date"].datetime == e.date
    assert msg["Message-ID"] == e.message_id
    assert msg["X-Lifecycle-Args"] == "delivery_ids=12,13"
    assert msg.get_body(("plain",)).get_content() == e.text
    assert msg.get_body(("html",)).get_content() == e.html
    [ics] = msg.iter_attachments()
    assert ics.get_content_type() == "text/calendar" and ics.get_param("method") == "PUBLISH"
    assert ics.get_filename() == "lifecycle.ics"
    assert ics.get_content().encode() == e.attachments[0].content
    raw = to_mime(e).as_bytes()
    assert all(len(line) <= 78 for line in raw.split(b"\n")), "every line folded or encoded"
    assert raw.isascii()


def test_without_attachments_it_is_multipart_alternative_and_ascii_text_stays_readable():
    e = _email(attachments=[], text="Dear customer,\n\nplain ASCII\n", html="<p>plain</p>\n", to_name=None)
    msg = _parse(to_mime(e))
    assert msg.get_content_type() == "multipart/alternative"
    assert str(msg["To"]) == "ops@acme.example"
    assert b"plain ASCII" in to_mime(e).as_bytes()  # 7bit, as written
    assert msg.get_body(("plain",)).get_content() == e.text


def test_a_line_break_in_a_header_value_cannot_add_a_header():
    e = _email(subject="Hello\r\nBcc: victim@example.com", to_name="Eve\nBcc: x@example.com")
    msg = _parse(to_mime(e))
    assert msg["Bcc"] is None
    assert str(msg["Subject"]) == "Hello Bcc: victim@example.com"
