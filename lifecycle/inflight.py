"""Changes in flight: a withdrawal, a move or an agreement stops the sends it makes wrong.

The change cancels the affected pending deliveries in its own transaction (`cancel_in_flight`, called
once by registry.withdraw_milestone, registry.move_milestone and agreements.record). A delivery already
claimed re-checks its notice inside the transaction that sends it (`stale`), holding shared advisory
locks on its milestones and customer (`try_lock_shared`) that the change takes exclusively. So a send
that read the old state finishes before the change commits, and one after reads the new state: nothing
about a withdrawn milestone, an old date or an agreed release reaches a provider once the change
committed. A sender never waits for these locks (a change holding one defers the message a moment:
`defer`), so no lock cycle can form. SQLite serialises every write transaction: the same holds there.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict

import sqlalchemy as sa
from sqlmodel import Session

from lifecycle import policy
from lifecycle.channels.base import Batch
from lifecycle.models import (
    AGREED_STATUSES,
    Agreement,
    CustomerChannel,
    Delivery,
    DeliveryStatus,
    Milestone,
    MilestoneStatus,
    Notice,
    NoticeKind,
    NoticeStatus,
    table_of,
)
from lifecycle.policy import SkipReason
from lifecycle.settle import settle_notices

D = table_of(Delivery)
N = table_of(Notice)
M = table_of(Milestone)
A = table_of(Agreement)
CC = table_of(CustomerChannel)

# Advisory lock namespaces (PostgreSQL's two-key form): senders share them, changes take them alone.
# The first key is a hash of the schema and the namespace: advisory locks are per database, and
# deployments (or test runs) in other schemas of one database must not hold each other up.
LOCK_MILESTONE = 7_242_002  # (namespace, milestone id): withdrawals and moves
LOCK_CUSTOMER = 7_242_003  # (namespace, customer id): agreements

# Why a delivery is cancelled -> what its notice becomes when nothing else delivered it.
CANCELLED_AS = {
    "withdrawn": (NoticeStatus.CANCELLED, "withdrawn"),
    "moved": (NoticeStatus.CANCELLED, "moved"),
    "reinstated": (NoticeStatus.CANCELLED, "reinstated"),
    "agreement": (NoticeStatus.SKIPPED, SkipReason.AGREEMENT),  # as the scheduler skips a due reminder
    "cancelled": (NoticeStatus.CANCELLED, "cancelled"),
    "unsubscribed": (NoticeStatus.CANCELLED, "unsubscribed"),
}
CANCEL_TEXT = {
    "withdrawn": "the milestone was withdrawn",
    "moved": "the milestone moved: this reminder quotes the old date",
    "reinstated": "the milestone was reinstated",
    "agreement": "the customer agreed an upgrade: routine reminders stop",
    "cancelled": "the notice was cancelled",
    "unsubscribed": "the channel subscription was removed or turned off",
}
# Notice kinds that speak of a milestone as current (a withdrawal makes them wrong).
CURRENT_KINDS = (NoticeKind.STAGE, NoticeKind.CHANGED, NoticeKind.REINSTATED, NoticeKind.ESCALATION)


def _is_pg(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def _lock_exclusive(session: Session, namespace: int, key: int) -> None:
    """Wait for the sends holding this key to finish; sends starting meanwhile defer until we commit."""
    if _is_pg(session):
        session.connection().execute(
            sa.text("SELECT pg_advisory_xact_lock(hashtext(current_schema() || :ns), :key)"),
            {"ns": f":{namespace}", "key": key},
        )


def cancel_in_flight(
    session: Session,
    *,
    at: dt.datetime,
    reason: str,
    milestone_id: int | None = None,
    customer_id: int | None = None,
    release_id: int | None = None,
) -> int:
    """Cancel the pending deliveries a change makes wrong, in the change's own transaction:

    - `withdrawn` (milestone_id): stage, change and escalation deliveries of the milestone;
    - `moved` (milestone_id): stage deliveries quoting another date than the milestone's current one;
    - `agreement` (customer_id, release_id): routine stage reminders of the release, if the customer's
      agreement stops them.

    Sends in progress about the same milestone (or customer) finish first; later ones re-check and see
    the change. Returns how many deliveries were cancelled."""
    session.flush()  # the change itself is written first (its row locks before ours)
    notices: sa.Select | list[int]
    if reason in ("withdrawn", "moved"):
        assert milestone_id is not None
        _lock_exclusive(session, LOCK_MILESTONE, milestone_id)
        if reason == "withdrawn":
            notices = sa.select(N.c.id).where(N.c.milestone_id == milestone_id, N.c.kind.in_(CURRENT_KINDS))
        else:
            current = sa.select(M.c.date).where(M.c.id == milestone_id).scalar_subquery()
            notices = sa.select(N.c.id).where(
                N.c.milestone_id == milestone_id, N.c.kind == NoticeKind.STAGE, N.c.milestone_date != current
            )
    elif reason == "agreement":
        agreement = (
            session.connection()
            .execute(
                sa.select(A.c.status, A.c.target_version, A.c.planned_date).where(
                    A.c.customer_id == customer_id, A.c.release_id == release_id
                )
            )
            .first()
        )
        if agreement is None or agreement.status not in AGREED_STATUSES:
            return 0
        assert customer_id is not None
        _lock_exclusive(session, LOCK_CUSTOMER, customer_id)
        # The scheduler's rule (policy.counts_as_agreed): a plan dated after a milestone does not stop its
        # reminders, so only the reminders of milestones it is in time for are cancelled.
        rows = (
            session.connection()
            .execute(
                sa.select(N.c.id, N.c.milestone_date).where(
                    N.c.customer_id == customer_id,
                    N.c.release_id == release_id,
                    N.c.kind == NoticeKind.STAGE,
                    N.c.audience == "customer",
                    N.c.status.in_([NoticeStatus.RELEASED, NoticeStatus.SENT]),
                )
            )
            .all()
        )
        notices = [
            r.id
            for r in rows
            if r.milestone_date is not None
            and policy.counts_as_agreed(
                agreement.status, agreement.target_version, agreement.planned_date, r.milestone_date
            )
        ]
    else:
        raise ValueError(f"unknown reason {reason!r}")
    cancelled = (
        session.connection()
        .execute(
            D.update()
            .where(D.c.status == DeliveryStatus.PENDING, D.c.notice_id.in_(notices))
            .values(
                status=DeliveryStatus.CANCELLED,
                error=f"cancelled: {CANCEL_TEXT[reason]}",
                claim_token=None,
                updated_at=at,
            )
            .returning(D.c.notice_id)
        )
        .scalars()
        .all()
    )
    settle_notices(session, sorted(set(cancelled)), cancelled_as=CANCELLED_AS[reason])
    return len(cancelled)


def try_lock_shared(session: Session, batch: Batch) -> bool:
    """The shared advisory locks a send holds while it checks and sends (PostgreSQL). Never waits: a
    change holding one right now defers the message instead, so no lock cycle can form."""
    if not _is_pg(session):
        return True
    keys = sorted(
        {(LOCK_MILESTONE, i.context["milestone_id"]) for i in batch.items if i.context.get("milestone_id")}
        | {(LOCK_CUSTOMER, batch.customer["id"])}
    )
    got = (
        session.connection()
        .execute(
            sa.text(
                "SELECT pg_try_advisory_xact_lock_shared(hashtext(current_schema() || ':' || k.ns::text), k.id) "
                "FROM unnest(CAST(:ns AS int[]), "
                "CAST(:ids AS int[])) AS k(ns, id)"
            ),
            {"ns": [k[0] for k in keys], "ids": [k[1] for k in keys]},
        )
        .scalars()
        .all()
    )
    return all(got)


def stale(session: Session, ids: list[int]) -> dict[int, str]:
    """Deliveries whose notice no longer applies, read now (under the send's locks): delivery -> reason."""
    rows = (
        session.connection()
        .execute(
            sa.select(
                D.c.id,
                N.c.kind,
                N.c.audience,
                N.c.status,
                N.c.milestone_date,
                M.c.status.label("m_status"),
                M.c.date.label("m_date"),
                A.c.status.label("agreement"),
                A.c.target_version.label("target"),
                A.c.planned_date.label("planned_date"),
                D.c.channel,
                D.c.subscription_id,
                CC.c.enabled.label("subscribed"),
            )
            .join(N, N.c.id == D.c.notice_id)
            .join(CC, CC.c.id == D.c.subscription_id, isouter=True)
            .join(M, M.c.id == N.c.milestone_id, isouter=True)
            .join(
                A, sa.and_(A.c.customer_id == N.c.customer_id, A.c.release_id == N.c.release_id), isouter=True
            )
            .where(D.c.id.in_(ids))
        )
        .all()
    )
    from lifecycle.channels.registry import CHANNELS

    found = {}
    for r in rows:
        reason = None
        channel = CHANNELS.get(r.channel)
        if channel is not None and channel.subscribed and not r.subscribed:  # removed (null) or turned off
            reason = "unsubscribed"
        elif r.status in (NoticeStatus.CANCELLED, NoticeStatus.SKIPPED):
            reason = "cancelled"
        elif r.m_status == MilestoneStatus.WITHDRAWN and r.kind in CURRENT_KINDS:
            reason = "withdrawn"
        elif (
            r.m_status is not None
            and r.m_status != MilestoneStatus.WITHDRAWN
            and r.kind == NoticeKind.WITHDRAWN
        ):
            reason = "reinstated"
        elif r.kind == NoticeKind.STAGE and r.m_date is not None and r.milestone_date != r.m_date:
            reason = "moved"
        elif (
            r.kind == NoticeKind.STAGE
            and r.audience == "customer"
            and r.agreement is not None
            and r.milestone_date is not None
            and policy.counts_as_agreed(r.agreement, r.target, r.planned_date, r.milestone_date)
        ):
            reason = "agreement"
        if reason:
            found[r.id] = reason
    return found


def cancel(session: Session, stale: dict[int, str], token: str, at: dt.datetime) -> dict[str, list[int]]:
    """Cancel stale deliveries of a claim; returns notice ids by reason."""
    by_reason: dict[str, list[int]] = defaultdict(list)
    for delivery_id, reason in stale.items():
        by_reason[reason].append(delivery_id)
    notices: dict[str, list[int]] = {}
    for reason, ids in by_reason.items():
        notices[reason] = list(
            session.connection()
            .execute(
                D.update()
                .where(D.c.id.in_(ids), D.c.claim_token == token, D.c.status == DeliveryStatus.SENDING)
                .values(
                    status=DeliveryStatus.CANCELLED,
                    error=f"cancelled: {CANCEL_TEXT[reason]}",
                    claim_token=None,
                    updated_at=at,
                )
                .returning(D.c.notice_id)
            )
            .scalars()
            .all()
        )
    return notices


def defer(session: Session, ids: list[int], token: str, at: dt.datetime) -> int:
    """Back to pending, not counted as an attempt: a change to its milestone is committing right now."""
    return (
        session.connection()
        .execute(
            D.update()
            .where(D.c.id.in_(ids), D.c.claim_token == token, D.c.status == DeliveryStatus.SENDING)
            .values(
                status=DeliveryStatus.PENDING,
                next_attempt_at=at,
                attempts=D.c.attempts - 1,
                claim_token=None,
                claimed_by=None,
                updated_at=at,
            )
        )
        .rowcount
        or 0
    )
