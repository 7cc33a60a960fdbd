"""Deliver what is due for one customer: claim, check, send through the channel, record the outcome.

Record before you send: the delivery rows exist (`pending`) before any channel is called. A claim is a
conditional update (`pending -> sending` with a claim token; `FOR UPDATE SKIP LOCKED` on PostgreSQL)
so two workers never send the same delivery; only the claimer may finish a row. Deliveries of one
customer due together go out as one message per recipient (a digest), each keeping its own row.

What is promised, and how (the README's "Delivery guarantees"):

- Portal: exactly once. The inbox row and the delivery's outcome are written in one transaction.
- Email: at least once, with every possible duplicate known. Before the provider is called the rows of
  the message are marked `send_started_at` (committed); the send then runs inside one transaction that
  locks those rows against the stale-claim sweep, re-checks that the notice still applies, calls the
  provider (bounded by LIFECYCLE_SEND_DEADLINE) and records the outcome. An outcome that is lost (a
  timeout after the request was written, a reset, the worker dying mid-send) is `unknown`, never
  `pending`: the channel's reconciliation settles it (SendGrid's `processed` event, the file
  backend's file) or, after the window, it is sent again with `possible_duplicate` set.

Claims: a claim names its process (`claimed_by`, lifecycle.liveness) and beats (`heartbeat_at`) before
each message. `recover` takes back a claim whose process is provably dead (on its own host), or whose
heartbeat is older than the claim timeout (two send deadlines and a margin, so never a live one): rows
whose send had not started, and every portal row, go back to `pending`; email rows whose send had
started become `unknown`.

Changes in flight: a withdrawal, a move or an agreement cancels the affected pending deliveries in its
own transaction (`cancel_in_flight`), and the send re-checks the notice under shared advisory locks
that those changes take exclusively (PostgreSQL; on SQLite every write transaction is serialised), so
nothing about a withdrawn milestone, an old date or an agreed release is sent once the change committed.

Retries: a transient error puts the row back to `pending` with a later `next_attempt_at` (backoff from
LIFECYCLE_RETRY_BASE_SECONDS, doubling, capped at LIFECYCLE_RETRY_MAX_BACKOFF_SECONDS, or the
provider's Retry-After) for LIFECYCLE_RETRY_FOR_HOURS after the first attempt; then, or on a permanent
error, it fails, loudly: an ERROR log line, an `undelivered` notice to the account rep and to
LIFECYCLE_OPS_EMAIL. The database owns timing and retries: no Celery countdowns.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlmodel import Session

from lifecycle import liveness
from lifecycle.channels.base import Batch, DeliveryError, Item
from lifecycle.channels.registry import CHANNELS
from lifecycle.config import get_settings
from lifecycle.content import notice_contexts
from lifecycle.db import session_scope
from lifecycle.models import (
    AGREED_STATUSES,
    DELIVERED_STATUSES,
    FAILED_STATUSES,
    OPEN_STATUSES,
    Agreement,
    Contact,
    Customer,
    Delivery,
    DeliveryStatus,
    Milestone,
    MilestoneStatus,
    Notice,
    NoticeKind,
    NoticeStatus,
)

log = logging.getLogger(__name__)
D = Delivery.__table__
N = Notice.__table__
M = Milestone.__table__
A = Agreement.__table__
K = Contact.__table__

# Advisory lock namespaces (PostgreSQL's two-key form): senders share them, changes take them alone.
LOCK_MILESTONE = 7_242_002  # (namespace, milestone id): withdrawals and moves
LOCK_CUSTOMER = 7_242_003  # (namespace, customer id): agreements

# Why a delivery is cancelled -> what its notice becomes when nothing else delivered it.
CANCELLED_AS = {
    "withdrawn": (NoticeStatus.CANCELLED, "withdrawn"),
    "moved": (NoticeStatus.CANCELLED, "moved"),
    "reinstated": (NoticeStatus.CANCELLED, "reinstated"),
    "agreement": (NoticeStatus.SKIPPED, "agreement"),  # as the scheduler skips a due reminder
    "cancelled": (NoticeStatus.CANCELLED, "cancelled"),
}
CANCEL_TEXT = {
    "withdrawn": "the milestone was withdrawn",
    "moved": "the milestone moved: this reminder quotes the old date",
    "reinstated": "the milestone was reinstated",
    "agreement": "the customer agreed an upgrade: routine reminders stop",
    "cancelled": "the notice was cancelled",
}
# Notice kinds that speak of a milestone as current (a withdrawal makes them wrong).
CURRENT_KINDS = (NoticeKind.STAGE, NoticeKind.CHANGED, NoticeKind.REINSTATED, NoticeKind.ESCALATION)


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
        for name in ("claimed", "sent", "retried", "failed", "unknown", "cancelled", "deferred", "recovered",
                     "messages"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for k, v in other.by_channel.items():
            self.by_channel[k] += v

    def as_dict(self) -> dict:
        return {**self.__dict__, "by_channel": dict(self.by_channel)}


def backoff(attempts: int) -> dt.timedelta:
    settings = get_settings()
    seconds = settings.retry_base_seconds * 2 ** min(max(attempts - 1, 0), 40)
    return dt.timedelta(seconds=min(seconds, settings.retry_max_backoff_seconds))


def _is_pg(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


# ------------------------------------------------------------------------------------------ claiming


def claim(session: Session, customer_id: int, at: dt.datetime, token: str, limit: int = 500) -> list[int]:
    due = (sa.select(D.c.id)
           .where(D.c.customer_id == customer_id, D.c.status == DeliveryStatus.PENDING, D.c.next_attempt_at <= at)
           .order_by(D.c.id).limit(limit).with_for_update(skip_locked=True))
    return list(session.connection().execute(
        D.update().where(D.c.id.in_(due.scalar_subquery()), D.c.status == DeliveryStatus.PENDING)
        .values(status=DeliveryStatus.SENDING, claim_token=token, claimed_at=at, claimed_by=liveness.owner(),
                heartbeat_at=at, send_started_at=None, first_attempt_at=sa.func.coalesce(D.c.first_attempt_at, at),
                attempts=D.c.attempts + 1, updated_at=at)
        .returning(D.c.id)
    ).scalars().all())


def _heartbeat(session: Session, token: str, starting: list[int], when: dt.datetime) -> set[int]:
    """Extend the claim (every row still ours) and mark `starting` as about to be sent. Returns the
    rows of `starting` still ours: a row the sweep took back is not sent."""
    started = sa.case((D.c.id.in_(starting), when), else_=D.c.send_started_at) if starting else D.c.send_started_at
    rows = session.connection().execute(
        D.update().where(D.c.claim_token == token, D.c.status == DeliveryStatus.SENDING)
        .values(heartbeat_at=when, send_started_at=started).returning(D.c.id)).scalars().all()
    return set(rows) & set(starting)


def _lock_mine(session: Session, token: str, ids: list[int]) -> set[int]:
    """Lock the rows of a message for the send (the sweep skips locked rows); those still ours."""
    return set(session.connection().execute(
        sa.select(D.c.id).where(D.c.id.in_(ids), D.c.claim_token == token, D.c.status == DeliveryStatus.SENDING)
        .with_for_update(skip_locked=True)).scalars().all())


# -------------------------------------------------------------------------------------- recovering


def recover(session: Session, at: dt.datetime, *, customer_id: int | None = None) -> int:
    """Take back dead claims, settle or release unknown sends whose window is over, and revive the
    cancelled deliveries of a notice released again. Returns how many deliveries changed. The tick
    runs it for everyone; a delivery run only takes back its customer's dead claims (one query when
    there are none), which is what lets a task redelivered after a worker died resume at once."""
    if customer_id is not None:
        return _expire_claims(session, at, customer_id)
    return _expire_claims(session, at, None) + _reconcile_unknown(session, at, None) + _revive(session, at, None)


def _scope(customer_id: int | None) -> list:
    return [D.c.customer_id == customer_id] if customer_id is not None else []


def _expire_claims(session: Session, at: dt.datetime, customer_id: int | None) -> int:
    conn = session.connection()
    sending = [D.c.status == DeliveryStatus.SENDING, *_scope(customer_id)]
    # One row per claim, without locks (locking would make a live claim skip its own rows).
    claims = conn.execute(sa.select(D.c.claim_token, D.c.claimed_by,
                                    sa.func.max(sa.func.coalesce(D.c.heartbeat_at, D.c.claimed_at)).label("beat"))
                          .where(*sending).group_by(D.c.claim_token, D.c.claimed_by)).all()
    cutoff = at - dt.timedelta(seconds=get_settings().claim_timeout)
    dead = [c.claim_token for c in claims
            if (c.beat is not None and _aware(c.beat) < cutoff) or liveness.is_dead(c.claimed_by)]
    if not dead:
        return 0
    rows = conn.execute(sa.select(D.c.id, D.c.channel, D.c.send_started_at, D.c.attempts)
                        .where(*sending, D.c.claim_token.in_(dead)).with_for_update(skip_locked=True)).all()
    if not rows:
        return 0
    back = [r.id for r in rows if CHANNELS[r.channel].transactional or r.send_started_at is None]
    if back:  # nothing can have been sent: a transactional channel rolled back, or no send had started
        conn.execute(D.update().where(D.c.id.in_(back), D.c.status == DeliveryStatus.SENDING).values(
            status=DeliveryStatus.PENDING, next_attempt_at=at, claim_token=None, claimed_by=None, updated_at=at))
    maybe: dict[tuple[str, int], list[int]] = defaultdict(list)
    for r in rows:
        if r.id not in back:
            maybe[(r.channel, r.attempts)].append(r.id)
    for (channel, attempts), ids in maybe.items():
        conn.execute(D.update().where(D.c.id.in_(ids), D.c.status == DeliveryStatus.SENDING).values(
            status=DeliveryStatus.UNKNOWN, claimed_by=None, updated_at=at,
            next_attempt_at=at + CHANNELS[channel].unknown_wait(attempts),
            error="the worker sending it stopped during the send: the outcome is unknown"))
    log.warning("took back %d deliveries of dead or expired claims (%d may have been sent)", len(rows),
                len(rows) - len(back))
    return len(rows)


def _aware(ts: dt.datetime) -> dt.datetime:
    return ts.replace(tzinfo=dt.UTC) if ts.tzinfo is None else ts


def _reconcile_unknown(session: Session, at: dt.datetime, customer_id: int | None) -> int:
    """Unknown sends whose window is over: settled by the channel's lookup when it can tell, else sent
    again, flagged as a possible duplicate."""
    conn = session.connection()
    rows = conn.execute(
        sa.select(D.c.id, D.c.channel, D.c.claim_token, D.c.recipient, D.c.notice_id, D.c.send_started_at,
                  N.c.audience)
        .join(N, N.c.id == D.c.notice_id)
        .where(D.c.status == DeliveryStatus.UNKNOWN, D.c.next_attempt_at <= at, *_scope(customer_id))
        .with_for_update(of=D, skip_locked=True)).all()
    messages: dict[tuple, list] = defaultdict(list)  # the rows of one message share claim and recipient
    for r in rows:
        messages[(r.channel, r.claim_token, r.recipient.lower(), r.audience)].append(r)
    settled: list[int] = []
    for (channel, _token, _recipient, _audience), group in messages.items():
        ids = sorted(r.id for r in group)
        found = CHANNELS[channel].lookup(ids, group[0].recipient)
        unknown = sa.and_(D.c.id.in_(ids), D.c.status == DeliveryStatus.UNKNOWN)
        if isinstance(found, str) and found:
            conn.execute(D.update().where(unknown).values(
                status=DeliveryStatus.SENT, provider_id=found, claim_token=None, error=None, updated_at=at,
                sent_at=sa.func.coalesce(D.c.send_started_at, at)))
            settled += [r.notice_id for r in group]
        elif found is False:  # certainly not sent: an ordinary retry
            conn.execute(D.update().where(unknown).values(
                status=DeliveryStatus.PENDING, next_attempt_at=at, claim_token=None, updated_at=at))
        else:
            conn.execute(D.update().where(unknown).values(
                status=DeliveryStatus.PENDING, next_attempt_at=at, claim_token=None, possible_duplicate=True,
                updated_at=at, error="no confirmation from the provider within the reconciliation window: "
                                     "sent again (possible duplicate)"))
    settle_notices(session, sorted(set(settled)))
    return len(rows)


def _revive(session: Session, at: dt.datetime, customer_id: int | None) -> int:
    """A notice whose deliveries were cancelled (milestone withdrawn or moved) and that the planner
    released again (reinstated, moved back): its deliveries are due again. Such a notice is `released`
    with nothing open or delivered: a cancellation always settles its notice in the same transaction."""
    conn = session.connection()
    live = sa.exists().where(D.c.notice_id == N.c.id,
                             D.c.status.in_([s.value for s in (*OPEN_STATUSES, *DELIVERED_STATUSES)]))
    stuck = sa.select(N.c.id).where(N.c.status == NoticeStatus.RELEASED, ~live)
    deliverable = sa.or_(D.c.contact_id.is_(None),
                         D.c.contact_id.in_(sa.select(K.c.id).where(K.c.undeliverable.is_(False))))
    return len(conn.execute(
        D.update().where(D.c.status == DeliveryStatus.CANCELLED, D.c.notice_id.in_(stuck), deliverable,
                         *_scope(customer_id))
        .values(status=DeliveryStatus.PENDING, next_attempt_at=at, attempts=0, first_attempt_at=None, error=None,
                claim_token=None, updated_at=at).returning(D.c.id)).all())


# ----------------------------------------------------------------------------------- changes in flight


def _lock_exclusive(session: Session, namespace: int, key: int) -> None:
    """Wait for the sends holding this key to finish; sends starting now wait for our commit."""
    if _is_pg(session):
        session.connection().execute(sa.text("SELECT pg_advisory_xact_lock(:ns, :key)"),
                                     {"ns": namespace, "key": key})


def cancel_in_flight(session: Session, *, at: dt.datetime, reason: str, milestone_id: int | None = None,
                     customer_id: int | None = None, release_id: int | None = None) -> int:
    """Cancel the pending deliveries a change makes wrong, in the change's own transaction:

    - `withdrawn` (milestone_id): stage, change and escalation deliveries of the milestone;
    - `moved` (milestone_id): stage deliveries quoting another date than the milestone's current one;
    - `agreement` (customer_id, release_id): routine stage reminders of the release, if the customer's
      agreement stops them.

    Sends in progress about the same milestone (or customer) finish first; later ones re-check and see
    the change. Returns how many deliveries were cancelled."""
    session.flush()  # the change itself is written first (its row locks before ours)
    if reason in ("withdrawn", "moved"):
        _lock_exclusive(session, LOCK_MILESTONE, milestone_id)
        if reason == "withdrawn":
            notices = sa.select(N.c.id).where(N.c.milestone_id == milestone_id, N.c.kind.in_(CURRENT_KINDS))
        else:
            current = sa.select(M.c.date).where(M.c.id == milestone_id).scalar_subquery()
            notices = sa.select(N.c.id).where(N.c.milestone_id == milestone_id, N.c.kind == NoticeKind.STAGE,
                                              N.c.milestone_date != current)
    elif reason == "agreement":
        agreed = session.connection().execute(sa.select(A.c.status).where(
            A.c.customer_id == customer_id, A.c.release_id == release_id)).scalar()
        if agreed not in AGREED_STATUSES:
            return 0
        _lock_exclusive(session, LOCK_CUSTOMER, customer_id)
        notices = sa.select(N.c.id).where(N.c.customer_id == customer_id, N.c.release_id == release_id,
                                          N.c.kind == NoticeKind.STAGE, N.c.audience == "customer")
    else:
        raise ValueError(f"unknown reason {reason!r}")
    cancelled = session.connection().execute(
        D.update().where(D.c.status == DeliveryStatus.PENDING, D.c.notice_id.in_(notices))
        .values(status=DeliveryStatus.CANCELLED, error=f"cancelled: {CANCEL_TEXT[reason]}", claim_token=None,
                updated_at=at)
        .returning(D.c.notice_id)).scalars().all()
    settle_notices(session, sorted(set(cancelled)), cancelled_as=CANCELLED_AS[reason])
    return len(cancelled)


def _try_lock_shared(session: Session, batch: Batch) -> bool:
    """The shared advisory locks a send holds while it checks and sends (PostgreSQL). Never waits: a
    change holding one right now defers the message instead, so no lock cycle can form."""
    if not _is_pg(session):
        return True
    keys = sorted({(LOCK_MILESTONE, i.context["milestone_id"]) for i in batch.items if i.context.get("milestone_id")}
                  | {(LOCK_CUSTOMER, batch.customer["id"])})
    got = session.connection().execute(
        sa.text("SELECT pg_try_advisory_xact_lock_shared(k.ns, k.id) FROM unnest(CAST(:ns AS int[]), "
                "CAST(:ids AS int[])) AS k(ns, id)"),
        {"ns": [k[0] for k in keys], "ids": [k[1] for k in keys]}).scalars().all()
    return all(got)


def _stale(session: Session, ids: list[int]) -> dict[int, str]:
    """Deliveries whose notice no longer applies, read now (under the send's locks): delivery -> reason."""
    rows = session.connection().execute(
        sa.select(D.c.id, N.c.kind, N.c.audience, N.c.status, N.c.milestone_date, M.c.status.label("m_status"),
                  M.c.date.label("m_date"), A.c.status.label("agreement"))
        .join(N, N.c.id == D.c.notice_id)
        .join(M, M.c.id == N.c.milestone_id, isouter=True)
        .join(A, sa.and_(A.c.customer_id == N.c.customer_id, A.c.release_id == N.c.release_id), isouter=True)
        .where(D.c.id.in_(ids))).all()
    stale = {}
    for r in rows:
        reason = None
        if r.status in (NoticeStatus.CANCELLED, NoticeStatus.SKIPPED):
            reason = "cancelled"
        elif r.m_status == MilestoneStatus.WITHDRAWN and r.kind in CURRENT_KINDS:
            reason = "withdrawn"
        elif r.m_status is not None and r.m_status != MilestoneStatus.WITHDRAWN and r.kind == NoticeKind.WITHDRAWN:
            reason = "reinstated"
        elif r.kind == NoticeKind.STAGE and r.m_date is not None and r.milestone_date != r.m_date:
            reason = "moved"
        elif r.kind == NoticeKind.STAGE and r.audience == "customer" and r.agreement in AGREED_STATUSES:
            reason = "agreement"
        if reason:
            stale[r.id] = reason
    return stale


def _cancel(session: Session, stale: dict[int, str], token: str, at: dt.datetime) -> dict[str, list[int]]:
    """Cancel stale deliveries of a claim; returns notice ids by reason."""
    by_reason: dict[str, list[int]] = defaultdict(list)
    for delivery_id, reason in stale.items():
        by_reason[reason].append(delivery_id)
    notices: dict[str, list[int]] = {}
    for reason, ids in by_reason.items():
        notices[reason] = session.connection().execute(
            D.update().where(D.c.id.in_(ids), D.c.claim_token == token, D.c.status == DeliveryStatus.SENDING)
            .values(status=DeliveryStatus.CANCELLED, error=f"cancelled: {CANCEL_TEXT[reason]}", claim_token=None,
                    updated_at=at).returning(D.c.notice_id)).scalars().all()
    return notices


def _defer(session: Session, ids: list[int], token: str, at: dt.datetime) -> int:
    """Back to pending, not counted as an attempt: a change to its milestone is committing right now."""
    return session.connection().execute(
        D.update().where(D.c.id.in_(ids), D.c.claim_token == token, D.c.status == DeliveryStatus.SENDING)
        .values(status=DeliveryStatus.PENDING, next_attempt_at=at, attempts=D.c.attempts - 1, claim_token=None,
                claimed_by=None, updated_at=at)).rowcount or 0


# ------------------------------------------------------------------------------------------ sending


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
    status = DeliveryStatus.DELIVERED if CHANNELS[batch.channel].transactional else DeliveryStatus.SENT
    res = session.connection().execute(
        D.update().where(D.c.id.in_(batch.delivery_ids), D.c.claim_token == token,
                         D.c.status.in_([DeliveryStatus.SENDING, DeliveryStatus.UNKNOWN]))
        .values(status=status, provider_id=provider_id, sent_at=at, error=None, updated_at=at))
    return res.rowcount or 0


def _record_failure(session: Session, batch: Batch, token: str, err: DeliveryError, at: dt.datetime,
                    result: DeliverResult) -> None:
    conn = session.connection()
    mine = sa.and_(D.c.id.in_(batch.delivery_ids), D.c.claim_token == token, D.c.status == DeliveryStatus.SENDING)
    rows = conn.execute(sa.select(D.c.id, D.c.attempts, D.c.first_attempt_at).where(mine)).all()
    if not rows:
        return
    message = err.message[:2000]
    if err.unknown:
        waits = [{"b_id": r.id, "b_next": at + CHANNELS[batch.channel].unknown_wait(r.attempts)} for r in rows]
        conn.execute(D.update().where(D.c.id == sa.bindparam("b_id"), D.c.status == DeliveryStatus.SENDING)
                     .values(status=DeliveryStatus.UNKNOWN, next_attempt_at=sa.bindparam("b_next"), error=message,
                             claimed_by=None, updated_at=at), waits)
        result.unknown += len(rows)
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
        conn.execute(D.update().where(D.c.id == sa.bindparam("b_id"), D.c.status == DeliveryStatus.SENDING)
                     .values(status=DeliveryStatus.PENDING, next_attempt_at=sa.bindparam("b_next"), error=message,
                             claim_token=None, claimed_by=None, updated_at=at), retry)
        result.retried += len(retry)
    if give_up:
        conn.execute(D.update().where(D.c.id == sa.bindparam("b_id"), D.c.status == DeliveryStatus.SENDING)
                     .values(status=DeliveryStatus.FAILED, error=sa.bindparam("b_error"), claimed_by=None,
                             updated_at=at),
                     [{"b_id": r.id, "b_error": (message if err.permanent else (
                         f"gave up after {r.attempts} attempts over {_span_text(at - (r.first_attempt_at or at))}: "
                         f"{message}"))[:2000]} for r in give_up])
        result.failed += len(give_up)
        alert_give_up(session, [r.id for r in give_up], at)


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
    C = Customer.__table__
    ops = get_settings().ops_email
    rows = conn.execute(
        sa.select(D.c.id, D.c.channel, D.c.recipient, D.c.attempts, D.c.error, N.c.customer_id, N.c.milestone_id,
                  N.c.release_id, N.c.revision, N.c.milestone_date, N.c.kind, N.c.audience, C.c.key,
                  C.c.account_rep)
        .join(N, N.c.id == D.c.notice_id).join(C, C.c.id == N.c.customer_id)
        .where(D.c.id.in_(delivery_ids))).all()
    queued = 0
    for d in rows:
        log.error("delivery %s given up: %s to %s for customer %s (%s notice): %s", d.id, d.channel, d.recipient,
                  d.key, d.kind, d.error)
        if d.kind == NoticeKind.UNDELIVERED:
            continue
        recipients = ([d.account_rep] if d.audience == "customer" else []) + ([ops] if ops else [])
        if not recipients:
            continue
        notice_id = conn.execute(insert_ignore(session, N).values(
            key=f"{NoticeKind.UNDELIVERED}:{d.customer_id}:{d.milestone_id or 0}:{d.id}", customer_id=d.customer_id,
            milestone_id=d.milestone_id, release_id=d.release_id, kind=NoticeKind.UNDELIVERED, audience="rep",
            slot=str(d.id), revision=d.revision, milestone_date=d.milestone_date,
            detail=f"{d.recipient}: {d.error}"[:2000], due_at=at, status=NoticeStatus.RELEASED, released_at=at,
            created_at=at).returning(N.c.id)).scalar()
        if notice_id is None:
            continue
        for recipient in dict.fromkeys(recipients):
            queued += len(conn.execute(insert_ignore(session, D).values(
                notice_id=notice_id, customer_id=d.customer_id, channel="email", recipient=recipient,
                status=DeliveryStatus.PENDING, attempts=0, next_attempt_at=at, created_at=at, updated_at=at)
                .returning(D.c.id)).all())
    return queued


def settle_notices(session: Session, notice_ids: list[int], *,
                   cancelled_as: tuple[str, str] = (NoticeStatus.CANCELLED, "deliveries-cancelled")) -> None:
    """Recompute whether each notice was given, after its deliveries changed (a send, a failure, a
    webhook's event, a cancellation): `sent` while one delivery is sent or delivered (sent_at = the
    earliest); else `released` while one is still open (pending, sending, or unknown: not delivered,
    but not failed either); else `failed` when one failed; else, when its deliveries were cancelled,
    `cancelled_as` (status, reason). A notice counts as given when at least one channel delivered it."""
    if not notice_ids:
        return
    conn = session.connection()
    if _is_pg(session) and len(notice_ids) > 1:  # concurrent settlers lock shared notices in one order
        conn.execute(sa.select(N.c.id).where(N.c.id.in_(notice_ids)).order_by(N.c.id).with_for_update())

    def any_in(statuses) -> sa.ColumnElement:
        return sa.exists().where(D.c.notice_id == N.c.id, D.c.status.in_([s.value for s in statuses]))

    any_ok, any_open = any_in(DELIVERED_STATUSES), any_in(OPEN_STATUSES)
    any_failed = any_in(FAILED_STATUSES)
    newly_cancelled = sa.and_(any_in([DeliveryStatus.CANCELLED]),
                              N.c.status.notin_([NoticeStatus.CANCELLED, NoticeStatus.SKIPPED]))
    first_ok = (sa.select(sa.func.min(D.c.sent_at))
                .where(D.c.notice_id == N.c.id, D.c.status.in_([s.value for s in DELIVERED_STATUSES]))
                .scalar_subquery())
    conn.execute(N.update().where(N.c.id.in_(notice_ids), N.c.status.in_(
        [NoticeStatus.RELEASED, NoticeStatus.SENT, NoticeStatus.FAILED, NoticeStatus.CANCELLED, NoticeStatus.SKIPPED]
    )).values(
        status=sa.case((any_ok, NoticeStatus.SENT.value), (any_open, NoticeStatus.RELEASED.value),
                       (any_failed, NoticeStatus.FAILED.value), (newly_cancelled, str(cancelled_as[0])),
                       else_=N.c.status),
        status_reason=sa.case((any_ok, sa.case((N.c.status == NoticeStatus.SENT, N.c.status_reason))),
                              (any_open, None), (any_failed, "every-channel-failed"),
                              (newly_cancelled, cancelled_as[1]), else_=N.c.status_reason),
        sent_at=sa.case((any_ok, sa.func.coalesce(first_ok, N.c.sent_at)),
                        (sa.or_(any_open, any_failed, newly_cancelled), None), else_=N.c.sent_at),
    ))


def deliver_customer(customer_id: int, at: dt.datetime, *, limit: int = 500) -> DeliverResult:
    """Send everything due for one customer (and their rep). Safe to run anywhere, any number of times."""
    result = DeliverResult()
    token = uuid.uuid4().hex
    started = time.monotonic()

    def now() -> dt.datetime:  # `at`, advanced by the real time this run has taken (heartbeats)
        return at + dt.timedelta(seconds=time.monotonic() - started)

    with session_scope() as session:
        result.recovered = recover(session, at, customer_id=customer_id)
        ids = claim(session, customer_id, at, token, limit)
        if not ids:
            return result
        batches = _batches(session, ids, at)
    result.claimed = len(ids)
    for batch in batches:
        _deliver_batch(batch, token, at, now, result)
    return result


def _deliver_batch(batch: Batch, token: str, at: dt.datetime, now: Callable[[], dt.datetime],
                   result: DeliverResult) -> None:
    channel = CHANNELS[batch.channel]
    if not channel.transactional:
        # Committed before the provider is called: if this process dies during the send, the sweep
        # knows the message may have gone out.
        with session_scope() as session:
            mine = _heartbeat(session, token, batch.delivery_ids, now())
        batch.items = [i for i in batch.items if i.delivery_id in mine]
        if not batch.items:
            return
    with session_scope() as session:
        if channel.transactional:
            _heartbeat(session, token, [], now())
        mine = _lock_mine(session, token, batch.delivery_ids)
        batch.items = [i for i in batch.items if i.delivery_id in mine]
        if not batch.items:
            return
        if not _try_lock_shared(session, batch):
            result.deferred += _defer(session, batch.delivery_ids, token, at)
            return
        all_notices = [i.notice_id for i in batch.items]
        cancelled: dict[str, list[int]] = {}
        stale = _stale(session, batch.delivery_ids)
        if stale:
            cancelled = _cancel(session, stale, token, at)
            result.cancelled += sum(len(v) for v in cancelled.values())
            batch.items = [i for i in batch.items if i.delivery_id not in stale]
        if batch.items:
            _send(session, channel, batch, token, at, result)
        for reason, notice_ids in cancelled.items():
            settle_notices(session, sorted(set(notice_ids)), cancelled_as=CANCELLED_AS[reason])
        settle_notices(session, sorted(set(all_notices)))


def _send(session: Session, channel, batch: Batch, token: str, at: dt.datetime, result: DeliverResult) -> None:
    deadline = time.monotonic() + get_settings().send_deadline
    try:
        # A transactional channel writes through the session, the others only read through it.
        if channel.transactional:
            with session.begin_nested():  # a failed write leaves nothing behind
                provider_id = channel.send(batch, at=at, session=session, deadline=deadline)
        else:
            provider_id = channel.send(batch, at=at, session=session, deadline=deadline)
    except DeliveryError as err:
        log.warning("delivery via %s to %s failed: %s", batch.channel, batch.recipient, err.message)
        _record_failure(session, batch, token, err, at, result)
        return
    except Exception as exc:  # a bug or an unexpected answer before anything was sent: retry later
        log.exception("delivery via %s to %s crashed", batch.channel, batch.recipient)
        _record_failure(session, batch, token, DeliveryError(f"{type(exc).__name__}: {exc}"), at, result)
        return
    result.sent += _record_success(session, batch, token, provider_id, at)
    result.messages += 1
    result.by_channel[batch.channel] += len(batch.items)
