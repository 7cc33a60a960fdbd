"""Account reps' settings: the name their customers' emails show, the language and timezone of their
daily digest. Reps are named by email on customers (`Customer.account_rep`); a rep without settings
reads English, at 09:00 UTC, and is named by their address."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, select

from lifecycle import policy, registry
from lifecycle import validation as v
from lifecycle.config import get_settings
from lifecycle.models import Rep

DEFAULT_LOCALE = "en"
DEFAULT_TIMEZONE = "UTC"


@dataclass(frozen=True)
class RepSettings:
    email: str
    name: str | None = None
    locale: str = DEFAULT_LOCALE
    timezone: str = DEFAULT_TIMEZONE

    @property
    def display(self) -> str:
        """'Alice Wong <alice@vendor.example>', or the address alone."""
        return f"{self.name} <{self.email}>" if self.name else self.email

    def as_dict(self) -> dict:
        return {"email": self.email, "name": self.name, "locale": self.locale, "timezone": self.timezone}


def settings_of(session: Session, emails) -> dict[str, RepSettings]:
    """Settings per rep address (lower case keys), defaults for reps without a row. One query."""
    wanted = {e.strip().lower() for e in emails if e}
    out = {e: RepSettings(email=e) for e in wanted}
    if wanted:
        for rep in session.exec(select(Rep).where(col(Rep.email).in_(sorted(wanted)))):
            out[rep.email] = RepSettings(
                email=rep.email, name=rep.name, locale=rep.locale, timezone=rep.timezone
            )
    return out


def get(session: Session, email: str) -> RepSettings:
    return settings_of(session, [email])[email.strip().lower()]


def digest_due(session: Session, email: str, at: dt.datetime) -> dt.datetime:
    """When a rep notice made at `at` goes out: the rep's next daily digest."""
    return policy.digest_due(at, get(session, email).timezone, get_settings().send_hour)


def upsert(
    session: Session,
    *,
    email: str,
    at: dt.datetime,
    name: str | None = None,
    locale: str | None = None,
    timezone: str | None = None,
    by: str | None = None,
) -> tuple[RepSettings, str]:
    """Set a rep's name, language or timezone (only what is given). (settings, created/updated/unchanged)."""
    email = v.email(email, "email").lower()
    values: dict[str, Any] = {}
    if name is not None:
        values["name"] = v.name(name, "name") if name.strip() else None
    if locale is not None:
        values["locale"] = v.locale(locale)
    if timezone is not None:
        values["timezone"] = v.timezone(timezone)
    rep = session.exec(select(Rep).where(Rep.email == email)).first()
    if rep is None:
        rep = Rep(email=email, created_at=at, updated_at=at, **values)
        change = "created"
    else:
        changed = {k: val for k, val in values.items() if getattr(rep, k) != val}
        if not changed:
            return get(session, email), "unchanged"
        for k, val in changed.items():
            setattr(rep, k, val)
        rep.updated_at = at
        change = "updated"
    session.add(rep)
    session.flush()
    registry.audit(session, at, f"rep.{'add' if change == 'created' else 'update'}", email, values, by)
    return get(session, email), change


def listing(session: Session) -> list[RepSettings]:
    """Every rep: those named on a customer and those with settings, by address."""
    from lifecycle.models import Customer

    named = session.exec(select(sa.func.lower(Customer.account_rep)).distinct()).all()
    stored = session.exec(select(Rep.email)).all()
    found = settings_of(session, set(named) | set(stored))
    return [found[e] for e in sorted(found)]
