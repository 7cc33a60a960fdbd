"""SMTP: the stdlib client sending the same MIME message the file backend writes.

Like every mailer it sends once and reports: a 4xx reply or a lost connection is transient (the
scheduler tries again later), a 5xx reply is permanent. The provider id is the message's Message-ID.
"""

from __future__ import annotations

import smtplib
import ssl

from lifecycle.channels.base import DeliveryError
from lifecycle.config import Settings
from lifecycle.mailers import Email
from lifecycle.mailers.mime import to_mime


def _reply(code: int, text: bytes | str) -> str:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return f"{code} {text}".strip()


class SmtpMailer:
    def __init__(self, host: str, port: int = 25, *, username: str | None = None, password: str | None = None,
                 starttls: bool = False, timeout: float = 30.0, ssl_context: ssl.SSLContext | None = None):
        self.host = host
        self.port = port
        self.username = username
        self.password = password
        self.starttls = starttls
        self.timeout = timeout
        self.ssl_context = ssl_context

    @classmethod
    def from_settings(cls, settings: Settings) -> SmtpMailer:
        return cls(settings.smtp_host, settings.smtp_port, username=settings.smtp_username,
                   password=settings.smtp_password, starttls=settings.smtp_starttls, timeout=settings.smtp_timeout)

    def send(self, email: Email) -> str:
        msg = to_mime(email)
        try:
            with smtplib.SMTP(self.host, self.port, timeout=self.timeout) as smtp:
                smtp.ehlo()
                if self.starttls:
                    # Never fall back to plain text when TLS was asked for: SMTPNotSupportedError below.
                    smtp.starttls(context=self.ssl_context or ssl.create_default_context())
                    smtp.ehlo()
                if self.username:
                    smtp.login(self.username, self.password or "")
                refused = smtp.send_message(msg)
        except smtplib.SMTPRecipientsRefused as exc:
            replies = list(exc.recipients.values())
            text = "; ".join(f"{addr}: {_reply(code, resp)}" for addr, (code, resp) in exc.recipients.items())
            permanent = all(code >= 500 for code, _ in replies)
            raise DeliveryError(f"SMTP recipient refused: {text}", permanent=permanent) from None
        except smtplib.SMTPNotSupportedError as exc:
            raise DeliveryError(f"SMTP server {self.host}:{self.port}: {exc}", permanent=True) from None
        except smtplib.SMTPResponseException as exc:  # sender refused, data refused, auth, greeting
            permanent = exc.smtp_code >= 500
            raise DeliveryError(f"SMTP {_reply(exc.smtp_code, exc.smtp_error)}", permanent=permanent) from None
        except (smtplib.SMTPException, OSError) as exc:  # disconnected, refused, timed out, TLS failure
            raise DeliveryError(f"SMTP server {self.host}:{self.port} unreachable: {type(exc).__name__}: {exc}") \
                from None
        if refused:  # only some recipients refused; we send one recipient per message, so unlikely
            text = "; ".join(f"{addr}: {_reply(code, resp)}" for addr, (code, resp) in refused.items())
            raise DeliveryError(f"SMTP recipient refused: {text}", permanent=True)
        return str(msg["Message-ID"])
