"""The portal inbox as customers read it (portal page, API, CLI): newest first, unread or all, in
pages, times in the customer's timezone, and for each notice the newer notice that changed or
cancelled what it said (a later "date changed", "withdrawn" or "reinstated" notice about the same
milestone)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import sqlalchemy as sa
from sqlmodel import Session, col, select

from lifecycle import policy, registry
from lifecycle.models import CHANGE_NOTICE_KINDS, Customer, InboxMessage, Notice, pk, table_of

PER_PAGE = 20


@dataclass
class InboxPage:
    messages: list[dict]
    total: int  # messages matching the filter
    unread: int  # unread messages in the whole inbox
    page: int
    pages: int
    per_page: int


def local_time(value: dt.datetime | None, tz: str) -> str:
    """'2027-03-30 09:00' in the customer's timezone."""
    return value.astimezone(policy.zone(tz)).strftime("%Y-%m-%d %H:%M") if value else ""


def newer_notices(session: Session, customer_id: int) -> dict[int, tuple[str, int]]:
    """message id -> (kind, id of the newest later message that changed or cancelled what it said)."""
    rows = session.exec(
        select(InboxMessage.id, InboxMessage.created_at, Notice.milestone_id, Notice.kind)
        .join(Notice, col(Notice.id) == InboxMessage.notice_id)
        .where(InboxMessage.customer_id == customer_id, col(Notice.milestone_id).is_not(None))
        .order_by(col(InboxMessage.created_at), col(InboxMessage.id))
    ).all()
    by_milestone: dict[int | None, list] = {}
    for r in rows:
        by_milestone.setdefault(r[2], []).append(r)
    out: dict[int, tuple[str, int]] = {}
    for items in by_milestone.values():
        for i, (mid, _, _, _) in enumerate(items):
            later = [(kind, lid) for lid, _, _, kind in items[i + 1 :] if kind in CHANGE_NOTICE_KINDS]
            if later:
                out[mid] = later[-1]
    return out


def page(
    session: Session,
    customer: Customer,
    *,
    unread_only: bool = False,
    number: int = 1,
    per_page: int = PER_PAGE,
) -> InboxPage:
    base = select(InboxMessage).where(InboxMessage.customer_id == customer.id)
    if unread_only:
        base = base.where(col(InboxMessage.read_at).is_(None))
    total = session.exec(select(sa.func.count()).select_from(base.subquery())).one()
    unread = session.exec(
        select(sa.func.count(col(InboxMessage.id))).where(
            InboxMessage.customer_id == customer.id, col(InboxMessage.read_at).is_(None)
        )
    ).one()
    pages = max(1, -(-total // per_page))
    number = min(max(1, number), pages)
    found = session.exec(
        base.order_by(col(InboxMessage.created_at).desc(), col(InboxMessage.id).desc())
        .offset((number - 1) * per_page)
        .limit(per_page)
    ).all()
    newer = newer_notices(session, pk(customer)) if found else {}
    return InboxPage(
        messages=[message_view(m, customer, newer.get(pk(m))) for m in found],
        total=total,
        unread=unread,
        page=number,
        pages=pages,
        per_page=per_page,
    )


def message_view(m: InboxMessage, customer: Customer, newer: tuple[str, int] | None = None) -> dict:
    return {
        "id": m.id,
        "subject": m.subject,
        "created_at": m.created_at,
        "read_at": m.read_at,
        "unread": m.read_at is None,
        "received": local_time(m.created_at, customer.timezone),
        "read": local_time(m.read_at, customer.timezone),
        "timezone": customer.timezone,
        "changed_by": newer[1] if newer else None,
        "later": ("cancelled" if newer[0] == "withdrawn" else "changed") if newer else None,
    }


def mark_all_read(session: Session, customer: Customer, at: dt.datetime) -> int:
    """Mark every unread message read; how many were."""
    n = (
        session.connection()
        .execute(
            table_of(InboxMessage)
            .update()
            .where(
                table_of(InboxMessage).c.customer_id == customer.id,
                table_of(InboxMessage).c.read_at.is_(None),
            )
            .values(read_at=at)
        )
        .rowcount
        or 0
    )
    if n:
        registry.audit(session, at, "inbox.read_all", customer.key, {"messages": n})
    return n
