"""The one small interface every channel implements, and what the fan-out and the senders share.

A channel is one folder, `lifecycle/channels/<name>/`, holding its class (in `__init__.py`), its
message templates (`templates/<locale>/`) and anything else it needs; `registry.CHANNELS` lists them,
one line each. Nothing else in the code names a channel. A channel declares:

- `audiences`: which notices it carries (`customer`, `rep`);
- `recipients(audience, notices)`: the SQL source of its recipients for a set of notices (a select of
  RECIPIENT_COLUMNS). The scheduler's fan-out inserts it as deliveries; the plan preview, the change
  preview and the reports run the same select (lifecycle.channels.fanout);
- `success`: what a send that returned means: `delivered` (the portal inbox: written in the very
  transaction that records it) or `sent` (handed to a provider);
- `transactional`: it writes through the session that records the outcome, so writing and recording
  are one atomic step. The others may read through the session (the send's transaction) but write
  nothing; they hand the message to a provider: if the answer is lost (a timeout after the request was
  written, a reset), the provider may have it, and the error says so (`unknown=True`). Such a channel
  also says how an unknown send is settled (`unknown_wait`, `lookup`; see lifecycle.recovery);
- `digest`: whether one message per recipient lists every notice due for them (email), or each
  delivery is a message of its own (webhooks: the delivery id is the message id receivers deduplicate on);
- `subscribed`: its recipients are the customer's subscriptions (`customer_channel` rows), which the
  batch carries (`Batch.subscription`), rather than contacts;
- `send(batch) -> provider id`, raising `lifecycle.errors.DeliveryError(permanent=..., retry_after=...,
  unknown=...)`. Every send is bounded by `deadline` (a `time.monotonic()` instant): nothing is written
  to a provider after it, and no send lasts beyond it.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

import sqlalchemy as sa

from lifecycle.models import CustomerChannel, DeliveryStatus, Notice, table_of

N = table_of(Notice)
CC = table_of(CustomerChannel)

# The columns of every channel's recipient source, in this order.
RECIPIENT_COLUMNS = ("notice_id", "customer_id", "channel", "recipient", "contact_id", "subscription_id")


@dataclass
class Item:
    """One notice inside a batch, with everything a template needs (see lifecycle.content)."""

    delivery_id: int
    notice_id: int
    kind: str
    context: dict[str, Any]


@dataclass
class Batch:
    channel: str
    recipient: str  # an email address, the customer key for the portal, a subscription's label
    recipient_name: str | None
    customer: dict[str, Any]  # key, name, locale, timezone, account_rep, ...
    audience: str  # customer | rep
    items: list[Item] = field(default_factory=list)
    # Shared by the batches of one delivery run: what several recipients of one customer have in
    # common (the rendered words, the .ics attachment) is built once, and each milestone's calendar
    # event once for every customer (`feeds.attachment`).
    cache: dict[Any, Any] = field(default_factory=dict)
    # For a subscribed channel: the subscription (id, kind, label, config as stored: secrets encrypted).
    subscription: dict[str, Any] | None = None

    @property
    def delivery_ids(self) -> list[int]:
        return [i.delivery_id for i in self.items]


class Channel(Protocol):
    name: ClassVar[str]
    audiences: ClassVar[frozenset[str]]
    success: ClassVar[str]  # DeliveryStatus.DELIVERED or DeliveryStatus.SENT
    transactional: ClassVar[bool]
    digest: ClassVar[bool]
    subscribed: ClassVar[bool]

    def recipients(self, audience: str, notices: sa.ColumnElement) -> sa.Select:
        """Recipients of the notices matching `notices` (a condition on the notice table) of `audience`."""
        ...

    def send(
        self, batch: Batch, *, at: dt.datetime, session=None, deadline: float | None = None
    ) -> str | None: ...

    # Only for channels that are not transactional (their sends can end unknown):

    def unknown_wait(self, attempts: int) -> dt.timedelta:
        """How long an unknown send waits to be settled (by the provider's events) before a retry."""
        ...

    def lookup(self, delivery_ids: list[int], recipient: str) -> str | bool | None:
        """Whether the provider holds the message of these deliveries: its id, False when it
        certainly does not, None when it cannot tell."""
        ...


def subscription_recipients(kind: str, notices: sa.ColumnElement) -> sa.Select:
    """The recipient source of a subscribed channel: every enabled subscription of that kind of the
    notices' customers. The recipient is the subscription's label and id (unique per subscription)."""
    return (
        sa.select(
            N.c.id,
            N.c.customer_id,
            sa.literal(kind),
            CC.c.label + " #" + sa.cast(CC.c.id, sa.String),
            sa.null(),
            CC.c.id,
        )
        .join(CC, sa.and_(CC.c.customer_id == N.c.customer_id, CC.c.kind == kind, CC.c.enabled.is_(True)))
        .where(notices)
    )


def has_subscriptions(conn: sa.Connection, kind: str) -> bool:
    """Whether any customer has an enabled subscription of this kind (a channel nobody subscribed to
    has no recipients: a query over its recipients can be skipped)."""
    return (
        conn.execute(sa.select(CC.c.id).where(CC.c.kind == kind, CC.c.enabled.is_(True)).limit(1)).first()
        is not None
    )


class SubscribedChannel:
    """What the subscribed channels (webhook, Slack, Teams) share: customer notices to every enabled
    subscription, one message per delivery, `sent` when the receiver accepted it. An outcome lost after
    the request was written is unknown; nothing can look it up, so it is sent again after the usual
    backoff, flagged a possible duplicate (receivers of a signed webhook deduplicate on its id)."""

    audiences: ClassVar[frozenset[str]] = frozenset({"customer"})
    success: ClassVar[str] = DeliveryStatus.SENT.value
    transactional: ClassVar[bool] = False
    digest: ClassVar[bool] = False
    subscribed: ClassVar[bool] = True
    name: ClassVar[str]

    def recipients(self, audience: str, notices: sa.ColumnElement) -> sa.Select:
        return subscription_recipients(self.name, notices)

    def unknown_wait(self, attempts: int) -> dt.timedelta:
        from lifecycle.delivery import backoff

        return backoff(attempts)

    def lookup(self, delivery_ids: list[int], recipient: str) -> str | bool | None:
        return None

    # What a subscription holds (sealed, lifecycle.channels.secrets) and shows once when it is added.
    title: ClassVar[str]

    def new_secrets(self, url: str) -> tuple[dict, dict]:
        """(the settings to seal, what the customer is shown once): by default the URL, which for a
        chat webhook is the credential itself."""
        return {"url": url}, {}

    def texts(self, ctx: dict, locale: str) -> dict[str, str]:
        """The channel's message texts for one notice: the templates `<name>.txt` in the `templates/`
        folder beside the channel's own module, each rendered in `locale` (lifecycle.i18n)."""
        import inspect
        from pathlib import Path

        from lifecycle.templating import render_in

        folder = Path(inspect.getfile(type(self))).resolve().parent / "templates"
        return {name: render_in(folder, f"{name}.txt", locale, item=ctx).strip() for name in self.text_names}

    text_names: ClassVar[tuple[str, ...]] = ("title", "text")

    def send(
        self, batch: Batch, *, at: dt.datetime, session=None, deadline: float | None = None
    ) -> str | None:
        """One message per delivery: the notice posted to the subscription (`post_notice`)."""
        from lifecycle.channels.secrets import unseal

        assert batch.subscription is not None  # a subscribed channel's batch carries its subscription
        config = unseal(batch.subscription["config"])
        return self.post_notice(config, batch.items[0].context, batch.customer["locale"], deadline)

    def send_test(self, config: dict, customer: dict, *, deadline: float) -> str | None:
        """Send a test message to the subscription with these (unsealed) settings."""
        return self.post_notice(
            config, test_context(customer, customer["locale"]), customer["locale"], deadline
        )

    def post_notice(self, config: dict, ctx: dict, locale: str, deadline: float | None) -> str | None:
        """Post one notice (its context `ctx`) to a subscription: every channel has its own."""
        raise NotImplementedError


def test_context(customer: dict, locale: str) -> dict:
    """The notice context of a test message (`lifecycle channel test`): a notice of kind `test`."""
    return {
        "kind": "test",
        "audience": "customer",
        "notice_id": None,
        "stage": None,
        "stage_label": "",
        "lead": None,
        "lead_text": "",
        "customer_key": customer["key"],
        "customer_name": customer["name"],
        "product_slug": "",
        "product_name": "",
        "version": None,
        "milestone_kind": None,
        "milestone_label": "",
        "date": None,
        "old_date": None,
        "stage_date": None,
        "date_text": "",
        "days_left": None,
        "days_text": "",
        "passed": False,
        "upgrade_to": None,
        "old_date_text": "",
        "reason": "",
        "short_notice": False,
        "ack_url": None,
        "calendar_url": customer.get("calendar_url"),
        "detail": "",
        "locale": locale,
        "milestone_id": None,
    }
