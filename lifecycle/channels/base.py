"""The one small interface every channel implements.

A channel receives a `Batch`: one recipient and the notices due for them (one or more: a digest), each
with its delivery id. It returns the provider's message id (or None) or raises `DeliveryError`.
Channels with `transactional = True` (the portal inbox) write into the database session that also
records the outcome, so writing and recording are one atomic step: they either happened or not. The
others (email) may read through the session (the send's transaction) but write nothing; they hand the
message to a provider: if the answer is lost (a timeout after the request was written, a reset), the
provider may have it, and the error says so (`unknown=True`). Such a channel also says how an unknown
send is settled (`unknown_wait`, `lookup`; see lifecycle.recovery).
Every send is bounded by `deadline` (a `time.monotonic()` instant): nothing is written to a provider
after it, and no send lasts beyond it.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol


class DeliveryError(Exception):
    """A channel could not deliver.

    permanent: retrying cannot help (a 400 from SendGrid, an invalid address): the delivery fails now.
    retry_after: seconds the provider asked us to wait (Retry-After), used for the next attempt.
    unknown: the request reached the provider but its answer did not reach us: it may have been
    accepted. The delivery is not retried blindly (lifecycle.recovery reconciles it first).
    """

    def __init__(self, message: str, *, permanent: bool = False, retry_after: float | None = None,
                 unknown: bool = False):
        super().__init__(message)
        self.message = message
        self.permanent = permanent
        self.retry_after = retry_after
        self.unknown = unknown


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
    recipient: str  # an email address, or the customer key for the portal
    recipient_name: str | None
    customer: dict[str, Any]  # key, name, locale, timezone, account_rep, ...
    audience: str  # customer | rep
    items: list[Item] = field(default_factory=list)
    # Shared by the batches of one delivery run: what several recipients of one customer have in
    # common (the .ics attachment) is built once.
    cache: dict[Any, Any] = field(default_factory=dict)

    @property
    def delivery_ids(self) -> list[int]:
        return [i.delivery_id for i in self.items]


class Channel(Protocol):
    name: ClassVar[str]
    transactional: ClassVar[bool]

    def send(self, batch: Batch, *, at: dt.datetime, session=None, deadline: float | None = None) -> str | None: ...

    # Only for channels that are not transactional (their sends can end unknown):

    def unknown_wait(self, attempts: int) -> dt.timedelta:
        """How long an unknown send waits to be settled (by the provider's events) before a retry."""
        ...

    def lookup(self, delivery_ids: list[int], recipient: str) -> str | bool | None:
        """Whether the provider holds the message of these deliveries: its id, False when it
        certainly does not, None when it cannot tell."""
        ...
