"""What every calendar we generate must be: checked byte by byte and by three independent parsers."""

from __future__ import annotations

import datetime as dt

import icalendar
import vobject
from ical.calendar_stream import IcsCalendarStream


def check_ics(data: bytes) -> icalendar.Calendar:
    """Assert the bytes are well-formed iCalendar (CRLF only, lines of at most 75 octets, UTF-8, at
    least one component as RFC 5545 requires, all-day events) that icalendar, the strict `ical`
    package and vobject all accept with the same events."""
    text = data.decode("utf-8")  # valid UTF-8
    assert data.endswith(b"\r\n")
    assert b"\n" not in data.replace(b"\r\n", b"") and b"\r" not in data.replace(b"\r\n", b"")
    for line in data.split(b"\r\n"):
        assert len(line) <= 75, line
    cal = icalendar.Calendar.from_ical(data)
    assert cal.events, "RFC 5545: a calendar holds at least one component"
    for event in cal.events:
        assert isinstance(event.start, dt.date) and not isinstance(event.start, dt.datetime)
        assert event.end == event.start + dt.timedelta(days=1)
    assert b"DTSTART;VALUE=DATE:" in data
    strict = IcsCalendarStream.calendar_from_ics(text)
    assert len(strict.events) == len(cal.events)
    for event in strict.events:
        assert event.dtend == event.dtstart + dt.timedelta(days=1)
    vcal = vobject.readOne(text, validate=True)
    assert len(vcal.contents.get("vevent", [])) == len(cal.events)
    return cal
