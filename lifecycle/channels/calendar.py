"""The iCalendar channel: subscribable feeds, static exports and the `.ics` attachment of every email.

One all-day VEVENT per milestone. Everything in an event comes from the database, never from the
clock, so an unchanged feed is byte-identical and its ETag stable:

- UID `milestone-<id>@<host of LIFECYCLE_BASE_URL>`: the same event in every feed and attachment, so
  a moved or withdrawn milestone replaces the copy a calendar already holds.
- SEQUENCE = the milestone's revision; DTSTAMP and LAST-MODIFIED = its `changed_at`.
- DTSTART;VALUE=DATE = the milestone date, DTEND = the next day (exclusive, RFC 5545 3.6.1).
- STATUS:CANCELLED for a withdrawn milestone (kept, so calendars remove it), CONFIRMED otherwise.
- One DISPLAY alarm per notice stage, as a duration relative to the start: the stage date at 09:00
  (calendar months cannot be written as a DURATION, so the number of days is computed from
  `policy.stage_date`). An all-day event starts at local midnight, so the alarm rings at 09:00 in
  the reader's own timezone, as the notice policy promises.

The one exception to "nothing from the clock" is the acknowledgement link in customer feeds: it is
signed, and its signature carries the time of signing, which the ack page checks against
`ack_link_days`. It is signed at the start of the current UTC month, so a feed changes at most once
a month on its own and its links stay valid for about `ack_link_days - 31` days.

icalendar 7 gets a few things wrong that we write by hand (see `_text`, `_feed_properties`): it
does not escape NAME / X-WR-CALNAME (they are read as UNKNOWN, not TEXT), writes X-PUBLISHED-TTL as
"1 day, 0:00:00", and leaves out VALUE=DURATION on REFRESH-INTERVAL (RFC 7986 requires it).
"""

from __future__ import annotations

import datetime as dt
import os
import re
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import sqlalchemy as sa
from icalendar import Alarm, Calendar, Event
from icalendar.prop import vDuration, vText
from sqlmodel import Session, select

from lifecycle import links, policy
from lifecycle.config import get_settings
from lifecycle.content import format_date, kind_label, stage_label
from lifecycle.models import (
    Customer,
    Deployment,
    Milestone,
    MilestoneChange,
    MilestoneStatus,
    Product,
    Release,
)
from lifecycle.registry import get_product

MIME_TYPE = "text/calendar"
PRODID = "-//lifecycle//Product lifecycle calendar//EN"
REFRESH = dt.timedelta(days=1)
ALARM_HOUR = 9

# C0 control characters other than TAB, LF and CR are not allowed in an iCalendar TEXT value.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")

_TEXTS = {
    "en": {
        "product_feed": "{product} lifecycle",
        "customer_feed": "{customer}: product lifecycle",
        "attachment": "Product lifecycle",
        "summary": "{what}: {kind}",
        "summary_cancelled": "Withdrawn: {what}: {kind}",
        "date": "{what} reaches {kind} on {date} (the last day of the phase).",
        "withdrawn": "This milestone has been withdrawn and no longer applies.",
        "moved": "The date changed from {old} (revision {revision}).",
        "reason": "Reason: {reason}",
        "upgrade": "Recommended upgrade: {product} {version}.",
        "ack": "Acknowledge your upgrade plan: {url}",
        "alarm": "{what}: {kind} in {stage}, on {date}.",
    },
    "zh-CN": {
        "product_feed": "{product} 生命周期",
        "customer_feed": "{customer}：产品生命周期",
        "attachment": "产品生命周期",
        "summary": "{what}：{kind}",
        "summary_cancelled": "已撤销：{what}：{kind}",
        "date": "{what} 将于 {date} {kind}（该阶段的最后一天）。",
        "withdrawn": "该里程碑已撤销，不再适用。",
        "moved": "日期已由 {old} 变更（第 {revision} 版）。",
        "reason": "原因：{reason}",
        "upgrade": "建议升级到：{product} {version}。",
        "ack": "确认您的升级计划：{url}",
        "alarm": "{what}：{stage}后{kind}（{date}）。",
    },
}


@dataclass(frozen=True)
class Row:
    """One milestone with what its event needs: product, release (None: product-level), last change."""

    milestone: Milestone
    product: Product
    release: Release | None
    change: MilestoneChange | None


# -------------------------------------------------------------------------------------------- loading


def _load(session: Session, condition) -> list[Row]:
    """Milestones matching `condition`, with product, release and their latest change: two queries."""
    rows = session.exec(
        select(Milestone, Product, Release)
        .join(Product, Product.id == Milestone.product_id)
        .join(Release, Release.id == Milestone.release_id, isouter=True)
        .where(condition)
    ).all()
    ids = [m.id for m, _, _ in rows]
    latest: dict[int, MilestoneChange] = {}
    if ids:
        changes = session.exec(
            select(MilestoneChange)
            .join(Milestone, sa.and_(Milestone.id == MilestoneChange.milestone_id,
                                     Milestone.revision == MilestoneChange.revision))
            .where(MilestoneChange.milestone_id.in_(ids))
            .order_by(MilestoneChange.id)
        ).all()
        latest = {ch.milestone_id: ch for ch in changes}  # the last row of the current revision wins
    return [Row(m, p, r, latest.get(m.id)) for m, p, r in rows]


def _active_deployments(session: Session, customer_ids: Iterable[int] | None = None) -> list[tuple[int, int, int]]:
    """(customer id, release id, product id) of every deployment still running."""
    query = (select(Deployment.customer_id, Deployment.release_id, Release.product_id)
             .join(Release, Release.id == Deployment.release_id)
             .where(Deployment.removed_at.is_(None)))
    if customer_ids is not None:
        query = query.where(Deployment.customer_id.in_(list(customer_ids)))
    return [tuple(r) for r in session.exec(query).all()]


def _customer_condition(release_ids: set[int], product_ids: set[int]):
    return sa.or_(
        Milestone.release_id.in_(sorted(release_ids)),
        sa.and_(Milestone.release_id.is_(None), Milestone.product_id.in_(sorted(product_ids))),
    )


def _select_for_customer(rows: list[Row], release_ids: set[int], product_ids: set[int]) -> list[Row]:
    return [r for r in rows
            if (r.release is not None and r.release.id in release_ids)
            or (r.release is None and r.product.id in product_ids)]


# ------------------------------------------------------------------------------------------ building


def uid(milestone_id: int) -> str:
    host = urlsplit(get_settings().base_url).hostname or "localhost"
    return f"milestone-{milestone_id}@{host}"


def _text(value: str) -> vText:
    """A TEXT value icalendar escapes (backslash, semicolon, comma, newline), minus control characters."""
    return vText(_CONTROL.sub("", value.replace("\r\n", "\n").replace("\r", "\n")))


def _t(locale: str) -> dict[str, str]:
    return _TEXTS.get(locale, _TEXTS["en"])


def _what(row: Row) -> str:
    return f"{row.product.name} {row.release.version}" if row.release else row.product.name


def _month_start(now: dt.datetime) -> dt.datetime:
    return now.astimezone(dt.UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)


class _AckLinks:
    """Acknowledgement links of one build, all signed at the start of the current UTC month.

    Same secret and salt as `links.ack_token`, so `links.read_ack_token` accepts them.
    """

    def __init__(self, session: Session):
        self.session = session
        self.cache: dict[tuple[int, int], str] = {}
        self.issued: dt.datetime | None = None

    def url(self, customer_id: int, release_id: int) -> str:
        key = (customer_id, release_id)
        if key not in self.cache:
            if self.issued is None:
                # time.time(), as itsdangerous itself uses: the one clock reading in this module.
                self.issued = _month_start(dt.datetime.fromtimestamp(time.time(), dt.UTC))
            self.cache[key] = links.ack_url(self.session, customer_id, release_id, issued_at=self.issued)
        return self.cache[key]


def _alarm_trigger(date: dt.date, stage: str) -> dt.timedelta:
    """From the event start (midnight of `date`) back to 09:00 on the stage date: e.g. -P182DT15H."""
    days = (date - policy.stage_date(date, stage)).days
    return dt.timedelta(days=-days, hours=ALARM_HOUR)


def _event(row: Row, locale: str, stages: tuple[str, ...], ack_url: str | None) -> Event:
    m, t = row.milestone, _t(locale)
    what, kind = _what(row), kind_label(m.kind, locale)
    cancelled = m.status == MilestoneStatus.WITHDRAWN
    date_text = format_date(m.date, locale)

    lines = [t["date"].format(what=what, kind=kind, date=date_text)]
    if cancelled:
        lines.append(t["withdrawn"])
    ch = row.change
    if ch is not None and ch.action == "moved" and ch.old_date:
        lines.append(t["moved"].format(old=format_date(ch.old_date, locale), revision=m.revision))
    if ch is not None and ch.reason:
        lines.append(t["reason"].format(reason=ch.reason))
    if row.release is not None and row.release.upgrade_to and not cancelled:
        lines.append(t["upgrade"].format(product=row.product.name, version=row.release.upgrade_to))
    if ack_url and not cancelled:
        lines.append(t["ack"].format(url=ack_url))

    ev = Event()
    ev.add("uid", uid(m.id))
    ev.add("dtstamp", m.changed_at)
    ev.add("last-modified", m.changed_at)
    ev.add("sequence", m.revision)
    ev.add("dtstart", m.date)
    ev.add("dtend", m.date + dt.timedelta(days=1))
    ev.add("summary", _text(t["summary_cancelled" if cancelled else "summary"].format(what=what, kind=kind)))
    ev.add("description", _text("\n".join(lines)))
    ev.add("status", "CANCELLED" if cancelled else "CONFIRMED")
    ev.add("transp", "TRANSPARENT")  # a deadline, not a meeting: never shows the reader as busy
    ev.add("url", ack_url or links.product_calendar_url(row.product.slug))
    ev.add("categories", ["Product lifecycle"])
    if not cancelled:
        for stage in stages:
            alarm = Alarm()
            alarm.add("action", "DISPLAY")
            alarm.add("description", _text(t["alarm"].format(
                what=what, kind=kind, stage=stage_label(stage, locale), date=date_text)))
            alarm.add("trigger", _alarm_trigger(m.date, stage))
            ev.add_component(alarm)
    return ev


def _calendar(name: str | None, *, timezone: str | None = None) -> Calendar:
    cal = Calendar()
    cal.add("prodid", PRODID)
    cal.add("version", "2.0")
    cal.add("calscale", "GREGORIAN")
    cal.add("method", "PUBLISH")
    if name is not None:
        _feed_properties(cal, name, timezone)
    return cal


def _feed_properties(cal: Calendar, name: str, timezone: str | None) -> None:
    """Name and refresh interval of a subscribable feed, with the value types RFC 7986 asks for."""
    cal.add("name", _text(name))
    cal.add("x-wr-calname", _text(name))
    if timezone:
        cal.add("x-wr-timezone", timezone)
    cal.add("refresh-interval", vDuration(REFRESH), parameters={"VALUE": "DURATION"})
    cal.add("x-published-ttl", vDuration(REFRESH))


def _render(cal: Calendar, rows: list[Row], locale: str, ack_for=None) -> bytes:
    """Events sorted by (date, uid) so the bytes depend on the data only, never on query order."""
    stages = get_settings().stage_list
    for row in sorted(rows, key=lambda r: (r.milestone.date, uid(r.milestone.id))):
        ack = ack_for(row) if ack_for else None
        cal.add_component(_event(row, locale, stages, ack))
    return cal.to_ical()


def _ack_for(customer: Customer, acks: _AckLinks):
    return lambda row: acks.url(customer.id, row.release.id) if row.release is not None else None


# ------------------------------------------------------------------------------------------ public API


def product_feed(session: Session, product_slug: str) -> bytes:
    """The public feed of one product: every milestone of the product and its releases, withdrawn ones
    as STATUS:CANCELLED. Raises NotFound for an unknown slug."""
    product = get_product(session, product_slug)
    rows = _load(session, Milestone.product_id == product.id)
    return _render(_calendar(_t("en")["product_feed"].format(product=product.name)), rows, "en")


def customer_feed(session: Session, customer: Customer) -> bytes:
    """The private feed of one customer: milestones of every release they still run, and the
    product-level milestones of those products, with acknowledgement links."""
    deps = _active_deployments(session, [customer.id])
    release_ids, product_ids = {r for _, r, _ in deps}, {p for _, _, p in deps}
    rows = _load(session, _customer_condition(release_ids, product_ids)) if deps else []
    return _customer_bytes(customer, rows, _AckLinks(session))


def _customer_bytes(customer: Customer, rows: list[Row], acks: _AckLinks) -> bytes:
    t = _t(customer.locale)
    cal = _calendar(t["customer_feed"].format(customer=customer.name), timezone=customer.timezone)
    return _render(cal, rows, customer.locale, _ack_for(customer, acks))


def attachment(session: Session, milestone_ids: list[int], customer: Customer | None = None) -> bytes:
    """The `.ics` attached to an email (MIME type `text/calendar`, METHOD:PUBLISH): the events of the
    given milestones, with acknowledgement links when the email goes to a customer."""
    ids = sorted({int(i) for i in milestone_ids})
    rows = _load(session, Milestone.id.in_(ids)) if ids else []
    locale = customer.locale if customer is not None else "en"
    ack_for = _ack_for(customer, _AckLinks(session)) if customer is not None else None
    return _render(_calendar(None), rows, locale, ack_for)


def product_last_modified(session: Session, product: Product) -> dt.datetime:
    """When the product feed last changed: its latest milestone change, or the product's creation."""
    latest = session.exec(select(sa.func.max(Milestone.changed_at)).where(Milestone.product_id == product.id)).one()
    return _aware(latest) or product.created_at


def customer_last_modified(session: Session, customer: Customer) -> dt.datetime:
    """When the customer feed last changed: the latest change of an included milestone or of one of
    the customer's deployments (adding or removing one changes the feed), else their creation."""
    deps = _active_deployments(session, [customer.id])
    stamps = [customer.created_at]
    if deps:
        cond = _customer_condition({r for _, r, _ in deps}, {p for _, _, p in deps})
        stamps.append(session.exec(select(sa.func.max(Milestone.changed_at)).where(cond)).one())
    row = session.exec(select(sa.func.max(Deployment.added_at), sa.func.max(Deployment.removed_at))
                       .where(Deployment.customer_id == customer.id)).one()
    stamps.extend(row)
    return max(s for s in (_aware(s) for s in stamps) if s is not None)


def _aware(value) -> dt.datetime | None:
    """Aggregates bypass the column type on SQLite: normalise to an aware UTC datetime."""
    if value is None:
        return None
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


# -------------------------------------------------------------------------------------------- exports


def write_if_changed(path: Path, data: bytes) -> bool:
    """Write atomically (temporary file + rename), and only when the bytes differ. True if written."""
    try:
        if path.read_bytes() == data:
            return False
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return True


def export_all(session: Session, out_dir: Path | None = None) -> list[Path]:
    """Write `out_dir/products/<slug>.ics` and `out_dir/customers/<key>.ics` for every product and
    customer (default dir: LIFECYCLE_CALENDAR_DIR). Returns the files actually (re)written: a file
    whose bytes would not change is left alone. A handful of queries, whatever the number of feeds."""
    out = Path(out_dir) if out_dir is not None else get_settings().calendar_dir
    rows = _load(session, sa.true())
    by_product: dict[int, list[Row]] = {}
    for row in rows:
        by_product.setdefault(row.product.id, []).append(row)
    written: list[Path] = []
    for product in session.exec(select(Product).order_by(Product.slug)).all():
        name = _t("en")["product_feed"].format(product=product.name)
        data = _render(_calendar(name), by_product.get(product.id, []), "en")
        path = out / "products" / f"{product.slug}.ics"
        if write_if_changed(path, data):
            written.append(path)
    deps: dict[int, tuple[set[int], set[int]]] = {}
    for customer_id, release_id, product_id in _active_deployments(session):
        releases, products = deps.setdefault(customer_id, (set(), set()))
        releases.add(release_id)
        products.add(product_id)
    acks = _AckLinks(session)
    for customer in session.exec(select(Customer).order_by(Customer.key)).all():
        release_ids, product_ids = deps.get(customer.id, (set(), set()))
        data = _customer_bytes(customer, _select_for_customer(rows, release_ids, product_ids), acks)
        path = out / "customers" / f"{customer.key}.ics"
        if write_if_changed(path, data):
            written.append(path)
    return written


def refresh_exports(session: Session, out_dir: Path | None = None) -> list[Path]:
    """Bring the static exports up to date after a change (the scheduler calls this); cheap when
    nothing changed, as unchanged files are not rewritten."""
    return export_all(session, out_dir)
