"""The one clock of a running service: the real time, or a simulated time that runs on from it.

Logic never reads the clock (time is passed in as `at`); the edges do, through `now()`: the web pages
and API, the calendar feeds, the Celery tick and the CLI's default `--at`. `lifecycle serve --at T`
sets LIFECYCLE_CLOCK_OFFSET to T minus the real time, so the web process and its embedded worker (which
inherits the environment) agree on a simulated "now" that advances like a real clock: a demo database
that simulated a year is shown as of that year, and notices still fall due as minutes pass.

Security does not follow the simulated clock: key rotation grace periods, session timestamps and
failed-attempt windows keep the real time (`real_now()`).
"""

from __future__ import annotations

import datetime as dt

from lifecycle.config import get_settings


def real_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def offset() -> dt.timedelta:
    """How far the service's clock is from the real one (zero unless simulated)."""
    return dt.timedelta(seconds=get_settings().clock_offset)


def now() -> dt.datetime:
    """The service's time: the real time, shifted by LIFECYCLE_CLOCK_OFFSET when simulated."""
    return real_now() + offset()


def simulated() -> bool:
    return get_settings().clock_offset != 0


def offset_to(at: dt.datetime, real: dt.datetime | None = None) -> float:
    """The LIFECYCLE_CLOCK_OFFSET (seconds) that makes `now()` read `at` at the real instant `real`."""
    return round((at - (real or real_now())).total_seconds(), 3)


def banner(at: dt.datetime | None = None) -> str | None:
    """What the pages say about a simulated clock (None on the real clock)."""
    if not simulated():
        return None
    at = at or now()
    days = offset().total_seconds() / 86400
    direction = "ahead of" if days > 0 else "behind"
    span = (
        f"{abs(days):.0f} days" if abs(days) >= 1.5 else f"{abs(offset().total_seconds()) / 3600:.1f} hours"
    )
    return (
        f"Simulated clock: it is {at.strftime('%Y-%m-%d %H:%M')} UTC here, {span} {direction} the real time. "
        "Pages, notices and calendar feeds all follow this clock."
    )
