"""SendGrid: the official `sendgrid` library posting to `/v3/mail/send`.

The mailer sends once and reports: the provider id is SendGrid's `X-Message-Id`. It never retries or
sleeps; a transient failure (429, 5xx, a refused connection) is a `DeliveryError` with the delay
SendGrid asked for, and the scheduler puts the delivery back with a later `next_attempt_at`.
Any other 4xx is permanent and carries SendGrid's own error messages, so the report says what was wrong.

The whole exchange ends by the send deadline (`SendDeadline`: the library's socket timeout is per read,
so a server trickling its answer would never trip it). A failure after the request was written (the
deadline, a reset, a garbled answer) is `unknown`: SendGrid may have accepted the message, and only its
event webhook can tell. The library's HTTP client builds a fresh `urllib` opener per request and leaves
one seam for it, `Client._make_request` ("so we can mock it easily"); the mailer uses that seam on the
endpoint it calls to send the request over a kept connection instead.

Connections are kept (HTTP keep-alive, `_Connections`): a fresh TCP and TLS handshake per email would
cost more than the email itself. A kept connection the server closed while idle is noticed before it is
used (readable, or idle longer than `KEEP_IDLE_SECONDS`) and replaced; one that fails while the request
is being written is replaced once (the server cannot have acted on half a request). After the whole
request was written, a failure is `unknown`, as for a fresh connection. A connection is given back only
after a complete answer, so a send cut off by its deadline never leaves a half-read one behind.
"""

from __future__ import annotations

import base64
import datetime as dt
import http.client
import io
import json
import os
import select
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from email.message import Message
from email.utils import parsedate_to_datetime

from python_http_client.exceptions import HTTPError, handle_error
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

from lifecycle.config import Settings
from lifecycle.errors import DeliveryError, LifecycleError
from lifecycle.mailers import Email
from lifecycle.mailers.deadline import SendDeadline

# 408 Request Timeout and 429 Too Many Requests are worth another try; so is every 5xx.
TRANSIENT_4XX = (408, 429)
# A kept connection idle longer than this is closed rather than reused: servers close idle connections
# after a minute or so (nginx's default is 75 s), and one closed at the very moment it is reused would
# turn a sure outcome into an unknown one.
KEEP_IDLE_SECONDS = 20.0


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
        mail.add_attachment(
            Attachment(
                FileContent(base64.b64encode(att.content).decode("ascii")),
                FileName(att.filename),
                FileType(att.mimetype),  # exactly e.g. "text/calendar": SendGrid refuses parameters here
                Disposition("attachment"),
            )
        )
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
    def __init__(
        self,
        api_key: str,
        *,
        host: str = "https://api.sendgrid.com",
        timeout: float = 10.0,
        deadline: float = 30.0,
        sandbox: bool = False,
        clock: Callable[[], float] = time.time,
        concurrency: int = 8,
    ):
        if not api_key:
            raise LifecycleError("SendGrid needs an API key: set SENDGRID_API_KEY")
        self.client = SendGridAPIClient(api_key=api_key, host=host.rstrip("/"))
        # python_http_client has no timeout by default (a hung connection would hang a worker); the
        # root client's `timeout` is handed to every request built from it. It is per socket operation;
        # `deadline` (seconds) bounds the whole send.
        self.client.client.timeout = timeout
        self.timeout = timeout
        self.deadline = deadline
        self.sandbox = sandbox
        self.clock = clock  # only to turn X-RateLimit-Reset (an epoch) into a delay
        self.concurrency = max(1, concurrency)
        self.connections = _Connections(limit=self.concurrency)

    @classmethod
    def from_settings(cls, settings: Settings) -> SendGridMailer:
        return cls(
            settings.sendgrid_api_key or "",
            host=settings.sendgrid_host,
            timeout=settings.sendgrid_timeout,
            deadline=settings.send_deadline,
            sandbox=settings.sendgrid_sandbox,
            concurrency=settings.sendgrid_concurrency,
        )

    def send_many(self, emails) -> list[str | None | Exception]:
        """Many emails, at most `concurrency` requests in flight (a bounded pool of threads), each
        submitted as soon as it is built (`emails` may be a generator); each request has its own send
        deadline, counted from its own start. An outcome per email, in order."""
        from concurrent.futures import ThreadPoolExecutor

        from lifecycle.mailers import send_one

        with ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="sendgrid") as pool:
            return list(pool.map(lambda email: send_one(self, email), emails))

    def send(self, email: Email) -> str | None:
        mail = build_mail(email, sandbox=self.sandbox)
        deadline = SendDeadline(
            email.deadline if email.deadline is not None else time.monotonic() + self.deadline
        )
        if deadline.remaining() <= 0:
            raise DeliveryError("SendGrid not called: the send deadline had already passed")
        # The library's own `SendGridAPIClient.send` is `client.mail.send.post(request_body=mail.get())`;
        # the endpoint object is new on every access, so the seam is set on this call's only.
        endpoint = self.client.client.mail.send
        endpoint._make_request = lambda _opener, request, timeout=None: self._open(deadline, request, timeout)
        try:
            with deadline:
                response = endpoint.post(request_body=mail.get())
            if deadline.expired:
                # The answer was cut off: http.client accepts a truncated status line ("HTTP/1.1 20")
                # and no headers as a complete answer, so nothing read after the cut can be trusted.
                raise http.client.IncompleteRead(b"")
        except HTTPError as err:  # SendGrid answered: the outcome is known
            raise self._error(err) from None
        except (OSError, http.client.HTTPException, ValueError) as exc:  # refused, reset, timed out, garbled
            reason = getattr(exc, "reason", None) or exc
            why = (
                f"no complete answer within the {self.deadline:g} s send deadline"
                if deadline.passed
                else f"{type(exc).__name__}: {reason}"
            )
            if deadline.written:
                raise DeliveryError(
                    f"SendGrid outcome unknown: the request was sent, then {why}", unknown=True
                ) from None
            raise DeliveryError(f"SendGrid unreachable: {why}") from None
        return response.headers.get("X-Message-Id")

    def _open(self, deadline: SendDeadline, request: urllib.request.Request, timeout: float | None):
        """What python_http_client's `_make_request` does (an answer, or its HTTPError for any status but
        2xx), over a kept connection whose socket obeys `deadline`."""
        url = urllib.parse.urlsplit(request.full_url)
        target = url.path + (f"?{url.query}" if url.query else "")
        headers = dict(request.header_items())
        per_operation = timeout or self.timeout
        conn, reused = self.connections.take(url.scheme, url.netloc, deadline.timeout(per_operation))
        kept = False
        try:
            _watch(conn, deadline, per_operation)
            try:
                conn.request(request.get_method(), target, body=request.data, headers=headers)
            except (OSError, http.client.HTTPException):
                if not reused or deadline.passed:
                    raise
                # A kept connection that failed before the whole request was written: the server did
                # not act on it. Once more, on a new connection.
                conn.close()
                conn = self.connections.new(url.scheme, url.netloc, deadline.timeout(per_operation))
                _watch(conn, deadline, per_operation)
                conn.request(request.get_method(), target, body=request.data, headers=headers)
            deadline.written = True  # headers and body handed to the network: the provider may act on it
            response = conn.getresponse()
            body = response.read()
            answer = _Answer(response.status, response.reason, body, response.msg)
            kept = not response.will_close and not deadline.passed
        finally:
            if kept:
                self.connections.give_back(url.scheme, url.netloc, conn)
            else:
                conn.close()
        if not 200 <= answer.status < 300:  # as urllib: a redirect or an error is not an acceptance
            err = urllib.error.HTTPError(
                request.full_url, answer.status, answer.reason, answer.msg, io.BytesIO(body)
            )
            exc = handle_error(err)
            exc.__cause__ = None
            raise exc from None
        return answer

    def close(self) -> None:
        """Close the kept connections (a mailer is usable again afterwards: it opens new ones)."""
        self.connections.close()

    def _error(self, err: HTTPError) -> DeliveryError:
        status = int(err.status_code)
        headers: Message | dict[str, str] = err.headers or {}
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


class _Answer:
    """A complete answer, read: what python_http_client's `Response` takes from a urllib response."""

    def __init__(self, status: int, reason: str, body: bytes, msg: http.client.HTTPMessage):
        self.status, self.reason, self.body, self.msg = status, reason, body, msg

    def getcode(self) -> int:
        return self.status

    def read(self) -> bytes:
        return self.body

    def info(self) -> http.client.HTTPMessage:
        return self.msg


def _watch(conn: http.client.HTTPConnection, deadline: SendDeadline, per_operation: float) -> None:
    """Connect if needed; every socket operation of this send ends by `deadline`."""
    conn.timeout = deadline.timeout(per_operation)
    if conn.sock is None:
        conn.connect()
    else:
        conn.sock.settimeout(conn.timeout)
    assert conn.sock is not None  # connected
    deadline.watch(conn.sock)


class _Connections:
    """Idle kept connections per (scheme, host), at most `limit` of each, for one process."""

    def __init__(self, limit: int):
        self.limit = limit
        self._idle: dict[tuple[str, str], list[tuple[http.client.HTTPConnection, float]]] = {}
        self._lock = threading.Lock()
        self._pid = os.getpid()

    def take(self, scheme: str, netloc: str, timeout: float) -> tuple[http.client.HTTPConnection, bool]:
        """An idle connection that is still open (True), or a new one, not yet connected (False)."""
        while True:
            with self._lock:
                if self._pid != os.getpid():  # a forked child: the sockets are the parent's
                    self._idle, self._pid = {}, os.getpid()
                idle = self._idle.get((scheme, netloc))
                conn, since = idle.pop() if idle else (None, 0.0)
            if conn is None:
                return self.new(scheme, netloc, timeout), False
            if time.monotonic() - since <= KEEP_IDLE_SECONDS and _still_open(conn):
                return conn, True
            conn.close()

    def new(self, scheme: str, netloc: str, timeout: float) -> http.client.HTTPConnection:
        kind = http.client.HTTPSConnection if scheme == "https" else http.client.HTTPConnection
        return kind(netloc, timeout=timeout)

    def give_back(self, scheme: str, netloc: str, conn: http.client.HTTPConnection) -> None:
        with self._lock:
            idle = self._idle.setdefault((scheme, netloc), [])
            if len(idle) < self.limit and self._pid == os.getpid():
                idle.append((conn, time.monotonic()))
                return
        conn.close()

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, {}
        for conns in idle.values():
            for conn, _ in conns:
                conn.close()


def _still_open(conn: http.client.HTTPConnection) -> bool:
    """An idle kept connection has nothing to read: if it has, the server closed it (or broke it)."""
    sock = conn.sock
    if sock is None:
        return False
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return False
    return not readable


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
