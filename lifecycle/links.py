"""Links that go out in notices: signed acknowledgement links and private calendar feed URLs.

The secret comes from LIFECYCLE_SECRET_KEY or, when unset, is generated once and stored in the
database (`app_setting.secret_key`), so links stay valid across restarts.
"""

from __future__ import annotations

import secrets

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from sqlmodel import Session

from lifecycle.config import get_settings
from lifecycle.models import AppSetting

ACK_SALT = "lifecycle.ack.v1"


def secret_key(session: Session) -> str:
    configured = get_settings().secret_key
    if configured:
        return configured
    row = session.get(AppSetting, "secret_key")
    if row is None:
        row = AppSetting(key="secret_key", value=secrets.token_urlsafe(48))
        session.add(row)
        session.flush()
    return row.value


def _serializer(session: Session) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(secret_key(session), salt=ACK_SALT)


def ack_token(session: Session, customer_id: int, release_id: int) -> str:
    return _serializer(session).dumps({"c": customer_id, "r": release_id})


class BadAckToken(Exception):
    def __init__(self, message: str, expired: bool = False):
        super().__init__(message)
        self.expired = expired


def read_ack_token(session: Session, token: str) -> tuple[int, int]:
    """(customer id, release id) of a valid token; raises BadAckToken when forged or expired."""
    max_age = get_settings().ack_link_days * 86400
    try:
        data = _serializer(session).loads(token, max_age=max_age)
    except SignatureExpired:
        raise BadAckToken("this link has expired", expired=True) from None
    except BadSignature:
        raise BadAckToken("this link is not valid") from None
    try:
        return int(data["c"]), int(data["r"])
    except (KeyError, TypeError, ValueError):
        raise BadAckToken("this link is not valid") from None


def ack_url(session: Session, customer_id: int, release_id: int) -> str:
    return f"{get_settings().base_url}/ack/{ack_token(session, customer_id, release_id)}"


def calendar_url(calendar_token: str) -> str:
    return f"{get_settings().base_url}/calendars/customers/{calendar_token}.ics"


def webcal_url(https_url: str) -> str:
    return "webcal://" + https_url.split("://", 1)[1]


def product_calendar_url(slug: str) -> str:
    return f"{get_settings().base_url}/calendars/products/{slug}.ics"
