"""Acknowledgement links: `/ack/<signed token>`, one customer and one release per link.

GET shows the release, its milestones and the agreement form and never changes anything: mail
scanners and link previews fetch every link in a message. POST records the agreement (channel
`email-link`), which also tells the account rep. A forged or expired token gets a clear page (400 or
410) on GET and POST alike and changes nothing; an address that presents too many forged tokens gets
429 for a while (`lifecycle.web.ratelimit`), and every forged one is in the audit log.

The same rule as the portal (`agreements.closed`): once the customer's deployment is removed or every
milestone of the release is withdrawn, the page says so (410) and a POST records nothing. A POST that
repeats what is already recorded (a replayed or double-clicked form) changes nothing either, and the
page says it was already recorded.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Form, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from sqlmodel import Session

from lifecycle import agreements
from lifecycle.errors import InputError
from lifecycle.links import BadAckToken, read_ack_token
from lifecycle.models import Customer, Release
from lifecycle.web import ratelimit
from lifecycle.web.auth import SessionDep, now
from lifecycle.web.i18n import translator
from lifecycle.web.pages import AgreementForm, release_view, render_page
from lifecycle.web.pages.common import form_error

router = APIRouter(prefix="/ack", tags=["acknowledgements"], include_in_schema=False)


def _resolve(
    request: Request, session: Session, token: str, at: dt.datetime
) -> tuple[Customer, Release] | HTMLResponse:
    wait = ratelimit.blocked(request, ratelimit.ACK, at)
    if wait is not None:
        page = render_page(
            "web/message.html",
            status=429,
            title="Too many attempts",
            heading="Too many attempts from your address. Please try again later.",
            text="",
        )
        page.headers["Retry-After"] = str(wait)
        return page
    try:
        customer_id, release_id = read_ack_token(session, token, at)
    except BadAckToken as exc:
        if not exc.expired:  # a forged or mangled link; an old link is no attempt to guess
            ratelimit.failed(request, session, ratelimit.ACK, at, token)
        status = 410 if exc.expired else 400
        hint = (
            "Links in our notices stay valid for a limited time. Ask your account rep for a new one, or "
            "use the Customer Portal."
            if exc.expired
            else "The link may have been cut short or changed. Open it again from the notice, or use the "
            "Customer Portal."
        )
        return render_page(
            "web/message.html",
            status=status,
            title="Link not valid",
            heading=str(exc).capitalize(),
            text=hint,
        )
    customer, release = session.get(Customer, customer_id), session.get(Release, release_id)
    if customer is None or release is None:
        return render_page(
            "web/message.html",
            status=404,
            title="Not found",
            heading="This release is no longer listed",
            text="Please contact your account rep.",
        )
    return customer, release


def _page(
    customer: Customer,
    view: dict,
    token: str,
    *,
    status: int = 200,
    form: AgreementForm | None = None,
    error: str | None = None,
    saved: bool = False,
    unchanged: bool = False,
) -> HTMLResponse:
    if view["closed"]:
        status = 410
    t = translator(customer.locale)
    return render_page(
        "web/ack.html",
        status=status,
        title=t("{what}: your upgrade plan", what=f"{view['product_name']} {view['version']}"),
        customer=customer,
        r=view,
        form=form or AgreementForm.initial(view),
        error=error,
        saved=saved,
        unchanged=unchanged,
        action=f"/ack/{token}",
    )


@router.get("/{token}", response_class=HTMLResponse)
def ack_form(
    token: str, request: Request, session: SessionDep, saved: int = 0, unchanged: int = 0
) -> HTMLResponse:
    at = now()
    resolved = _resolve(request, session, token, at)
    if isinstance(resolved, HTMLResponse):
        return resolved
    customer, release = resolved
    return _page(
        customer,
        release_view(session, customer, release, at),
        token,
        saved=bool(saved),
        unchanged=bool(unchanged),
    )


@router.post("/{token}", response_class=HTMLResponse)
def ack_submit(
    token: str,
    request: Request,
    session: SessionDep,
    status: Annotated[str, Form()] = "",
    target: Annotated[str, Form()] = "",
    planned_date: Annotated[str, Form()] = "",
    name: Annotated[str, Form()] = "",
    email: Annotated[str, Form()] = "",
    feedback: Annotated[str, Form()] = "",
    move_deployment: Annotated[bool, Form()] = False,
) -> Response:
    at = now()
    resolved = _resolve(request, session, token, at)
    if isinstance(resolved, HTMLResponse):
        return resolved
    customer, release = resolved
    form = AgreementForm(
        status=status, target=target, planned_date=planned_date, name=name, email=email, feedback=feedback
    )
    if agreements.closed(session, customer, release):  # the page says why; nothing is recorded
        return _page(customer, release_view(session, customer, release, at), token, form=form)
    try:
        cleaned = form.cleaned()
        agreement, changed = agreements.save(
            session,
            customer=customer,
            release=release,
            at=at,
            channel="email-link",
            recorded_by="email link",
            **cleaned,
        )
        moved = move_deployment and agreement.status == "completed" and agreement.target_version
        if moved:
            assert agreement.target_version is not None  # `moved` needs one
            agreements.move_deployment(
                session,
                customer=customer,
                release=release,
                target_version=agreement.target_version,
                at=at,
                by=cleaned["by"],
            )
    except InputError as exc:
        session.rollback()
        return _page(
            customer,
            release_view(session, customer, release, at),
            token,
            status=422,
            form=form,
            error=form_error(exc, translator(customer.locale)),
        )
    session.commit()
    if moved:  # the link is about a release they no longer run: say what was recorded
        t = translator(customer.locale)
        return render_page(
            "web/message.html",
            title=t("Upgrade completed"),
            customer=customer,
            heading=t(
                "Thank you — we have recorded that you now run {what}.",
                what=f"{view_name(session, release)} {agreement.target_version}",
            ),
            text=t("Your account rep has been told."),
        )
    return RedirectResponse(f"/ack/{token}?{'saved=1' if changed else 'unchanged=1'}", status_code=303)


def view_name(session: Session, release: Release) -> str:
    from lifecycle.models import Product

    return session.get_one(Product, release.product_id).name
