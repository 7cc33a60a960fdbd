"""The rep dashboard: upcoming milestones by days left with agreement status and risk, escalations,
bounced contacts, the CSV, and agreements reached by phone."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

import sqlalchemy as sa
from fastapi import APIRouter, Form, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from itsdangerous import BadSignature
from sqlmodel import Session, select

from lifecycle import agreements, dashboard, registry
from lifecycle import validation as v
from lifecycle.errors import InputError
from lifecycle.models import (
    Customer,
    Product,
    Release,
    Role,
)
from lifecycle.validation import valid_id
from lifecycle.web import auth
from lifecycle.web.auth import Principal, SessionDep, now
from lifecycle.web.pages.common import (
    FLASH_SALT,
    form_guard,
    guard,
    kind_label,
    quote,
    render_page,
    who,
)

router = APIRouter(include_in_schema=False)

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
    principal = guard(request, session, Role.REP, Role.PM)
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
    query = "&".join(f"{k}={quote(val)}" for k, val in filters.items() if val)
    counts = {k: sum(1 for r in everything if r["risk"] == k) for k in dashboard.RISKS}
    reps = sorted({c.account_rep for c in session.exec(select(Customer)).all()}) if principal.role == Role.PM else []
    return render_page(
        "web/dashboard.html", principal=principal, active="/dashboard", who=who(session, principal),
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
    principal = form_guard(request, session, csrf, Role.REP, Role.PM)
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
    return RedirectResponse(f"/dashboard?done={quote(flash)}", status_code=303)


@router.get("/dashboard.csv")
def dashboard_csv(request: Request, session: SessionDep, customer: str | None = None, product: str | None = None,
                  risk: str | None = None, rep: str | None = None) -> Response:
    principal = guard(request, session, Role.REP, Role.PM)
    if isinstance(principal, Response):
        return principal
    at = now()
    rows, _ = _dashboard_rows(session, principal, at, customer, product, risk, rep)
    # A byte-order mark so that spreadsheets open Chinese names as UTF-8.
    return Response("\ufeff" + dashboard.rows_to_csv(rows), media_type="text/csv; charset=utf-8", headers={
        "Content-Disposition": f'attachment; filename="agreements-{at.date().isoformat()}.csv"',
        "Cache-Control": "no-store"})


