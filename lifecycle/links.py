"""Links that go out in notices: signed acknowledgement links and private calendar feed URLs.

Links are signed with the current key of `lifecycle.keys` and accepted with any key still in force,
so a `lifecycle secret rotate` does not break links already sent during its grace period.
"""

from __future__ import annotations

import datetime as dt

from itsdangerous import BadSignature, SignatureExpired, TimestampSigner, URLSafeTimedSerializer
from sqlmodel import Session

from lifecycle import keys
from lifecycle.config import get_settings

ACK_SALT = "lifecycle.ack.v1"


def secret_key(session: Session | None = None) -> str:
    """The key that signs now (see `lifecycle.keys`); verify with `keys.accepted(at)` instead."""
    return keys.current(session)


class _SignedAt(TimestampSigner):
    """A timestamp signer with a fixed signing time: the same link comes out on every build."""

    def __init__(self, *args, issued: int, **kwargs):
        super().__init__(*args, **kwargs)
        self.issued = issued

    def get_timestamp(self) -> int:
        return self.issued


def _serializer(session: Session, issued_at: dt.datetime | None = None) -> URLSafeTimedSerializer:
    if issued_at is None:
        return URLSafeTimedSerializer(secret_key(session), salt=ACK_SALT)
    return URLSafeTimedSerializer(
        secret_key(session),
        salt=ACK_SALT,
        signer=_SignedAt,
        signer_kwargs={"issued": int(issued_at.timestamp())},
    )


def _verifier(session: Session, at: dt.datetime) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(keys.accepted(at, session), salt=ACK_SALT)


def ack_token(
    session: Session, customer_id: int, release_id: int, issued_at: dt.datetime | None = None
) -> str:
    """A signed link token for one customer and release; `issued_at` fixes the signing time (feeds
    that must stay byte-identical), otherwise it is signed now. Valid LIFECYCLE_ACK_LINK_DAYS."""
    return _serializer(session, issued_at).dumps({"c": customer_id, "r": release_id})


class BadAckToken(Exception):
    def __init__(self, message: str, expired: bool = False):
        super().__init__(message)
        self.expired = expired


def read_ack_token(session: Session, token: str, at: dt.datetime | None = None) -> tuple[int, int]:
    """(customer id, release id) of a valid token; raises BadAckToken when forged or expired.

    `at` decides which rotated-out keys are still accepted (default now: itsdangerous reads the
    clock for the link's age anyway)."""
    max_age = get_settings().ack_link_days * 86400
    try:
        data = _verifier(session, at or dt.datetime.now(dt.UTC)).loads(token, max_age=max_age)
    except SignatureExpired:
        raise BadAckToken("this link has expired", expired=True) from None
    except BadSignature:
        raise BadAckToken("this link is not valid") from None
    try:
        return int(data["c"]), int(data["r"])
    except (KeyError, TypeError, ValueError):
        raise BadAckToken("this link is not valid") from None


def ack_url(session: Session, customer_id: int, release_id: int, issued_at: dt.datetime | None = None) -> str:
    return f"{get_settings().base_url}/ack/{ack_token(session, customer_id, release_id, issued_at)}"


def calendar_url(calendar_token: str) -> str:
    return f"{get_settings().base_url}/calendars/customers/{calendar_token}.ics"


def webcal_url(https_url: str) -> str:
    return "webcal://" + https_url.split("://", 1)[1]


def product_calendar_url(slug: str) -> str:
    return f"{get_settings().base_url}/calendars/products/{slug}.ics"


def product_page_url(slug: str) -> str:
    """The public page of a product (`/products/<slug>`): what a product feed's events link to."""
    return f"{get_settings().base_url}/products/{slug}"


def portal_url(release_id: int | None = None) -> str:
    """The customer portal, at the card of one release when given: what a customer's events link to."""
    anchor = f"#release-{release_id}" if release_id is not None else ""
    return f"{get_settings().base_url}/portal{anchor}"
