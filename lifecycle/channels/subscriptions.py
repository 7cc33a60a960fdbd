"""Customers' channel subscriptions (`customer_channel`): add, list, test, remove, and what deliveries
teach about them.

Email and the portal need none: every customer has them. A subscription names a subscribable channel
(`registry.subscribable()`: webhook, Slack, Teams), a label people see and its settings, sealed at rest
(lifecycle.channels.secrets). The CLI (`lifecycle channel ...`), the API and the portal's channels page
all call these functions, so they agree.

- `test` sends a test message now and records the outcome (`verified_at`, or `last_error`); a test
  that succeeds turns a disabled subscription back on.
- A delivery that succeeds clears `failures`; one that fails for good (a permanent answer, or given up
  after the retry span) counts one; at LIFECYCLE_CHANNEL_DISABLE_AFTER in a row the subscription is
  turned off, its pending deliveries are cancelled, and the customer (through their other channels)
  and their rep are told by a `channel-disabled` notice.
- `remove` cancels what is still pending for it and keeps the history of what was sent (the deliveries
  keep its label as their recipient).
"""

from __future__ import annotations

import datetime as dt
import json
import time

import sqlalchemy as sa
from sqlmodel import Session, col, select

from lifecycle import keys, links
from lifecycle.channels import http
from lifecycle.channels.registry import subscribable
from lifecycle.channels.secrets import reseal, seal, unseal
from lifecycle.config import get_settings
from lifecycle.errors import DeliveryError, InputError, NotFound
from lifecycle.models import (
    Customer,
    CustomerChannel,
    Delivery,
    DeliveryStatus,
    Notice,
    NoticeKind,
    NoticeStatus,
    pk,
    table_of,
)

CC = table_of(CustomerChannel)
D = table_of(Delivery)
N = table_of(Notice)
MAX_LABEL = 100


def _kind(kind: str) -> str:
    kinds = subscribable()
    value = (kind or "").strip().lower()
    if value not in kinds:
        raise InputError("kind", f"unknown channel {kind!r}: one of {', '.join(kinds)}")
    return value


def _label(label: str | None, default: str) -> str:
    text = " ".join((label or "").split()) or default
    if len(text) > MAX_LABEL:
        raise InputError("label", f"longer than {MAX_LABEL} characters")
    if any(ord(ch) < 32 or 0x202A <= ord(ch) <= 0x202E or 0x2066 <= ord(ch) <= 0x2069 for ch in text):
        raise InputError("label", "contains control characters")
    return text


def customer_view(customer: Customer) -> dict:
    """What a channel needs to know about the customer of a test message."""
    return {
        "id": customer.id,
        "key": customer.key,
        "name": customer.name,
        "locale": customer.locale,
        "timezone": customer.timezone,
        "account_rep": customer.account_rep,
        "calendar_url": links.calendar_url(customer.calendar_token),
    }


def add(
    session: Session,
    *,
    customer: Customer,
    kind: str,
    url: str,
    label: str | None = None,
    at: dt.datetime,
    by: str | None = None,
) -> tuple[CustomerChannel, dict]:
    """Subscribe the customer; returns the subscription and what is shown only now (a webhook's
    signing secret). The caller commits."""
    from lifecycle.registry import audit

    kind = _kind(kind)
    url = http.check_url(url, "url")
    channel = subscribable()[kind]
    label = _label(label, f"{channel.title} {http.shown(url)}")
    values, once = channel.new_secrets(url)
    row = CustomerChannel(
        customer_id=pk(customer),
        kind=kind,
        label=label,
        enabled=True,
        created_at=at,
        updated_at=at,
        config=json.dumps({"endpoint": http.shown(url), "sealed": seal(values)}),
    )
    session.add(row)
    session.flush()
    audit(session, at, "channel.add", customer.key, {"id": row.id, "kind": kind, "label": label}, by)
    return row, once


def get(session: Session, customer: Customer, subscription_id: int) -> CustomerChannel:
    row = session.get(CustomerChannel, subscription_id) if 0 < subscription_id < 2**31 else None
    if row is None or row.customer_id != customer.id:
        raise NotFound("channel", f"customer {customer.key!r} has no channel subscription #{subscription_id}")
    return row


def state(row: CustomerChannel) -> str:
    if not row.enabled:
        return "disabled"
    if row.last_error:
        return "failing"
    return "working" if row.verified_at else "untested"


def rows(session: Session, *, customer_ids: list[int] | None = None) -> list[dict]:
    """Subscriptions (of these customers), as every interface shows them: never a secret."""
    q = select(CustomerChannel, Customer).join(Customer, col(Customer.id) == CustomerChannel.customer_id)
    if customer_ids is not None:
        q = q.where(col(CustomerChannel.customer_id).in_(customer_ids or [0]))
    out = []
    kinds = subscribable()
    for row, customer in session.exec(q.order_by(col(Customer.key), col(CustomerChannel.id))).all():
        out.append(
            {
                "id": row.id,
                "customer": customer.key,
                "customer_name": customer.name,
                "kind": row.kind,
                "channel": kinds[row.kind].title if row.kind in kinds else row.kind,
                "label": row.label,
                "endpoint": json.loads(row.config).get("endpoint"),
                "enabled": row.enabled,
                "state": state(row),
                "verified_at": row.verified_at,
                "last_error": row.last_error,
                "failures": row.failures,
                "disabled_at": row.disabled_at,
                "created_at": row.created_at,
            }
        )
    return out


def row_view(session: Session, row: CustomerChannel) -> dict:
    return next(r for r in rows(session, customer_ids=[row.customer_id]) if r["id"] == row.id)


def test(session: Session, row: CustomerChannel, *, at: dt.datetime, by: str | None = None) -> dict:
    """Send a test message through the subscription now and record the outcome. The caller commits."""
    from lifecycle.registry import audit

    customer = session.get(Customer, row.customer_id)
    assert customer is not None
    channel = subscribable()[row.kind]
    error = None
    try:
        provider_id = channel.send_test(
            unseal(json.loads(row.config)["sealed"]),
            customer_view(customer),
            deadline=time.monotonic() + get_settings().send_deadline,
        )
    except DeliveryError as err:
        error, provider_id = err.message[:2000], None
    if error is None:
        row.verified_at, row.last_error, row.failures = at, None, 0
        row.enabled, row.disabled_at = True, None
    else:
        row.last_error = f"test: {error}"
    row.updated_at = at
    session.add(row)
    session.flush()
    audit(session, at, "channel.test", customer.key, {"id": row.id, "ok": error is None, "error": error}, by)
    return {
        "ok": error is None,
        "error": error,
        "provider_id": provider_id,
        "subscription": row_view(session, row),
    }


def _cancel_pending(session: Session, subscription_id: int, at: dt.datetime, why: str) -> None:
    from lifecycle.settle import settle_notices

    notices = (
        session.connection()
        .execute(
            D.update()
            .where(D.c.subscription_id == subscription_id, D.c.status == DeliveryStatus.PENDING)
            .values(
                status=DeliveryStatus.CANCELLED, error=f"cancelled: {why}", claim_token=None, updated_at=at
            )
            .returning(D.c.notice_id)
        )
        .scalars()
        .all()
    )
    settle_notices(session, sorted(set(notices)))


def remove(session: Session, row: CustomerChannel, *, at: dt.datetime, by: str | None = None) -> None:
    """Unsubscribe: pending deliveries are cancelled, sent ones stay (named by their recipient)."""
    from lifecycle.registry import audit

    customer = session.get(Customer, row.customer_id)
    assert customer is not None
    _cancel_pending(session, pk(row), at, "the channel subscription was removed")
    # A send in progress holds its rows: this waits for it, and it re-checks (lifecycle.inflight).
    session.connection().execute(D.update().where(D.c.subscription_id == row.id).values(subscription_id=None))
    audit(
        session, at, "channel.remove", customer.key, {"id": row.id, "kind": row.kind, "label": row.label}, by
    )
    session.delete(row)
    session.flush()


# ------------------------------------------------------------------------------ what deliveries teach


def succeeded(session: Session, subscription_id: int, at: dt.datetime) -> None:
    session.connection().execute(
        CC.update()
        .where(CC.c.id == subscription_id)
        .values(failures=0, last_error=None, verified_at=at, updated_at=at)
    )


def failed(session: Session, subscription_id: int, message: str, at: dt.datetime, *, for_good: bool) -> None:
    """A delivery through the subscription failed: transient failures only note the error; failing for
    good counts, and enough in a row turn the subscription off."""
    conn = session.connection()
    values = {"last_error": message[:2000], "updated_at": at}
    if for_good:
        values["failures"] = CC.c.failures + 1
    conn.execute(CC.update().where(CC.c.id == subscription_id).values(**values))
    if not for_good:
        return
    row = conn.execute(sa.select(CC).where(CC.c.id == subscription_id)).first()
    if row is not None and row.enabled and row.failures >= get_settings().channel_disable_after:
        disable(session, subscription_id, at, message)


def disable(session: Session, subscription_id: int, at: dt.datetime, reason: str) -> None:
    """Turn a subscription off, cancel what is pending for it, and tell the customer and their rep."""
    from lifecycle.channels.fanout import create_deliveries
    from lifecycle.scheduler import insert_ignore

    conn = session.connection()
    conn.execute(
        CC.update()
        .where(CC.c.id == subscription_id, CC.c.enabled.is_(True))
        .values(enabled=False, disabled_at=at, updated_at=at)
    )
    _cancel_pending(session, subscription_id, at, "the channel subscription was turned off")
    row = conn.execute(sa.select(CC).where(CC.c.id == subscription_id)).one()
    stamp = at.strftime("%Y%m%dT%H%M%S")
    ids = []
    for audience in ("customer", "rep"):
        key = f"{NoticeKind.CHANNEL_DISABLED}:{row.customer_id}:{subscription_id}:{audience}:{stamp}"
        notice_id = conn.execute(
            insert_ignore(session, N)
            .values(
                key=key,
                customer_id=row.customer_id,
                kind=NoticeKind.CHANNEL_DISABLED.value,
                audience=audience,
                slot=str(subscription_id),
                revision=1,
                detail=f"{row.label}: {reason}"[:2000],
                due_at=at,
                status=NoticeStatus.RELEASED.value,
                released_at=at,
                created_at=at,
            )
            .returning(N.c.id)
        ).scalar()
        if notice_id is not None:
            ids.append(notice_id)
    create_deliveries(session, ids, at)


def reseal_all(session: Session, *previous: keys.KeyRing) -> int:
    """Seal every subscription's settings with the current key (after a rotation). Returns how many."""
    conn = session.connection()
    changed = []
    for sid, config in conn.execute(sa.select(CC.c.id, CC.c.config)).all():
        data = json.loads(config)
        data["sealed"] = reseal(data["sealed"], *previous)
        changed.append({"b_id": sid, "b_config": json.dumps(data)})
    if changed:
        conn.execute(
            CC.update().where(CC.c.id == sa.bindparam("b_id")).values(config=sa.bindparam("b_config")),
            changed,
        )
    return len(changed)
