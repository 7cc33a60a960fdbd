"""The customer portal: the inbox (unread or all, in pages, mark all read, times in the customer's
timezone, a banner on notices later changed or cancelled), each release the customer runs with its
milestones and the upgrade-plan form, the calendar subscription and a new calendar link on demand.
Every text is in the customer's language."""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated

from fastapi import APIRouter, Form, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from sqlmodel import Session, col, select

from lifecycle import agreements, inbox, links, registry
from lifecycle.errors import InputError
from lifecycle.i18n import N_
from lifecycle.models import (
    Customer,
    Deployment,
    InboxMessage,
    Product,
    Release,
    Role,
    pk,
)
from lifecycle.validation import valid_id
from lifecycle.web.auth import Principal, SessionDep, now
from lifecycle.web.i18n import translator
from lifecycle.web.pages.common import (
    STATUS_CHOICES,
    AgreementForm,
    form_error,
    form_guard,
    guard,
    release_view,
    render_page,
    who,
)

router = APIRouter(include_in_schema=False)

# -------------------------------------------------------------------------------------- customer portal


def _customer(session: Session, principal: Principal) -> Customer:
    """The signed-in customer (guard() admitted a customer token, which always names its customer)."""
    customer = session.get(Customer, principal.customer_id)
    assert customer is not None
    return customer


def _portal(
    session: Session,
    principal: Principal,
    at: dt.datetime,
    *,
    status: int = 200,
    saved: int | None = None,
    error: str | None = None,
    failed: dict | None = None,
    show: str = "all",
    page: int = 1,
    rotated: bool = False,
    moved: str | None = None,
    marked: bool = False,
) -> HTMLResponse:
    customer = _customer(session, principal)
    releases = session.exec(
        select(Release)
        .join(Deployment, col(Deployment.release_id) == Release.id)
        .where(Deployment.customer_id == customer.id, col(Deployment.removed_at).is_(None))
    ).all()
    views = [release_view(session, customer, r, at) for r in releases]
    views.sort(
        key=lambda r: (
            r["next"]["days_left"] if r["next"] else 10**6,
            r["product"],
            registry.version_key(r["version"]),
        )
    )
    forms = {r["release_id"]: AgreementForm.initial(r) for r in views}
    if failed:
        forms[failed["release_id"]] = failed["form"]
    show = "unread" if show == "unread" else "all"
    box = inbox.page(session, customer, unread_only=show == "unread", number=page)
    feed = links.calendar_url(customer.calendar_token)
    saved_view = next((r for r in views if r["release_id"] == saved), None)
    return render_page(
        "web/portal.html",
        status=status,
        principal=principal,
        active="/portal",
        who=customer.name,
        title=N_("Customer portal"),
        customer=customer,
        inbox=box,
        show=show,
        unread=box.unread,
        has_messages=box.total > 0 or show == "unread",
        releases=views,
        forms=forms,
        statuses=STATUS_CHOICES,
        calendar_url=feed,
        webcal_url=links.webcal_url(feed),
        saved=saved_view,
        error=error,
        error_release=failed["release_id"] if failed else None,
        rotated=rotated,
        moved=moved,
        marked=marked,
    )


@router.get("/portal", response_class=HTMLResponse)
def portal(
    request: Request,
    session: SessionDep,
    saved: int | None = None,
    show: str = "all",
    page: int = 1,
    rotated: int = 0,
    moved: str | None = None,
    marked: int = 0,
) -> Response:
    principal = guard(request, session, Role.CUSTOMER)
    if isinstance(principal, Response):
        return principal
    return _portal(
        session,
        principal,
        now(),
        saved=saved,
        show=show,
        page=page if 0 < page < 10**6 else 1,
        rotated=bool(rotated),
        moved=moved[:100] if moved else None,
        marked=bool(marked),
    )


_BODY_RE = re.compile(r"<body[^>]*>(.*)</body>", re.S | re.I)


@router.get("/portal/notices/{message_id}", response_class=HTMLResponse)
def notice_page(message_id: int, request: Request, session: SessionDep) -> Response:
    principal = guard(request, session, Role.CUSTOMER)
    if isinstance(principal, Response):
        return principal
    customer = _customer(session, principal)
    msg = session.get(InboxMessage, message_id) if valid_id(message_id) else None
    if msg is None or msg.customer_id != principal.customer_id:
        t = translator(customer.locale)
        return render_page(
            "web/message.html",
            status=404,
            principal=principal,
            who=who(session, principal),
            title=t("Not found"),
            heading=t("No such notice"),
            text="",
            link="/portal",
            customer=customer,
        )
    if msg.read_at is None:  # opening a notice in the portal is reading it
        msg.read_at = now()
        session.add(msg)
        session.commit()
    # The body is our own email template (autoescaped when rendered): show it inside the page.
    match = _BODY_RE.search(msg.body_html)
    body = match.group(1) if match else msg.body_html
    view = inbox.message_view(msg, customer, inbox.newer_notices(session, pk(customer)).get(pk(msg)))
    unread = inbox.page(session, customer, unread_only=True, per_page=1).unread
    return render_page(
        "web/notice.html",
        principal=principal,
        active="/portal",
        who=who(session, principal),
        title=msg.subject,
        msg=msg,
        view=view,
        body=body,
        unread=unread,
        customer=customer,
    )


@router.post("/portal/inbox/read-all", response_class=HTMLResponse)
def portal_read_all(request: Request, session: SessionDep, csrf: Annotated[str, Form()] = "") -> Response:
    principal = form_guard(request, session, csrf, Role.CUSTOMER)
    if isinstance(principal, Response):
        return principal
    inbox.mark_all_read(session, _customer(session, principal), now())
    session.commit()
    return RedirectResponse("/portal?marked=1#inbox", status_code=303)


@router.post("/portal/calendar/rotate", response_class=HTMLResponse)
def portal_rotate_calendar(
    request: Request, session: SessionDep, csrf: Annotated[str, Form()] = ""
) -> Response:
    """A new private calendar link; the old one stops working at once."""
    principal = form_guard(request, session, csrf, Role.CUSTOMER)
    if isinstance(principal, Response):
        return principal
    registry.rotate_calendar_token(session, _customer(session, principal), now())
    session.commit()
    return RedirectResponse("/portal?rotated=1#feed-url", status_code=303)


@router.post("/portal/agreements", response_class=HTMLResponse)
def portal_agreement(
    request: Request,
    session: SessionDep,
    csrf: Annotated[str, Form()] = "",
    release_id: Annotated[int, Form()] = 0,
    status: Annotated[str, Form()] = "",
    target: Annotated[str, Form()] = "",
    planned_date: Annotated[str, Form()] = "",
    name: Annotated[str, Form()] = "",
    email: Annotated[str, Form()] = "",
    feedback: Annotated[str, Form()] = "",
    move_deployment: Annotated[bool, Form()] = False,
) -> Response:
    principal = form_guard(request, session, csrf, Role.CUSTOMER)
    if isinstance(principal, Response):
        return principal
    at = now()
    customer = _customer(session, principal)
    release = session.get(Release, release_id) if valid_id(release_id) else None
    form = AgreementForm(
        status=status, target=target, planned_date=planned_date, name=name, email=email, feedback=feedback
    )
    closed = agreements.closed(session, customer, release) if release else agreements.NOT_RUN
    if closed:
        return _portal(
            session, principal, at, status=404 if closed == agreements.NOT_RUN else 409, error=closed
        )
    assert release is not None  # without one, closed is NOT_RUN
    try:
        cleaned = form.cleaned()
        agreement = agreements.record(
            session,
            customer=customer,
            release=release,
            at=at,
            channel="web",
            recorded_by=f"portal: {customer.key}",
            **cleaned,
        )
        if move_deployment and agreement.status == "completed" and agreement.target_version:
            agreements.move_deployment(
                session,
                customer=customer,
                release=release,
                target_version=agreement.target_version,
                at=at,
                by=cleaned["by"],
            )
            product = session.get(Product, release.product_id)
            assert product is not None
            session.commit()
            moved = f"{product.name} {agreement.target_version}"
            return RedirectResponse(f"/portal?moved={_quote(moved)}#releases", status_code=303)
    except InputError as exc:
        session.rollback()
        return _portal(
            session,
            principal,
            at,
            status=422,
            error=form_error(exc, translator(customer.locale)),
            failed={"release_id": release.id, "form": form},
        )
    session.commit()
    return RedirectResponse(f"/portal?saved={release.id}#release-{release.id}", status_code=303)


# ---------------------------------------------------------------------------------- channel subscriptions


def _channels(
    session: Session,
    principal: Principal,
    *,
    status: int = 200,
    secret: str | None = None,
    tested: dict | None = None,
    removed: bool = False,
    error: str | None = None,
    form: dict | None = None,
) -> HTMLResponse:
    from lifecycle.channels import subscriptions
    from lifecycle.channels.registry import subscribable

    customer = _customer(session, principal)
    return render_page(
        "web/channels.html",
        status=status,
        principal=principal,
        active="/portal/channels",
        who=customer.name,
        title="Notification channels",
        customer=customer,
        channels=subscriptions.rows(session, customer_ids=[pk(customer)]),
        kinds=[(kind, ch.title) for kind, ch in subscribable().items()],
        secret=secret,
        tested=tested,
        removed=removed,
        error=error,
        form=form or {"kind": "", "url": "", "label": ""},
    )


@router.get("/portal/channels", response_class=HTMLResponse)
def portal_channels(request: Request, session: SessionDep, tested: int = 0, removed: int = 0) -> Response:
    """The customer's channels beyond email and the portal: add, test, remove."""
    principal = guard(request, session, Role.CUSTOMER)
    if isinstance(principal, Response):
        return principal
    return _channels(session, principal, removed=bool(removed))


@router.post("/portal/channels", response_class=HTMLResponse)
def portal_add_channel(
    request: Request,
    session: SessionDep,
    csrf: Annotated[str, Form()] = "",
    kind: Annotated[str, Form()] = "",
    url: Annotated[str, Form()] = "",
    label: Annotated[str, Form()] = "",
) -> Response:
    """Answers with the page itself (not a redirect): a webhook's signing secret is shown only now."""
    from lifecycle.channels import subscriptions

    principal = form_guard(request, session, csrf, Role.CUSTOMER)
    if isinstance(principal, Response):
        return principal
    customer = _customer(session, principal)
    try:
        _, once = subscriptions.add(
            session,
            customer=customer,
            kind=kind,
            url=url,
            label=label or None,
            at=now(),
            by=f"portal: {customer.key}",
        )
    except InputError as exc:
        session.rollback()
        return _channels(
            session,
            principal,
            status=422,
            error=str(exc),
            form={"kind": kind, "url": url[:2000], "label": label[:100]},
        )
    session.commit()
    return _channels(session, principal, secret=once.get("secret"))


@router.post("/portal/channels/{channel_id}/test", response_class=HTMLResponse)
def portal_test_channel(
    channel_id: int, request: Request, session: SessionDep, csrf: Annotated[str, Form()] = ""
) -> Response:
    from lifecycle.channels import subscriptions

    principal = form_guard(request, session, csrf, Role.CUSTOMER)
    if isinstance(principal, Response):
        return principal
    customer = _customer(session, principal)
    try:
        row = subscriptions.get(session, customer, channel_id)
    except InputError as exc:
        return _channels(session, principal, status=404, error=str(exc))
    result = subscriptions.test(session, row, at=now(), by=f"portal: {customer.key}")
    session.commit()
    return _channels(session, principal, tested=result)


@router.post("/portal/channels/{channel_id}/remove", response_class=HTMLResponse)
def portal_remove_channel(
    channel_id: int, request: Request, session: SessionDep, csrf: Annotated[str, Form()] = ""
) -> Response:
    from lifecycle.channels import subscriptions

    principal = form_guard(request, session, csrf, Role.CUSTOMER)
    if isinstance(principal, Response):
        return principal
    customer = _customer(session, principal)
    try:
        row = subscriptions.get(session, customer, channel_id)
    except InputError as exc:
        return _channels(session, principal, status=404, error=str(exc))
    subscriptions.remove(session, row, at=now(), by=f"portal: {customer.key}")
    session.commit()
    return RedirectResponse("/portal/channels?removed=1", status_code=303)


def _quote(text: str) -> str:
    from urllib.parse import quote

    return quote(text, safe="")
