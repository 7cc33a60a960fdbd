"""Deliver what is due for one customer: claim, send through the channel, record the outcome.

Record before you send: the delivery rows exist (`pending`) before any channel is called. A claim is a
conditional update (`pending -> sending` with a claim token; `FOR UPDATE SKIP LOCKED` on PostgreSQL)
so two workers never send the same delivery; only the claimer may finish a row. Deliveries of one
customer due together go out as one message per recipient (a digest), each keeping its own row.

A transient channel error puts the row back to `pending` with a later `next_attempt_at` (exponential
backoff, or the provider's Retry-After), up to `LIFECYCLE_MAX_ATTEMPTS`; a permanent one fails it at
once. The database owns timing and retries: no Celery countdowns.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections import defaultdict
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlmodel import Session

from lifecycle.channels.base import Batch, DeliveryError, Item
from lifecycle.channels.registry import CHANNELS
from lifecycle.config import get_settings
from lifecycle.content import notice_contexts
from lifecycle.db import session_scope
from lifecycle.models import (
    DELIVERED_STATUSES,
    Contact,
    Customer,
    Delivery,
    DeliveryStatus,
    Notice,
    NoticeStatus,
)

log = logging.getLogger(__name__)
D = Delivery.__table__
N = Notice.__table__
MAX_BACKOFF = dt.timedelta(hours=6)


@dataclass
class DeliverResult:
    claimed: int = 0
    sent: int = 0
    retried: int = 0
    failed: int = 0
    messages: int = 0
    by_channel: dict = field(default_factory=lambda: defaultdict(int))

    def add(self, other: DeliverResult) -> None:
        self.claimed += other.claimed
        self.sent += other.sent
        self.retried += other.retried
        self.failed += other.failed
        self.messages += other.messages
        for k, v in other.by_channel.items():
            self.by_channel[k] += v

    def as_dict(self) -> dict:
        return {**self.__dict__, "by_channel": dict(self.by_channel)}


def backoff(attempts: int) -> dt.timedelta:
    return min(dt.timedelta(minutes=1) * 2 ** max(attempts - 1, 0), MAX_BACKOFF)


def claim(session: Session, customer_id: int, at: dt.datetime, token: str, limit: int = 500) -> list[int]:
    due = (sa.select(D.c.id)
           .where(D.c.customer_id == customer_id, D.c.status == DeliveryStatus.PENDING, D.c.next_attempt_at <= at)
           .order_by(D.c.id).limit(limit).with_for_update(skip_locked=True))
    return list(session.connection().execute(
        D.update().where(D.c.id.in_(due.scalar_subquery()), D.c.status == DeliveryStatus.PENDING)
        .values(status=DeliveryStatus.SENDING, claim_token=token, claimed_at=at, attempts=D.c.attempts + 1,
                updated_at=at)
        .returning(D.c.id)
    ).scalars().all())


def _batches(session: Session, delivery_ids: list[int], at: dt.datetime) -> list[Batch]:
    rows = session.exec(
        sa.select(Delivery, Notice, Customer, Contact)
        .join(Notice, Notice.id == Delivery.notice_id)
        .join(Customer, Customer.id == Delivery.customer_id)
        .join(Contact, Contact.id == Delivery.contact_id, isouter=True)
        .where(Delivery.id.in_(delivery_ids)).order_by(Notice.due_at, Notice.id)
    ).all()
    contexts = notice_contexts(session, sorted({n.id for _, n, _, _ in rows}), at)
    batches: dict[tuple, Batch] = {}
    shared: dict = {}
    for delivery, notice, customer, contact in rows:
        key = (delivery.channel, delivery.recipient.lower(), notice.audience)
        batch = batches.get(key)
        if batch is None:
            batch = batches[key] = Batch(
                channel=delivery.channel, recipient=delivery.recipient,
                recipient_name=contact.name if contact else None, audience=notice.audience,
                customer={"id": customer.id, "key": customer.key, "name": customer.name,
                          "locale": customer.locale, "timezone": customer.timezone,
                          "account_rep": customer.account_rep}, cache=shared)
        batch.items.append(Item(delivery_id=delivery.id, notice_id=notice.id, kind=notice.kind,
                                context=contexts[notice.id]))
    return list(batches.values())


def _record_success(session: Session, batch: Batch, token: str, provider_id: str | None, at: dt.datetime) -> int:
    status = DeliveryStatus.DELIVERED if batch.channel == "portal" else DeliveryStatus.SENT
    res = session.connection().execute(
        D.update().where(D.c.id.in_(batch.delivery_ids), D.c.claim_token == token,
                         D.c.status == DeliveryStatus.SENDING)
        .values(status=status, provider_id=provider_id, sent_at=at, error=None, updated_at=at))
    return res.rowcount or 0


def _record_failure(session: Session, batch: Batch, token: str, err: DeliveryError, at: dt.datetime) -> tuple[int, int]:
    """(retried, failed)."""
    max_attempts = get_settings().max_attempts
    mine = sa.and_(D.c.id.in_(batch.delivery_ids), D.c.claim_token == token, D.c.status == DeliveryStatus.SENDING)
    conn = session.connection()
    failed = 0
    if err.permanent:
        failed = conn.execute(D.update().where(mine).values(
            status=DeliveryStatus.FAILED, error=err.message[:2000], updated_at=at)).rowcount or 0
        return 0, failed
    failed = conn.execute(D.update().where(mine, D.c.attempts >= max_attempts).values(
        status=DeliveryStatus.FAILED, error=f"gave up after {max_attempts} attempts: {err.message}"[:2000],
        updated_at=at)).rowcount or 0
    retried = 0
    for attempts in {a for (a,) in conn.execute(sa.select(D.c.attempts).where(mine)).all()}:
        wait = backoff(attempts)
        if err.retry_after is not None:
            wait = max(wait, dt.timedelta(seconds=err.retry_after))
        retried += conn.execute(D.update().where(mine, D.c.attempts == attempts).values(
            status=DeliveryStatus.PENDING, next_attempt_at=at + wait, error=err.message[:2000],
            claim_token=None, updated_at=at)).rowcount or 0
    return retried, failed


def settle_notices(session: Session, notice_ids: list[int]) -> None:
    """Recompute whether each notice was given, after its deliveries changed (a send, a failure, a
    webhook's bounce): `sent` while one delivery is sent or delivered (sent_at = the earliest), back to
    `released` while one is still pending, `failed` when none is left. A notice counts as given when at
    least one channel delivered it."""
    if not notice_ids:
        return
    ok = [s.value for s in DELIVERED_STATUSES]
    open_ = [DeliveryStatus.PENDING.value, DeliveryStatus.SENDING.value]
    first_ok = (sa.select(sa.func.min(D.c.sent_at)).where(D.c.notice_id == N.c.id, D.c.status.in_(ok))
                .scalar_subquery())
    any_ok = sa.exists().where(D.c.notice_id == N.c.id, D.c.status.in_(ok))
    any_open = sa.exists().where(D.c.notice_id == N.c.id, D.c.status.in_(open_))
    mine = sa.and_(N.c.id.in_(notice_ids),
                   N.c.status.in_([NoticeStatus.RELEASED, NoticeStatus.SENT, NoticeStatus.FAILED]))
    conn = session.connection()
    conn.execute(N.update().where(mine, any_ok)
                 .values(status=NoticeStatus.SENT, sent_at=sa.func.coalesce(first_ok, N.c.sent_at)))
    conn.execute(N.update().where(mine, ~any_ok, any_open).values(status=NoticeStatus.RELEASED, sent_at=None))
    conn.execute(N.update().where(mine, ~any_ok, ~any_open)
                 .values(status=NoticeStatus.FAILED, sent_at=None, status_reason="every-channel-failed"))


def deliver_customer(customer_id: int, at: dt.datetime, *, limit: int = 500) -> DeliverResult:
    """Send everything due for one customer (and their rep). Safe to run anywhere, any number of times."""
    result = DeliverResult()
    token = uuid.uuid4().hex
    with session_scope() as session:
        ids = claim(session, customer_id, at, token, limit)
        if not ids:
            return result
        batches = _batches(session, ids, at)
    result.claimed = len(ids)
    for batch in batches:
        channel = CHANNELS[batch.channel]
        notice_ids = [i.notice_id for i in batch.items]
        try:
            if channel.transactional:
                with session_scope() as session:
                    provider_id = channel.send(batch, at=at, session=session)
                    result.sent += _record_success(session, batch, token, provider_id, at)
                    settle_notices(session, notice_ids)
            else:
                provider_id = channel.send(batch, at=at)
                with session_scope() as session:
                    result.sent += _record_success(session, batch, token, provider_id, at)
                    settle_notices(session, notice_ids)
            result.messages += 1
            result.by_channel[batch.channel] += len(batch.items)
        except DeliveryError as err:
            log.warning("delivery via %s to %s failed: %s", batch.channel, batch.recipient, err.message)
            with session_scope() as session:
                retried, failed = _record_failure(session, batch, token, err, at)
                settle_notices(session, notice_ids)
            result.retried += retried
            result.failed += failed
        except Exception as exc:  # a bug or an unexpected provider answer: retry later, keep going
            log.exception("delivery via %s to %s crashed", batch.channel, batch.recipient)
            with session_scope() as session:
                retried, failed = _record_failure(
                    session, batch, token, DeliveryError(f"{type(exc).__name__}: {exc}"), at)
                settle_notices(session, notice_ids)
            result.retried += retried
            result.failed += failed
    return result
