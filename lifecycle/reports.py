"""The compliance report: per customer and milestone, when the first notice went out against the
3-month deadline, and why anything was late or missing.

Statuses: `on-time`, `late` (cause: short notice, customer/deployment/service added late, moved
earlier, outage), `pending` (deadline not reached, notices planned), `not-notified` (cause: service
lapsed, every channel failed, upgrade agreed before any notice, deadline missed), `withdrawn`.
`compliance_summary` counts them per product, release and milestone (the registry's compliance page).
A customer counts as told once a channel that counts towards the promise (LIFECYCLE_PROMISE_CHANNELS,
email and portal by default) reported success; every channel has its own `<channel>_first_at` column
(null when it never delivered, e.g. every email bounced or failed, while the portal inbox still
counts: such a row says "told by portal only"). A channel that does not count (a Slack message) is
shown but never makes a row on time. Each row also counts messages whose outcome is still unknown
(being reconciled) and messages sent again after an unknown outcome (`possible_duplicates`: the
customer may have received them twice).

The delivery report (`deliveries`) lists, per channel and status, what was delivered, and every
delivery someone should look at: unknown outcomes, possible duplicates, failures and give-ups, and
retries in progress.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections import Counter
from types import SimpleNamespace
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, select

from lifecycle import policy
from lifecycle.channels.registry import CHANNELS
from lifecycle.config import get_settings
from lifecycle.dashboard import _cell  # one rule for CSV cells a spreadsheet must not run as formulas
from lifecycle.errors import LifecycleError
from lifecycle.models import (
    Contact,
    Customer,
    Delivery,
    Deployment,
    Milestone,
    MilestoneChange,
    MilestoneStatus,
    Notice,
    NoticeStatus,
    Product,
    Release,
    pk,
    table_of,
)
from lifecycle.policy import SkipReason
from lifecycle.registry import version_key

N, D = table_of(Notice), table_of(Delivery)
OK = ("sent", "delivered")
OPEN = ("pending", "sending", "unknown")


def promise_channels() -> tuple[str, ...]:
    """The channels that count towards the 3-month promise (LIFECYCLE_PROMISE_CHANNELS)."""
    names = get_settings().promise_channel_list
    unknown = [n for n in names if n not in CHANNELS]
    if unknown:
        raise LifecycleError(
            f"LIFECYCLE_PROMISE_CHANNELS: unknown channel {', '.join(unknown)} "
            f"(channels: {', '.join(CHANNELS)})"
        )
    return names


def _told(r, key, promise, channels, current_ok, trouble, open_promise) -> _Told:
    """The notice counts of a (customer, milestone) row, with `first_at` and `first_any_at` read from
    the channels that count, and a notice still open or failed on those channels counted as such
    (a notice another channel delivered is `sent`, but has not told them by the promise's measure)."""
    counted_current = [current_ok[n] for n in promise if n in current_ok]
    counted_any = [channels[n] for n in promise if n in channels]
    return _Told(
        r,
        min(counted_current) if counted_current else None,
        min(counted_any) if counted_any else None,
        open_promise[key],
        bool(set(trouble) & set(promise)) and not counted_any,
    )


class _Told(SimpleNamespace):
    def __init__(self, r, first_at, first_any_at, promise_open: int, promise_failed: bool):
        super().__init__(**dict(r._mapping))
        self.first_at, self.first_any_at = first_at, first_any_at
        self.released = (r.released or 0) + (promise_open if first_at is None else 0)
        self.promise_failed = promise_failed


def _notes(
    channels: dict,
    trouble: dict[str, str],
    unknown: Counter,
    duplicates: Counter,
    promise: tuple[str, ...],
    *,
    has_contact: bool,
) -> tuple[list[str], list[str]]:
    """What the compliance row notes about its channels, and which channels alone told the customer
    after another failed."""
    notes, only = [], []
    ok = [name for name in CHANNELS if name in channels]
    for name, what in trouble.items():
        if ok:
            only = ok
            notes.append(f"told by {' and '.join(ok)} only: {name} {what}")
        else:
            notes.append(f"{name} {what}: not notified by {name}")
    for name, n in unknown.items():
        notes.append(f"{n} {_noun(name)}(s) with unknown outcome, being reconciled")
    for name, n in duplicates.items():
        notes.append(f"{n} possible duplicate {_noun(name)}(s)")
    if ok and not set(ok) & set(promise):
        notes.append(
            f"told only by {' and '.join(ok)}, which does not count towards the promise "
            f"(LIFECYCLE_PROMISE_CHANNELS: {','.join(promise)})"
        )
    if not has_contact:
        notes.append(f"no contact: not notified by {_contacts()}")
    return notes, only


def _noun(name: str) -> str:
    return getattr(CHANNELS.get(name), "noun", name)


def _contacts() -> str:
    """The channels whose recipients are the customer's contacts."""
    return " or ".join(n for n, ch in CHANNELS.items() if getattr(ch, "uses_contacts", False))


def _local(ts: dt.datetime | None, tz: str) -> dt.date | None:
    return policy.local_date(ts, tz) if ts else None


COMPLIANCE_CHUNK = 500  # customers computed at a time: memory holds one chunk's rows, whatever the fleet


def compliance(session: Session, at: dt.datetime) -> dict:
    """The whole report in memory (the web page, the demo). Listings stream `compliance_rows` instead."""
    rows = list(compliance_rows(session, at))
    totals = Counter(x["status"] for x in rows)
    return {"at": at.isoformat(), "totals": dict(sorted(totals.items())), "rows": rows}


def compliance_rows(
    session: Session,
    at: dt.datetime,
    *,
    after: str | None = None,
    customers: int | None = None,
    customer: str | None = None,
    chunk: int = COMPLIANCE_CHUNK,
):
    """The report's rows, customer by customer in key order (as `compliance` sorts them), computed a chunk
    of customers at a time. `after`: only customers whose key sorts after it (a cursor); `customers`: at
    most that many customers; `customer`: only that one."""
    C = table_of(Customer)
    left = customers
    while left is None or left > 0:
        q = sa.select(C.c.id, C.c.key).order_by(C.c.key).limit(chunk if left is None else min(chunk, left))
        if after is not None:
            q = q.where(C.c.key > after)
        if customer is not None:
            q = q.where(C.c.key == customer)
        batch = session.connection().execute(q).all()
        if not batch:
            return
        yield from _compliance_chunk(session, at, [r.id for r in batch])
        after = batch[-1].key
        if left is not None:
            left -= len(batch)
        if customer is not None:
            return


def last_customer(session: Session) -> str | None:
    """The key that sorts last: a page that ends on it is the last page."""
    return session.connection().execute(sa.select(sa.func.max(Customer.key))).scalar()


def _compliance_chunk(session: Session, at: dt.datetime, customer_ids: list[int]) -> list[dict]:
    conn = session.connection()
    M = table_of(Milestone)
    cust_notice = sa.and_(
        N.c.audience == "customer", N.c.milestone_id.is_not(None), N.c.customer_id.in_(customer_ids)
    )
    # Told about the milestone's *current* date: a stage reminder of that date, or the change notice
    # that announced it. Being told a date that later moved does not keep the promise for the new one.
    current = sa.and_(N.c.milestone_date == M.c.date, N.c.kind != "withdrawn")
    agg = conn.execute(
        sa.select(
            N.c.customer_id,
            N.c.milestone_id,
            sa.func.min(sa.case((sa.and_(N.c.status == NoticeStatus.SENT, current), N.c.sent_at))).label(
                "first_at"
            ),
            sa.func.min(sa.case((N.c.status == NoticeStatus.SENT, N.c.sent_at))).label("first_any_at"),
            sa.func.min(sa.case((sa.and_(N.c.kind == "stage", current), N.c.due_at))).label("first_due"),
            sa.func.sum(sa.case((sa.and_(N.c.status == NoticeStatus.PLANNED, current), 1), else_=0)).label(
                "planned"
            ),
            sa.func.sum(sa.case((sa.and_(N.c.status == NoticeStatus.RELEASED, current), 1), else_=0)).label(
                "released"
            ),
            sa.func.sum(sa.case((N.c.status == NoticeStatus.FAILED, 1), else_=0)).label("failed"),
            sa.func.sum(
                sa.case(
                    (
                        sa.and_(
                            N.c.status == NoticeStatus.SKIPPED,
                            N.c.status_reason.in_(
                                [SkipReason.SERVICE_LAPSED, SkipReason.SERVICE_NOT_STARTED]
                            ),
                        ),
                        1,
                    ),
                    else_=0,
                )
            ).label("lapsed"),
            sa.func.sum(
                sa.case(
                    (
                        sa.and_(
                            N.c.status == NoticeStatus.SKIPPED, N.c.status_reason == SkipReason.AGREEMENT
                        ),
                        1,
                    ),
                    else_=0,
                )
            ).label("agreed"),
            sa.func.sum(
                sa.case(
                    (
                        sa.and_(
                            N.c.status == NoticeStatus.CANCELLED, N.c.status_reason == SkipReason.NOT_AFFECTED
                        ),
                        1,
                    ),
                    else_=0,
                )
            ).label("removed"),
            sa.func.count().label("total"),
        )
        .join(M, M.c.id == N.c.milestone_id)
        .where(cust_notice)
        .group_by(N.c.customer_id, N.c.milestone_id)
    ).all()
    promise = promise_channels()
    by_channel: dict[tuple[int, int], dict[str, dt.datetime]] = {}
    current_ok: dict[tuple[int, int], dict[str, dt.datetime]] = {}
    trouble: dict[tuple[int, int], dict[str, str]] = {}
    unknown: dict[tuple[int, int], Counter] = {}
    duplicates: dict[tuple[int, int], Counter] = {}
    open_promise: Counter = Counter()
    for row in conn.execute(
        sa.select(
            N.c.customer_id,
            N.c.milestone_id,
            D.c.channel,
            sa.func.min(sa.case((D.c.status.in_(OK), D.c.sent_at))).label("first_ok"),
            sa.func.min(sa.case((sa.and_(D.c.status.in_(OK), current), D.c.sent_at))).label("current_ok"),
            sa.func.sum(sa.case((sa.and_(D.c.status.in_(OPEN), current), 1), else_=0)).label("open"),
            sa.func.sum(sa.case((D.c.status == "bounced", 1), else_=0)).label("bounced"),
            sa.func.sum(sa.case((D.c.status == "failed", 1), else_=0)).label("failed"),
            sa.func.sum(sa.case((D.c.status == "unknown", 1), else_=0)).label("unknown"),
            sa.func.sum(sa.case((D.c.possible_duplicate.is_(True), 1), else_=0)).label("duplicates"),
        )
        .join(N, N.c.id == D.c.notice_id)
        .join(M, M.c.id == N.c.milestone_id)
        .where(cust_notice)
        .group_by(N.c.customer_id, N.c.milestone_id, D.c.channel)
    ).all():
        key = (row.customer_id, row.milestone_id)
        if row.unknown:
            unknown.setdefault(key, Counter())[row.channel] += row.unknown
        if row.duplicates:
            duplicates.setdefault(key, Counter())[row.channel] += row.duplicates
        if row.channel in promise:
            open_promise[key] += row.open or 0
        if row.first_ok is not None:
            by_channel.setdefault(key, {})[row.channel] = _aware(row.first_ok)
            if row.current_ok is not None:
                current_ok.setdefault(key, {})[row.channel] = _aware(row.current_ok)
        elif row.bounced or row.failed:
            trouble.setdefault(key, {})[row.channel] = "bounced" if row.bounced else "failed"

    milestone_ids = {r.milestone_id for r in agg}
    agg_customers = {r.customer_id for r in agg}
    milestones = (
        {m.id: m for m in session.scalars(sa.select(Milestone).where(col(Milestone.id).in_(milestone_ids)))}
        if milestone_ids
        else {}
    )
    customers = (
        {c.id: c for c in session.scalars(sa.select(Customer).where(col(Customer.id).in_(agg_customers)))}
        if agg_customers
        else {}
    )
    products = {p.id: p for p in session.scalars(sa.select(Product))}
    releases = {r.id: r for r in session.scalars(sa.select(Release))}
    with_contact = (
        set(
            conn.execute(
                sa.select(col(Contact.customer_id))
                .where(col(Contact.customer_id).in_(agg_customers))
                .distinct()
            ).scalars()
        )
        if agg_customers
        else set()
    )
    # When each customer started running each product/release (the latest (re)deployment).
    deployed: dict[tuple[int, int], dt.datetime] = {}
    for dep, rel in (
        session.exec(
            select(Deployment, Release)
            .join(Release, col(Release.id) == Deployment.release_id)
            .where(col(Deployment.customer_id).in_(agg_customers))
        ).all()
        if agg_customers
        else []
    ):
        for key in ((dep.customer_id, pk(rel)), (dep.customer_id, -rel.product_id)):
            deployed[key] = min(deployed.get(key, dep.added_at), dep.added_at)
    # The change that set each milestone's current date, and its latest change.
    date_set: dict[int, MilestoneChange] = {}
    latest: dict[int, MilestoneChange] = {}
    for ch in (
        session.scalars(
            sa.select(MilestoneChange)
            .where(col(MilestoneChange.milestone_id).in_(milestone_ids))
            .order_by(col(MilestoneChange.revision), col(MilestoneChange.id))
        )
        if milestone_ids
        else []
    ):
        latest[ch.milestone_id] = ch
        if ch.action in ("created", "moved", "reinstated"):
            date_set[ch.milestone_id] = ch

    rows = []
    for r in agg:
        m, c = milestones[r.milestone_id], customers[r.customer_id]
        product, release = products[m.product_id], releases.get(m.release_id)
        deadline = policy.contract_deadline(m.date)
        today = policy.local_date(at, c.timezone)
        key = (r.customer_id, r.milestone_id)
        channels = by_channel.get(key, {})
        # Told means told through a channel that counts towards the promise, once it reported success.
        counted = _told(
            r, key, promise, channels, current_ok.get(key, {}), trouble.get(key, {}), open_promise
        )
        first_at = counted.first_at
        first_day = _local(first_at, c.timezone)
        status, cause = _classify(
            counted,
            m,
            c,
            first_day,
            deadline,
            today,
            date_set.get(pk(m)),
            deployed.get((pk(c), m.release_id) if m.release_id else (pk(c), -m.product_id)),
            _aware(r.first_due),
            latest.get(pk(m)),
        )
        notes, only = _notes(
            channels,
            trouble.get(key, {}),
            unknown.get(key, Counter()),
            duplicates.get(key, Counter()),
            promise,
            has_contact=c.id in with_contact,
        )
        entry: dict[str, Any] = {
            "customer": c.key,
            "customer_name": c.name,
            "timezone": c.timezone,
            "account_rep": c.account_rep,
            "product": product.slug,
            "version": release.version if release else None,
            "milestone": m.kind,
            "milestone_date": m.date.isoformat(),
            "revision": m.revision,
            "deadline": deadline.isoformat(),
            "first_notified_at": first_at.isoformat() if first_at else None,
            "first_told_any_date_at": counted.first_any_at.isoformat() if counted.first_any_at else None,
        }
        for name in CHANNELS:  # a column per channel: when it first delivered a notice about the milestone
            entry[f"{name}_first_at"] = channels[name].isoformat() if name in channels else None
        entry |= {
            "days_before": (m.date - first_day).days if first_day else None,
            "status": status,
            "cause": cause,
            "notes": "; ".join(notes) or None,
            "counted_channels": list(promise),
            # Legacy name: unknown outcomes on every channel (only email could end unknown before).
            "unknown_emails": sum(unknown.get(key, Counter()).values()),
            "possible_duplicates": sum(duplicates.get(key, Counter()).values()),
        }
        for name in CHANNELS:  # another channel failed, and only this one told them
            entry[f"told_by_{name}_only"] = only == [name]
        rows.append(entry)
    rows.sort(
        key=lambda x: (x["customer"], x["product"], x["version"] or "", x["milestone_date"], x["milestone"])
    )
    return rows


# What the delivery report lists one by one (the rest is only counted).
ATTENTION = ("unknown", "failed", "bounced")


def deliveries(session: Session, at: dt.datetime, *, everything: bool = False) -> dict:
    """Deliveries per channel and status, and the ones to look at: outcome unknown, possible
    duplicates, failed or bounced, and retries in progress (pending after an attempt). `everything`
    lists every delivery."""
    conn = session.connection()
    C = table_of(Customer)
    totals: dict[str, dict[str, int]] = {}
    for channel, status, n in conn.execute(
        sa.select(D.c.channel, D.c.status, sa.func.count()).group_by(D.c.channel, D.c.status)
    ).all():
        totals.setdefault(channel, {})[status] = n
    duplicates = conn.execute(sa.select(sa.func.count()).where(D.c.possible_duplicate.is_(True))).scalar()
    look = sa.or_(
        D.c.status.in_(ATTENTION),
        D.c.possible_duplicate.is_(True),
        sa.and_(D.c.status == "pending", D.c.attempts > 0),
    )
    rows = conn.execute(
        sa.select(
            D.c.id,
            C.c.key,
            D.c.channel,
            D.c.recipient,
            N.c.kind,
            N.c.audience,
            N.c.milestone_date,
            D.c.status,
            D.c.attempts,
            D.c.possible_duplicate,
            D.c.first_attempt_at,
            D.c.sent_at,
            D.c.next_attempt_at,
            D.c.provider_id,
            D.c.error,
        )
        .join(N, N.c.id == D.c.notice_id)
        .join(C, C.c.id == D.c.customer_id)
        .where(sa.true() if everything else look)
        .order_by(D.c.id)
    ).all()
    return {
        "at": at.isoformat(),
        "totals": {k: dict(sorted(v.items())) for k, v in sorted(totals.items())},
        "possible_duplicates": duplicates,
        "rows": [
            {
                "id": r.id,
                "customer": r.key,
                "channel": r.channel,
                "recipient": r.recipient,
                "notice": r.kind,
                "audience": r.audience,
                "milestone_date": r.milestone_date.isoformat() if r.milestone_date else None,
                "status": r.status,
                "attempts": r.attempts,
                "possible_duplicate": bool(r.possible_duplicate),
                "first_attempt_at": _iso(r.first_attempt_at),
                "sent_at": _iso(r.sent_at),
                "next_attempt_at": _iso(r.next_attempt_at) if r.status in ("pending", "unknown") else None,
                "provider_id": r.provider_id,
                "error": r.error,
            }
            for r in rows
        ],
    }


def _iso(ts) -> str | None:
    return _aware(ts).isoformat() if ts is not None else None


def _aware(ts):
    if ts is None:
        return None
    if isinstance(ts, str):
        ts = dt.datetime.fromisoformat(ts)
    return ts.replace(tzinfo=dt.UTC) if ts.tzinfo is None else ts


def _classify(
    r,
    m: Milestone,
    c: Customer,
    first_day: dt.date | None,
    deadline: dt.date,
    today: dt.date,
    date_change: MilestoneChange | None,
    deployed_at: dt.datetime | None,
    first_due: dt.datetime | None,
    last_change: MilestoneChange | None,
) -> tuple[str, str | None]:
    if m.status == MilestoneStatus.WITHDRAWN:
        if last_change is not None and last_change.action == "withdrawn":
            return "withdrawn", f"withdrawn on {last_change.at.date().isoformat()}" + (
                f" ({last_change.reason})" if last_change.reason else ""
            )
        return "withdrawn", None
    if first_day is not None:
        if first_day <= deadline:
            return "on-time", None
        return "late", _late_cause(m, c, deadline, date_change, deployed_at, first_due)
    if r.released:
        return "pending", "being delivered"
    if r.planned and today <= deadline:
        return "pending", None
    if r.agreed:
        return "not-notified", "upgrade agreed before any notice"
    if r.lapsed:
        return (
            "not-notified",
            "service lapsed" if c.service_end and c.service_end < m.date else "service not active",
        )
    if r.failed:
        return "not-notified", "every channel failed"
    if r.promise_failed:
        return "not-notified", "every channel that counts towards the promise failed"
    if r.removed and not r.planned:
        return "not-notified", "deployment removed"
    if r.planned:
        return "late" if today > deadline else "pending", _late_cause(
            m, c, deadline, date_change, deployed_at, first_due
        ) if today > deadline else None
    if r.first_any_at is not None:
        return (
            "not-notified",
            f"told an earlier date; {_late_cause(m, c, deadline, date_change, deployed_at, first_due)}",
        )
    return "not-notified", "no notice was sent"


def _late_cause(
    m: Milestone,
    c: Customer,
    deadline: dt.date,
    date_change: MilestoneChange | None,
    deployed_at: dt.datetime | None,
    first_due: dt.datetime | None,
) -> str:
    if date_change is not None and policy.local_date(date_change.at, c.timezone) > deadline:
        on = date_change.at.date().isoformat()
        why = f" ({date_change.reason})" if date_change.reason else ""
        passed = " (the date had already passed)" if m.date < date_change.at.date() else ""
        if date_change.action == "moved":
            return (
                f"short notice: moved from {date_change.old_date.isoformat() if date_change.old_date else '?'} "
                f"to {m.date.isoformat()} on {on}{passed}{why}"
            )
        if date_change.action == "reinstated":
            return f"short notice: reinstated for {m.date.isoformat()} on {on}{passed}{why}"
        return f"short notice: registered on {on}" + (
            f" ({m.short_notice_reason})" if m.short_notice_reason else ""
        )
    if c.service_start and c.service_start > deadline:
        return f"customer's service started late ({c.service_start.isoformat()})"
    if policy.local_date(c.created_at, c.timezone) > deadline:
        return f"customer added late ({c.created_at.date().isoformat()})"
    if deployed_at is not None and policy.local_date(deployed_at, c.timezone) > deadline:
        return f"deployment added late ({deployed_at.date().isoformat()})"
    if first_due is not None and policy.local_date(first_due, c.timezone) <= deadline:
        return f"outage: due {first_due.date().isoformat()}, sent after the deadline"
    return "sent after the deadline"


# ------------------------------------------------------------------------------ per milestone, and CSV

STATUSES = ("on-time", "late", "not-notified", "pending", "withdrawn")
COMPLIANCE_COLUMNS = (
    "customer",
    "customer_name",
    "account_rep",
    "timezone",
    "product",
    "version",
    "milestone",
    "milestone_date",
    "revision",
    "deadline",
    "first_notified_at",
    "first_told_any_date_at",
    *(f"{name}_first_at" for name in CHANNELS),
    "days_before",
    "status",
    "cause",
    "notes",
)


def compliance_summary(report) -> list[dict]:
    """The rows of `compliance` (the report, or its rows as they stream) per product, release and
    milestone: how many customers were told on time, late (with the causes), not told (with the causes),
    are pending or saw it withdrawn. Causes are counted by their text, most frequent first."""
    order = {k: i for i, k in enumerate(policy.LIFECYCLE_ORDER)}
    groups: dict[tuple, dict] = {}
    for r in report["rows"] if isinstance(report, dict) else report:
        key = (r["product"], r["version"], r["milestone"])
        g = groups.get(key)
        if g is None:
            g = groups[key] = {
                "product": r["product"],
                "version": r["version"],
                "milestone": r["milestone"],
                "milestone_date": r["milestone_date"],
                "deadline": r["deadline"],
                "customers": 0,
                **{s: 0 for s in STATUSES},
                "causes": {"late": Counter(), "not-notified": Counter()},
            }
        g["customers"] += 1
        g[r["status"]] = g.get(r["status"], 0) + 1
        if r["status"] in g["causes"]:
            g["causes"][r["status"]][r["cause"] or "no cause recorded"] += 1
    out = []
    for g in groups.values():
        g["causes"] = {
            status: [
                {"cause": cause, "customers": n}
                for cause, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
            ]
            for status, counts in g["causes"].items()
        }
        out.append(g)
    return sorted(
        out,
        key=lambda g: (
            g["product"],
            g["version"] is not None,
            version_key(g["version"] or ""),
            order.get(g["milestone"], len(order)),
        ),
    )


def compliance_csv(rows: list[dict]) -> str:
    """Compliance rows as CSV for a spreadsheet (the columns of `compliance`, then any others)."""
    columns = list(COMPLIANCE_COLUMNS) + [k for k in (rows[0] if rows else {}) if k not in COMPLIANCE_COLUMNS]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    for r in rows:
        writer.writerow([_cell(r.get(c)) for c in columns])
    return out.getvalue()
