"""Small helpers to build a registry and look at what the scheduler did, for scheduler tests."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlmodel import select

from lifecycle import agreements, registry
from lifecycle.db import session_scope
from lifecycle.models import Customer, Delivery, InboxMessage, Notice
from lifecycle.ticks import tick

START = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def product(slug="acp", versions=("3.16", "3.18"), at=START, upgrade_to="3.18"):
    with session_scope() as s:
        registry.upsert_product(s, slug=slug, name=slug.upper(), at=at)
        for v in versions:
            registry.upsert_release(
                s, product=slug, version=v, at=at, upgrade_to=upgrade_to if v != upgrade_to else None
            )


def milestone(date, *, product="acp", version="3.16", kind="end-of-life", at=START, reason=None):
    with session_scope() as s:
        registry.add_milestone(
            s,
            product=product,
            version=version,
            kind=kind,
            date=date,
            at=at,
            allow_short_notice=reason is not None,
            reason=reason,
        )


def customer(
    key="acme",
    tz="Asia/Shanghai",
    *,
    locale="en",
    deploy=(("acp", "3.16"),),
    at=START,
    start=None,
    end=None,
    emails=None,
    rep="rep@vendor.example",
):
    with session_scope() as s:
        registry.upsert_customer(
            s,
            key=key,
            name=key.title(),
            timezone=tz,
            locale=locale,
            account_rep=rep,
            at=at,
            service_start=start,
            service_end=end,
        )
        for email in emails if emails is not None else [f"ops@{key}.example"]:
            registry.upsert_contact(s, customer=key, email=email, at=at)
        for prod, version in deploy:
            registry.add_deployment(s, customer=key, product=prod, version=version, at=at)


def move(
    date,
    *,
    at,
    product="acp",
    version="3.16",
    kind="end-of-life",
    reason="moved",
    short=False,
    customer_reason=None,
):
    with session_scope() as s:
        m = registry.get_milestone(s, product, version, kind)
        registry.move_milestone(
            s, m, date=date, reason=reason, at=at, allow_short_notice=short, customer_reason=customer_reason
        )


def withdraw(
    *, at, product="acp", version="3.16", kind="end-of-life", reason="withdrawn", customer_reason=None
):
    with session_scope() as s:
        m = registry.get_milestone(s, product, version, kind)
        registry.withdraw_milestone(s, m, reason=reason, at=at, customer_reason=customer_reason)


def reinstate(
    date,
    *,
    at,
    product="acp",
    version="3.16",
    kind="end-of-life",
    reason="reinstated",
    short=False,
    customer_reason=None,
):
    with session_scope() as s:
        registry.add_milestone(
            s,
            product=product,
            version=version,
            kind=kind,
            date=date,
            at=at,
            allow_short_notice=short,
            reason=reason,
            customer_reason=customer_reason,
        )


def ack(
    customer_key="acme",
    status="acknowledged",
    *,
    at,
    product="acp",
    version="3.16",
    target=None,
    planned_date=None,
):
    with session_scope() as s:
        agreements.record_cli(
            s,
            customer_key=customer_key,
            product=product,
            version=version,
            status=status,
            at=at,
            channel="cli",
            target_version=target,
            planned_date=planned_date,
        )


def run(*instants):
    return [tick(t) for t in instants]


def notices(customer_key=None, **where) -> list[Notice]:
    with session_scope() as s:
        q = select(Notice).join(Customer, Customer.id == Notice.customer_id)
        if customer_key:
            q = q.where(Customer.key == customer_key)
        for k, v in where.items():
            q = q.where(getattr(Notice, k) == v)
        return list(s.exec(q.order_by(Notice.due_at, Notice.id)).all())


def sent(customer_key=None, audience="customer") -> list[Notice]:
    return [n for n in notices(customer_key, audience=audience) if n.status == "sent"]


def deliveries(channel=None) -> list[Delivery]:
    with session_scope() as s:
        q = select(Delivery)
        if channel:
            q = q.where(Delivery.channel == channel)
        return list(s.exec(q.order_by(Delivery.id)).all())


def inbox(customer_key) -> list[InboxMessage]:
    with session_scope() as s:
        return list(
            s.exec(
                select(InboxMessage)
                .join(Customer, Customer.id == InboxMessage.customer_id)
                .where(Customer.key == customer_key)
                .order_by(InboxMessage.id)
            ).all()
        )


def delivery_signature() -> list[tuple]:
    """What was delivered, independent of ids and timing: to compare runs."""
    with session_scope() as s:
        rows = s.exec(
            sa.select(Notice.key, Delivery.channel, Delivery.recipient, Delivery.status).join(
                Notice, Notice.id == Delivery.notice_id
            )
        ).all()
    return sorted(tuple(r) for r in rows)


def next_due(after: dt.datetime) -> dt.datetime | None:
    """The next instant after `after` at which something falls due: a planned notice or a retry."""
    with session_scope() as s:
        notice = s.exec(
            sa.select(sa.func.min(Notice.due_at)).where(Notice.status == "planned", Notice.due_at > after)
        ).one()[0]
        retry = s.exec(
            sa.select(sa.func.min(Delivery.next_attempt_at)).where(
                Delivery.status == "pending", Delivery.next_attempt_at > after
            )
        ).one()[0]
    found = [_aware(t) for t in (notice, retry) if t is not None]
    return min(found) if found else None


def _aware(t):
    if isinstance(t, str):
        t = dt.datetime.fromisoformat(t)
    return t if t.tzinfo else t.replace(tzinfo=dt.UTC)


def run_every_instant(end: dt.datetime, *, start: dt.datetime = START) -> int:
    """Tick at `start`, then at every instant something falls due, up to `end`. Returns the ticks run."""
    return replay_every_instant(start, end, [])


def replay_every_instant(start: dt.datetime, end: dt.datetime, events: list) -> int:
    """Ticks as a punctual scheduler runs them: at every due instant and right after every registry
    change (`events`: (instant, callable) applied at their instant)."""
    events = sorted(events, key=lambda e: e[0])
    t, ticks = start, 1
    tick(t)
    while True:
        due = next_due(t)
        event = events[0][0] if events else None
        if event is not None and event >= t and (due is None or event <= due) and event <= end:
            _, apply = events.pop(0)
            apply()
            t = event
        elif due is not None and due <= end:
            t = due
        else:
            break
        tick(t)
        ticks += 1
    return ticks


def replay_weekly(start: dt.datetime, end: dt.datetime, events: list) -> int:
    """Ticks once a week from `start`; registry changes still happen at their own instants."""
    events = sorted(events, key=lambda e: e[0])
    t, ticks = start, 0
    while True:
        t = min(t, end)
        while events and events[0][0] <= t:
            events.pop(0)[1]()
        tick(t)
        ticks += 1
        if t >= end:
            return ticks
        t += dt.timedelta(days=7)
