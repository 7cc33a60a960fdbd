"""The customer-portal inbox: one row per customer notice, written in the same transaction that
records the delivery, so it exists exactly once (unique on notice_id). A send means delivered. Its
messages are rendered by the email templates (lifecycle.content.render_message, medium "portal")."""

from __future__ import annotations

import datetime as dt
from typing import ClassVar

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from lifecycle.channels.base import Batch, N
from lifecycle.content import render_message
from lifecycle.models import Customer, DeliveryStatus, InboxMessage, table_of


class PortalChannel:
    name: ClassVar[str] = "portal"
    noun: ClassVar[str] = "portal message"  # what one message is called in reports
    audiences: ClassVar[frozenset[str]] = frozenset({"customer"})
    success: ClassVar[str] = DeliveryStatus.DELIVERED.value
    transactional: ClassVar[bool] = True
    digest: ClassVar[bool] = True
    subscribed: ClassVar[bool] = False

    def recipients(self, audience: str, notices: sa.ColumnElement) -> sa.Select:
        """The inbox holds every customer notice; its recipient is the customer's key."""
        C = table_of(Customer)
        return (
            sa.select(N.c.id, N.c.customer_id, sa.literal(self.name), C.c.key, sa.null(), sa.null())
            .join(C, C.c.id == N.c.customer_id)
            .where(notices)
        )

    def send(
        self, batch: Batch, *, at: dt.datetime, session=None, deadline: float | None = None
    ) -> str | None:
        """The batch's inbox rows: those missing inserted (one statement), an id per notice."""
        IM = table_of(InboxMessage)
        conn = session.connection()
        rows = []
        for item in batch.items:
            msg = render_message(
                "customer", batch.customer["locale"], [item.context], batch.customer, medium="portal"
            )
            rows.append(
                {
                    "customer_id": batch.customer["id"],
                    "notice_id": item.notice_id,
                    "subject": msg.subject,
                    "body_text": msg.text,
                    "body_html": msg.html,
                    "created_at": at,
                    "read_at": None,
                }
            )
        # A row written by an earlier or concurrent attempt stays: the inbox holds each notice once.
        mod = postgresql if conn.dialect.name == "postgresql" else sqlite
        insert = mod.insert(IM).on_conflict_do_nothing(index_elements=[IM.c.notice_id])
        found = dict(conn.execute(insert.returning(IM.c.notice_id, IM.c.id), rows).all())
        notice_ids = [item.notice_id for item in batch.items]
        if len(found) < len(set(notice_ids)):  # some were there already
            there = sa.select(IM.c.notice_id, IM.c.id).where(IM.c.notice_id.in_(notice_ids))
            found |= dict(conn.execute(there).all())
        return ",".join(f"inbox-{found[i]}" for i in notice_ids)

    # Transactional: a portal send commits with its delivery row and never ends unknown.

    def unknown_wait(self, attempts: int) -> dt.timedelta:
        raise NotImplementedError("a portal send never ends unknown")

    def lookup(self, delivery_ids: list[int], recipient: str) -> str | bool | None:
        raise NotImplementedError("a portal send never ends unknown")
