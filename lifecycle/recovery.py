"""Taking work back: claims of dead or stalled workers, unknown sends whose window is over, and
deliveries cancelled for a notice that was released again.

A claim names its process (`claimed_by`, lifecycle.liveness) and beats (`heartbeat_at`) before each
message. A claim is taken back when its process is provably dead (on its own host: within seconds of a
SIGKILL), or when its last beat is older than the claim timeout (two send deadlines and a margin, so
never a live one; rows inside a send are locked, and skipped here). What it held:

- portal rows (a transactional channel: nothing happened unless recorded) and rows whose send had not
  started go back to `pending`;
- email rows whose send had started (`send_started_at`, committed before the provider is called) become
  `unknown`: the provider may have them.

An `unknown` row waits its channel's reconciliation (`Channel.unknown_wait`): SendGrid's `processed`
event settles it (lifecycle.webhooks) meanwhile; when the window is over, a channel that can look
(`Channel.lookup`, the file backend) settles it either way, and otherwise it is sent again, flagged
`possible_duplicate`.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import defaultdict

import sqlalchemy as sa
from sqlmodel import Session

from lifecycle import liveness
from lifecycle.channels.registry import CHANNELS
from lifecycle.config import get_settings
from lifecycle.models import (
    DELIVERED_STATUSES,
    OPEN_STATUSES,
    Contact,
    CustomerChannel,
    Delivery,
    DeliveryStatus,
    Notice,
    NoticeStatus,
    table_of,
)
from lifecycle.settle import settle_notices

log = logging.getLogger(__name__)
D = table_of(Delivery)
N = table_of(Notice)
K = table_of(Contact)


def recover(session: Session, at: dt.datetime, *, customer_id: int | None = None) -> int:
    """Take back dead claims, settle or release unknown sends whose window is over, and revive the
    cancelled deliveries of a notice released again. Returns how many deliveries changed. The tick
    runs it for everyone; a delivery run only takes back its customer's dead claims (one query when
    there are none), which is what lets a task redelivered after a worker died resume at once."""
    if customer_id is not None:
        return _expire_claims(session, at, customer_id)
    return (
        _expire_claims(session, at, None) + _reconcile_unknown(session, at, None) + _revive(session, at, None)
    )


def expire_claims(session: Session, at: dt.datetime) -> int:
    """Only the claims of dead or stalled workers (one query when there are none): what a delivery run
    checks before it claims, so that a run started after a worker died resumes its work at once."""
    return _expire_claims(session, at, None)


def _scope(customer_id: int | None) -> list:
    return [D.c.customer_id == customer_id] if customer_id is not None else []


def _expire_claims(session: Session, at: dt.datetime, customer_id: int | None) -> int:
    conn = session.connection()
    sending = [D.c.status == DeliveryStatus.SENDING, *_scope(customer_id)]
    # One row per claim, without locks (locking would make a live claim skip its own rows).
    claims = conn.execute(
        sa.select(
            D.c.claim_token,
            D.c.claimed_by,
            sa.func.max(sa.func.coalesce(D.c.heartbeat_at, D.c.claimed_at)).label("beat"),
        )
        .where(*sending)
        .group_by(D.c.claim_token, D.c.claimed_by)
    ).all()
    cutoff = at - dt.timedelta(seconds=get_settings().claim_timeout)
    dead = [
        c.claim_token
        for c in claims
        if (c.beat is not None and _aware(c.beat) < cutoff) or liveness.is_dead(c.claimed_by)
    ]
    if not dead:
        return 0
    rows = conn.execute(
        sa.select(D.c.id, D.c.channel, D.c.send_started_at, D.c.attempts)
        .where(*sending, D.c.claim_token.in_(dead))
        .with_for_update(skip_locked=True)
    ).all()
    if not rows:
        return 0
    back = [r.id for r in rows if CHANNELS[r.channel].transactional or r.send_started_at is None]
    if back:  # nothing can have been sent: a transactional channel rolled back, or no send had started
        conn.execute(
            D.update()
            .where(D.c.id.in_(back), D.c.status == DeliveryStatus.SENDING)
            .values(
                status=DeliveryStatus.PENDING,
                next_attempt_at=at,
                claim_token=None,
                claimed_by=None,
                updated_at=at,
            )
        )
    maybe: dict[tuple[str, int], list[int]] = defaultdict(list)
    for r in rows:
        if r.id not in back:
            maybe[(r.channel, r.attempts)].append(r.id)
    for (channel, attempts), ids in maybe.items():
        conn.execute(
            D.update()
            .where(D.c.id.in_(ids), D.c.status == DeliveryStatus.SENDING)
            .values(
                status=DeliveryStatus.UNKNOWN,
                claimed_by=None,
                updated_at=at,
                next_attempt_at=at + CHANNELS[channel].unknown_wait(attempts),
                error="the worker sending it stopped during the send: the outcome is unknown",
            )
        )
    log.warning(
        "took back %d deliveries of dead or expired claims (%d may have been sent)",
        len(rows),
        len(rows) - len(back),
    )
    return len(rows)


def _aware(ts: dt.datetime) -> dt.datetime:
    return ts.replace(tzinfo=dt.UTC) if ts.tzinfo is None else ts


def _reconcile_unknown(session: Session, at: dt.datetime, customer_id: int | None) -> int:
    """Unknown sends whose window is over: settled by the channel's lookup when it can tell, else sent
    again, flagged as a possible duplicate."""
    conn = session.connection()
    rows = conn.execute(
        sa.select(
            D.c.id,
            D.c.channel,
            D.c.claim_token,
            D.c.recipient,
            D.c.notice_id,
            D.c.send_started_at,
            N.c.audience,
        )
        .join(N, N.c.id == D.c.notice_id)
        .where(D.c.status == DeliveryStatus.UNKNOWN, D.c.next_attempt_at <= at, *_scope(customer_id))
        .with_for_update(of=D, skip_locked=True)
    ).all()
    messages: dict[tuple, list] = defaultdict(list)  # the rows of one message share claim and recipient
    for r in rows:
        messages[(r.channel, r.claim_token, r.recipient.lower(), r.audience)].append(r)
    settled: list[int] = []
    for (channel, _token, _recipient, _audience), group in messages.items():
        ids = sorted(r.id for r in group)
        found = CHANNELS[channel].lookup(ids, group[0].recipient)
        unknown = sa.and_(D.c.id.in_(ids), D.c.status == DeliveryStatus.UNKNOWN)
        if isinstance(found, str) and found:
            conn.execute(
                D.update()
                .where(unknown)
                .values(
                    status=DeliveryStatus.SENT,
                    provider_id=found,
                    claim_token=None,
                    error=None,
                    updated_at=at,
                    sent_at=sa.func.coalesce(D.c.send_started_at, at),
                )
            )
            settled += [r.notice_id for r in group]
        elif found is False:  # certainly not sent: an ordinary retry
            conn.execute(
                D.update()
                .where(unknown)
                .values(status=DeliveryStatus.PENDING, next_attempt_at=at, claim_token=None, updated_at=at)
            )
        else:
            conn.execute(
                D.update()
                .where(unknown)
                .values(
                    status=DeliveryStatus.PENDING,
                    next_attempt_at=at,
                    claim_token=None,
                    possible_duplicate=True,
                    updated_at=at,
                    error="no confirmation from the provider within the reconciliation window: "
                    "sent again (possible duplicate)",
                )
            )
    settle_notices(session, sorted(set(settled)))
    return len(rows)


def _revive(session: Session, at: dt.datetime, customer_id: int | None) -> int:
    """A notice whose deliveries were cancelled (milestone withdrawn or moved) and that the planner
    released again (reinstated, moved back): its deliveries are due again. Such a notice is `released`
    with nothing open or delivered: a cancellation always settles its notice in the same transaction."""
    conn = session.connection()
    live = sa.exists().where(
        D.c.notice_id == N.c.id, D.c.status.in_([s.value for s in (*OPEN_STATUSES, *DELIVERED_STATUSES)])
    )
    stuck = sa.select(N.c.id).where(N.c.status == NoticeStatus.RELEASED, ~live)
    CC = table_of(CustomerChannel)
    deliverable = sa.and_(
        sa.or_(
            D.c.contact_id.is_(None),
            D.c.contact_id.in_(sa.select(K.c.id).where(K.c.undeliverable.is_(False))),
        ),
        sa.or_(
            D.c.channel.in_([name for name, ch in CHANNELS.items() if not ch.subscribed]),
            D.c.subscription_id.in_(sa.select(CC.c.id).where(CC.c.enabled.is_(True))),
        ),
    )
    return len(
        conn.execute(
            D.update()
            .where(
                D.c.status == DeliveryStatus.CANCELLED,
                D.c.notice_id.in_(stuck),
                deliverable,
                *_scope(customer_id),
            )
            .values(
                status=DeliveryStatus.PENDING,
                next_attempt_at=at,
                attempts=0,
                first_attempt_at=None,
                error=None,
                claim_token=None,
                updated_at=at,
            )
            .returning(D.c.id)
        ).all()
    )
