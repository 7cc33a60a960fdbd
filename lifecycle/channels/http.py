"""One HTTP POST for the channels that call a receiver's URL (webhook, Slack, Teams), bounded by the
send deadline like every email backend (lifecycle.mailers.deadline), and what an answer means.

- 2xx: accepted (`sent`);
- 408, 429 and 5xx: transient, retried from the delivery row (honouring Retry-After);
- any other answer, 3xx included (redirects are not followed: a webhook URL that moved is the
  customer's to fix), is permanent and names what the receiver said;
- no answer: before the request was written the receiver certainly did not get it (transient); after
  it, the outcome is unknown (lifecycle.recovery sends it again after the backoff, flagged).
"""

from __future__ import annotations

import datetime as dt
import http.client
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit

from lifecycle.errors import DeliveryError, InputError
from lifecycle.mailers.deadline import SendDeadline, deadline_opener

MAX_BODY = 2000  # characters of a receiver's answer kept (in the delivery's error)
TRANSIENT_4XX = (408, 429)


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: str

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None  # the 3xx reaches the caller as an answer


def post(
    url: str, body: bytes, headers: dict[str, str], *, deadline: float, timeout: float, what: str
) -> Answer:
    """POST `body` to `url`; the answer whatever its status. Raises DeliveryError when there is none."""
    limit = SendDeadline(deadline)
    if limit.remaining() <= 0:
        raise DeliveryError(f"{what} not called: the send deadline had already passed")
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with limit:
            try:
                response = deadline_opener(limit, _NoRedirect()).open(request, timeout=limit.timeout(timeout))
                status, got, raw = response.status, response.headers, response.read()
            except urllib.error.HTTPError as err:  # an answer all the same
                status, got, raw = err.code, err.headers, err.read()
        if limit.expired:  # cut off: nothing read after the cut can be trusted
            raise http.client.IncompleteRead(b"")
    except (OSError, http.client.HTTPException, ValueError) as exc:
        reason = getattr(exc, "reason", None) or exc
        why = (
            "no complete answer within the send deadline"
            if limit.passed
            else f"{type(exc).__name__}: {reason}"
        )
        if limit.written:
            raise DeliveryError(
                f"{what} outcome unknown: the request was sent, then {why}", unknown=True
            ) from None
        raise DeliveryError(f"{what} unreachable: {why}") from None
    return Answer(
        status=status,
        headers={k.lower(): v for k, v in (got or {}).items()},
        body=raw.decode("utf-8", "replace")[:MAX_BODY],
    )


def error(answer: Answer, what: str, detail: str | None = None) -> DeliveryError:
    """The DeliveryError of an answer that is not a 2xx: transient or permanent (module docstring)."""
    text = detail or " ".join(answer.body.split())[:300]
    message = f"{what} {answer.status}" + (f": {text}" if text else "")
    if answer.status in TRANSIENT_4XX or answer.status >= 500:
        return DeliveryError(message, retry_after=retry_after(answer.headers))
    if 300 <= answer.status < 400:
        return DeliveryError(f"{message} (redirects are not followed: use the final URL)", permanent=True)
    return DeliveryError(message, permanent=True)


def retry_after(headers: dict[str, str], now: float | None = None) -> float | None:
    """Seconds from Retry-After (seconds or an HTTP date)."""
    value = (headers.get("retry-after") or "").strip()
    if not value:
        return None
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return max(when.timestamp() - (time.time() if now is None else now), 0.0)


def check_url(value: str, field: str = "url") -> str:
    """An http(s) URL with a host, as a subscription's endpoint."""
    url = (value or "").strip()
    if not url:
        raise InputError(field, "is required")
    if len(url) > 2000:
        raise InputError(field, "longer than 2000 characters")
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise InputError(field, f"not an http(s) URL: {shown(url)}")
    if any(ch.isspace() or ord(ch) < 32 for ch in url):
        raise InputError(field, "contains spaces or control characters")
    return url


def shown(url: str) -> str:
    """A URL as people may see it: scheme and host only (webhook URLs carry their secret in the path)."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}/…"
