"""The customer-portal inbox: one row per customer notice, written in the same transaction that
records the delivery, so it exists exactly once (unique on notice_id)."""

from __future__ import annotations

import datetime as dt
from typing import ClassVar

from sqlalchemy.exc import IntegrityError
from sqlmodel import select

from lifecycle.channels.base import Batch
from lifecycle.content import render_message
from lifecycle.models import InboxMessage


class PortalChannel:
    name: ClassVar[str] = "portal"
    transactional: ClassVar[bool] = True

    def send(self, batch: Batch, *, at: dt.datetime, session=None, deadline: float | None = None) -> str | None:
        ids = []
        for item in batch.items:
            existing = session.exec(select(InboxMessage).where(InboxMessage.notice_id == item.notice_id)).first()
            if existing is None:
                msg = render_message("customer", batch.customer["locale"], [item.context], batch.customer,
                                     medium="portal")
                existing = InboxMessage(customer_id=batch.customer["id"], notice_id=item.notice_id,
                                        subject=msg.subject, body_text=msg.text, body_html=msg.html, created_at=at)
                try:
                    with session.begin_nested():
                        session.add(existing)
                except IntegrityError:  # written by a concurrent attempt: the inbox holds it once
                    existing = session.exec(select(InboxMessage).where(
                        InboxMessage.notice_id == item.notice_id)).one()
            ids.append(existing.id)
        return ",".join(f"inbox-{i}" for i in ids)
