"""API tokens: bearer secrets for the JSON API and the web login, with a role and a scope.

Only a SHA-256 hash of each secret is stored; the secret itself is shown once, when it is created.
A `customer` token is bound to one customer, a `rep` token to one rep's email (their customers are
those whose `account_rep` is that email), a `pm` token to nothing (it may read everything).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets

import sqlalchemy as sa
from sqlmodel import Session, col, select

from lifecycle import registry
from lifecycle import validation as v
from lifecycle.errors import InputError, NotFound
from lifecycle.models import ApiToken, Customer, Role

PREFIX = "lc_"  # makes a leaked secret easy to recognise (and to grep for)


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def create_token(
    session: Session,
    *,
    role: str,
    at: dt.datetime,
    customer: str | None = None,
    rep: str | None = None,
    label: str | None = None,
) -> tuple[ApiToken, str]:
    """A new token and its secret (the only time the secret exists outside the caller's hands)."""
    roles = [r.value for r in Role]
    if role not in roles:
        raise InputError("role", f"unknown role {role!r} (use one of {', '.join(roles)})")
    customer_id = None
    if role == Role.CUSTOMER:
        if not customer:
            raise InputError("customer", "a customer token needs --customer KEY")
        customer_id = registry.get_customer(session, customer).id
    elif customer:
        raise InputError("customer", f"--customer only applies to customer tokens, not {role}")
    rep_email = None
    if role == Role.REP:
        if not rep:
            raise InputError("rep", "a rep token needs --rep EMAIL")
        rep_email = v.email(rep, "rep")
    elif rep:
        raise InputError("rep", f"--rep only applies to rep tokens, not {role}")
    label = v.name(label, "label") if label else None
    secret = PREFIX + secrets.token_urlsafe(32)
    token = ApiToken(
        token_hash=hash_secret(secret),
        role=role,
        customer_id=customer_id,
        rep_email=rep_email,
        label=label,
        created_at=at,
    )
    session.add(token)
    session.flush()
    registry.audit(
        session,
        at,
        "token.create",
        f"token {token.id}",
        {"role": role, "customer": customer, "rep": rep_email, "label": label},
    )
    return token, secret


def authenticate(session: Session, secret: str | None, at: dt.datetime | None = None) -> ApiToken | None:
    """The live token for a secret, or None (unknown or revoked). Records when it was last used."""
    if not secret:
        return None
    token = session.exec(select(ApiToken).where(ApiToken.token_hash == hash_secret(secret.strip()))).first()
    if token is None or token.revoked_at is not None:
        return None
    if at is not None:
        # A plain UPDATE, so that concurrent requests never conflict on the ORM row.
        session.exec(sa.update(ApiToken).where(col(ApiToken.id) == token.id).values(last_used_at=at))
    return token


def revoke_token(session: Session, token_id: int, at: dt.datetime) -> ApiToken:
    token = session.get(ApiToken, token_id)
    if token is None:
        raise NotFound("id", f"no token {token_id}")
    if token.revoked_at is None:
        token.revoked_at = at
        session.add(token)
        registry.audit(session, at, "token.revoke", f"token {token.id}")
    return token


def has_tokens(session: Session) -> bool:
    return (
        session.exec(select(ApiToken.id).where(col(ApiToken.revoked_at).is_(None)).limit(1)).first()
        is not None
    )


def token_rows(session: Session) -> list[dict]:
    rows = session.exec(
        select(ApiToken, Customer.key)
        .join(Customer, col(Customer.id) == ApiToken.customer_id, isouter=True)
        .order_by(col(ApiToken.id))
    ).all()
    return [
        {
            "id": t.id,
            "role": t.role,
            "customer": key,
            "rep": t.rep_email,
            "label": t.label,
            "created_at": t.created_at,
            "last_used_at": t.last_used_at,
            "revoked_at": t.revoked_at,
        }
        for t, key in rows
    ]
