"""Tables of the whole domain.

Timestamps are stored as UTC and come back timezone-aware (`UTCDateTime`), on SQLite and PostgreSQL
alike. Unique constraints carry the "exactly once" promise: one notice per (customer, kind, milestone,
slot) through `Notice.key`, one delivery per (notice, channel, recipient), one inbox row per notice.
"""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from typing import Protocol

import sqlalchemy as sa
from sqlmodel import Field, SQLModel


class UTCDateTime(sa.types.TypeDecorator):
    """Aware datetimes in, aware UTC datetimes out; stored naive UTC so SQLite and PostgreSQL agree."""

    impl = sa.DateTime
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: pass timezone-aware datetimes")
        return value.astimezone(dt.UTC).replace(tzinfo=None)

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        if isinstance(value, str):  # raw SQLite text from a textual query
            value = dt.datetime.fromisoformat(value)
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def _ts(**kw):
    return Field(sa_type=UTCDateTime, **kw)


class MilestoneKind(StrEnum):
    END_OF_SALE = "end-of-sale"
    END_OF_FULL_SUPPORT = "end-of-full-support"
    END_OF_MAINTENANCE = "end-of-maintenance"
    END_OF_LIFE = "end-of-life"


class MilestoneStatus(StrEnum):
    PLANNED = "planned"
    WITHDRAWN = "withdrawn"


class NoticeKind(StrEnum):
    STAGE = "stage"  # a routine reminder at a lead time
    CHANGED = "changed"  # the milestone's date moved
    WITHDRAWN = "withdrawn"  # the milestone was withdrawn
    REINSTATED = "reinstated"  # a withdrawn milestone applies again
    ESCALATION = "escalation"  # to the rep: no agreement at the 1-month stage
    BOUNCE = "bounce"  # to the rep: an email to their customer bounced
    AGREEMENT = "agreement"  # to the rep: a customer recorded or declined an upgrade plan
    UNDELIVERED = "undelivered"  # to the rep and operator: an email was given up after the retry span
    CHANNEL_DISABLED = (
        "channel-disabled"  # to the customer and the rep: a subscription kept failing, turned off
    )


CUSTOMER_NOTICE_KINDS = (NoticeKind.STAGE, NoticeKind.CHANGED, NoticeKind.WITHDRAWN, NoticeKind.REINSTATED)
# Notices a registry change makes due at once (as opposed to routine stage reminders).
CHANGE_NOTICE_KINDS = (NoticeKind.CHANGED, NoticeKind.WITHDRAWN, NoticeKind.REINSTATED)
REP_NOTICE_KINDS = (NoticeKind.ESCALATION, NoticeKind.BOUNCE, NoticeKind.AGREEMENT, NoticeKind.UNDELIVERED)


class NoticeStatus(StrEnum):
    PLANNED = "planned"  # waiting for its due instant
    RELEASED = "released"  # due: deliveries created, being sent
    SENT = "sent"  # at least one channel delivered it
    FAILED = "failed"  # every channel failed
    SKIPPED = "skipped"  # not sent on purpose (catch-up, agreement, lapsed service, ...)
    CANCELLED = "cancelled"  # withdrawn milestone, removed deployment


class DeliveryStatus(StrEnum):
    """The one list of delivery states (lifecycle.delivery and lifecycle.recovery explain the moves)."""

    PENDING = "pending"  # to be sent at `next_attempt_at`
    SENDING = "sending"  # claimed by a worker (`claim_token`, `claimed_by`), being sent
    UNKNOWN = "unknown"  # the provider may have it (timeout after the request, crash): being reconciled
    SENT = "sent"  # accepted by the provider
    DELIVERED = "delivered"  # confirmed delivered (portal at once, email by webhook)
    FAILED = "failed"  # refused for good, or given up after the retry span
    BOUNCED = "bounced"
    CANCELLED = (
        "cancelled"  # no longer to be sent: the milestone was withdrawn or moved, or an agreement came
    )


DELIVERED_STATUSES = (DeliveryStatus.SENT, DeliveryStatus.DELIVERED)
# Not settled yet: the notice is still being given (unknown counts as not delivered, but not failed).
OPEN_STATUSES = (DeliveryStatus.PENDING, DeliveryStatus.SENDING, DeliveryStatus.UNKNOWN)
FAILED_STATUSES = (DeliveryStatus.FAILED, DeliveryStatus.BOUNCED)


class AgreementStatus(StrEnum):
    NONE = "none"
    ACKNOWLEDGED = "acknowledged"
    PLANNED = "planned"
    COMPLETED = "completed"
    DECLINED = "declined"


# An agreement in one of these states stops routine reminders for its release.
AGREED_STATUSES = (AgreementStatus.ACKNOWLEDGED, AgreementStatus.PLANNED, AgreementStatus.COMPLETED)


class Role(StrEnum):
    PM = "pm"
    REP = "rep"
    CUSTOMER = "customer"


# ---------------------------------------------------------------------------------------------- registry


class Product(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    slug: str = Field(max_length=64, unique=True, index=True)
    name: str = Field(max_length=200)
    created_at: dt.datetime = _ts()


class Release(SQLModel, table=True):
    __table_args__ = (sa.UniqueConstraint("product_id", "version"),)

    id: int | None = Field(default=None, primary_key=True)
    product_id: int = Field(foreign_key="product.id", index=True)
    version: str = Field(max_length=64)
    released: dt.date | None = None
    upgrade_to: str | None = Field(default=None, max_length=64)
    # The latest lifecycle phase known to have ended without a published date (endoflife.date's
    # `isEol: true` with `eolFrom: null`): the release is history, never notified.
    ended: str | None = Field(default=None, max_length=32)
    created_at: dt.datetime = _ts()


class Milestone(SQLModel, table=True):
    """A dated lifecycle event of a release, or of a whole product when `release_id` is null.

    `scope` is the release id, or 0 for a product-level milestone, so that the unique constraint works
    on both databases (NULLs are never equal in a unique index).
    """

    __table_args__ = (sa.UniqueConstraint("product_id", "scope", "kind"),)

    id: int | None = Field(default=None, primary_key=True)
    product_id: int = Field(foreign_key="product.id", index=True)
    release_id: int | None = Field(default=None, foreign_key="release.id", index=True)
    scope: int = 0
    kind: str = Field(max_length=32)
    date: dt.date
    status: str = Field(default=MilestoneStatus.PLANNED, max_length=16)
    revision: int = 1
    short_notice_reason: str | None = None
    registered_at: dt.datetime = _ts()
    changed_at: dt.datetime = _ts()
    # Set whenever something that changes who gets which notice when happens; the planner clears it.
    needs_plan: bool = Field(default=True, index=True)


class RegistryChange(SQLModel, table=True):
    """One change a person or an import made to the milestones (add, move, withdraw, reinstate, import,
    undo). Notices it makes due at once wait until `hold_until`; until then it can be undone."""

    id: int | None = Field(default=None, primary_key=True)
    action: str = Field(max_length=16)
    summary: str
    by: str | None = Field(default=None, max_length=254)
    at: dt.datetime = _ts()
    hold_until: dt.datetime = _ts()
    undone_at: dt.datetime | None = _ts(default=None)
    undone_by: str | None = Field(default=None, max_length=254)


class MilestoneChange(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    milestone_id: int = Field(foreign_key="milestone.id", index=True)
    change_id: int | None = Field(default=None, foreign_key="registrychange.id", index=True)
    revision: int
    action: str = Field(max_length=16)  # created, moved, withdrawn, reinstated, undone
    old_date: dt.date | None = None
    new_date: dt.date | None = None
    reason: str | None = None  # as given by the person or the import: internal, never shown to customers
    # Why, for customers: a code for the system's own reasons (translated per locale) ...
    reason_code: str | None = Field(default=None, max_length=32)
    # ... and text written for customers, JSON {locale: text}; without one they read a neutral text.
    customer_reason: str | None = None
    short_notice: bool = False
    by: str | None = Field(default=None, max_length=200)
    at: dt.datetime = _ts()


class Customer(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(max_length=64, unique=True, index=True)
    name: str = Field(max_length=200)
    timezone: str = Field(max_length=64)
    locale: str = Field(default="en", max_length=8)
    account_rep: str = Field(max_length=254, index=True)
    service_start: dt.date | None = None
    service_end: dt.date | None = None
    cores: int | None = None
    # Secret for the private calendar feed; replacing it revokes the old URL.
    calendar_token: str = Field(max_length=64, unique=True)
    created_at: dt.datetime = _ts()


class Contact(SQLModel, table=True):
    __table_args__ = (sa.UniqueConstraint("customer_id", "email"),)

    id: int | None = Field(default=None, primary_key=True)
    customer_id: int = Field(foreign_key="customer.id", index=True)
    email: str = Field(max_length=254)
    name: str | None = Field(default=None, max_length=200)
    undeliverable: bool = False
    undeliverable_reason: str | None = None  # the provider's words (SendGrid's bounce reason)
    undeliverable_at: dt.datetime | None = _ts(default=None)  # when the bounce or drop was reported
    created_at: dt.datetime = _ts()


class Deployment(SQLModel, table=True):
    """A customer runs a release. Removal is kept (`removed_at`) for the compliance report."""

    __table_args__ = (sa.UniqueConstraint("customer_id", "release_id"),)

    id: int | None = Field(default=None, primary_key=True)
    customer_id: int = Field(foreign_key="customer.id", index=True)
    release_id: int = Field(foreign_key="release.id", index=True)
    cores: int | None = None
    added_at: dt.datetime = _ts()
    removed_at: dt.datetime | None = _ts(default=None)


# ------------------------------------------------------------------------------------- notices and sends


class Notice(SQLModel, table=True):
    """One planned message to one customer (or their rep) about one milestone at one slot.

    `key` = kind:customer:milestone:slot is unique: a stage is planned once per customer and milestone
    (re-planning after a move updates `due_at` of unsent stages), a change notice once per revision.
    """

    __table_args__ = (
        sa.Index("ix_notice_status_due", "status", "due_at"),
        # A customer's notices of a milestone (the tick's "superseded after an outage" check, per
        # overdue stage): without it SQLite searches every customer's notices of the milestone.
        sa.Index("ix_notice_customer_milestone", "customer_id", "milestone_id"),
        # The escalation notices, few among a fleet's stage notices: a tick looks for new ones. Partial,
        # so no other notice query (none filters on kind = 'escalation') can be planned through it.
        sa.Index(
            "ix_notice_escalation",
            "id",
            sqlite_where=sa.text("kind = 'escalation'"),
            postgresql_where=sa.text("kind = 'escalation'"),
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(max_length=160, unique=True)
    customer_id: int = Field(foreign_key="customer.id", index=True)
    milestone_id: int | None = Field(default=None, foreign_key="milestone.id", index=True)
    release_id: int | None = Field(default=None, foreign_key="release.id")
    kind: str = Field(max_length=16)
    audience: str = Field(default="customer", max_length=16)  # customer | rep
    slot: str = Field(max_length=32)  # stage name ("3m"), or revision for change notices, ...
    revision: int = 1  # milestone revision this notice speaks of
    milestone_date: dt.date | None = None  # the date it announces
    stage_date: dt.date | None = None
    due_at: dt.datetime = _ts()
    status: str = Field(default=NoticeStatus.PLANNED, max_length=16)
    status_reason: str | None = Field(default=None, max_length=64)
    detail: str | None = None  # free text for change reasons, bounce details
    created_at: dt.datetime = _ts()
    released_at: dt.datetime | None = _ts(default=None)
    sent_at: dt.datetime | None = _ts(default=None)  # first successful delivery


class Delivery(SQLModel, table=True):
    """One attempt to put one notice through one channel to one recipient.

    Written before the channel is called; only the claimer (`claim_token`) may finish it. `claimed_by`
    names the claiming process (host/pid/start/pid-space) so a dead claim is recognised on its own host
    without waiting for the claim timeout; `heartbeat_at` is the claim's last sign of life;
    `send_started_at` is set (and committed) just before the provider is called, so a claim found dead
    afterwards is known to have possibly sent. `possible_duplicate`: sent again after an unknown outcome.
    """

    __table_args__ = (
        sa.UniqueConstraint("notice_id", "channel", "recipient"),
        sa.Index("ix_delivery_status_next", "status", "next_attempt_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    notice_id: int = Field(foreign_key="notice.id", index=True)
    customer_id: int = Field(foreign_key="customer.id", index=True)
    channel: str = Field(max_length=16)
    recipient: str = Field(max_length=254)
    contact_id: int | None = Field(default=None, foreign_key="contact.id")
    # The customer's channel subscription it goes through (webhook, Slack, Teams); null for email and portal.
    subscription_id: int | None = Field(default=None, foreign_key="customer_channel.id", index=True)
    status: str = Field(default=DeliveryStatus.PENDING, max_length=16)
    attempts: int = 0
    next_attempt_at: dt.datetime = _ts()
    claimed_at: dt.datetime | None = _ts(default=None)
    claim_token: str | None = Field(default=None, max_length=36)
    claimed_by: str | None = Field(default=None, max_length=200)
    heartbeat_at: dt.datetime | None = _ts(default=None)
    send_started_at: dt.datetime | None = _ts(default=None)
    first_attempt_at: dt.datetime | None = _ts(default=None)
    possible_duplicate: bool = False
    provider_id: str | None = Field(default=None, max_length=200, index=True)
    error: str | None = None
    created_at: dt.datetime = _ts()
    sent_at: dt.datetime | None = _ts(default=None)
    updated_at: dt.datetime = _ts()


class CustomerChannel(SQLModel, table=True):
    """A customer's subscription to a channel beyond the implicit email and portal (lifecycle.channels:
    webhook, Slack, Teams). `config` is JSON whose secret fields (URLs that carry a token, signing
    secrets) are encrypted with a key derived from the secret key (lifecycle.channels.secrets).
    Only enabled subscriptions receive notices. `failures` counts permanent failures in a row: at
    LIFECYCLE_CHANNEL_DISABLE_AFTER the subscription is disabled and the customer and rep are told."""

    __tablename__ = "customer_channel"

    id: int | None = Field(default=None, primary_key=True)
    customer_id: int = Field(foreign_key="customer.id", index=True)
    kind: str = Field(max_length=16)
    label: str = Field(max_length=100)  # what people see: never a secret
    config: str
    enabled: bool = True
    verified_at: dt.datetime | None = _ts(default=None)  # the last test or delivery that succeeded
    last_error: str | None = None
    failures: int = 0
    disabled_at: dt.datetime | None = _ts(default=None)
    created_at: dt.datetime = _ts()
    updated_at: dt.datetime = _ts()


class InboxMessage(SQLModel, table=True):
    """The customer-portal inbox: one row per customer notice."""

    id: int | None = Field(default=None, primary_key=True)
    customer_id: int = Field(foreign_key="customer.id", index=True)
    notice_id: int = Field(foreign_key="notice.id", unique=True)
    subject: str
    body_text: str
    body_html: str
    created_at: dt.datetime = _ts()
    read_at: dt.datetime | None = _ts(default=None)


class WebhookEvent(SQLModel, table=True):
    """SendGrid events seen, deduplicated on `sg_event_id`."""

    id: int | None = Field(default=None, primary_key=True)
    sg_event_id: str = Field(max_length=100, unique=True)
    event: str = Field(max_length=32)
    delivery_id: int | None = Field(default=None, foreign_key="delivery.id", index=True)
    email: str | None = Field(default=None, max_length=254)
    reason: str | None = None
    received_at: dt.datetime = _ts()


# ---------------------------------------------------------------------------------------- agreements


class Agreement(SQLModel, table=True):
    __table_args__ = (sa.UniqueConstraint("customer_id", "release_id"),)

    id: int | None = Field(default=None, primary_key=True)
    customer_id: int = Field(foreign_key="customer.id", index=True)
    release_id: int = Field(foreign_key="release.id", index=True)
    status: str = Field(default=AgreementStatus.NONE, max_length=16)
    target_version: str | None = Field(default=None, max_length=64)
    planned_date: dt.date | None = None
    by: str | None = Field(default=None, max_length=254)
    channel: str | None = Field(default=None, max_length=16)  # cli, web, api, phone, email-link
    # The latest feedback the customer gave (kept when a later change brings none).
    feedback: str | None = None
    recorded_by: str | None = Field(default=None, max_length=254)  # the login or link that recorded it
    at: dt.datetime = _ts()


class AgreementChange(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    agreement_id: int = Field(foreign_key="agreement.id", index=True)
    status: str = Field(max_length=16)
    target_version: str | None = Field(default=None, max_length=64)
    planned_date: dt.date | None = None
    by: str | None = Field(default=None, max_length=254)
    channel: str | None = Field(default=None, max_length=16)
    feedback: str | None = None  # given with this change
    recorded_by: str | None = Field(default=None, max_length=254)
    at: dt.datetime = _ts()


class EscalationState(StrEnum):
    OPEN = "open"
    IN_PROGRESS = "in-progress"
    RESOLVED = "resolved"


class Escalation(SQLModel, table=True):
    """A rep's work item: a customer without an agreement at the 1-month stage of a milestone.

    Made from the escalation notice; one unresolved item per customer and milestone (a later escalation
    for a moved date joins it). The due date is the milestone's current date, read from the milestone.
    It resolves itself (`resolution`) when an agreement arrives, the milestone is withdrawn or moved
    beyond the 1-month stage, or the customer stops running the release."""

    id: int | None = Field(default=None, primary_key=True)
    notice_id: int = Field(foreign_key="notice.id", unique=True)
    customer_id: int = Field(foreign_key="customer.id", index=True)
    milestone_id: int = Field(foreign_key="milestone.id", index=True)
    release_id: int = Field(foreign_key="release.id")
    owner: str = Field(max_length=254, index=True)  # the account rep
    state: str = Field(default=EscalationState.OPEN, max_length=16, index=True)
    resolution: str | None = Field(default=None, max_length=32)  # agreement, withdrawn, moved, ..., rep
    resolved_at: dt.datetime | None = _ts(default=None)
    created_at: dt.datetime = _ts()
    updated_at: dt.datetime = _ts()


class EscalationNote(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    escalation_id: int = Field(foreign_key="escalation.id", index=True)
    text: str
    by: str | None = Field(default=None, max_length=254)
    at: dt.datetime = _ts()


class Rep(SQLModel, table=True):
    """An account rep's settings: the name emails show, the language and timezone of their daily
    digest. A rep without a row gets English at 09:00 UTC and is named by their address."""

    id: int | None = Field(default=None, primary_key=True)
    email: str = Field(max_length=254, unique=True)  # lower case
    name: str | None = Field(default=None, max_length=200)
    locale: str = Field(default="en", max_length=8)
    timezone: str = Field(default="UTC", max_length=64)
    created_at: dt.datetime = _ts()
    updated_at: dt.datetime = _ts()


# ---------------------------------------------------------------------------------------- access, audit


class ApiToken(SQLModel, table=True):
    """Bearer tokens; only a SHA-256 hash of the secret is stored."""

    id: int | None = Field(default=None, primary_key=True)
    token_hash: str = Field(max_length=64, unique=True)
    role: str = Field(max_length=16)
    customer_id: int | None = Field(default=None, foreign_key="customer.id")
    rep_email: str | None = Field(default=None, max_length=254)
    label: str | None = Field(default=None, max_length=200)
    created_at: dt.datetime = _ts()
    revoked_at: dt.datetime | None = _ts(default=None)
    last_used_at: dt.datetime | None = _ts(default=None)
    # Web sessions of this token started before this instant are over (set by logging out).
    sessions_after: dt.datetime | None = _ts(default=None)


class AuditEvent(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    at: dt.datetime = _ts(index=True)
    actor: str | None = Field(default=None, max_length=254)
    action: str = Field(max_length=64)
    subject: str | None = Field(default=None, max_length=200)
    detail: str | None = None


class AppSetting(SQLModel, table=True):
    """Small key/value store. Older versions kept the signing key here (`lifecycle.keys` moves it out)."""

    key: str = Field(primary_key=True, max_length=64)
    value: str


def table_of(model: type[SQLModel]) -> sa.Table:
    """The Core table of a model, for bulk statements (`table_of(Delivery).update()`)."""
    return model.__table__  # type: ignore[attr-defined]  # SQLModel sets it on table models but does not declare it


class _Keyed(Protocol):
    id: int | None


def pk(row: _Keyed) -> int:
    """The id of a row that is in the database (loaded, or added and flushed): typed `int`, not `int | None`."""
    if row.id is None:
        raise ValueError(f"{type(row).__name__} has no id yet: it was never flushed")
    return row.id
