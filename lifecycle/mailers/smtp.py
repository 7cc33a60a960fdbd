"""SMTP: the stdlib client sending the same MIME message the file backend writes.

Like every mailer it sends once and reports: a 4xx reply or a lost connection is transient (the
scheduler tries again later), a 5xx reply is permanent. The provider id is the message's Message-ID.

The whole conversation ends by the send deadline (`SendDeadline`). Once the message body and its final
"." went out, a lost reply (the deadline, a dropped connection) is `unknown`: the server may have
queued the message, and SMTP offers no way to ask, so the retry is recorded as a possible duplicate.
"""

from __future__ import annotations

import smtplib
import ssl
import time

from lifecycle.config import Settings
from lifecycle.errors import DeliveryError
from lifecycle.mailers import Email
from lifecycle.mailers.deadline import SendDeadline
from lifecycle.mailers.mime import to_mime

END_OF_DATA = b"\r\n.\r\n"


class _SMTP(smtplib.SMTP):
    """smtplib's client with its sockets bound to a deadline, knowing when the message data went out."""

    def __init__(self, deadline: SendDeadline, host: str, port: int, timeout: float):
        self.deadline = deadline
        self.data_sent = False
        super().__init__(host, port, timeout=deadline.timeout(timeout))

    def _get_socket(self, host, port, timeout):
        return self.deadline.watch(super()._get_socket(host, port, self.deadline.timeout(timeout)))

    def starttls(self, *args, **kwargs):
        reply = super().starttls(*args, **kwargs)
        self.deadline.watch(self.sock)
        return reply

    def send(self, s):
        super().send(s)
        if isinstance(s, bytes) and s.endswith(END_OF_DATA):  # smtplib's data(): the body and "."
            self.data_sent = True


def _reply(code: int, text: bytes | str) -> str:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return f"{code} {text}".strip()


class SmtpMailer:
    def __init__(
        self,
        host: str,
        port: int = 25,
        *,
        username: str | None = None,
        password: str | None = None,
        starttls: bool = False,
        timeout: float = 30.0,
        deadline: float = 30.0,
        ssl_context: ssl.SSLContext | None = None,
    ):
        self.host = host
        self.port = port
        self.username = username
        self.password = password
        self.starttls = starttls
        self.timeout = timeout  # per socket operation
        self.deadline = deadline  # seconds for the whole conversation
        self.ssl_context = ssl_context

    @classmethod
    def from_settings(cls, settings: Settings) -> SmtpMailer:
        return cls(
            settings.smtp_host,
            settings.smtp_port,
            username=settings.smtp_username,
            password=settings.smtp_password,
            starttls=settings.smtp_starttls,
            timeout=settings.smtp_timeout,
            deadline=settings.send_deadline,
        )

    def send(self, email: Email) -> str:
        msg = to_mime(email)
        deadline = SendDeadline(
            email.deadline if email.deadline is not None else time.monotonic() + self.deadline
        )
        if deadline.remaining() <= 0:
            raise DeliveryError("SMTP server not called: the send deadline had already passed")
        smtp = None
        try:
            with deadline:
                smtp = _SMTP(deadline, self.host, self.port, self.timeout)
                try:
                    smtp.ehlo()
                    if self.starttls:
                        # Never fall back to plain text when TLS was asked for: SMTPNotSupportedError below.
                        smtp.starttls(context=self.ssl_context or ssl.create_default_context())
                        smtp.ehlo()
                    if self.username:
                        smtp.login(self.username, self.password or "")
                    refused = smtp.send_message(msg)
                finally:
                    _close(smtp)
        except (smtplib.SMTPException, OSError) as exc:
            raise self._error(exc, deadline, smtp) from None
        if refused:  # only some recipients refused; we send one recipient per message, so unlikely
            text = "; ".join(f"{addr}: {_reply(code, resp)}" for addr, (code, resp) in refused.items())
            raise DeliveryError(f"SMTP recipient refused: {text}", permanent=True)
        return str(msg["Message-ID"])

    def _open(self, deadline: SendDeadline) -> _SMTP:
        smtp = _SMTP(deadline, self.host, self.port, self.timeout)
        try:
            smtp.ehlo()
            if self.starttls:
                # Never fall back to plain text when TLS was asked for: SMTPNotSupportedError.
                smtp.starttls(context=self.ssl_context or ssl.create_default_context())
                smtp.ehlo()
            if self.username:
                smtp.login(self.username, self.password or "")
        except BaseException:
            smtp.close()
            raise
        return smtp

    def send_many(self, emails) -> list[str | Exception]:
        """Many emails over one connection (opened for the first, reused for the next ones; a new one
        after an error). Each message has its own send deadline, counted from its own start, bound to
        the connection's socket while it is sent. An outcome per email, in order: the Message-ID or the
        DeliveryError (an exception in `emails`, an email that could not be built, is its own outcome)."""
        out: list[str | Exception] = []
        smtp: _SMTP | None = None
        try:
            for email in emails:
                if isinstance(email, Exception):
                    out.append(email)
                    continue
                try:
                    msg = to_mime(email)
                except Exception as exc:  # noqa: BLE001 - the outcome of that email
                    out.append(exc)
                    continue
                deadline = SendDeadline(
                    email.deadline if email.deadline is not None else time.monotonic() + self.deadline
                )
                if deadline.remaining() <= 0:
                    out.append(DeliveryError("SMTP server not called: the send deadline had already passed"))
                    continue
                for reused in (True, False) if smtp is not None else (False,):
                    try:
                        with deadline:
                            if smtp is None:
                                smtp = self._open(deadline)
                            else:
                                smtp.deadline, smtp.data_sent = deadline, False
                                assert smtp.sock is not None  # an open connection has its socket
                                deadline.watch(smtp.sock)
                                smtp.sock.settimeout(deadline.timeout(self.timeout))
                            refused = smtp.send_message(msg)
                    except (smtplib.SMTPException, OSError) as exc:
                        data_sent = smtp is not None and smtp.data_sent
                        err = self._error(exc, deadline, smtp)
                        if smtp is not None:
                            smtp.close()
                            smtp = None
                        dropped = isinstance(exc, smtplib.SMTPServerDisconnected) or not isinstance(
                            exc, smtplib.SMTPException
                        )  # (SMTPException is an OSError)
                        if reused and not data_sent and dropped:
                            continue  # the server closed the idle connection: once more on a new one
                        out.append(err)
                        break
                    if refused:
                        text = "; ".join(
                            f"{addr}: {_reply(code, resp)}" for addr, (code, resp) in refused.items()
                        )
                        out.append(DeliveryError(f"SMTP recipient refused: {text}", permanent=True))
                    else:
                        out.append(str(msg["Message-ID"]))
                    break
        finally:
            if smtp is not None:
                _close(smtp)
        return out

    def _error(self, exc: Exception, deadline: SendDeadline, smtp: _SMTP | None) -> DeliveryError:
        data_sent = smtp is not None and smtp.data_sent
        if data_sent and (deadline.expired or not isinstance(exc, smtplib.SMTPResponseException)):
            # The message went out and no (whole) reply came back: the server may have queued it. A
            # reply cut off by the deadline ("25") is no reply.
            why = (
                f"no reply within the {self.deadline:g} s send deadline"
                if deadline.passed
                else f"{type(exc).__name__}: {exc}"
            )
            return DeliveryError(
                f"SMTP outcome unknown: the message was sent to {self.host}:{self.port}, then {why}",
                unknown=True,
            )
        if isinstance(exc, smtplib.SMTPRecipientsRefused):
            replies = list(exc.recipients.values())
            text = "; ".join(f"{addr}: {_reply(code, resp)}" for addr, (code, resp) in exc.recipients.items())
            permanent = all(code >= 500 for code, _ in replies)
            return DeliveryError(f"SMTP recipient refused: {text}", permanent=permanent)
        if isinstance(exc, smtplib.SMTPNotSupportedError):
            return DeliveryError(f"SMTP server {self.host}:{self.port}: {exc}", permanent=True)
        if isinstance(exc, smtplib.SMTPResponseException):  # sender refused, data refused, auth, greeting
            return DeliveryError(
                f"SMTP {_reply(exc.smtp_code, exc.smtp_error)}", permanent=exc.smtp_code >= 500
            )
        # disconnected, refused, timed out, TLS failure: before the message went out
        why = (
            f"no reply within the {self.deadline:g} s send deadline"
            if deadline.passed
            else f"{type(exc).__name__}: {exc}"
        )
        return DeliveryError(f"SMTP server {self.host}:{self.port} unreachable: {why}")


def _close(smtp: smtplib.SMTP) -> None:
    """QUIT politely; the message's fate is already decided, so a failing QUIT changes nothing."""
    try:
        smtp.quit()
    except (smtplib.SMTPException, OSError):
        smtp.close()
