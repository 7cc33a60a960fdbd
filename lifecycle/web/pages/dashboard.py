"""The rep dashboard: upcoming milestones by days left with agreement status, latest feedback and risk
(with its reason), escalation work items (open first, with state and notes), bounced contacts, the
CSV, and agreements reached by phone; a page per customer with contacts, agreement history and
escalations."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

import sqlalchemy as sa
from fastapi import APIRouter, Form, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from itsdangerous import BadSignature
from sqlmodel import Session, col, select

from lifecycle import agreements, dashboard, escalations, registry
from lifecycle import validation as v
from lifecycle.errors import InputError
from lifecycle.models import (
    Customer,
    Deployment,
    Product,
    Release,
    Role,
    pk,
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
    release_view,
    render_page,
    who,
)

router = APIRouter(include_in_schema=False)

# ------------------------------------------------------------------------------------------ dashboard


def _channel_rows(session: Session, customer_ids: list[int]) -> list[dict]:
    """The channel subscriptions of these customers, the ones in trouble first (turned off, failing)."""
    from lifecycle.channels import subscriptions

    order = {"disabled": 0, "failing": 1, "untested": 2, "working": 3}
    return sorted(
        subscriptions.rows(session, customer_ids=customer_ids),
        key=lambda r: (order.get(r["state"], 9), r["customer"], r["id"]),
    )


def _dashboard_rows(
    session: Session,
    principal: Principal,
    at: dt.datetime,
    customer: str | None,
    product: str | None,
    risk: str | None,
    rep: str | None,
) -> tuple[list[dict], list[dict]]:
    """(rows after every filter, rows with only the scope filter) for the dashboard and its CSV."""
    scope_rep = principal.rep_email if principal.role == Role.REP else (rep or None)
    everything = dashboard.agreement_rows(session, at=at, rep=scope_rep)
    rows = [
        r
        for r in everything
        if (not customer or r["customer"] == customer)
        and (not product or r["product"] == product)
        and (not risk or r["risk"] == risk)
    ]
    return rows, everything


@router.get("/dashboard", response_class=HTMLResponse)
def dashboard_page(
    request: Request,
    session: SessionDep,
    customer: str | None = None,
    product: str | None = None,
    risk: str | None = None,
    rep: str | None = None,
    done: str | None = None,
) -> Response:
    principal = guard(request, session, Role.REP, Role.PM)
    if isinstance(principal, Response):
        return principal
    try:  # the confirmation of the last agreement recorded, signed like the registry's
        message = auth.untimed_serializer(session, FLASH_SALT).loads(done) if done else None
    except BadSignature:
        message = None
    return _dashboard(session, principal, now(), customer, product, risk, rep, done=message)


def _dashboard(
    session: Session,
    principal: Principal,
    at: dt.datetime,
    customer: str | None,
    product: str | None,
    risk: str | None,
    rep: str | None,
    *,
    done: str | None = None,
    error: str | None = None,
    status: int = 200,
) -> Response:
    rows, everything = _dashboard_rows(session, principal, at, customer, product, risk, rep)
    scope_rep = principal.rep_email if principal.role == Role.REP else (rep or None)
    customers = session.exec(
        select(Customer)
        .where(principal.customer_filter() if principal.role == Role.REP else sa.true())
        .order_by(Customer.key)
    ).all()
    if principal.role == Role.PM and scope_rep:
        customers = [c for c in customers if c.account_rep.lower() == scope_rep.lower()]
    filters = {"customer": customer or "", "product": product or "", "risk": risk or "", "rep": rep or ""}
    query = "&".join(f"{k}={quote(val)}" for k, val in filters.items() if val)
    counts = {k: sum(1 for r in everything if r["risk"] == k) for k in dashboard.RISKS}
    reps = (
        sorted({c.account_rep for c in session.exec(select(Customer)).all()})
        if principal.role == Role.PM
        else []
    )
    return render_page(
        "web/dashboard.html",
        principal=principal,
        active="/dashboard",
        who=who(session, principal),
        title="Upgrade agreements",
        rows=rows,
        total=len(everything),
        counts=counts,
        filters=filters,
        customers=customers,
        products=sorted({(r["product"], r["product_name"]) for r in everything}),
        reps=reps,
        risks=dashboard.RISKS,
        csv_url="/dashboard.csv" + (f"?{query}" if query else ""),
        escalations=escalations.rows(session, at=at, rep=scope_rep),
        back="/dashboard",
        undeliverable=dashboard.undeliverable_contacts(session, rep=scope_rep),
        channels=_channel_rows(session, [pk(c) for c in customers]),
        kind_label=kind_label,
        today=at.date(),
        done=done,
        error=error,
        status=status,
        targets=_targets(session, everything, at),
    )


def _targets(session: Session, rows: list[dict], at: dt.datetime) -> dict[int, list]:
    """Upgrade targets offered per release of the dashboard: later releases not ended today, newest
    first, with their end dates (`agreements.target_choices`)."""
    releases = {r["release_id"] for r in rows}
    return {
        rid: agreements.target_choices(session, session.get_one(Release, rid), at.date()) for rid in releases
    }


@router.post("/dashboard/agreements", response_class=HTMLResponse)
def dashboard_agreement(
    request: Request,
    session: SessionDep,
    csrf: Annotated[str, Form()] = "",
    deployment: Annotated[str, Form()] = "",
    status: Annotated[str, Form()] = "",
    target: Annotated[str, Form()] = "",
    planned_date: Annotated[str, Form()] = "",
    feedback: Annotated[str, Form()] = "",
    move_deployment: Annotated[bool, Form()] = False,
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
        agreement = agreements.record(
            session,
            customer=customer,
            release=rel,
            status=status,
            at=at,
            target_version=target or None,
            planned_date=v.optional_date(planned_date, "planned_date"),
            by=principal.actor,
            feedback=feedback,
            channel="phone",
            recorded_by=principal.actor,
        )
        if move_deployment and agreement.status == "completed" and agreement.target_version:
            agreements.move_deployment(
                session,
                customer=customer,
                release=rel,
                target_version=agreement.target_version,
                at=at,
                by=principal.actor,
            )
            status = f"completed, now runs {agreement.target_version}"
    except InputError as exc:
        session.rollback()
        return _dashboard(session, principal, at, None, None, None, None, error=str(exc), status=422)
    session.commit()
    product = session.get_one(Product, rel.product_id)
    flash = auth.untimed_serializer(session, FLASH_SALT).dumps(
        f"Recorded for {customer.name}: {product.name} {rel.version} — {status}"
    )
    return RedirectResponse(f"/dashboard?done={quote(flash)}", status_code=303)


@router.get("/dashboard.csv")
def dashboard_csv(
    request: Request,
    session: SessionDep,
    customer: str | None = None,
    product: str | None = None,
    risk: str | None = None,
    rep: str | None = None,
) -> Response:
    principal = guard(request, session, Role.REP, Role.PM)
    if isinstance(principal, Response):
        return principal
    at = now()
    rows, _ = _dashboard_rows(session, principal, at, customer, product, risk, rep)
    # A byte-order mark so that spreadsheets open Chinese names as UTF-8.
    return Response(
        "\ufeff" + dashboard.rows_to_csv(rows),
        media_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="agreements-{at.date().isoformat()}.csv"',
            "Cache-Control": "no-store",
        },
    )


# ------------------------------------------------------------------------------------ escalation work


@router.post("/dashboard/escalations/{escalation_id}", response_class=HTMLResponse)
def dashboard_escalation(
    escalation_id: int,
    request: Request,
    session: SessionDep,
    csrf: Annotated[str, Form()] = "",
    state: Annotated[str, Form()] = "",
    note: Annotated[str, Form()] = "",
    back: Annotated[str, Form()] = "",
) -> Response:
    """A rep moves an escalation (open -> in progress -> resolved) and/or adds a note."""
    principal = form_guard(request, session, csrf, Role.REP, Role.PM)
    if isinstance(principal, Response):
        return principal
    at = now()
    target = back if back.startswith("/dashboard") and "//" not in back else "/dashboard"
    try:
        item = escalations.get(session, escalation_id)
        customer = session.get_one(Customer, item.customer_id)
        if not principal.sees(customer):
            raise InputError("escalation", f"no escalation {escalation_id}")
        escalations.update(
            session,
            item,
            at=at,
            by=principal.actor,
            state=state if state and state != item.state else None,
            note=note or None,
        )
    except InputError as exc:
        session.rollback()
        return _dashboard(session, principal, at, None, None, None, None, error=str(exc), status=422)
    session.commit()
    return RedirectResponse(f"{target}#escalation-{escalation_id}", status_code=303)


# -------------------------------------------------------------------------------------- customer page


def _customer(session: Session, principal: Principal, key: str) -> Customer | None:
    customer = session.exec(select(Customer).where(Customer.key == key)).first()
    return customer if customer is not None and principal.sees(customer) else None


@router.get("/dashboard/customers/{key}", response_class=HTMLResponse)
def customer_page(key: str, request: Request, session: SessionDep, done: str | None = None) -> Response:
    principal = guard(request, session, Role.REP, Role.PM)
    if isinstance(principal, Response):
        return principal
    try:
        message = auth.untimed_serializer(session, FLASH_SALT).loads(done) if done else None
    except BadSignature:
        message = None
    return _customer_page(session, principal, key, now(), done=message)


def _customer_page(
    session: Session,
    principal: Principal,
    key: str,
    at: dt.datetime,
    *,
    done: str | None = None,
    error: str | None = None,
    status: int = 200,
) -> Response:
    customer = _customer(session, principal, key)
    if customer is None:
        return render_page(
            "web/message.html",
            status=404,
            principal=principal,
            who=who(session, principal),
            title="Not found",
            heading="No such customer of yours",
            text="",
            link="/dashboard",
        )
    releases = session.exec(
        select(Release)
        .join(Deployment, col(Deployment.release_id) == Release.id)
        .where(Deployment.customer_id == customer.id, col(Deployment.removed_at).is_(None))
    ).all()
    views = sorted(
        (release_view(session, customer, r, at, locale="en") for r in releases),
        key=lambda r: (r["product"], registry.version_key(r["version"])),
    )
    rows = {r["release_id"]: r for r in dashboard.agreement_rows(session, at=at, customer_id=customer.id)}
    return render_page(
        "web/customer.html",
        status=status,
        principal=principal,
        active="/dashboard",
        who=who(session, principal),
        title=customer.name,
        subject=customer,
        contacts=registry.contact_rows(session, customer),
        releases=views,
        rows=rows,
        escalations=escalations.rows(session, at=at, customer_id=customer.id),
        back=f"/dashboard/customers/{customer.key}",
        kind_label=kind_label,
        done=done,
        error=error,
    )


def _flash(session: Session, text: str) -> str:
    return quote(auth.untimed_serializer(session, FLASH_SALT).dumps(text))


@router.post("/dashboard/customers/{key}/contacts", response_class=HTMLResponse)
def customer_contact_add(
    key: str,
    request: Request,
    session: SessionDep,
    csrf: Annotated[str, Form()] = "",
    email: Annotated[str, Form()] = "",
    name: Annotated[str, Form()] = "",
    force: Annotated[bool, Form()] = False,
) -> Response:
    principal = form_guard(request, session, csrf, Role.REP, Role.PM)
    if isinstance(principal, Response):
        return principal
    at = now()
    customer = _customer(session, principal, key)
    if customer is None:
        return _customer_page(session, principal, key, at)
    try:
        contact, change = registry.upsert_contact(
            session, customer=customer, email=email, name=name or None, at=at, force=force, by=principal.actor
        )
    except InputError as exc:
        session.rollback()
        return _customer_page(session, principal, key, at, error=str(exc), status=422)
    session.commit()
    return RedirectResponse(
        f"/dashboard/customers/{key}?done={_flash(session, f'{contact.email}: {change}')}#contacts",
        status_code=303,
    )


@router.post("/dashboard/customers/{key}/contacts/remove", response_class=HTMLResponse)
def customer_contact_remove(
    key: str,
    request: Request,
    session: SessionDep,
    csrf: Annotated[str, Form()] = "",
    email: Annotated[str, Form()] = "",
) -> Response:
    principal = form_guard(request, session, csrf, Role.REP, Role.PM)
    if isinstance(principal, Response):
        return principal
    at = now()
    customer = _customer(session, principal, key)
    if customer is None:
        return _customer_page(session, principal, key, at)
    try:
        contact = registry.remove_contact(session, customer=customer, email=email, at=at, by=principal.actor)
    except InputError as exc:
        session.rollback()
        return _customer_page(session, principal, key, at, error=str(exc), status=422)
    session.commit()
    return RedirectResponse(
        f"/dashboard/customers/{key}?done={_flash(session, f'{contact.email}: removed')}#contacts",
        status_code=303,
    )
