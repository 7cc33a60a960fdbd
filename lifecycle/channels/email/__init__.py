"""Email: one message per recipient listing every notice due for them (a digest), with an .ics
attachment of the milestones it speaks of, sent through the configured backend (lifecycle.mailers).
Customers' notices go to every deliverable contact; rep notices to the account rep. Its templates
(`templates/<locale>/`) also render the portal inbox's messages.

The message carries its delivery ids (`custom_args`), by which SendGrid's events and the file backend's
file names settle a send whose outcome was lost; how each backend settles one is `RECONCILIATION`."""

from __future__ import annotations

import datetime as dt
from typing import ClassVar
from uuid import uuid4

import sqlalchemy as sa

from lifecycle.channels.base import Batch, N
from lifecycle.config import get_settings
from lifecycle.content import render_message
from lifecycle.mailers import RECONCILIATION, Attachment, Email, get_mailer, send_many
from lifecycle.models import Contact, Customer, DeliveryStatus, table_of


def _milestone_ids(batch: Batch) -> set[int]:
    """The milestones a batch's notices are about: the events of its email's .ics."""
    return {i.context["milestone_id"] for i in batch.items if i.context["milestone_id"]}


def calendar_attachment(
    milestone_ids: list[int],
    customer: dict | None,
    at: dt.datetime,
    session=None,
    memo: dict | None = None,
) -> Attachment | None:
    """The .ics attachment (METHOD:PUBLISH) for the milestones of a message, as of `at`, for a
    customer (`Batch.customer`: its id and locale) or nobody in particular. Read through `session` when
    given (the send's own transaction: on SQLite a second one would wait for it). `memo`: the delivery
    run's cache (`feeds.attachment`)."""
    if not milestone_ids:
        return None
    from lifecycle.calendar import feeds
    from lifecycle.db import session_scope

    if session is None:
        with session_scope() as own:
            return calendar_attachment(milestone_ids, customer, at, own, memo)
    ref = feeds.CustomerRef(customer["id"], customer["locale"]) if customer else None
    data = feeds.attachment(session, milestone_ids, at, customer=ref, memo=memo)
    return Attachment(filename="lifecycle.ics", content=data, mimetype="text/calendar")


class EmailChannel:
    name: ClassVar[str] = "email"
    noun: ClassVar[str] = "email"  # what one message is called in reports
    uses_contacts: ClassVar[bool] = True  # its recipients are the customer's contacts
    audiences: ClassVar[frozenset[str]] = frozenset({"customer", "rep"})
    success: ClassVar[str] = DeliveryStatus.SENT.value
    transactional: ClassVar[bool] = False
    digest: ClassVar[bool] = True
    subscribed: ClassVar[bool] = False

    def recipients(self, audience: str, notices: sa.ColumnElement) -> sa.Select:
        C, K = table_of(Customer), table_of(Contact)
        if audience == "customer":  # every deliverable contact
            return (
                sa.select(N.c.id, N.c.customer_id, sa.literal(self.name), K.c.email, K.c.id, sa.null())
                .join(K, sa.and_(K.c.customer_id == N.c.customer_id, K.c.undeliverable.is_(False)))
                .where(notices)
            )
        # Rep notices go to the account rep, filed under the rep's first customer so that one delivery
        # run sends the rep one message (the daily digest) for all their customers.
        same_rep = sa.alias(C, "same_rep")
        rep_home = (
            sa.select(sa.func.min(same_rep.c.id))
            .where(sa.func.lower(same_rep.c.account_rep) == sa.func.lower(C.c.account_rep))
            .scalar_subquery()
        )
        return (
            sa.select(N.c.id, rep_home, sa.literal(self.name), C.c.account_rep, sa.null(), sa.null())
            .join(C, C.c.id == N.c.customer_id)
            .where(notices)
        )

    def message(self, batch: Batch, *, at: dt.datetime, session=None, deadline: float | None = None) -> Email:
        """The email of one batch: rendered, with its .ics attachment (built once per customer and
        milestone set in a delivery run: `batch.cache`)."""
        settings = get_settings()
        contexts = [i.context for i in batch.items]
        # Every contact of a customer gets the same words (nothing in them names the recipient): they
        # are rendered once per run for the same notices.
        said = ("email-render", batch.audience, batch.customer["id"], tuple(i.notice_id for i in batch.items))
        if said not in batch.cache:
            batch.cache[said] = render_message(
                batch.audience, batch.customer["locale"], contexts, batch.customer
            )
        msg = batch.cache[said]
        attachments = []
        if batch.audience == "customer":
            milestone_ids = tuple(sorted(_milestone_ids(batch)))
            key = ("ics", batch.customer["id"], milestone_ids)
            if key not in batch.cache:
                batch.cache[key] = calendar_attachment(
                    list(milestone_ids), batch.customer, at, session, memo=batch.cache
                )
            if batch.cache[key]:
                attachments.append(batch.cache[key])
        kinds = sorted({i.kind for i in batch.items})
        return Email(
            to=batch.recipient,
            to_name=batch.recipient_name,
            subject=msg.subject,
            text=msg.text,
            html=msg.html,
            from_email=settings.mail_from,
            from_name=settings.mail_from_name,
            attachments=attachments,
            # Customers' answers go to their account rep (the footer names them too).
            reply_to=contexts[0]["rep_email"] if batch.audience == "customer" else None,
            reply_to_name=(contexts[0]["rep_name"] or None) if batch.audience == "customer" else None,
            custom_args={"delivery_ids": ",".join(str(i) for i in batch.delivery_ids)},
            categories=["lifecycle", *[f"lifecycle-{k}" for k in kinds]],
            message_id=f"<lifecycle-{batch.delivery_ids[0]}-{uuid4().hex[:12]}@{settings.mail_from.split('@')[-1]}>",
            date=at,
            deadline=deadline,
        )

    def send(
        self, batch: Batch, *, at: dt.datetime, session=None, deadline: float | None = None
    ) -> str | None:
        return get_mailer(get_settings()).send(self.message(batch, at=at, session=session, deadline=deadline))

    def send_many(
        self, batches: list[Batch], *, at: dt.datetime, session=None
    ) -> list[str | None | Exception]:
        """The emails of many batches, built here (reading through `session`) and handed to the backend
        together (`Mailer.send_many`: one SMTP connection, a bounded pool of SendGrid requests). Each
        email's send deadline starts when its own send starts. Returns an outcome per batch: the
        provider id, or the exception."""

        milestone_ids = {i for b in batches if b.audience == "customer" for i in _milestone_ids(b)}
        if milestone_ids and session is not None:  # the attachments' milestones, in one read
            from lifecycle.calendar import feeds

            feeds.remember(session, milestone_ids, batches[0].cache)

        def build():  # in this thread (it reads through the session), while the backend sends the others
            for batch in batches:
                try:
                    yield self.message(batch, at=at, session=session)
                except Exception as exc:  # noqa: BLE001 - the outcome of that batch
                    yield exc

        return send_many(get_mailer(get_settings()), build())

    def unknown_wait(self, attempts: int) -> dt.timedelta:
        from lifecycle.delivery import backoff

        settings = get_settings()
        how = RECONCILIATION[settings.email_backend]
        if how == "events":
            return dt.timedelta(seconds=settings.reconcile_seconds)
        if how == "lookup":
            return dt.timedelta(0)
        return backoff(attempts)

    def lookup(self, delivery_ids: list[int], recipient: str) -> str | bool | None:
        settings = get_settings()
        if RECONCILIATION[settings.email_backend] != "lookup":
            return None
        from lifecycle.mailers.file import FileMailer

        mailer = get_mailer(settings)
        assert isinstance(mailer, FileMailer)  # the one backend RECONCILIATION settles by lookup
        return mailer.lookup(delivery_ids, recipient)
