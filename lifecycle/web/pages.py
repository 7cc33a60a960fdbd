"""Server-rendered web pages: login, the customer portal, the rep dashboard, the PM registry.

Login takes an API token once (`lifecycle token create`) and keeps a signed cookie session; every form
carries the session's CSRF secret. Pages are plain Jinja2 templates under templates/web/ with the CSS
inline in web/base.html, let through the page's Content-Security-Policy by a per-response nonce (pages
run no scripts). Route functions only gather data and call the domain modules.
"""

from __future__ import annotations

import datetime as dt
import re
import secrets
from dataclasses import asdict, dataclass
from typing import Annotated

import sqlalchemy as sa
from fastapi import APIRouter, Form, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from itsdangerous import BadSignature
from sqlmodel import Session, select

from lifecycle import agreements, dashboard, links, policy, registry, tokens
from lifecycle import validation as v
from lifecycle.content import AGREEMENT_LABELS, KIND_LABELS
from lifecycle.content import kind_label as content_kind_label
from lifecycle.errors import InputError
from lifecycle.models import (
    Agreement,
    Customer,
    Deployment,
    InboxMessage,
    Milestone,
    MilestoneKind,
    MilestoneStatus,
    Product,
    Release,
    Role,
)
from lifecycle.templating import render
from lifecycle.validation import MAX_DATE, MIN_DATE, valid_id
from lifecycle.web import auth, headers, ratelimit
from lifecycle.web.auth import Principal, SessionDep, now
from lifecycle.web.i18n import translator

router = APIRouter(include_in_schema=False)

HOME = {Role.PM: "/registry", Role.REP: "/dashboard", Role.CUSTOMER: "/portal"}
NAV = {
    Role.PM: (("Registry", "/registry"), ("Dashboard", "/dashboard"), ("API", "/docs")),
    Role.REP: (("Dashboard", "/dashboard"), ("Registry", "/registry"), ("API", "/docs")),
    Role.CUSTOMER: (("Portal", "/portal"),),
}
FLASH_SALT = "lifecycle.flash.v1"
STATUS_CHOICES = ("acknowledged", "planned", "completed", "declined")
KIND_STYLE = {  # shape and colour of each milestone kind on the timeline
    "end-of-sale": ("circle", "#2186eb"),
    "end-of-full-support": ("square", "#27ab83"),
    "end-of-maintenance": ("triangle", "#de911d"),
    "end-of-life": ("diamond", "#d64545"),
}


# ------------------------------------------------------------------------------------------- rendering


def render_page(template: str, *, status: int = 200, principal: Principal | None = None, active: str | None = None,
                who: str = "", **ctx) -> HTMLResponse:
    # Pages about one customer speak the customer's language; the vendor's own pages stay English.
    page_locale = getattr(ctx.get("customer"), "locale", "en")
    t = translator(page_locale)
    nav = [{"label": t(label), "href": href, "active": href == active}
           for label, href in (NAV.get(principal.role, ()) if principal else ())]
    nonce = secrets.token_urlsafe(16)  # lets web/base.html's own <style> through the page's CSP
    html = render(template, principal=principal, csrf=principal.csrf if principal else "", nav=nav, who=who,
                  t=t, page_locale=page_locale, csp_nonce=nonce, **ctx)
    return HTMLResponse(html, status_code=status, headers={"Cache-Control": "no-store",
                                                           "Content-Security-Policy": headers.page_policy(nonce)})


def _who(session: Session, principal: Principal) -> str:
    if principal.role == Role.CUSTOMER:
        customer = session.get(Customer, principal.customer_id)
        return customer.name if customer else "customer"
    if principal.role == Role.REP:
        return principal.rep_email or "rep"
    return principal.label or "product manager"


def _guard(request: Request, session: Session, *roles: str) -> Principal | Response:
    """The logged-in principal with one of `roles`, or the response to send instead."""
    principal = auth.page_principal(request, session)
    if principal is None:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/login?next={_quote(target)}", status_code=303)
    if principal.role not in roles:
        return render_page("web/message.html", status=403, principal=principal, who=_who(session, principal),
                           title="Not for this login", heading="This page is not part of your login",
                           text="", link=HOME[principal.role])
    return principal


def _csrf_failed(session: Session, principal: Principal) -> HTMLResponse:
    return render_page("web/message.html", status=403, principal=principal, who=_who(session, principal),
                       title="Form expired", heading="The form has expired",
                       text="It did not come from this session. Reload the page and try again.",
                       link=HOME[principal.role])


def _form_guard(request: Request, session: Session, csrf: str, *roles: str) -> Principal | Response:
    """`_guard` for a form post: also the session's CSRF secret, or a 403 page."""
    principal = _guard(request, session, *roles)
    if isinstance(principal, Response):
        return principal
    if not _csrf_ok(principal, csrf):
        return _csrf_failed(session, principal)
    return principal


def _csrf_ok(principal: Principal, submitted: str) -> bool:
    try:
        auth.check_csrf(principal, submitted)
    except Exception:  # noqa: BLE001 - HTTPException: render a page instead of JSON
        return False
    return True


def _duration(seconds: int) -> str:
    return f"{seconds} seconds" if seconds < 120 else f"{round(seconds / 60)} minutes"


def _quote(path: str) -> str:
    from urllib.parse import quote

    return quote(path, safe="")


def _safe_next(value: str | None) -> str | None:
    if value and value.startswith("/") and not value.startswith("//") and "\\" not in value:
        return value
    return None


# ------------------------------------------------------------------------------------ shared data views


def kind_label(kind: str) -> str:
    return KIND_LABELS["en"].get(kind, kind)


def release_view(session: Session, customer: Customer, release: Release, at: dt.datetime) -> dict:
    """A release as the customer sees it: milestones, upgrade targets, their agreement and its history."""
    product = session.get(Product, release.product_id)
    today = policy.local_date(at, customer.timezone)
    milestones = session.exec(
        select(Milestone).where(
            Milestone.product_id == product.id,
            (Milestone.release_id == release.id) | Milestone.release_id.is_(None),
        )
    ).all()
    ms = sorted(
        ({"kind": m.kind, "label": content_kind_label(m.kind, customer.locale), "date": m.date, "status": m.status,
          "days_left": policy.days_left(m.date, today), "past": m.date < today,
          "withdrawn": m.status == MilestoneStatus.WITHDRAWN, "product_level": m.release_id is None}
         for m in milestones),
        key=lambda m: (m["date"], m["kind"]))
    upcoming = [m for m in ms if not m["past"] and not m["withdrawn"]]
    targets = sorted((r.version for r in session.exec(select(Release).where(
        Release.product_id == product.id, Release.id != release.id)).all()), key=registry.version_key)
    agreement = session.exec(select(Agreement).where(Agreement.customer_id == customer.id,
                                                     Agreement.release_id == release.id)).first()
    history = agreements.history(session, agreement.id) if agreement else []
    status = agreement.status if agreement else "none"
    nxt = upcoming[0] if upcoming else None
    return {
        "release_id": release.id, "product": product.slug, "product_name": product.name,
        "version": release.version, "released": release.released, "upgrade_to": release.upgrade_to,
        "milestones": ms, "next": nxt, "targets": targets,
        "agreement": agreement, "status": status, "status_label": AGREEMENT_LABELS.get(customer.locale, AGREEMENT_LABELS["en"])[status],
        "history": history, "risk": dashboard.risk(status, nxt["date"], today) if nxt else "green",
        "closed": agreements.closed(session, customer, release),  # why no plan can be recorded, or None
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
        return cls(status=a.status if a else "planned",
                   target=(a.target_version if a else None) or view["upgrade_to"] or "",
                   planned_date=a.planned_date.isoformat() if a and a.planned_date else "",
                   feedback="")

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
        return {"status": status, "target_version": self.target.strip() or None,
                "planned_date": v.optional_date(self.planned_date.strip(), "planned_date"),
                "by": by, "feedback": self.feedback}

    def as_dict(self) -> dict:
        return asdict(self)


# --------------------------------------------------------------------------------------------- login


@router.get("/", response_class=HTMLResponse)
def home(request: Request, session: SessionDep) -> Response:
    principal = auth.page_principal(request, session)
    return RedirectResponse(HOME[principal.role] if principal else "/login", status_code=303)


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request, session: SessionDep, next: str | None = None) -> Response:
    csrf = auth.login_csrf(request, session)
    response = render_page("web/login.html", title="Log in", login_csrf=csrf, next=_safe_next(next) or "",
                           error=None)
    auth.set_login_csrf(session, response, csrf)
    return response


@router.post("/login", response_class=HTMLResponse)
def login(request: Request, session: SessionDep, token: Annotated[str, Form()] = "",
          csrf: Annotated[str, Form()] = "", next: Annotated[str, Form()] = "") -> Response:
    error, status, at = None, 401, now()
    wait = ratelimit.blocked(request, ratelimit.LOGIN, at)
    if wait is not None:
        error, status = f"Too many failed logins from your address. Try again in {_duration(wait)}.", 429
    elif not auth.check_login_csrf(request, session, csrf):
        error = "The login form expired. Please try again."
    else:
        api_token = tokens.authenticate(session, token, at)
        if api_token is None:
            ratelimit.failed(request, session, ratelimit.LOGIN, at, token)
            error = "This token is not known or has been revoked."
    if error:
        fresh = auth.login_csrf(request, session)
        response = render_page("web/login.html", status=status, title="Log in", login_csrf=fresh,
                               next=_safe_next(next) or "", error=error)
        if wait is not None:
            response.headers["Retry-After"] = str(wait)
        auth.set_login_csrf(session, response, fresh)
        return response
    session.commit()
    response = RedirectResponse(_safe_next(next) or HOME[api_token.role], status_code=303)
    auth.start_session(session, response, api_token)
    return response


@router.post("/logout")
def logout(request: Request, session: SessionDep, csrf: Annotated[str, Form()] = "") -> Response:
    principal = auth.page_principal(request, session)
    if principal is not None and not _csrf_ok(principal, csrf):
        return _csrf_failed(session, principal)
    response = RedirectResponse("/login", status_code=303)
    auth.end_session(response, session, principal)
    return response


# -------------------------------------------------------------------------------------- customer portal


def _inbox(session: Session, customer_id: int) -> list[InboxMessage]:
    return list(session.exec(select(InboxMessage).where(InboxMessage.customer_id == customer_id)
                             .order_by(InboxMessage.created_at.desc(), InboxMessage.id.desc())).all())


def _portal(session: Session, principal: Principal, at: dt.datetime, *, status: int = 200, saved: int | None = None,
            error: str | None = None, failed: dict | None = None) -> HTMLResponse:
    customer = session.get(Customer, principal.customer_id)
    releases = session.exec(
        select(Release).join(Deployment, Deployment.release_id == Release.id)
        .where(Deployment.customer_id == customer.id, Deployment.removed_at.is_(None))
    ).all()
    views = [release_view(session, customer, r, at) for r in releases]
    views.sort(key=lambda r: (r["next"]["days_left"] if r["next"] else 10**6, r["product"],
                              registry.version_key(r["version"])))
    forms = {r["release_id"]: AgreementForm.initial(r) for r in views}
    if failed:
        forms[failed["release_id"]] = failed["form"]
    messages = _inbox(session, customer.id)
    feed = links.calendar_url(customer.calendar_token)
    saved_view = next((r for r in views if r["release_id"] == saved), None)
    return render_page(
        "web/portal.html", status=status, principal=principal, active="/portal", who=customer.name,
        title="Customer portal", customer=customer, messages=messages,
        unread=sum(1 for m in messages if m.read_at is None), releases=views, forms=forms,
        statuses=STATUS_CHOICES, calendar_url=feed, webcal_url=links.webcal_url(feed), saved=saved_view,
        error=error, error_release=failed["release_id"] if failed else None)


@router.get("/portal", response_class=HTMLResponse)
def portal(request: Request, session: SessionDep, saved: int | None = None) -> Response:
    principal = _guard(request, session, Role.CUSTOMER)
    if isinstance(principal, Response):
        return principal
    return _portal(session, principal, now(), saved=saved)


_BODY_RE = re.compile(r"<body[^>]*>(.*)</body>", re.S | re.I)


@router.get("/portal/notices/{message_id}", response_class=HTMLResponse)
def notice_page(message_id: int, request: Request, session: SessionDep) -> Response:
    principal = _guard(request, session, Role.CUSTOMER)
    if isinstance(principal, Response):
        return principal
    msg = session.get(InboxMessage, message_id) if valid_id(message_id) else None
    if msg is None or msg.customer_id != principal.customer_id:
        return render_page("web/message.html", status=404, principal=principal, who=_who(session, principal),
                           title="Not found", heading="No such notice", text="", link="/portal")
    if msg.read_at is None:  # opening a notice in the portal is reading it
        msg.read_at = now()
        session.add(msg)
        session.commit()
    # The body is our own email template (autoescaped when rendered): show it inside the page.
    match = _BODY_RE.search(msg.body_html)
    body = match.group(1) if match else msg.body_html
    unread = sum(1 for m in _inbox(session, principal.customer_id) if m.read_at is None)
    return render_page("web/notice.html", principal=principal, active="/portal", who=_who(session, principal),
                       title=msg.subject, msg=msg, body=body, unread=unread,
                       customer=session.get(Customer, principal.customer_id))


@router.post("/portal/agreements", response_class=HTMLResponse)
def portal_agreement(
    request: Request, session: SessionDep, csrf: Annotated[str, Form()] = "",
    release_id: Annotated[int, Form()] = 0, status: Annotated[str, Form()] = "",
    target: Annotated[str, Form()] = "", planned_date: Annotated[str, Form()] = "",
    name: Annotated[str, Form()] = "", email: Annotated[str, Form()] = "", feedback: Annotated[str, Form()] = "",
) -> Response:
    principal = _form_guard(request, session, csrf, Role.CUSTOMER)
    if isinstance(principal, Response):
        return principal
    at = now()
    customer = session.get(Customer, principal.customer_id)
    release = session.get(Release, release_id) if valid_id(release_id) else None
    form = AgreementForm(status=status, target=target, planned_date=planned_date, name=name, email=email,
                         feedback=feedback)
    closed = agreements.closed(session, customer, release) if release else agreements.NOT_RUN
    if closed:
        return _portal(session, principal, at, status=404 if closed == agreements.NOT_RUN else 409, error=closed)
    try:
        agreements.record(session, customer=customer, release=release, at=at, channel="web", **form.cleaned())
    except InputError as exc:
        session.rollback()
        return _portal(session, principal, at, status=422, error=str(exc),
                       failed={"release_id": release.id, "form": form})
    session.commit()
    return RedirectResponse(f"/portal?saved={release.id}#release-{release.id}", status_code=303)


# ------------------------------------------------------------------------------------------ dashboard


def _dashboard_rows(session: Session, principal: Principal, at: dt.datetime, customer: str | None,
                    product: str | None, risk: str | None, rep: str | None) -> tuple[list[dict], list[dict]]:
    """(rows after every filter, rows with only the scope filter) for the dashboard and its CSV."""
    scope_rep = principal.rep_email if principal.role == Role.REP else (rep or None)
    everything = dashboard.agreement_rows(session, at=at, rep=scope_rep)
    rows = [r for r in everything
            if (not customer or r["customer"] == customer) and (not product or r["product"] == product)
            and (not risk or r["risk"] == risk)]
    return rows, everything


@router.get("/dashboard", response_class=HTMLResponse)
def dashboard_page(request: Request, session: SessionDep, customer: str | None = None, product: str | None = None,
                   risk: str | None = None, rep: str | None = None, done: str | None = None) -> Response:
    principal = _guard(request, session, Role.REP, Role.PM)
    if isinstance(principal, Response):
        return principal
    try:  # the confirmation of the last agreement recorded, signed like the registry's
        message = auth.untimed_serializer(session, FLASH_SALT).loads(done) if done else None
    except BadSignature:
        message = None
    return _dashboard(session, principal, now(), customer, product, risk, rep, done=message)


def _dashboard(session: Session, principal: Principal, at: dt.datetime, customer: str | None, product: str | None,
               risk: str | None, rep: str | None, *, done: str | None = None, error: str | None = None,
               status: int = 200) -> Response:
    rows, everything = _dashboard_rows(session, principal, at, customer, product, risk, rep)
    scope_rep = principal.rep_email if principal.role == Role.REP else (rep or None)
    customers = session.exec(
        select(Customer).where(principal.customer_filter() if principal.role == Role.REP else sa.true())
        .order_by(Customer.key)).all()
    if principal.role == Role.PM and scope_rep:
        customers = [c for c in customers if c.account_rep.lower() == scope_rep.lower()]
    filters = {"customer": customer or "", "product": product or "", "risk": risk or "", "rep": rep or ""}
    query = "&".join(f"{k}={_quote(val)}" for k, val in filters.items() if val)
    counts = {k: sum(1 for r in everything if r["risk"] == k) for k in dashboard.RISKS}
    reps = sorted({c.account_rep for c in session.exec(select(Customer)).all()}) if principal.role == Role.PM else []
    return render_page(
        "web/dashboard.html", principal=principal, active="/dashboard", who=_who(session, principal),
        title="Upgrade agreements", rows=rows, total=len(everything), counts=counts, filters=filters,
        customers=customers, products=sorted({(r["product"], r["product_name"]) for r in everything}),
        reps=reps, risks=dashboard.RISKS, csv_url="/dashboard.csv" + (f"?{query}" if query else ""),
        escalations=dashboard.escalations(session, rep=scope_rep),
        undeliverable=dashboard.undeliverable_contacts(session, rep=scope_rep),
        kind_label=kind_label, today=at.date(), done=done, error=error, status=status,
        targets=_targets(session, everything))


def _targets(session: Session, rows: list[dict]) -> dict[int, list[str]]:
    """Upgrade targets offered per release of the dashboard: the product's other releases."""
    product_slugs = {r["product"] for r in rows}
    if not product_slugs:
        return {}
    versions: dict[str, list[str]] = {}
    for rel, prod in session.exec(select(Release, Product).join(Product, Product.id == Release.product_id)
                                  .where(Product.slug.in_(product_slugs))).all():
        versions.setdefault(prod.slug, []).append(rel.version)
    return {r["release_id"]: sorted((x for x in versions.get(r["product"], []) if x != r["version"]),
                                    key=registry.version_key) for r in rows}


@router.post("/dashboard/agreements", response_class=HTMLResponse)
def dashboard_agreement(
    request: Request, session: SessionDep, csrf: Annotated[str, Form()] = "",
    deployment: Annotated[str, Form()] = "", status: Annotated[str, Form()] = "",
    target: Annotated[str, Form()] = "", planned_date: Annotated[str, Form()] = "",
    feedback: Annotated[str, Form()] = "",
) -> Response:
    """A rep records an agreement reached by phone (or in a meeting) for one of their customers."""
    principal = _form_guard(request, session, csrf, Role.REP, Role.PM)
    if isinstance(principal, Response):
        return principal
    at = now()
    try:
        key, _, release = deployment.partition("|")
        try:
            release_id = int(release)
        except ValueError:
            raise InputError("deployment", "choose a customer and release") from None
        customer = session.exec(select(Customer).where(Customer.key == key)).first()
        rel = session.get(Release, release_id) if valid_id(release_id) else None
        if customer is None or rel is None or not principal.sees(customer):
            raise InputError("deployment", "choose a customer and release of yours")
        agreements.record(session, customer=customer, release=rel, status=status, at=at,
                          target_version=target or None, planned_date=v.optional_date(planned_date, "planned_date"),
                          by=principal.actor, feedback=feedback, channel="phone")
    except InputError as exc:
        session.rollback()
        return _dashboard(session, principal, at, None, None, None, None, error=str(exc), status=422)
    session.commit()
    product = session.get(Product, rel.product_id)
    flash = auth.untimed_serializer(session, FLASH_SALT).dumps(
        f"Recorded for {customer.name}: {product.name} {rel.version} — {status}")
    return RedirectResponse(f"/dashboard?done={_quote(flash)}", status_code=303)


@router.get("/dashboard.csv")
def dashboard_csv(request: Request, session: SessionDep, customer: str | None = None, product: str | None = None,
                  risk: str | None = None, rep: str | None = None) -> Response:
    principal = _guard(request, session, Role.REP, Role.PM)
    if isinstance(principal, Response):
        return principal
    at = now()
    rows, _ = _dashboard_rows(session, principal, at, customer, product, risk, rep)
    # A byte-order mark so that spreadsheets open Chinese names as UTF-8.
    return Response("\ufeff" + dashboard.rows_to_csv(rows), media_type="text/csv; charset=utf-8", headers={
        "Content-Disposition": f'attachment; filename="agreements-{at.date().isoformat()}.csv"',
        "Cache-Control": "no-store"})


# ------------------------------------------------------------------------------------------- registry


def timeline(session: Session, at: dt.datetime) -> dict:
    """Geometry of the registry chart: one row per release (and per product for product-level
    milestones), a marker per milestone, year ticks and a line for today. Coordinates in SVG units."""
    today = at.date()
    products = session.exec(select(Product).order_by(Product.slug)).all()
    releases = session.exec(select(Release)).all()
    milestones = session.exec(select(Milestone)).all()
    rows_ = registry.milestone_rows(session, at)
    moved_from = {r["id"]: r["history"][-1]["old_date"] for r in rows_
                  if r["history"] and r["history"][-1]["action"] == "moved" and r["history"][-1]["old_date"]}
    dates = [m.date for m in milestones] + [r.released for r in releases if r.released] + [today]
    dates += [dt.date.fromisoformat(d) for d in moved_from.values()]
    # Dates are validated into MIN_DATE..MAX_DATE; older data outside it must not break the page.
    dates = [min(max(d, MIN_DATE), MAX_DATE) for d in dates]
    start = dt.date(min(dates).year, 1, 1)
    end = dt.date(max(dates).year + 1, 1, 1)
    width, label_w, pad_r, row_h, top = 1000, 190, 24, 30, 34
    span = (end - start).days or 1

    def x(day: dt.date) -> float:
        return round(label_w + (day - start).days / span * (width - label_w - pad_r), 1)

    rows = []
    by_release: dict[int | None, list[Milestone]] = {}
    for m in milestones:
        by_release.setdefault(m.release_id if m.release_id else -m.product_id, []).append(m)
    for p in products:
        entries: list[tuple[str, Release | None, list[Milestone]]] = []
        if by_release.get(-p.id):
            entries.append((f"{p.slug} (all versions)", None, by_release[-p.id]))
        for r in sorted((r for r in releases if r.product_id == p.id), key=lambda r: registry.version_key(r.version)):
            entries.append((f"{p.slug} {r.version}", r, by_release.get(r.id, [])))
        for label, release, ms in entries:
            y = top + len(rows) * row_h + row_h / 2
            planned = [m.date for m in ms if m.status == MilestoneStatus.PLANNED]
            bar_start = release.released if release and release.released else (min(planned) if planned else None)
            bar_end = max(planned) if planned else None
            markers = []
            for m in sorted(ms, key=lambda m: m.date):
                shape, colour = KIND_STYLE.get(m.kind, ("circle", "#627d98"))
                withdrawn = m.status == MilestoneStatus.WITHDRAWN
                mx = x(m.date)
                old = moved_from.get(m.id)
                markers.append({
                    "id": m.id, "kind": m.kind, "date": m.date.isoformat(), "status": m.status, "x": mx, "y": y,
                    "shape": shape, "colour": "#9aa5b1" if withdrawn else colour, "withdrawn": withdrawn,
                    "past": m.date < today, "points": _points(shape, mx, y),
                    "old_x": x(dt.date.fromisoformat(old)) if old and not withdrawn else None,
                    "title": f"{label} {kind_label(m.kind)}: {m.date.isoformat()}"
                             + (" (withdrawn)" if withdrawn else "") + (f", moved from {old}" if old else ""),
                })
            ended = registry.release_ended(release, ms, today) if release else None
            rows.append({"label": label, "y": y, "product": p.slug, "version": release.version if release else None,
                         "ended": ended, "ended_undated": release.ended if release else None,
                         "bar": (x(bar_start), x(bar_end)) if bar_start and bar_end and bar_end > bar_start else None,
                         "markers": markers, "band": len(rows) % 2 == 0})
    years = list(range(start.year, end.year + 1))
    step = 1 if len(years) <= 12 else (2 if len(years) <= 24 else 5)
    ticks = [{"x": x(dt.date(yr, 1, 1)), "label": str(yr) if yr < end.year else ""}
             for yr in years if (yr - years[0]) % step == 0]
    height = top + max(len(rows), 1) * row_h + 8
    return {"width": width, "height": height, "label_w": label_w, "top": top, "rows": rows, "ticks": ticks,
            "today_x": x(today), "today": today.isoformat(), "right": width - pad_r,
            "legend": [{"kind": k, "label": kind_label(k), "colour": c, "shape": s,
                        "points": _points(s, 0, 0)} for k, (s, c) in KIND_STYLE.items()]}


def _points(shape: str, cx: float, cy: float, r: float = 7) -> str:
    """Polygon points of a marker shape centred on (cx, cy); '' for a circle."""
    pts = {
        "square": [(-r * .8, -r * .8), (r * .8, -r * .8), (r * .8, r * .8), (-r * .8, r * .8)],
        "triangle": [(0, -r), (r, r * .8), (-r, r * .8)],
        "diamond": [(0, -r), (r, 0), (0, r), (-r, 0)],
    }.get(shape)
    return " ".join(f"{round(cx + dx, 1)},{round(cy + dy, 1)}" for dx, dy in pts) if pts else ""


def _registry(session: Session, principal: Principal, at: dt.datetime, *, status: int = 200,
              done: str | None = None, error: dict | None = None) -> HTMLResponse:
    milestones = registry.milestone_rows(session, at)
    products = session.exec(select(Product).order_by(Product.slug)).all()
    releases = session.exec(select(Release)).all()
    scopes = []
    for p in products:
        scopes.append({"value": f"{p.slug}|", "label": f"{p.name} — all versions"})
        for r in sorted((r for r in releases if r.product_id == p.id), key=lambda r: registry.version_key(r.version)):
            scopes.append({"value": f"{p.slug}|{r.version}", "label": f"{p.name} {r.version}"})
    return render_page(
        "web/registry.html", status=status, principal=principal, active="/registry", who=_who(session, principal),
        title="Lifecycle registry", chart=timeline(session, at), milestones=milestones, scopes=scopes,
        kinds=[k.value for k in MilestoneKind], kind_label=kind_label, done=done,
        error=error or {}, can_edit=principal.role == Role.PM, today=at.date().isoformat())


@router.get("/registry", response_class=HTMLResponse)
def registry_page(request: Request, session: SessionDep, done: str | None = None) -> Response:
    principal = _guard(request, session, Role.PM, Role.REP)
    if isinstance(principal, Response):
        return principal
    try:  # the confirmation of the last change, signed so that nobody can put words on this page
        message = auth.untimed_serializer(session, FLASH_SALT).loads(done) if done else None
    except BadSignature:
        message = None
    return _registry(session, principal, now(), done=message)


def _registry_write(request: Request, session: Session, csrf: str, form: str, action) -> Response:
    """Run one PM form: CSRF, then `action(at, by)` returning the message to show; errors re-render."""
    principal = _form_guard(request, session, csrf, Role.PM)
    if isinstance(principal, Response):
        return principal
    at = now()
    try:
        message = action(at, principal.actor)
    except InputError as exc:
        session.rollback()
        return _registry(session, principal, at, status=422, error={"form": form, "message": str(exc)})
    session.commit()
    flash = auth.untimed_serializer(session, FLASH_SALT).dumps(message)
    return RedirectResponse(f"/registry?done={_quote(flash)}", status_code=303)


def _milestone_by_id(session: Session, milestone_id: str) -> Milestone:
    try:
        number = int(milestone_id)
    except ValueError:
        number = 0
    milestone = session.get(Milestone, number) if valid_id(number) else None
    if milestone is None:
        raise InputError("milestone", "choose a milestone")
    return milestone


def _customer_reason(en: str, zh: str) -> dict[str, str] | None:
    """The optional note for customers of the registry forms, per locale."""
    written = {loc: text.strip() for loc, text in (("en", en), ("zh-CN", zh)) if text.strip()}
    return written or None


def _describe(session: Session, m: Milestone) -> str:
    product = session.get(Product, m.product_id)
    release = session.get(Release, m.release_id) if m.release_id else None
    return f"{product.slug} {release.version if release else '(all versions)'} {m.kind}"


@router.post("/registry/milestones", response_class=HTMLResponse)
def registry_add(request: Request, session: SessionDep, csrf: Annotated[str, Form()] = "",
                 scope: Annotated[str, Form()] = "", kind: Annotated[str, Form()] = "",
                 date: Annotated[str, Form()] = "", reason: Annotated[str, Form()] = "",
                 allow_short_notice: Annotated[bool, Form()] = False,
                 customer_reason_en: Annotated[str, Form()] = "", customer_reason_zh: Annotated[str, Form()] = "",
                 ) -> Response:
    def action(at: dt.datetime, by: str) -> str:
        if "|" not in scope:
            raise InputError("release", "choose a product or release")
        slug, version = scope.split("|", 1)
        m, change = registry.add_milestone(session, product=slug, version=version or None, kind=kind,
                                           date=v.date(date, "date"), at=at, allow_short_notice=allow_short_notice,
                                           reason=reason or None, by=by,
                                           customer_reason=_customer_reason(customer_reason_en, customer_reason_zh))
        return f"{_describe(session, m)} on {m.date.isoformat()}: {change}"
    return _registry_write(request, session, csrf, "add", action)


@router.post("/registry/milestones/move", response_class=HTMLResponse)
def registry_move(request: Request, session: SessionDep, csrf: Annotated[str, Form()] = "",
                  milestone: Annotated[str, Form()] = "", date: Annotated[str, Form()] = "",
                  reason: Annotated[str, Form()] = "", allow_short_notice: Annotated[bool, Form()] = False,
                  customer_reason_en: Annotated[str, Form()] = "", customer_reason_zh: Annotated[str, Form()] = "",
                  ) -> Response:
    def action(at: dt.datetime, by: str) -> str:
        m = _milestone_by_id(session, milestone)
        m, change = registry.move_milestone(session, m, date=v.date(date, "date"), reason=reason, at=at,
                                            allow_short_notice=allow_short_notice, by=by,
                                            customer_reason=_customer_reason(customer_reason_en, customer_reason_zh))
        return (f"{_describe(session, m)} moved to {m.date.isoformat()} (revision {m.revision})"
                if change == "updated" else f"{_describe(session, m)} is already on {m.date.isoformat()}")
    return _registry_write(request, session, csrf, "move", action)


@router.post("/registry/milestones/withdraw", response_class=HTMLResponse)
def registry_withdraw(request: Request, session: SessionDep, csrf: Annotated[str, Form()] = "",
                      milestone: Annotated[str, Form()] = "", reason: Annotated[str, Form()] = "",
                      customer_reason_en: Annotated[str, Form()] = "", customer_reason_zh: Annotated[str, Form()] = "",
                      ) -> Response:
    def action(at: dt.datetime, by: str) -> str:
        m = _milestone_by_id(session, milestone)
        m, change = registry.withdraw_milestone(session, m, reason=reason, at=at, by=by,
                                                customer_reason=_customer_reason(customer_reason_en,
                                                                                 customer_reason_zh))
        return f"{_describe(session, m)} " + ("withdrawn" if change == "updated" else "was already withdrawn")
    return _registry_write(request, session, csrf, "withdraw", action)

