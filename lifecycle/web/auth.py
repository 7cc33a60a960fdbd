"""Who is asking: bearer tokens for the API, a signed cookie session for the web pages, CSRF, scope.

A request acts as a `Principal` — the role and scope of one `ApiToken`. The API reads the token from
`Authorization: Bearer <secret>`; the web pages log in with the same secret once and then carry a
signed cookie (itsdangerous, keyed by `lifecycle.keys`: signed with the current key, accepted with any
key still in its rotation grace period) naming the token and a per-session CSRF secret that every form
posts back. Revoking the token ends its web sessions too. Unknown tokens count against the client's
failed-attempt limit (`lifecycle.web.ratelimit`).

Scope: a pm sees every customer, a rep the customers whose account rep they are, a customer only
themselves. Anything outside the scope is reported as missing (404), never as forbidden, so that
customer keys and ids do not leak.
"""

from __future__ import annotations

import datetime as dt
import hmac
import secrets
from dataclasses import dataclass
from typing import Annotated

import sqlalchemy as sa
from fastapi import Depends, HTTPException, Request, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from itsdangerous import BadSignature, URLSafeSerializer, URLSafeTimedSerializer
from sqlmodel import Session, select

from lifecycle import clock, keys, tokens
from lifecycle.config import get_settings
from lifecycle.db import get_session
from lifecycle.models import ApiToken, Customer, Role, pk
from lifecycle.web import ratelimit

SessionDep = Annotated[Session, Depends(get_session)]

COOKIE = "lifecycle_session"
LOGIN_COOKIE = "lifecycle_login"
SESSION_SALT = "lifecycle.session.v1"
LOGIN_SALT = "lifecycle.login.v1"
SESSION_MAX_AGE = 7 * 86400


def now() -> dt.datetime:
    """The clock of a request: read once at the edge and passed down. Simulated under
    `lifecycle serve --at` (lifecycle.clock); security below keeps the real time (`real_now`)."""
    return clock.now()


real_now = clock.real_now


@dataclass(frozen=True)
class Principal:
    token_id: int
    role: str
    customer_id: int | None = None
    rep_email: str | None = None
    label: str | None = None
    csrf: str | None = None  # web sessions only

    @classmethod
    def of(cls, token: ApiToken, csrf: str | None = None) -> Principal:
        return cls(
            token_id=pk(token),
            role=token.role,
            customer_id=token.customer_id,
            rep_email=token.rep_email,
            label=token.label,
            csrf=csrf,
        )

    @property
    def actor(self) -> str:
        """Who to name in histories and the audit log."""
        if self.role == Role.REP:
            return self.rep_email or f"token {self.token_id}"
        return self.label or f"{self.role} token {self.token_id}"

    def sees(self, customer: Customer) -> bool:
        if self.role == Role.PM:
            return True
        if self.role == Role.REP:
            if not self.rep_email:
                return False
            return customer.account_rep.lower() == self.rep_email.lower()
        return customer.id == self.customer_id

    def customer_filter(self):
        """A WHERE clause on Customer limiting a query to this principal's customers (None: all)."""
        if self.role == Role.PM:
            return None
        if self.role == Role.REP:
            return sa.func.lower(Customer.account_rep) == (self.rep_email or "").lower()
        return Customer.id == (self.customer_id or -1)


def visible_customer(session: Session, principal: Principal, key: str) -> Customer:
    """The customer named `key` if this principal may see it; 404 otherwise (missing or not theirs)."""
    customer = session.exec(select(Customer).where(Customer.key == key)).first()
    if customer is None or not principal.sees(customer):
        raise HTTPException(404, f"no customer {key!r}")
    return customer


# ------------------------------------------------------------------------------------------------ API

_bearer = HTTPBearer(auto_error=False, description="An API token from `lifecycle token create`.")


def api_principal(
    request: Request,
    session: SessionDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise HTTPException(401, "a bearer token is required", headers={"WWW-Authenticate": "Bearer"})
    at = real_now()
    ratelimit.check(request, ratelimit.BEARER, at)
    token = tokens.authenticate(session, credentials.credentials, at)
    if token is None:
        ratelimit.failed(request, session, ratelimit.BEARER, at, credentials.credentials)
        session.commit()  # the audit event outlives the 401 (the request's session rolls back on errors)
        raise HTTPException(401, "unknown or revoked token", headers={"WWW-Authenticate": "Bearer"})
    return Principal.of(token)


PrincipalDep = Annotated[Principal, Depends(api_principal)]


def require(principal: Principal, *roles: str) -> Principal:
    if principal.role not in roles:
        raise HTTPException(403, f"this needs a {' or '.join(roles)} token")
    return principal


# ----------------------------------------------------------------------------------------- web session


def _serializer(session: Session, salt: str) -> URLSafeTimedSerializer:
    """Signs with the current key; accepts every key in force now."""
    return URLSafeTimedSerializer(keys.accepted(real_now(), session), salt=salt)


def untimed_serializer(session: Session, salt: str) -> URLSafeSerializer:
    """The same keys without a timestamp (the pages' signed flash messages)."""
    return URLSafeSerializer(keys.accepted(real_now(), session), salt=salt)


def _secure() -> bool:
    return get_settings().base_url.startswith("https://")


def start_session(session: Session, response: Response, token: ApiToken) -> None:
    value = _serializer(session, SESSION_SALT).dumps(
        {"t": token.id, "csrf": secrets.token_urlsafe(24), "iat": real_now().timestamp()}
    )
    response.set_cookie(
        COOKIE, value, max_age=SESSION_MAX_AGE, httponly=True, samesite="lax", secure=_secure(), path="/"
    )
    response.delete_cookie(LOGIN_COOKIE, path="/")


def end_session(
    response: Response, session: Session | None = None, principal: Principal | None = None
) -> None:
    """Forget the cookie and, server-side, end every web session of the token (a copied cookie too)."""
    response.delete_cookie(COOKIE, path="/")
    if session is not None and principal is not None:
        token = session.get(ApiToken, principal.token_id)
        if token is not None:
            token.sessions_after = real_now()
            session.add(token)
            session.commit()


def page_principal(request: Request, session: Session) -> Principal | None:
    """The logged-in principal of a web request, or None (no cookie, bad signature, revoked token)."""
    raw = request.cookies.get(COOKIE)
    if not raw:
        return None
    try:
        data = _serializer(session, SESSION_SALT).loads(raw, max_age=SESSION_MAX_AGE)
        token_id, csrf, issued = int(data["t"]), str(data["csrf"]), float(data.get("iat", 0))
    except (BadSignature, KeyError, TypeError, ValueError, AttributeError):
        return None
    token = session.get(ApiToken, token_id) if 0 < token_id < 2**31 else None
    if token is None or token.revoked_at is not None:
        return None
    if token.sessions_after is not None and issued < token.sessions_after.timestamp():
        return None  # logged out since
    return Principal.of(token, csrf=csrf)


def check_csrf(principal: Principal, submitted: str | None) -> None:
    if not submitted or not principal.csrf or not hmac.compare_digest(submitted, principal.csrf):
        raise HTTPException(
            403, "the form has expired or did not come from this site: reload the page and try again"
        )


def login_csrf(request: Request, session: Session) -> str:
    """The CSRF secret of the login form (a short-lived cookie before there is a session)."""
    raw = request.cookies.get(LOGIN_COOKIE)
    if raw:
        try:
            return str(_serializer(session, LOGIN_SALT).loads(raw, max_age=3600))
        except BadSignature:
            pass
    return secrets.token_urlsafe(24)


def set_login_csrf(session: Session, response: Response, value: str) -> None:
    response.set_cookie(
        LOGIN_COOKIE,
        _serializer(session, LOGIN_SALT).dumps(value),
        max_age=3600,
        httponly=True,
        samesite="lax",
        secure=_secure(),
        path="/",
    )


def check_login_csrf(request: Request, session: Session, submitted: str | None) -> bool:
    raw = request.cookies.get(LOGIN_COOKIE)
    if not raw or not submitted:
        return False
    try:
        expected = str(_serializer(session, LOGIN_SALT).loads(raw, max_age=3600))
    except BadSignature:
        return False
    return hmac.compare_digest(expected, submitted)
