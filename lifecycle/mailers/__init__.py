"""Email backends behind one interface: `Mailer.send(Email) -> provider message id`.

`MAILERS` maps LIFECYCLE_EMAIL_BACKEND (file, sendgrid, smtp) to a factory. Backends raise
`lifecycle.errors.DeliveryError` (permanent or transient, with retry_after, or `unknown` when the
request reached the provider but the answer did not reach us) and finish every send by
`Email.deadline`.

What each backend can promise (the README's "Delivery guarantees"), and so how a send whose outcome
is unknown is settled (`RECONCILIATION`):

- `sendgrid`, "events": SendGrid's event webhook reports `processed` with the delivery ids we sent as
  `custom_args`; an unknown send waits `LIFECYCLE_RECONCILE_SECONDS` for it, then is retried and
  flagged as a possible duplicate.
- `file`, "lookup": the file name is derived from the delivery ids and written atomically, so the file's
  existence settles the question at once, either way.
- `smtp`, "none": nothing can tell; the retry (after the usual backoff) is flagged a possible duplicate.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol

from lifecycle.config import Settings


@dataclass
class Attachment:
    filename: str
    content: bytes
    mimetype: str  # exactly "text/calendar" for .ics (SendGrid rejects parameters in the type)


@dataclass
class Email:
    to: str
    to_name: str | None
    subject: str
    text: str
    html: str
    from_email: str
    from_name: str | None = None
    reply_to: str | None = None  # where answers go: the customer's account rep
    reply_to_name: str | None = None
    attachments: list[Attachment] = field(default_factory=list)
    custom_args: dict[str, str] = field(default_factory=dict)  # e.g. {"delivery_ids": "12,13"}
    categories: list[str] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)
    message_id: str | None = None  # RFC 5322 Message-ID, set by the channel
    date: dt.datetime | None = None  # the send instant (simulated time in `tick --at`); None: now
    deadline: float | None = None  # time.monotonic() instant the send must end by; None: the setting


class Mailer(Protocol):
    def send(self, email: Email) -> str | None: ...

    # Optional: `send_many(emails) -> [provider id or exception]`, many emails at once (one SMTP
    # connection reused, a bounded pool of SendGrid requests). Without it, they go one by one.


def send_many(mailer: Mailer, emails: Iterable[Email | Exception]) -> list[str | None | Exception]:
    """Send many emails through `mailer`: an outcome per email, in order (the provider id, or the
    exception its send raised). An exception in `emails` (the email could not be built) is its own
    outcome. `emails` may be a generator: a backend sending concurrently sends the first ones while the
    next are built. A BaseException (the process is stopping) is not caught."""
    own = getattr(mailer, "send_many", None)
    if own is not None:
        return own(emails)
    out: list[str | None | Exception] = []
    for email in emails:
        out.append(send_one(mailer, email))
    return out


def send_one(mailer: Mailer, email: Email | Exception) -> str | None | Exception:
    if isinstance(email, Exception):
        return email
    try:
        return mailer.send(email)
    except Exception as exc:  # noqa: BLE001 - the outcome of that email
        return exc


def _file(settings: Settings) -> Mailer:
    from lifecycle.mailers.file import FileMailer

    return FileMailer(settings.outbox_dir)


_SENDGRID: dict[tuple, Mailer] = {}  # kept for their kept connections, by the settings they were made of
_SENDGRID_LOCK = threading.Lock()


def _sendgrid(settings: Settings) -> Mailer:
    """The SendGrid mailer of these settings, the same one each time: its connections are kept from
    one chunk of emails to the next (a handful of settings at most; the oldest is closed)."""
    from lifecycle.mailers.sendgrid import SendGridMailer

    key = (
        settings.sendgrid_api_key,
        settings.sendgrid_host,
        settings.sendgrid_timeout,
        settings.send_deadline,
        settings.sendgrid_sandbox,
        settings.sendgrid_concurrency,
    )
    with _SENDGRID_LOCK:
        mailer = _SENDGRID.get(key)
        if mailer is None:
            mailer = _SENDGRID[key] = SendGridMailer.from_settings(settings)
            while len(_SENDGRID) > 4:
                oldest = _SENDGRID.pop(next(iter(_SENDGRID)))
                assert isinstance(oldest, SendGridMailer)
                oldest.close()
    return mailer


def _smtp(settings: Settings) -> Mailer:
    from lifecycle.mailers.smtp import SmtpMailer

    return SmtpMailer.from_settings(settings)


MAILERS: dict[str, Callable[[Settings], Mailer]] = {"file": _file, "sendgrid": _sendgrid, "smtp": _smtp}
RECONCILIATION: dict[str, str] = {"file": "lookup", "sendgrid": "events", "smtp": "none"}


def get_mailer(settings: Settings) -> Mailer:
    return MAILERS[settings.email_backend](settings)
