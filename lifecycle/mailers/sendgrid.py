"""SendGrid: the official `sendgrid` library posting to `/v3/mail/send`.

The mailer sends once and reports: the provider id is SendGrid's `X-Message-Id`. It never retries or
sleeps; a transient failure (429, 5xx, a timeout, a refused connection) is a `DeliveryError` with the
delay SendGrid asked for, and the scheduler puts the delivery back with a later `next_attempt_at`.
Any other 4xx is permanent and carries SendGrid's own error messages, so the report says what was wrong.
"""

from __future__ import annotations

import base64
import datetime as dt
import http.client
import json
import time
from collections.abc import Callable
from email.utils import parsedate_to_datetime

from python_http_client.exceptions import HTTPError
from sendgrid import SendGridAPIClient
from sendgrid.helpers.mail import (
    Attachment,
    Category,
    CustomArg,
    Disposition,
    FileContent,
    FileName,
    FileType,
    From,
    Header,
    Mail,
    MailSettings,
    ReplyTo,
    SandBoxMode,
    To,
)

from lifecycle.channels.base import DeliveryError
from lifecycle.config import Settings
from lifecycle.errors import LifecycleError
from lifecycle.mailers import Email

# 408 Request Timeout and 429 Too Many Requests are worth another try; so is every 5xx.
TRANSIENT_4XX = (408, 429)


def build_mail(email: Email, *, sandbox: bool = False) -> Mail:
    """The `Mail` object (request body) for one email."""
    mail = Mail(
        from_email=From(email.from_email, email.from_name),
        to_emails=To(email.to, email.to_name),
        subject=email.subject,
        plain_text_content=email.text,
        html_content=email.html,
    )
    if email.reply_to:
        mail.reply_to = ReplyTo(email.reply_to, email.reply_to_name)
    # The library prepends every added attachment and category: add them last to first to keep order.
    for att in reversed(email.attachments):
        mail.add_attachment(Attachment(
            FileContent(base64.b64encode(att.content).decode("ascii")),
            FileName(att.filename),
            FileType(att.mimetype),  # exactly e.g. "text/calendar": SendGrid refuses parameters here
            Disposition("attachment"),
        ))
    for key, value in email.custom_args.items():
        mail.add_custom_arg(CustomArg(key, str(value)))
    for category in reversed(email.categories):
        mail.add_category(Category(category))
    for name, value in email.headers.items():
        mail.add_header(Header(name, value))
    if sandbox:
        mail.mail_settings = MailSettings(sandbox_mode=SandBoxMode(True))
    return mail


class SendGridMailer:
    def __init__(self, api_key: str, *, host: str = "https://api.sendgrid.com", timeout: float = 10.0,
                 sandbox: bool = False, clock: Callable[[], float] = time.time):
        if not api_key:
            raise LifecycleError("SendGrid needs an API key: set SENDGRID_API_KEY")
        self.client = SendGridAPIClient(api_key=api_key, host=host.rstrip("/"))
        # python_http_client has no timeout by default (a hung connection would hang a worker); the
        # root client's `timeout` is handed to every request built from it.
        self.client.client.timeout = timeout
        self.timeout = timeout
        self.sandbox = sandbox
        self.clock = clock  # only to turn X-RateLimit-Reset (an epoch) into a delay

    @classmethod
    def from_settings(cls, settings: Settings) -> SendGridMailer:
        return cls(settings.sendgrid_api_key or "", host=settings.sendgrid_host,
                   timeout=settings.sendgrid_timeout, sandbox=settings.sendgrid_sandbox)

    def send(self, email: Email) -> str | None:
        mail = build_mail(email, sandbox=self.sandbox)
        try:
            response = self.client.send(mail)
        except HTTPError as err:
            raise self._error(err) from None
        except (OSError, http.client.HTTPException) as exc:  # refused, reset, timed out, garbled
            reason = getattr(exc, "reason", None) or exc
            raise DeliveryError(f"SendGrid unreachable: {type(exc).__name__}: {reason}") from None
        return response.headers.get("X-Message-Id")

    def _error(self, err: HTTPError) -> DeliveryError:
        status = int(err.status_code)
        headers = err.headers or {}
        detail = sendgrid_messages(err.body) or str(err.reason or "")
        message = f"SendGrid {status}: {detail}" if detail else f"SendGrid {status}"
        if status in TRANSIENT_4XX or status >= 500:
            return DeliveryError(message, permanent=False, retry_after=self._retry_after(headers))
        return DeliveryError(message, permanent=True)

    def _retry_after(self, headers) -> float | None:
        """Seconds to wait, from Retry-After (seconds or an HTTP date) or X-RateLimit-Reset (epoch)."""
        now = self.clock()
        value = (headers.get("Retry-After") or "").strip()
        if value:
            if value.isdigit():
                return float(value)
            try:
                when = parsedate_to_datetime(value)
            except (TypeError, ValueError):
                when = None
            if when is not None:
                if when.tzinfo is None:
                    when = when.replace(tzinfo=dt.UTC)
                return max(when.timestamp() - now, 0.0)
        reset = (headers.get("X-RateLimit-Reset") or "").strip()
        if reset.isdigit():
            return max(float(reset) - now, 0.0)
        return None


def sendgrid_messages(body: bytes | str | None) -> str:
    """SendGrid's error body `{"errors": [{"message", "field"}]}` as one readable line."""
    if not body:
        return ""
    try:
        data = json.loads(body)
    except (TypeError, ValueError):
        text = body.decode("utf-8", "replace") if isinstance(body, bytes) else str(body)
        return text.strip()[:500]
    errors = data.get("errors") if isinstance(data, dict) else None
    if not isinstance(errors, list):
        return json.dumps(data)[:500]
    parts = []
    for e in errors:
        if not isinstance(e, dict):
            continue
        msg = str(e.get("message") or "error")
        parts.append(f"{msg} (field: {e['field']})" if e.get("field") else msg)
    return "; ".join(parts)
