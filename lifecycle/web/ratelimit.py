"""Failed-attempt limits for the web's secrets: login tokens, API bearer tokens, calendar feed tokens and
acknowledgement-link signatures.

Only failures count, per client address and kind, in a sliding window (LIFECYCLE_RATE_LIMIT_WINDOW
seconds). An address over its limit gets 429 with Retry-After for that kind — for correct secrets
too, or the limit would not slow anyone down — until its oldest failure in the window ages out.
Calendar apps poll and people log in all day without ever counting. Every counted failure is written
to the audit log with the address and a short hash of what was presented, never the secret itself;
refusals while blocked are not (so the log grows by at most the limit per address and window).

The counts live in memory, per process: the default is one process, and behind several web workers
each keeps its own (an attacker gets the limit once per process). The client address is the one the
ASGI server reports; behind a proxy let uvicorn read X-Forwarded-For (`--forwarded-allow-ips`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
import threading
from collections import deque
from dataclasses import dataclass

from fastapi import HTTPException, Request
from sqlmodel import Session

from lifecycle import registry
from lifecycle.config import get_settings


@dataclass(frozen=True)
class Kind:
    name: str  # the audit action is `<name>.failed`
    setting: str  # the Settings field with the limit


LOGIN = Kind("auth.login", "rate_limit_login")
BEARER = Kind("auth.bearer", "rate_limit_bearer")
CALENDAR = Kind("calendar.token", "rate_limit_calendar")
ACK = Kind("ack.signature", "rate_limit_ack")

MAX_ADDRESSES = 10_000  # past this many tracked addresses, forget the ones with no recent failure


class Limits:
    """Sliding-window failure counts per (kind, address), for one app (one process)."""

    def __init__(self) -> None:
        self._failures: dict[tuple[str, str], deque[float]] = {}
        self._lock = threading.Lock()

    def _window(self, key: tuple[str, str], now: float, window: int) -> deque[float]:
        times = self._failures.get(key)
        if times is None:
            return deque()
        while times and times[0] <= now - window:
            times.popleft()
        return times

    def retry_after(self, kind: Kind, address: str, at: dt.datetime) -> int | None:
        """Seconds until `address` may try `kind` again, or None when it may now."""
        settings = get_settings()
        limit, window, now = getattr(settings, kind.setting), settings.rate_limit_window, at.timestamp()
        with self._lock:
            times = self._window((kind.name, address), now, window)
            if len(times) < limit or limit <= 0:
                return None
            return max(1, math.ceil(times[len(times) - limit] + window - now))

    def failed(self, kind: Kind, address: str, at: dt.datetime) -> int:
        """Count one failure; the number of failures of `address` in the window, this one included."""
        window, now = get_settings().rate_limit_window, at.timestamp()
        with self._lock:
            if len(self._failures) > MAX_ADDRESSES:
                for key in [
                    k for k, times in self._failures.items() if not times or times[-1] <= now - window
                ]:
                    del self._failures[key]
            times = self._failures.setdefault((kind.name, address), deque())
            self._window((kind.name, address), now, window)
            times.append(now)
            return len(times)


def address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def limits(request: Request) -> Limits:
    return request.app.state.limits


def blocked(request: Request, kind: Kind, at: dt.datetime) -> int | None:
    """Seconds the client must wait before trying `kind` again, or None."""
    return limits(request).retry_after(kind, address(request), at)


def check(request: Request, kind: Kind, at: dt.datetime) -> None:
    """Raise 429 with Retry-After when the client is over its failure limit for `kind`."""
    wait = blocked(request, kind, at)
    if wait is not None:
        raise HTTPException(
            429, "too many failed attempts: try again later", headers={"Retry-After": str(wait)}
        )


def presented(secret: str | None) -> str:
    """What the audit log keeps of a presented secret: enough to group attempts, useless to an attacker."""
    return hashlib.sha256((secret or "").encode("utf-8", "replace")).hexdigest()[:8]


def failed(
    request: Request, session: Session, kind: Kind, at: dt.datetime, secret: str | None, **detail
) -> None:
    """Count a failure and write it to the audit log (in `session`: the caller commits). The URL is not
    logged: for feeds and links the secret is in it."""
    where = address(request)
    count = limits(request).failed(kind, where, at)
    registry.audit(
        session,
        at,
        f"{kind.name}.failed",
        where,
        {"presented": presented(secret), "failures": count, **detail},
    )
