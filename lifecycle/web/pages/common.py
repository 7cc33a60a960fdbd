"""What every page shares: rendering with the page's language and CSP nonce, the login and role
guards, CSRF, and the read models more than one page uses (a customer's release, the agreement form)."""

from __future__ import annotations

import datetime as dt
import secrets
from dataclasses import asdict, dataclass
from typing import Any

from fastapi import Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from sqlmodel import Session, col, select

from lifecycle import agreements, clock, policy
from lifecycle import validation as v
from lifecycle.content import agreement_label
from lifecycle.content import kind_label as content_kind_label
from lifecycle.errors import InputError
from lifecycle.i18n import N_
from lifecycle.inbox import local_time
from lifecycle.models import (
    Agreement,
    Customer,
    Milestone,
    MilestoneStatus,
    Product,
    Release,
    Role,
    pk,
)
from lifecycle.templating import render
from lifecycle.web import auth, headers
from lifecycle.web.auth import Principal
from lifecycle.web.i18n import translator

HOME: dict[str, str] = {Role.PM: "/registry", Role.REP: "/dashboard", Role.CUSTOMER: "/portal"}
NAV: dict[str, tuple[tuple[str, str], ...]] = {
    Role.PM: (
        ("Registry", "/registry"),
        ("Compliance", "/registry/compliance"),
        ("Dashboard", "/dashboard"),
        ("API", "/docs"),
    ),
    Role.REP: (("Dashboard", "/dashboard"), ("Registry", "/registry"), ("API", "/docs")),
    Role.CUSTOMER: ((N_("Portal"), "/portal"), (N_("Channels"), "/portal/channels")),
}
FLASH_SALT = "lifecycle.flash.v1"
STATUS_CHOICES = ("acknowledged", "planned", "completed", "declined")


# ------------------------------------------------------------------------------------------- rendering


def render_page(
    template: str,
    *,
    status: int = 200,
    principal: Principal | None = None,
    active: str | None = None,
    who: str = "",
    **ctx,
) -> HTMLResponse:
    # Pages about one customer speak the customer's language; the vendor's own pages stay English.
    page_locale = getattr(ctx.get("customer"), "locale", "en")
    t = translator(page_locale)
    nav = [
        {"label": t(label), "href": href, "active": href == active}
        for label, href in (NAV.get(principal.role, ()) if principal else ())
    ]
    nonce = secrets.token_urlsafe(16)  # lets web/base.html's own <style> through the page's CSP
    html = render(
        template,
        page_locale,
        principal=principal,
        csrf=principal.csrf if principal else "",
        nav=nav,
        who=who,
        t=t,
        page_locale=page_locale,
        csp_nonce=nonce,
        clock_banner=clock.banner(),
        local_time=local_time,
        status_label=lambda status: agreement_label(status, page_locale),
        **ctx,
    )
    return HTMLResponse(
        html,
        status_code=status,
        headers={"Cache-Control": "no-store", "Content-Security-Policy": headers.page_policy(nonce)},
    )


def who(session: Session, principal: Principal) -> str:
    if principal.role == Role.CUSTOMER:
        customer = session.get(Customer, principal.customer_id)
        return customer.name if customer else "customer"
    if principal.role == Role.REP:
        return principal.rep_email or "rep"
    return principal.label or "product manager"


def guard(request: Request, session: Session, *roles: str) -> Principal | Response:
    """The logged-in principal with one of `roles`, or the response to send instead."""
    principal = auth.page_principal(request, session)
    if principal is None:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/login?next={quote(target)}", status_code=303)
    if principal.role not in roles:
        return render_page(
            "web/message.html",
            status=403,
            principal=principal,
            who=who(session, principal),
            title="Not for this login",
            heading="This page is not part of your login",
            text="",
            link=HOME[principal.role],
        )
    return principal


def csrf_failed(session: Session, principal: Principal) -> HTMLResponse:
    return render_page(
        "web/message.html",
        status=403,
        principal=principal,
        who=who(session, principal),
        title="Form expired",
        heading="The form has expired",
        text="It did not come from this session. Reload the page and try again.",
        link=HOME[principal.role],
    )


def form_guard(request: Request, session: Session, csrf: str, *roles: str) -> Principal | Response:
    """`_guard` for a form post: also the session's CSRF secret, or a 403 page."""
    principal = guard(request, session, *roles)
    if isinstance(principal, Response):
        return principal
    if not csrf_ok(principal, csrf):
        return csrf_failed(session, principal)
    return principal


def csrf_ok(principal: Principal, submitted: str) -> bool:
    try:
        auth.check_csrf(principal, submitted)
    except Exception:  # noqa: BLE001 - HTTPException: render a page instead of JSON
        return False
    return True


def duration(seconds: int) -> str:
    return f"{seconds} seconds" if seconds < 120 else f"{round(seconds / 60)} minutes"


def quote(path: str) -> str:
    from urllib.parse import quote

    return quote(path, safe="")


def safe_next(value: str | None) -> str | None:
    if value and value.startswith("/") and not value.startswith("//") and "\\" not in value:
        return value
    return None


# ------------------------------------------------------------------------------------ shared data views


def kind_label(kind: str) -> str:
    return content_kind_label(kind, "en")


def release_view(
    session: Session, customer: Customer, release: Release, at: dt.datetime, *, locale: str | None = None
) -> dict:
    """A release as the customer sees it (in `locale`, default theirs): milestones, upgrade targets,
    their agreement and its history."""
    locale = locale or customer.locale
    product = session.get(Product, release.product_id)
    assert product is not None
    today = policy.local_date(at, customer.timezone)
    milestones = session.exec(
        select(Milestone).where(
            Milestone.product_id == product.id,
            (col(Milestone.release_id) == release.id) | col(Milestone.release_id).is_(None),
        )
    ).all()
    ms: list[dict[str, Any]] = sorted(
        (
            {
                "kind": m.kind,
                "label": content_kind_label(m.kind, locale),
                "date": m.date,
                "status": m.status,
                "days_left": policy.days_left(m.date, today),
                "past": policy.is_history(m.date, today),
                "withdrawn": m.status == MilestoneStatus.WITHDRAWN,
                "product_level": m.release_id is None,
            }
            for m in milestones
        ),
        key=lambda m: (m["date"], m["kind"]),
    )
    upcoming = [m for m in ms if not m["past"] and not m["withdrawn"]]
    # Only targets a plan may name: later releases not ended today, newest first, with their end dates.
    targets = agreements.target_choices(session, release, today)
    agreement = session.exec(
        select(Agreement).where(Agreement.customer_id == customer.id, Agreement.release_id == release.id)
    ).first()
    history = agreements.history(session, pk(agreement)) if agreement else []
    status = agreement.status if agreement else "none"
    nxt = upcoming[0] if upcoming else None
    target, planned = (agreement.target_version, agreement.planned_date) if agreement else (None, None)
    light = (
        policy.risk(
            status=status, target=target, planned_date=planned, milestone_date=nxt["date"], today=today
        )
        if nxt
        else None
    )
    return {
        "release_id": release.id,
        "product": product.slug,
        "product_name": product.name,
        "version": release.version,
        "released": release.released,
        "upgrade_to": release.upgrade_to,
        "milestones": ms,
        "next": nxt,
        "targets": targets,
        "agreement": agreement,
        "status": status,
        "status_label": agreement_label(status, locale),
        "history": history,
        "risk": light.colour if light else "green",
        "at_risk": nxt is not None and policy.plan_at_risk(status, target, planned, nxt["date"]),
        "closed": agreements.closed(session, customer, release),  # why no plan can be recorded, or None
        "timezone": customer.timezone,
    }


def form_error(exc: InputError, t) -> str:
    """A refused form's error in the page's language: a plan's problem as its own sentence, anything
    else by field (English pages keep the exact message)."""
    if isinstance(exc, agreements.PlanError):
        return t(exc.text, **exc.values)
    if getattr(t, "locale", "en") == "en":
        return str(exc)
    return t(FIELD_ERRORS.get(exc.field or "", FORM_ERROR))


FORM_ERROR = N_("Please check the form and try again.")
FIELD_ERRORS = {
    "planned_date": N_("Please enter a valid date."),
    "email": N_("Please enter a valid email address."),
    "name": N_("Tell us who agrees: a name or an email address (at most 200 characters)."),
    "feedback": N_("The feedback is too long or contains characters we cannot keep."),
    "status": N_("Please choose your plan."),
    "target": N_("Please choose a target version from the list."),
    "version": N_("You do not run this release."),
}


@dataclass
class AgreementForm:
    """The agreement form's fields as submitted (strings), so a refused form is shown again as typed."""

    status: str = ""
    target: str = ""
    planned_date: str = ""
    name: str = ""
    email: str = ""
    feedback: str = ""

    @classmethod
    def initial(cls, view: dict) -> AgreementForm:
        a: Agreement | None = view["agreement"]
        offered = [t.version for t in view["targets"]]
        default = view["upgrade_to"] if view["upgrade_to"] in offered else (offered[0] if offered else "")
        return cls(
            status=a.status if a else "planned",
            target=(a.target_version if a else None) or default,
            planned_date=a.planned_date.isoformat() if a and a.planned_date else "",
            feedback="",
        )

    def cleaned(self) -> dict:
        """Keyword arguments for `agreements.record`; InputError names the field."""
        status = v.agreement_status(self.status, "status")
        name = self.name.strip()
        email = v.email(self.email, "email") if self.email.strip() else ""
        if not name and not email:
            raise InputError("name", "tell us who agrees: a name or an email address")
        if len(name) > 200:
            raise InputError("name", "longer than 200 characters")
        by = f"{name} <{email}>" if name and email else (name or email)
        return {
            "status": status,
            "target_version": self.target.strip() or None,
            "planned_date": v.optional_date(self.planned_date.strip(), "planned_date"),
            "by": by,
            "feedback": self.feedback,
        }

    def as_dict(self) -> dict:
        return asdict(self)
