"""The customer portal: the inbox, each release the customer runs with its milestones and the
upgrade-plan form, the calendar subscription."""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated

from fastapi import APIRouter, Form, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from sqlmodel import Session, select

from lifecycle import agreements, links, registry
from lifecycle.errors import InputError
from lifecycle.models import (
    Customer,
    Deployment,
    InboxMessage,
    Release,
    Role,
)
from lifecycle.validation import valid_id
from lifecycle.web.auth import Principal, SessionDep, now
from lifecycle.web.pages.common import (
    STATUS_CHOICES,
    AgreementForm,
    form_guard,
    guard,
    release_view,
    render_page,
    who,
)

router = APIRouter(include_in_schema=False)

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
    principal = guard(request, session, Role.CUSTOMER)
    if isinstance(principal, Response):
        return principal
    return _portal(session, principal, now(), saved=saved)


_BODY_RE = re.compile(r"<body[^>]*>(.*)</body>", re.S | re.I)


@router.get("/portal/notices/{message_id}", response_class=HTMLResponse)
def notice_page(message_id: int, request: Request, session: SessionDep) -> Response:
    principal = guard(request, session, Role.CUSTOMER)
    if isinstance(principal, Response):
        return principal
    msg = session.get(InboxMessage, message_id) if valid_id(message_id) else None
    if msg is None or msg.customer_id != principal.customer_id:
        return render_page("web/message.html", status=404, principal=principal, who=who(session, principal),
                           title="Not found", heading="No such notice", text="", link="/portal")
    if msg.read_at is None:  # opening a notice in the portal is reading it
        msg.read_at = now()
        session.add(msg)
        session.commit()
    # The body is our own email template (autoescaped when rendered): show it inside the page.
    match = _BODY_RE.search(msg.body_html)
    body = match.group(1) if match else msg.body_html
    unread = sum(1 for m in _inbox(session, principal.customer_id) if m.read_at is None)
    return render_page("web/notice.html", principal=principal, active="/portal", who=who(session, principal),
                       title=msg.subject, msg=msg, body=body, unread=unread,
                       customer=session.get(Customer, principal.customer_id))


@router.post("/portal/agreements", response_class=HTMLResponse)
def portal_agreement(
    request: Request, session: SessionDep, csrf: Annotated[str, Form()] = "",
    release_id: Annotated[int, Form()] = 0, status: Annotated[str, Form()] = "",
    target: Annotated[str, Form()] = "", planned_date: Annotated[str, Form()] = "",
    name: Annotated[str, Form()] = "", email: Annotated[str, Form()] = "", feedback: Annotated[str, Form()] = "",
) -> Response:
    principal = form_guard(request, session, csrf, Role.CUSTOMER)
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


