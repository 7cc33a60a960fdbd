"""Acknowledgement links: `/ack/<signed token>`, one customer and one release per link.

GET shows the release, its milestones and the agreement form and never changes anything: mail
scanners and link previews fetch every link in a message. POST records the agreement (channel
`email-link`), which also tells the account rep. A forged or expired token gets a clear page (400 or
410) on GET and POST alike and changes nothing.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from sqlmodel import Session

from lifecycle import agreements
from lifecycle.errors import InputError
from lifecycle.links import BadAckToken, read_ack_token
from lifecycle.models import Customer, Release
from lifecycle.web.auth import SessionDep, now
from lifecycle.web.pages import AgreementForm, release_view, render_page

router = APIRouter(prefix="/ack", tags=["acknowledgements"], include_in_schema=False)


def _resolve(session: Session, token: str) -> tuple[Customer, Release] | HTMLResponse:
    try:
        customer_id, release_id = read_ack_token(session, token)
    except BadAckToken as exc:
        status = 410 if exc.expired else 400
        hint = ("Links in our notices stay valid for a limited time. Ask your account rep for a new one, or "
                "use the Customer Portal." if exc.expired else
                "The link may have been cut short or changed. Open it again from the notice, or use the "
                "Customer Portal.")
        return render_page("web/message.html", status=status, title="Link not valid",
                           heading=str(exc).capitalize(), text=hint)
    customer, release = session.get(Customer, customer_id), session.get(Release, release_id)
    if customer is None or release is None:
        return render_page("web/message.html", status=404, title="Not found", heading="This release is no longer listed",
                           text="Please contact your account rep.")
    return customer, release


@router.get("/{token}", response_class=HTMLResponse)
def ack_form(token: str, session: SessionDep, saved: int = 0) -> HTMLResponse:
    resolved = _resolve(session, token)
    if isinstance(resolved, HTMLResponse):
        return resolved
    customer, release = resolved
    view = release_view(session, customer, release, now())
    return render_page("web/ack.html", title=f"Upgrade plan for {view['product_name']} {view['version']}",
                       customer=customer, r=view, form=AgreementForm.initial(view), error=None,
                       saved=bool(saved), action=f"/ack/{token}")


@router.post("/{token}", response_class=HTMLResponse)
def ack_submit(
    token: str, session: SessionDep,
    status: Annotated[str, Form()] = "", target: Annotated[str, Form()] = "",
    planned_date: Annotated[str, Form()] = "", name: Annotated[str, Form()] = "",
    email: Annotated[str, Form()] = "", feedback: Annotated[str, Form()] = "",
) -> Response:
    resolved = _resolve(session, token)
    if isinstance(resolved, HTMLResponse):
        return resolved
    customer, release = resolved
    form = AgreementForm(status=status, target=target, planned_date=planned_date, name=name, email=email,
                         feedback=feedback)
    at = now()
    try:
        agreements.record(session, customer=customer, release=release, at=at, channel="email-link",
                          **form.cleaned())
    except InputError as exc:
        session.rollback()
        view = release_view(session, customer, release, at)
        return render_page("web/ack.html", status=422, title=f"Upgrade plan for {view['product_name']} {view['version']}",
                           customer=customer, r=view, form=form, error=str(exc), saved=False, action=f"/ack/{token}")
    session.commit()
    return RedirectResponse(f"/ack/{token}?saved=1", status_code=303)
