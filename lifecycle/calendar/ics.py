"""Pure iCalendar building: rows and `at` in, RFC 5545 bytes out. No database, no clock.

Everything in an event comes from the rows and from `at`, so a feed is byte-identical while the data
and the UTC day do not change (and its ETag stable):

- One all-day VEVENT per milestone, UID `milestone-<id>@<host of LIFECYCLE_BASE_URL>`: the same event
  in every feed and attachment, so a moved or withdrawn milestone replaces the copy a calendar holds.
  SEQUENCE = the milestone's revision; DTSTAMP and LAST-MODIFIED = its `changed_at`.
  DTSTART;VALUE=DATE = the milestone date, DTEND = the next day (exclusive, RFC 5545 3.6.1).
  STATUS:CANCELLED for a withdrawn milestone (kept, so calendars remove it), CONFIRMED otherwise.
- One all-day VEVENT per release with a release date ("Kubernetes 1.36 released"), as endoflife.date's
  calendars have, UID `release-<id>@host`, DTSTAMP = the release's `created_at`. No alarm: it is news,
  not a deadline.
- History: a milestone dated before `at`'s UTC date, or of a release that ended upstream without a
  published date (`Release.ended`), stays in the feed (calendars show history) but carries no alarm
  and no acknowledgement link: nobody can act on it any more. History is judged on the UTC date for
  every feed, customer feeds included, so one refresh per UTC day keeps static exports exact.
- Upcoming milestones carry one DISPLAY alarm per notice stage, as a duration relative to the start:
  the stage date at 09:00 (calendar months cannot be written as a DURATION, so the number of days is
  computed from `policy.stage_date`). An all-day event starts at local midnight, so the alarm rings at
  09:00 in the reader's own timezone, as the notice policy promises.
- URL: a page a person can open. Public feeds link to the product's public page (`/products/<slug>`),
  customer feeds and attachments to the customer portal, at the release's card.
- A feed with nothing dated (a product without releases or milestones yet, a customer without
  deployments) still needs a component: RFC 5545 requires at least one, and some parsers refuse an
  empty calendar. It holds one informational all-day event on the product's or customer's
  registration date, saying that nothing is published yet. That date is true and in the past, so the
  event never poses as a deadline; it has no alarm, is TRANSPARENT, has a stable UID
  (`product-<id>@host`, `customer-<id>@host`) and comes from the database only, so the feed stays
  byte-stable; it disappears from the feed (and from subscribed calendars) once real events exist.
  Rejected: an event "today" (changes every day), a lone VTIMEZONE or VTODO (calendar apps show
  nothing or handle them badly).

icalendar 7 gets a few things wrong that we write by hand (see `_text`, `_feed_properties`): it
does not escape NAME / X-WR-CALNAME (they are read as UNKNOWN, not TEXT), writes X-PUBLISHED-TTL as
"1 day, 0:00:00", and leaves out VALUE=DURATION on REFRESH-INTERVAL (RFC 7986 requires it).
"""

from __future__ import annotations

import datetime as dt
import re
import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal
from urllib.parse import urlsplit

from icalendar import Alarm, Calendar, Event
from icalendar.parser import Contentline
from icalendar.prop import vDuration, vText

from lifecycle import i18n, links, policy
from lifecycle.config import get_settings
from lifecycle.content import format_date, kind_label, stage_label
from lifecycle.i18n import N_
from lifecycle.models import Customer, Milestone, MilestoneChange, MilestoneStatus, Product, Release, pk


def _fast_short_lines() -> None:
    """icalendar folds every content line character by character (an `encode` per character), most of
    the time of rendering a calendar, although most lines are shorter than the 75 octets that need a
    fold. A line that short comes back unchanged from its folding; so it is returned at once, and every
    other line still goes through icalendar's own folding. `tests/test_calendar_ics.py` checks the
    result against icalendar's on every kind of line."""
    from icalendar.parser import content_line

    fold = getattr(content_line, "_foldline", None)
    if fold is None or getattr(fold, "short_lines_first", False):
        return

    def foldline(line: str, limit: int = 75, fold_sep: str = "\r\n ") -> str:
        if len(line) < limit and (line.isascii() or len(line.encode("utf-8")) < limit):
            return line
        return fold(line, limit, fold_sep)

    foldline.short_lines_first = True  # type: ignore[attr-defined]
    foldline.original = fold  # type: ignore[attr-defined]
    content_line._foldline = foldline


_fast_short_lines()

MIME_TYPE = "text/calendar"
PRODID = "-//lifecycle//Product lifecycle calendar//EN"
REFRESH = dt.timedelta(days=1)
ALARM_HOUR = 9
CATEGORY = "Product lifecycle"

Audience = Literal["public", "customer"]

# C0 control characters other than TAB, LF and CR are not allowed in an iCalendar TEXT value.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")

# The words of the feeds: English messages, translated through the catalogs (lifecycle.i18n).
TEXTS = {
    "product_feed": N_("{product} lifecycle"),
    "customer_feed": N_("{customer}: product lifecycle"),
    "product_about": N_("Release dates and lifecycle milestones of {product}: {url}"),
    "customer_about": N_("Release dates and lifecycle milestones of the versions {customer} runs: {url}"),
    "ended_list": N_("Ended without a published date: {releases}."),
    "ended_item": N_("{version} ({kind})"),
    "summary": N_("{what}: {kind}"),
    "summary_cancelled": N_("Withdrawn: {what}: {kind}"),
    "date": N_("{what} reaches {kind} on {date} (the last day of the phase)."),
    "withdrawn": N_("This milestone has been withdrawn and no longer applies."),
    "moved": N_("The date changed from {old} (revision {revision})."),
    "reason": N_("Reason: {reason}"),
    "upgrade": N_("Recommended upgrade: {product} {version}."),
    "ack": N_("Acknowledge your upgrade plan: {url}"),
    "alarm": N_("{what}: {kind} in {stage}, on {date}."),
    "released_summary": N_("{what} released"),
    "released": N_("{what} was released on {date}."),
    "ended": N_("{what} has reached {kind}; no date was published."),
    "empty_product_summary": N_("{product}: no lifecycle dates published yet"),
    "empty_product": N_(
        "{product} was registered on {date}. Its release dates and lifecycle milestones will"
        " appear in this calendar as they are published."
    ),
    "empty_customer_summary": N_("{customer}: no lifecycle dates yet"),
    "empty_customer": N_(
        "No deployments are registered for {customer}. The release dates and lifecycle "
        "milestones of the versions you run will appear in this calendar once they are "
        "registered; ask your account rep if this is not right."
    ),
    "empty_customer_dates": N_(
        "None of the versions {customer} runs has a release date or lifecycle "
        "milestone yet. They will appear in this calendar as they are published."
    ),
}


@dataclass(frozen=True)
class MilestoneRow:
    """One milestone with what its event needs: product, release (None: product-level), last change."""

    milestone: Milestone
    product: Product
    release: Release | None
    change: MilestoneChange | None


@dataclass(frozen=True)
class ReleaseRow:
    """One release with its product: its release-date event and, when it ended without a date, a note."""

    release: Release
    product: Product


# ------------------------------------------------------------------------------------------- helpers


def host() -> str:
    return urlsplit(get_settings().base_url).hostname or "localhost"


def uid(milestone_id: int) -> str:
    return f"milestone-{milestone_id}@{host()}"


def release_uid(release_id: int) -> str:
    return f"release-{release_id}@{host()}"


@lru_cache
def texts(locale: str) -> dict[str, str]:
    return {key: i18n.gettext_in(locale, text) for key, text in TEXTS.items()}


def today(at: dt.datetime) -> dt.date:
    """The day history is judged on: the UTC date of `at`, for every feed."""
    return at.astimezone(dt.UTC).date()


def history(day: dt.date, ended: str | None, at: dt.datetime) -> bool:
    """A milestone on `day` is history when it is before `at`'s UTC date, or when its release ended
    upstream without a published date (`ended`: that release's `Release.ended`)."""
    return ended is not None or policy.is_history(day, today(at))


def is_history(row: MilestoneRow, at: dt.datetime) -> bool:
    return history(row.milestone.date, row.release.ended if row.release is not None else None, at)


def _text(value: str) -> vText:
    """A TEXT value icalendar escapes (backslash, semicolon, comma, newline), minus control characters."""
    return vText(_CONTROL.sub("", value.replace("\r\n", "\n").replace("\r", "\n")))


def _what(product: Product, release: Release | None) -> str:
    return f"{product.name} {release.version}" if release else product.name


def _ended_line(product: Product, release: Release | None, locale: str) -> str | None:
    if release is None or not release.ended:
        return None
    return texts(locale)["ended"].format(what=_what(product, release), kind=kind_label(release.ended, locale))


def _url(audience: Audience, product: Product, release: Release | None) -> str:
    if audience == "customer":
        return links.portal_url(release.id if release is not None else None)
    return links.product_page_url(product.slug)


def _alarm_trigger(date: dt.date, stage: str) -> dt.timedelta:
    """From the event start (midnight of `date`) back to 09:00 on the stage date: e.g. -P182DT15H."""
    days = (date - policy.stage_date(date, stage)).days
    return dt.timedelta(days=-days, hours=ALARM_HOUR)


def _all_day(ev: Event, day: dt.date) -> None:
    ev.add("dtstart", day)
    ev.add("dtend", day + dt.timedelta(days=1))


def _stamp(ev: Event, when: dt.datetime) -> None:
    ev.add("dtstamp", when)
    ev.add("last-modified", when)


# -------------------------------------------------------------------------------------------- events


def _milestone_description(row: MilestoneRow, *, at: dt.datetime, locale: str, ack_url: str | None) -> str:
    m, words = row.milestone, texts(locale)
    what, kind = _what(row.product, row.release), kind_label(m.kind, locale)
    cancelled = m.status == MilestoneStatus.WITHDRAWN
    lines = [words["date"].format(what=what, kind=kind, date=format_date(m.date, locale))]
    if cancelled:
        lines.append(words["withdrawn"])
    ch = row.change
    if ch is not None and ch.action == "moved" and ch.old_date:
        lines.append(words["moved"].format(old=format_date(ch.old_date, locale), revision=m.revision))
    if ch is not None and ch.reason:
        lines.append(words["reason"].format(reason=ch.reason))
    ended = _ended_line(row.product, row.release, locale)
    if ended:
        lines.append(ended)
    if row.release is not None and row.release.upgrade_to and not cancelled:
        lines.append(words["upgrade"].format(product=row.product.name, version=row.release.upgrade_to))
    if ack_url and _active(row, at):
        lines.append(words["ack"].format(url=ack_url))
    return "\n".join(lines)


def _active(row: MilestoneRow, at: dt.datetime) -> bool:
    """Upcoming and not withdrawn: it has alarms and an acknowledgement link."""
    return row.milestone.status != MilestoneStatus.WITHDRAWN and not is_history(row, at)


def milestone_event(
    row: MilestoneRow,
    *,
    at: dt.datetime,
    locale: str,
    audience: Audience,
    stages: tuple[str, ...],
    ack_url: str | None = None,
) -> Event:
    """The event of one milestone. `ack_url` is left out (and no alarm is added) for history and for
    withdrawn milestones."""
    m, words = row.milestone, texts(locale)
    what, kind = _what(row.product, row.release), kind_label(m.kind, locale)
    cancelled = m.status == MilestoneStatus.WITHDRAWN
    date_text = format_date(m.date, locale)

    ev = Event()
    ev.add("uid", uid(pk(m)))
    _stamp(ev, m.changed_at)
    ev.add("sequence", m.revision)
    _all_day(ev, m.date)
    ev.add(
        "summary", _text(words["summary_cancelled" if cancelled else "summary"].format(what=what, kind=kind))
    )
    ev.add("description", _text(_milestone_description(row, at=at, locale=locale, ack_url=ack_url)))
    ev.add("status", "CANCELLED" if cancelled else "CONFIRMED")
    ev.add("transp", "TRANSPARENT")  # a deadline, not a meeting: never shows the reader as busy
    ev.add("url", _url(audience, row.product, row.release))
    ev.add("categories", [CATEGORY])
    if _active(row, at):
        for stage in stages:
            alarm = Alarm()
            alarm.add("action", "DISPLAY")
            alarm.add(
                "description",
                _text(
                    words["alarm"].format(
                        what=what, kind=kind, stage=stage_label(stage, locale), date=date_text
                    )
                ),
            )
            alarm.add("trigger", _alarm_trigger(m.date, stage))
            ev.add_component(alarm)
    return ev


def release_event(row: ReleaseRow, *, locale: str, audience: Audience) -> Event:
    """The release-date event of a release (which must have a release date)."""
    r, p, words = row.release, row.product, texts(locale)
    assert r.released is not None
    what = _what(p, r)
    lines = [words["released"].format(what=what, date=format_date(r.released, locale))]
    ended = _ended_line(p, r, locale)
    if ended:
        lines.append(ended)
    if r.upgrade_to:
        lines.append(words["upgrade"].format(product=p.name, version=r.upgrade_to))
    ev = Event()
    ev.add("uid", release_uid(pk(r)))
    _stamp(ev, r.created_at)
    ev.add("sequence", 0)
    _all_day(ev, r.released)
    ev.add("summary", _text(words["released_summary"].format(what=what)))
    ev.add("description", _text("\n".join(lines)))
    ev.add("status", "CONFIRMED")
    ev.add("transp", "TRANSPARENT")
    ev.add("url", _url(audience, p, r))
    ev.add("categories", [CATEGORY])
    return ev


def product_placeholder(product: Product) -> Event:
    """The informational event of a public feed with nothing dated (see the module docstring)."""
    words = texts("en")
    return _placeholder(
        f"product-{product.id}@{host()}",
        product.created_at,
        words["empty_product_summary"].format(product=product.name),
        words["empty_product"].format(
            product=product.name, date=format_date(product.created_at.date(), "en")
        ),
        links.product_page_url(product.slug),
    )


def customer_placeholder(customer: Customer, *, has_deployments: bool) -> Event:
    """The informational event of a customer feed with nothing dated (see the module docstring)."""
    words = texts(customer.locale)
    body = words["empty_customer_dates" if has_deployments else "empty_customer"].format(
        customer=customer.name
    )
    return _placeholder(
        f"customer-{customer.id}@{host()}",
        customer.created_at,
        words["empty_customer_summary"].format(customer=customer.name),
        body,
        links.portal_url(),
    )


def _placeholder(uid_: str, registered: dt.datetime, summary: str, description: str, url: str) -> Event:
    ev = Event()
    ev.add("uid", uid_)
    _stamp(ev, registered)
    ev.add("sequence", 0)
    _all_day(ev, registered.astimezone(dt.UTC).date())
    ev.add("summary", _text(summary))
    ev.add("description", _text(description))
    ev.add("status", "CONFIRMED")
    ev.add("transp", "TRANSPARENT")
    ev.add("url", url)
    ev.add("categories", [CATEGORY])
    return ev


# ----------------------------------------------------------------------------------------- calendars


def _calendar() -> Calendar:
    cal = Calendar()
    cal.add("prodid", PRODID)
    cal.add("version", "2.0")
    cal.add("calscale", "GREGORIAN")
    cal.add("method", "PUBLISH")
    return cal


def _feed_properties(cal: Calendar, name: str, description: str, timezone: str | None) -> None:
    """Name, description and refresh interval of a subscribable feed, with the value types RFC 7986 asks for."""
    cal.add("name", _text(name))
    cal.add("x-wr-calname", _text(name))
    cal.add("description", _text(description))
    cal.add("x-wr-caldesc", _text(description))
    if timezone:
        cal.add("x-wr-timezone", timezone)
    cal.add("refresh-interval", vDuration(REFRESH), parameters={"VALUE": "DURATION"})
    cal.add("x-published-ttl", vDuration(REFRESH))


def _place(row: MilestoneRow) -> tuple[dt.date, str]:
    """Where a milestone's event goes in a calendar: by date, then UID."""
    return row.milestone.date, uid(pk(row.milestone))


def _ack(row: MilestoneRow, ack_urls: Mapping[int, str]) -> str | None:
    """The acknowledgement link of the milestone's release, if any (release id -> URL)."""
    return ack_urls.get(pk(row.release)) if row.release is not None else None


def _events(
    milestones: Iterable[MilestoneRow],
    releases: Iterable[ReleaseRow],
    *,
    at: dt.datetime,
    locale: str,
    audience: Audience,
    ack_urls: Mapping[int, str],
    stages: tuple[str, ...] | None,
) -> list[Event]:
    """Events sorted by (date, uid) so the bytes depend on the data only, never on query order."""
    stages = get_settings().stage_list if stages is None else stages
    keyed = [
        (
            _place(row),
            milestone_event(
                row, at=at, locale=locale, audience=audience, stages=stages, ack_url=_ack(row, ack_urls)
            ),
        )
        for row in milestones
    ]
    for rel in releases:
        if rel.release.released is not None:
            keyed.append(
                (
                    (rel.release.released, release_uid(pk(rel.release))),
                    release_event(rel, locale=locale, audience=audience),
                )
            )
    return [ev for _, ev in sorted(keyed, key=lambda pair: pair[0])]


def ended_note(releases: Iterable[ReleaseRow], locale: str) -> str | None:
    """ "Ended without a published date: 1.20 (end of life), ..." for a feed's description, or None."""
    words = texts(locale)
    items = [
        words["ended_item"].format(version=r.release.version, kind=kind_label(r.release.ended, locale))
        for r in sorted(releases, key=lambda r: pk(r.release))
        if r.release.ended
    ]
    return words["ended_list"].format(releases=", ".join(items)) if items else None


def product_feed(
    product: Product,
    milestones: list[MilestoneRow],
    releases: list[ReleaseRow],
    *,
    at: dt.datetime,
    stages: tuple[str, ...] | None = None,
) -> bytes:
    """The public feed of one product: its milestones (withdrawn ones as STATUS:CANCELLED), the
    release dates of its releases, and a placeholder when there is nothing dated. English."""
    words = texts("en")
    about = [words["product_about"].format(product=product.name, url=links.product_page_url(product.slug))]
    note = ended_note(releases, "en")
    if note:
        about.append(note)
    cal = _calendar()
    _feed_properties(cal, words["product_feed"].format(product=product.name), "\n".join(about), None)
    events = _events(milestones, releases, at=at, locale="en", audience="public", ack_urls={}, stages=stages)
    for ev in events or [product_placeholder(product)]:
        cal.add_component(ev)
    return cal.to_ical()


def customer_feed(
    customer: Customer,
    milestones: list[MilestoneRow],
    releases: list[ReleaseRow],
    *,
    at: dt.datetime,
    has_deployments: bool,
    ack_urls: Mapping[int, str] | None = None,
    stages: tuple[str, ...] | None = None,
) -> bytes:
    """The private feed of one customer, in their locale: the milestones and release dates of the
    releases they run, with acknowledgement links (`ack_urls`: release id -> URL) on upcoming ones."""
    words = texts(customer.locale)
    about = [words["customer_about"].format(customer=customer.name, url=links.portal_url())]
    note = ended_note(releases, customer.locale)
    if note:
        about.append(note)
    cal = _calendar()
    _feed_properties(
        cal, words["customer_feed"].format(customer=customer.name), "\n".join(about), customer.timezone
    )
    events = _events(
        milestones,
        releases,
        at=at,
        locale=customer.locale,
        audience="customer",
        ack_urls=ack_urls or {},
        stages=stages,
    )
    for ev in events or [customer_placeholder(customer, has_deployments=has_deployments)]:
        cal.add_component(ev)
    return cal.to_ical()


def attachment(
    milestones: list[MilestoneRow],
    *,
    at: dt.datetime,
    locale: str = "en",
    audience: Audience = "public",
    ack_urls: Mapping[int, str] | None = None,
    stages: tuple[str, ...] | None = None,
) -> bytes:
    """The `.ics` of an email (METHOD:PUBLISH, not a subscription: no name or refresh interval).

    The same bytes as a `Calendar` holding `milestone_event`s, put together from each event's content
    lines: each event is built once for every customer (`_event_bytes`), and only its DESCRIPTION line,
    where a customer's acknowledgement link goes, is written per customer."""
    stages = get_settings().stage_list if stages is None else stages
    events = (
        _event_bytes(
            row, at=at, locale=locale, audience=audience, stages=stages, ack_url=_ack(row, ack_urls or {})
        )
        for row in sorted(milestones, key=_place)
    )
    head, end = _attachment_frame()
    return head + b"".join(events) + end


@lru_cache(maxsize=1)
def _attachment_frame() -> tuple[bytes, bytes]:
    """The calendar of an attachment around its events: its properties, and its last line."""
    empty, end = _calendar().to_ical(), b"END:VCALENDAR\r\n"
    assert empty.endswith(end)
    return empty[: -len(end)], end


def _lines(component) -> list[bytes]:
    """A component's content lines, each folded and encoded (`Component.to_ical` joins them by CRLF)."""
    return [line.to_ical() for line in component.content_lines() if line]


def _row_key(row: MilestoneRow) -> tuple:
    """Every value of the row an event is made of."""
    m, p, r, ch = row.milestone, row.product, row.release, row.change
    return (
        (m.id, m.kind, m.date, m.status, m.revision, m.changed_at),
        (p.id, p.name, p.slug),
        None if r is None else (r.id, r.version, r.upgrade_to, r.ended),
        None if ch is None else (ch.action, ch.old_date, ch.reason),
    )


# Events without their ack link, by everything they are made of (so never stale): content lines and
# the index of the DESCRIPTION line. Bounded; a worker keeps it from one run to the next.
_EVENTS: OrderedDict[tuple, tuple[list[bytes], int]] = OrderedDict()
EVENTS_KEPT = 4096
_EVENTS_LOCK = threading.Lock()


def _event_bytes(
    row: MilestoneRow,
    *,
    at: dt.datetime,
    locale: str,
    audience: Audience,
    stages: tuple[str, ...],
    ack_url: str | None,
) -> bytes:
    key = (_row_key(row), locale, audience, tuple(stages), today(at), get_settings().base_url)
    with _EVENTS_LOCK:
        kept = _EVENTS.get(key)
        if kept is not None:
            _EVENTS.move_to_end(key)
    if kept is None:
        lines = _lines(milestone_event(row, at=at, locale=locale, audience=audience, stages=stages))
        # The event's own DESCRIPTION comes before its alarms' (properties first, then subcomponents).
        kept = (lines, next(i for i, line in enumerate(lines) if line.startswith(b"DESCRIPTION")))
        with _EVENTS_LOCK:
            _EVENTS[key] = kept
            if len(_EVENTS) > EVENTS_KEPT:
                _EVENTS.popitem(last=False)
    lines, at_line = kept
    if ack_url and _active(row, at):
        # The line `Event.add("description", ...)` would give (`Component.content_line`).
        text = _text(_milestone_description(row, at=at, locale=locale, ack_url=ack_url))
        line = Contentline.from_parts("DESCRIPTION", text.params, text).to_ical()
        lines = [*lines[:at_line], line, *lines[at_line + 1 :]]
    return b"\r\n".join(lines) + b"\r\n"
