"""Deliver what is due, a batch of customers per run: claim, check, send through the channels, record.

Record before you send: the delivery rows exist (`pending`) before any channel is called. A claim is a
conditional update (`pending -> sending` with a claim token; `FOR UPDATE SKIP LOCKED` on PostgreSQL)
so two workers never send the same delivery; only the claimer may finish a row. A run (`deliver_due`)
claims whole customers, up to 100, in one statement (on PostgreSQL each under a transaction-scoped
advisory lock that concurrent runs skip; SQLite's BEGIN IMMEDIATE serialises claims), so deliveries of
one customer due together go out as one message per recipient (a digest), each keeping its own row.
It loads their notices and contexts set-based, then sends 25 customers at a time, a chunk of messages
per channel per transaction: one heartbeat, one lock, one staleness check, the sends (a channel's
`send_many`: one SMTP connection, a pool of SendGrid requests), the outcomes in a few statements.

What is promised, and how (the README's "Delivery guarantees"):

- Portal: exactly once. The inbox row and the delivery's outcome are written in one transaction.
- Other channels (email, webhook, Slack, Teams): at least once, with every possible duplicate known.
  Before the provider is called the rows of the chunk's messages are marked `send_started_at` and the
  claim beats (committed); the sends then run inside one transaction that locks those rows against the
  stale-claim sweep, re-checks that the notices still apply (lifecycle.inflight), calls the provider
  (each send bounded by LIFECYCLE_SEND_DEADLINE) and records the outcomes. An outcome that is lost (a timeout after the request was written, a reset, the worker
  dying mid-send) is `unknown`, never `pending`; lifecycle.recovery and the SendGrid webhook settle it.

Retries: a transient error puts the row back to `pending` with a later `next_attempt_at` (backoff from
LIFECYCLE_RETRY_BASE_SECONDS, doubling, capped at LIFECYCLE_RETRY_MAX_BACKOFF_SECONDS, or the
provider's Retry-After) for LIFECYCLE_RETRY_FOR_HOURS after the first attempt; then, or on a permanent
error, it fails, loudly: an ERROR log line, an `undelivered` notice to the account rep and to
LIFECYCLE_OPS_EMAIL. The database owns timing and retries: no Celery countdowns.

Nothing here names a channel: each channel says what a send means (`success`), whether it writes in
the recording transaction (`transactional`), whether several notices make one message (`digest`) and
whether it goes through a customer's subscription (`subscribed`: its outcomes are counted on the
subscription, lifecycle.channels.subscriptions, which turns one off that keeps failing).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlmodel import Session, col

from lifecycle import inflight, liveness, policy
from lifecycle.channels import subscriptions
from lifecycle.channels.base import Batch, Item
from lifecycle.channels.registry import CHANNELS, STAFF_CHANNEL
from lifecycle.config import get_settings
from lifecycle.content import notice_contexts
from lifecycle.db import session_scope
from lifecycle.errors import DeliveryError
from lifecycle.models import (
    Contact,
    Customer,
    CustomerChannel,
    Delivery,
    DeliveryStatus,
    Notice,
    NoticeKind,
    NoticeStatus,
    table_of,
)
from lifecycle.recovery import recover
from lifecycle.settle import settle_notices

log = logging.getLogger(__name__)
D = table_of(Delivery)
N = table_of(Notice)


@dataclass
class DeliverResult:
    claimed: int = 0
    sent: int = 0
    retried: int = 0
    failed: int = 0
    unknown: int = 0
    cancelled: int = 0
    deferred: int = 0
    recovered: int = 0
    messages: int = 0
    by_channel: dict = field(default_factory=lambda: defaultdict(int))

    def add(self, other: DeliverResult) -> None:
        for name in (
            "claimed",
            "sent",
            "retried",
            "failed",
            "unknown",
            "cancelled",
            "deferred",
            "recovered",
            "messages",
        ):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for k, v in other.by_channel.items():
            self.by_channel[k] += v

    def as_dict(self) -> dict:
        return {**self.__dict__, "by_channel": dict(self.by_channel)}


def backoff(attempts: int) -> dt.timedelta:
    settings = get_settings()
    seconds = settings.retry_base_seconds * 2 ** min(max(attempts - 1, 0), 40)
    return dt.timedelta(seconds=min(seconds, settings.retry_max_backoff_seconds))


# ------------------------------------------------------------------------------------------ claiming


def _take(session: Session, ids: sa.Select, token: str, at: dt.datetime) -> list[int]:
    """Claim the pending deliveries among `ids` (a SELECT of delivery ids) for `token`: the ids taken."""
    return list(
        session.connection()
        .execute(
            D.update()
            # `status || ''`: the ids' primary key finds the rows. Without statistics SQLite searched
            # ix_delivery_status_next instead, every pending delivery of the fleet, once per claim.
            .where(D.c.id.in_(ids.scalar_subquery()), D.c.status.concat("") == DeliveryStatus.PENDING.value)
            .values(
                status=DeliveryStatus.SENDING,
                claim_token=token,
                claimed_at=at,
                claimed_by=liveness.owner(),
                heartbeat_at=at,
                send_started_at=None,
                first_attempt_at=sa.func.coalesce(D.c.first_attempt_at, at),
                attempts=D.c.attempts + 1,
                updated_at=at,
            )
            .returning(D.c.id)
        )
        .scalars()
        .all()
    )


def claim(session: Session, customer_id: int, at: dt.datetime, token: str, limit: int = 500) -> list[int]:
    due = (
        sa.select(D.c.id)
        .where(
            D.c.customer_id == customer_id, D.c.status == DeliveryStatus.PENDING, D.c.next_attempt_at <= at
        )
        .order_by(D.c.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return _take(session, due, token, at)


def _heartbeat(session: Session, token: str, starting: list[int], when: dt.datetime) -> set[int]:
    """Extend the claim (every row still ours) and mark `starting` as about to be sent. Returns the
    rows of `starting` still ours: a row the sweep took back is not sent."""
    started = (
        sa.case((D.c.id.in_(starting), when), else_=D.c.send_started_at) if starting else D.c.send_started_at
    )
    rows = (
        session.connection()
        .execute(
            D.update()
            .where(D.c.claim_token == token, D.c.status == DeliveryStatus.SENDING)
            .values(heartbeat_at=when, send_started_at=started)
            .returning(D.c.id)
        )
        .scalars()
        .all()
    )
    return set(rows) & set(starting)


def _lock_mine(session: Session, token: str, ids: list[int]) -> set[int]:
    """Lock the rows of a message for the send (the sweep skips locked rows); those still ours."""
    return set(
        session.connection()
        .execute(
            sa.select(D.c.id)
            .where(D.c.id.in_(ids), D.c.claim_token == token, D.c.status == DeliveryStatus.SENDING)
            .with_for_update(skip_locked=True)
        )
        .scalars()
        .all()
    )


# ------------------------------------------------------------------------------------------ sending


def _batches(session: Session, delivery_ids: list[int], at: dt.datetime) -> list[Batch]:
    rows = session.exec(  # type: ignore[call-overload]  # sqlmodel's exec() runs any select; its overloads know only its own
        sa.select(Delivery, Notice, Customer, Contact, CustomerChannel)
        .join(Notice, col(Notice.id) == Delivery.notice_id)
        .join(Customer, col(Customer.id) == Delivery.customer_id)
        .join(Contact, col(Contact.id) == Delivery.contact_id, isouter=True)
        .join(CustomerChannel, col(CustomerChannel.id) == Delivery.subscription_id, isouter=True)
        .where(col(Delivery.id).in_(delivery_ids))
        .order_by(col(Notice.due_at), col(Notice.id))
    ).all()
    contexts = notice_contexts(session, sorted({n.id for _, n, _, _, _ in rows}), at)
    batches: dict[tuple, Batch] = {}
    shared: dict = {}
    for delivery, notice, customer, contact, sub in rows:
        key: tuple = (delivery.channel, delivery.recipient.lower(), notice.audience)
        if delivery.channel not in CHANNELS or not CHANNELS[delivery.channel].digest:
            key += (delivery.id,)  # a message per delivery
        batch = batches.get(key)
        if batch is None:
            batch = batches[key] = Batch(
                channel=delivery.channel,
                recipient=delivery.recipient,
                recipient_name=contact.name if contact else None,
                audience=notice.audience,
                customer={
                    "id": customer.id,
                    "key": customer.key,
                    "name": customer.name,
                    "locale": customer.locale,
                    "timezone": customer.timezone,
                    "account_rep": customer.account_rep,
                },
                cache=shared,
                subscription={
                    "id": sub.id,
                    "kind": sub.kind,
                    "label": sub.label,
                    "config": json.loads(sub.config)["sealed"],
                }
                if sub is not None
                else None,
            )
        batch.items.append(
            Item(delivery_id=delivery.id, notice_id=notice.id, kind=notice.kind, context=contexts[notice.id])
        )
    return list(batches.values())


def _record_success(
    session: Session, done: list[tuple[Batch, str | None]], token: str, at: dt.datetime
) -> int:
    """Record the messages that went out, in one statement per status (an executemany)."""
    by_status: dict[str, list[dict]] = defaultdict(list)
    for batch, provider_id in done:
        status = CHANNELS[batch.channel].success
        by_status[status] += [{"b_id": i, "b_provider": provider_id} for i in batch.delivery_ids]
    total = 0
    for status, params in by_status.items():
        res = session.connection().execute(
            D.update()
            .where(
                D.c.id == sa.bindparam("b_id"),
                D.c.claim_token == token,
                sa.or_(D.c.status == DeliveryStatus.SENDING, D.c.status == DeliveryStatus.UNKNOWN),
            )
            .values(
                status=status, provider_id=sa.bindparam("b_provider"), sent_at=at, error=None, updated_at=at
            ),
            params,
        )
        # The rows are locked by this transaction (PostgreSQL) or by SQLite's write lock: all are ours.
        total += res.rowcount if res.rowcount is not None and res.rowcount >= 0 else len(params)
    return total


def _record_failure(
    session: Session, batch: Batch, token: str, err: DeliveryError, at: dt.datetime, result: DeliverResult
) -> None:
    conn = session.connection()
    mine = sa.and_(
        D.c.id.in_(batch.delivery_ids), D.c.claim_token == token, D.c.status == DeliveryStatus.SENDING
    )
    rows = conn.execute(sa.select(D.c.id, D.c.attempts, D.c.first_attempt_at).where(mine)).all()
    if not rows:
        return
    message = err.message[:2000]
    if err.unknown:
        waits = [
            {"b_id": r.id, "b_next": at + CHANNELS[batch.channel].unknown_wait(r.attempts)} for r in rows
        ]
        conn.execute(
            D.update()
            .where(D.c.id == sa.bindparam("b_id"), D.c.status == DeliveryStatus.SENDING)
            .values(
                status=DeliveryStatus.UNKNOWN,
                next_attempt_at=sa.bindparam("b_next"),
                error=message,
                claimed_by=None,
                updated_at=at,
            ),
            waits,
        )
        result.unknown += len(rows)
        if batch.subscription:
            subscriptions.failed(session, batch.subscription["id"], message, at, for_good=False)
        return
    settings = get_settings()
    span = dt.timedelta(hours=settings.retry_for_hours)
    retry, give_up = [], []
    for r in rows:
        end = (r.first_attempt_at or at) + span
        out_of_attempts = settings.max_attempts is not None and r.attempts >= settings.max_attempts
        if err.permanent or at >= end or out_of_attempts:
            give_up.append(r)
            continue
        wait = backoff(r.attempts)
        if err.retry_after is not None:
            wait = max(wait, dt.timedelta(seconds=err.retry_after))
        retry.append({"b_id": r.id, "b_next": min(at + wait, end)})  # the last try at the end of the span
    if retry:
        conn.execute(
            D.update()
            .where(D.c.id == sa.bindparam("b_id"), D.c.status == DeliveryStatus.SENDING)
            .values(
                status=DeliveryStatus.PENDING,
                next_attempt_at=sa.bindparam("b_next"),
                error=message,
                claim_token=None,
                claimed_by=None,
                updated_at=at,
            ),
            retry,
        )
        result.retried += len(retry)
    if give_up:
        conn.execute(
            D.update()
            .where(D.c.id == sa.bindparam("b_id"), D.c.status == DeliveryStatus.SENDING)
            .values(
                status=DeliveryStatus.FAILED, error=sa.bindparam("b_error"), claimed_by=None, updated_at=at
            ),
            [
                {
                    "b_id": r.id,
                    "b_error": (
                        message
                        if err.permanent
                        else (
                            f"gave up after {r.attempts} attempts over {_span_text(at - (r.first_attempt_at or at))}: "
                            f"{message}"
                        )
                    )[:2000],
                }
                for r in give_up
            ],
        )
        result.failed += len(give_up)
        alert_give_up(session, [r.id for r in give_up], at)
    if batch.subscription:
        subscriptions.failed(session, batch.subscription["id"], message, at, for_good=bool(give_up))


def _span_text(span: dt.timedelta) -> str:
    hours = span.total_seconds() / 3600
    return f"{hours:.1f} h" if hours >= 1 else f"{span.total_seconds() / 60:.0f} min"


def alert_give_up(session: Session, delivery_ids: list[int], at: dt.datetime) -> int:
    """Deliveries that failed for good are loud: an ERROR log line each, and an `undelivered` notice
    (released at once) to the account rep and the operator (LIFECYCLE_OPS_EMAIL). A rep's own message
    is reported to the operator only, and an `undelivered` notice that fails is only logged. Returns
    how many alert messages were queued."""
    from lifecycle.scheduler import insert_ignore

    if not delivery_ids:
        return 0
    conn = session.connection()
    C = table_of(Customer)
    ops = get_settings().ops_email
    rows = conn.execute(
        sa.select(
            D.c.id,
            D.c.channel,
            D.c.recipient,
            D.c.attempts,
            D.c.error,
            N.c.customer_id,
            N.c.milestone_id,
            N.c.release_id,
            N.c.revision,
            N.c.milestone_date,
            N.c.kind,
            N.c.audience,
            C.c.key,
            C.c.account_rep,
        )
        .join(N, N.c.id == D.c.notice_id)
        .join(C, C.c.id == N.c.customer_id)
        .where(D.c.id.in_(delivery_ids))
    ).all()
    queued = 0
    for d in rows:
        log.error(
            "delivery %s given up: %s to %s for customer %s (%s notice): %s",
            d.id,
            d.channel,
            d.recipient,
            d.key,
            d.kind,
            d.error,
        )
        if d.kind == NoticeKind.UNDELIVERED:
            continue
        recipients = ([d.account_rep] if d.audience == "customer" else []) + ([ops] if ops else [])
        if not recipients:
            continue
        notice_id = conn.execute(
            insert_ignore(session, N)
            .values(
                key=policy.notice_key(NoticeKind.UNDELIVERED, d.customer_id, d.milestone_id, str(d.id)),
                customer_id=d.customer_id,
                milestone_id=d.milestone_id,
                release_id=d.release_id,
                kind=NoticeKind.UNDELIVERED,
                audience="rep",
                slot=str(d.id),
                revision=d.revision,
                milestone_date=d.milestone_date,
                detail=f"{d.recipient}: {d.error}"[:2000],
                due_at=at,
                status=NoticeStatus.RELEASED,
                released_at=at,
                created_at=at,
            )
            .returning(N.c.id)
        ).scalar()
        if notice_id is None:
            continue
        for recipient in dict.fromkeys(recipients):
            queued += len(
                conn.execute(
                    insert_ignore(session, D)
                    .values(
                        notice_id=notice_id,
                        customer_id=d.customer_id,
                        channel=STAFF_CHANNEL,
                        recipient=recipient,
                        status=DeliveryStatus.PENDING,
                        attempts=0,
                        next_attempt_at=at,
                        created_at=at,
                        updated_at=at,
                    )
                    .returning(D.c.id)
                ).all()
            )
    return queued


# ------------------------------------------------------------------------------------------ runs

# Customers claimed by one delivery run; customers, and messages of one channel, sent per recording
# transaction.
CLAIM_CUSTOMERS = 100
CHUNK_MESSAGES = 50
CHUNK_CUSTOMERS = 25
LOCK_CLAIM = 7_242_004  # (hash of schema and this, customer id): a customer is claimed by one run at a time


def claim_due(
    session: Session,
    at: dt.datetime,
    token: str,
    *,
    customers: int = CLAIM_CUSTOMERS,
    customer_ids: list[int] | None = None,
) -> list[int]:
    """Claim, in one statement, every due delivery of up to `customers` customers (of `customer_ids`
    when given): whole customers, so that each recipient gets one digest. On PostgreSQL the customers
    are chosen first, each under a transaction-scoped advisory lock that concurrent runs skip (and the
    rows are taken `FOR UPDATE SKIP LOCKED`); SQLite's `BEGIN IMMEDIATE` (lifecycle.db) serialises the
    claims."""
    # Given customers: `status || ''`, so that their customer_id index finds their few rows. Without
    # statistics SQLite searched ix_delivery_status_next, every pending delivery of the fleet (88 ms a
    # claim at the start of a half-fleet catch-up, one claim per hundred customers).
    status = D.c.status.concat("") if customer_ids is not None else D.c.status
    due = [status == DeliveryStatus.PENDING.value, D.c.next_attempt_at <= at]
    window = sa.select(D.c.customer_id).where(*due)
    if customer_ids is not None:
        window = window.where(D.c.customer_id.in_(customer_ids))
    pg = session.get_bind().dialect.name == "postgresql"
    window = window.distinct().order_by(D.c.customer_id).limit(customers * 4 if pg else customers)
    if pg:
        # Chosen first (a statement of its own: inside the claim, the planner may run it per row).
        w = window.subquery()
        who = (
            session.connection()
            .execute(
                sa.select(w.c.customer_id)
                # The key names the schema too: advisory locks are per database, and schemas of one
                # database (test runs, benches) must not take each other's customers.
                .where(
                    sa.func.pg_try_advisory_xact_lock(
                        sa.func.hashtext(sa.func.current_schema() + sa.literal(f":{LOCK_CLAIM}")),
                        w.c.customer_id,
                    )
                )
                .limit(customers)
            )
            .scalars()
            .all()
        )
        if not who:
            return []
        rows = sa.select(D.c.id).where(*due, D.c.customer_id.in_(who)).with_for_update(skip_locked=True)
    else:
        rows = sa.select(D.c.id).where(*due, D.c.customer_id.in_(window.scalar_subquery()))
    return sorted(_take(session, rows, token, at))


def deliver_due(
    at: dt.datetime, *, customers: int = CLAIM_CUSTOMERS, customer_ids: list[int] | None = None
) -> DeliverResult:
    """One delivery run: claim the due deliveries of up to `customers` customers (of `customer_ids`
    when given) in one statement, load them set-based, send them message by message in chunks that are
    recorded a few statements at a time. Safe to run anywhere, any number of times, concurrently."""
    from lifecycle.recovery import expire_claims

    result = DeliverResult()
    token = uuid.uuid4().hex
    with session_scope() as session:
        result.recovered = expire_claims(session, at)
        ids = claim_due(session, at, token, customers=customers, customer_ids=customer_ids)
        if not ids:
            return result
        batches = _batches(session, ids, at)
    result.claimed = len(ids)
    _deliver_claimed(batches, token, at, result)
    return result


def deliver_customer(customer_id: int, at: dt.datetime, *, limit: int = 500) -> DeliverResult:
    """Send everything due for one customer (and their rep). Safe to run anywhere, any number of times."""
    result = DeliverResult()
    token = uuid.uuid4().hex
    with session_scope() as session:
        result.recovered = recover(session, at, customer_id=customer_id)
        ids = claim(session, customer_id, at, token, limit)
        if not ids:
            return result
        batches = _batches(session, ids, at)
    result.claimed = len(ids)
    _deliver_claimed(batches, token, at, result)
    return result


def deliver_all(
    at: dt.datetime,
    customer_ids: list[int],
    *,
    customers: int = CLAIM_CUSTOMERS,
    clock: Callable[[], dt.datetime] | None = None,
) -> DeliverResult:
    """Deliver what is due by `at` for these customers, `customers` at a time (the CLI tick, a Celery
    batch, the embedded worker). Each customer is visited once: a retry due again at once waits for the
    next run. With `clock` (a worker on the real clock), each run sends as of max(`at`, clock()), so a
    long catch-up records when each message really went out."""
    result = DeliverResult()
    for start in range(0, len(customer_ids), customers):
        when = max(at, clock()) if clock is not None else at
        result.add(
            deliver_due(when, customers=customers, customer_ids=customer_ids[start : start + customers])
        )
    return result


def _deliver_claimed(batches: list[Batch], token: str, at: dt.datetime, result: DeliverResult) -> None:
    started = time.monotonic()

    def now() -> dt.datetime:  # `at`, advanced by the real time this run has taken (heartbeats)
        return at + dt.timedelta(seconds=time.monotonic() - started)

    # A few customers at a time, every channel for them, so the first messages go out at once.
    by_customer: dict[int, list[Batch]] = defaultdict(list)
    for batch in batches:
        by_customer[batch.customer["id"]].append(batch)
    customers = list(by_customer)
    for start in range(0, len(customers), CHUNK_CUSTOMERS):
        by_channel: dict[str, list[Batch]] = defaultdict(list)
        for customer_id in customers[start : start + CHUNK_CUSTOMERS]:
            for batch in by_customer[customer_id]:
                by_channel[batch.channel].append(batch)
        for name in CHANNELS:  # the registry's order: the portal first
            group = by_channel.pop(name, [])
            for first in range(0, len(group), CHUNK_MESSAGES):
                _deliver_batch(group[first : first + CHUNK_MESSAGES], token, at, now, result)
        for name in by_channel:  # a channel no longer registered: left to the sweep
            log.error("deliveries for unknown channel %s left claimed", name)


def _deliver_batch(
    batches: list[Batch], token: str, at: dt.datetime, now: Callable[[], dt.datetime], result: DeliverResult
) -> None:
    """Send a chunk of messages of one channel, and record them. For a channel that is not
    transactional the rows are marked `send_started_at` and the claim beats (committed) before any
    provider is called, so a worker dying during the sends leaves them `unknown`, never `pending`."""
    channel = CHANNELS[batches[0].channel]
    all_ids = [i for b in batches for i in b.delivery_ids]
    if not channel.transactional:
        with session_scope() as session:
            mine = _heartbeat(session, token, all_ids, now())
        batches = _keep(batches, mine)
        if not batches:
            return
    with session_scope() as session:
        if channel.transactional:
            _heartbeat(session, token, [], now())
        mine = _lock_mine(session, token, [i for b in batches for i in b.delivery_ids])
        batches = _keep(batches, mine)
        if not batches:
            return
        all_notices = sorted({i.notice_id for b in batches for i in b.items})
        ready = []
        for batch in batches:
            if inflight.try_lock_shared(session, batch):
                ready.append(batch)
            else:
                result.deferred += inflight.defer(session, batch.delivery_ids, token, at)
        cancelled: dict[str, list[int]] = defaultdict(list)
        stale = inflight.stale(session, [i for b in ready for i in b.delivery_ids]) if ready else {}
        if stale:
            for reason, notice_ids in inflight.cancel(session, stale, token, at).items():
                cancelled[reason] += notice_ids
            result.cancelled += len(stale)
            for batch in ready:
                batch.items = [i for i in batch.items if i.delivery_id not in stale]
            ready = [b for b in ready if b.items]
        if ready:
            _send(session, channel, ready, token, at, result)
        for reason, notice_ids in cancelled.items():
            settle_notices(session, sorted(set(notice_ids)), cancelled_as=inflight.CANCELLED_AS[reason])
        settle_notices(session, all_notices)


def _keep(batches: list[Batch], mine: set[int]) -> list[Batch]:
    for batch in batches:
        batch.items = [i for i in batch.items if i.delivery_id in mine]
    return [b for b in batches if b.items]


def _send(
    session: Session, channel, batches: list[Batch], token: str, at: dt.datetime, result: DeliverResult
) -> None:
    """Send the messages (a channel with `send_many` sends them together: a reused connection, a
    bounded pool of threads), then record every outcome."""
    settings = get_settings()
    outcomes: list[str | None | Exception] = []
    if channel.transactional:
        for batch in batches:
            deadline = time.monotonic() + settings.send_deadline
            try:
                with session.begin_nested():  # a failed write leaves nothing behind
                    outcomes.append(channel.send(batch, at=at, session=session, deadline=deadline))
            except Exception as exc:  # noqa: BLE001 - recorded below
                outcomes.append(exc)
    elif hasattr(channel, "send_many"):
        outcomes = channel.send_many(batches, at=at, session=session)
    else:
        for batch in batches:
            deadline = time.monotonic() + settings.send_deadline
            try:
                outcomes.append(channel.send(batch, at=at, session=session, deadline=deadline))
            except Exception as exc:  # noqa: BLE001 - recorded below
                outcomes.append(exc)
    done = []
    for batch, outcome in zip(batches, outcomes, strict=True):
        if isinstance(outcome, Exception):
            err = outcome
            if not isinstance(err, DeliveryError):  # a bug or an unexpected answer: retry later
                log.error("delivery via %s to %s crashed", batch.channel, batch.recipient, exc_info=err)
                err = DeliveryError(f"{type(err).__name__}: {err}")
            else:
                log.warning("delivery via %s to %s failed: %s", batch.channel, batch.recipient, err.message)
            _record_failure(session, batch, token, err, at, result)
            continue
        done.append((batch, outcome))
    if not done:
        return
    result.sent += _record_success(session, done, token, at)
    for batch, _ in done:
        if batch.subscription:
            subscriptions.succeeded(session, batch.subscription["id"], at)
        result.messages += 1
        result.by_channel[batch.channel] += len(batch.items)
