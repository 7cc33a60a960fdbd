"""One settings object, read from `LIFECYCLE_*` environment variables (and `SENDGRID_API_KEY`).

Defaults need no server: a SQLite file in the working directory, a broker on the local file system,
email written as `.eml` files to `outbox/`.
"""

from __future__ import annotations

import datetime as dt
import re
from functools import lru_cache
from pathlib import Path

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from lifecycle.policy import DEFAULT_STAGES, parse_stages

EMAIL_BACKENDS = ("file", "sendgrid", "smtp")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")


def parse_duration(value: str | float) -> dt.timedelta:
    """'10m', '600s', '1h', '2d' or a bare number of minutes."""
    m = _DURATION.match(str(value))
    if not m:
        raise ValueError(f"not a duration: {value!r} (use e.g. 10m, 600s, 1h or 0)")
    unit = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "": "minutes"}[m.group(2)]
    return dt.timedelta(**{unit: float(m.group(1))})


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LIFECYCLE_", extra="ignore")

    database_url: str = "sqlite:///lifecycle.db"
    broker_url: str | None = None
    # When set, GET /metrics asks for `Authorization: Bearer <this>` (the counts tell the fleet's size).
    metrics_token: str | None = None
    email_backend: str = "file"
    outbox_dir: Path = Path("outbox")
    sendgrid_api_key: str | None = Field(
        default=None, validation_alias=AliasChoices("SENDGRID_API_KEY", "LIFECYCLE_SENDGRID_API_KEY")
    )
    sendgrid_host: str = "https://api.sendgrid.com"
    sendgrid_timeout: float = 10.0  # per socket operation; the whole send is bounded by send_deadline
    sendgrid_sandbox: bool = False
    sendgrid_concurrency: int = Field(default=8, ge=1, le=64)  # requests in flight in one delivery run
    sendgrid_webhook_public_key: str | None = None
    sendgrid_webhook_max_age: int = 600
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 25
    smtp_username: str | None = None
    smtp_password: str | None = None
    smtp_starttls: bool = False
    smtp_timeout: float = 30.0
    mail_from: str = "lifecycle@vendor.example"
    mail_from_name: str = "Product Lifecycle"
    calendar_dir: Path = Path("calendar_exports")
    base_url: str = "http://127.0.0.1:8000"
    # The signing secret (ack links, web sessions). Unset: a key file, created mode 600 on first use in
    # the state folder (mode 700), never the database; `lifecycle secret rotate` rotates it.
    secret_key: str | None = None
    # Previous values of LIFECYCLE_SECRET_KEY, comma-separated, still accepted while links and sessions
    # signed with them run out (a rotation's grace period); remove them when it is over.
    secret_key_previous: str | None = None
    secret_key_file: Path | None = None  # default: <state_dir>/secret.key
    state_dir: Path = Path(".lifecycle")
    # Lead times before each milestone, calendar months ("6m") or weeks ("1w"). 3m is always added.
    stages: str = ",".join(DEFAULT_STAGES)
    send_hour: int = 9
    # Every send (connect + write + read) ends within this many seconds, whatever the provider does.
    send_deadline: float = 30.0
    # Transient failures are retried for this long after the first attempt (backoff doubling from
    # retry_base_seconds, capped at retry_max_backoff_seconds), then given up loudly.
    retry_for_hours: float = 48.0
    retry_base_seconds: float = 60.0
    retry_max_backoff_seconds: float = 3600.0
    # An extra cap on attempts; unset: as many as the backoff fits into retry_for_hours.
    max_attempts: int | None = None
    # How long an email whose outcome is unknown waits for SendGrid's event webhook to settle it.
    reconcile_seconds: float = 900.0
    # Channels beyond email and the portal (webhook, Slack, Teams): seconds per socket operation (the
    # send deadline bounds the whole request), and how many permanent failures in a row turn a
    # customer's subscription off (the customer and their rep are told).
    channel_timeout: float = 10.0
    channel_disable_after: int = Field(default=3, ge=1)
    # The channels whose first successful delivery counts towards the contractual 3-month promise in
    # the compliance report (comma-separated channel names); the others are shown, but do not count.
    promise_channels: str = "email,portal"
    ops_email: str | None = None  # the operator, told about every give-up (unset: an ERROR log line only)
    ack_link_days: int = 400
    tick_seconds: float = 60.0  # how often beat runs the tick
    # Notices a registry change makes due at once (short notice, date changed, cancellation, reinstated)
    # wait this long, so the change can be undone before any customer sees it: "10m", "600s", "1h", "0".
    change_hold: str = "10m"
    # Seconds the service's clock runs ahead of (or, negative, behind) the real time: set by
    # `lifecycle serve --at T` for its web process and embedded worker (see lifecycle/clock.py).
    clock_offset: float = 0.0
    # Failed attempts allowed per client address and window before the web answers 429 (successful
    # requests never count). Counted in memory, per process: several web processes each count their own.
    rate_limit_window: int = 60  # seconds
    rate_limit_login: int = 10  # wrong tokens on the login page
    rate_limit_bearer: int = 20  # unknown or revoked API bearer tokens
    rate_limit_calendar: int = 20  # unknown calendar feed tokens
    rate_limit_ack: int = 20  # forged acknowledgement links
    # The largest import file or request body read (the reference fleet file is 10 MB).
    import_max_bytes: int = Field(default=50 * 1024 * 1024, gt=0)

    @field_validator("email_backend")
    @classmethod
    def _known_backend(cls, value: str) -> str:
        if value not in EMAIL_BACKENDS:
            raise ValueError(f"must be one of {', '.join(EMAIL_BACKENDS)}")
        return value

    @field_validator("change_hold")
    @classmethod
    def _duration(cls, value: str) -> str:
        parse_duration(value)
        return value.strip()

    @field_validator("promise_channels")
    @classmethod
    def _channel_names(cls, value: str) -> str:
        names = [n.strip() for n in value.split(",") if n.strip()]
        if not names:
            raise ValueError("name at least one channel (e.g. email,portal)")
        return ",".join(names)

    @property
    def promise_channel_list(self) -> tuple[str, ...]:
        return tuple(self.promise_channels.split(","))

    @property
    def change_hold_delta(self) -> dt.timedelta:
        return parse_duration(self.change_hold)

    @field_validator("base_url")
    @classmethod
    def _strip_slash(cls, value: str) -> str:
        return value.rstrip("/")

    @property
    def secret_key_path(self) -> Path:
        return self.secret_key_file or self.state_dir / "secret.key"

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def claim_timeout(self) -> float:
        """Seconds after a claim's last heartbeat before a sweep may take it back: two send deadlines
        and a margin. A worker heartbeats before each message and each send ends within the deadline,
        so a live claim is never taken back (and rows inside a send are locked against the sweep)."""
        return 2 * self.send_deadline + 10.0

    @property
    def stage_list(self) -> tuple[str, ...]:
        return parse_stages(self.stages)


@lru_cache
def get_settings() -> Settings:
    return Settings()


def reset_settings() -> None:
    """Forget the cached settings (tests change the environment between runs)."""
    get_settings.cache_clear()
