"""Calendar feeds over HTTP: `/calendars/products/<slug>.ics` (public) and
`/calendars/customers/<token>.ics` (the customer's secret feed token; a rotated token is a 404, and an
address that tries too many unknown tokens gets 429 for a while, see `lifecycle.web.ratelimit`).

Calendar apps poll these, so every response carries a strong ETag (a hash of the bytes) and
Last-Modified, and a conditional request whose copy is current gets a bodiless 304 (the rules are in
`lifecycle.calendar.feeds`). The clock is read here, once per request, and passed down as `at`.
"""

from __future__ import annotations

import datetime as dt
from email.utils import format_datetime
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from sqlmodel import Session, select

from lifecycle.calendar import feeds
from lifecycle.db import get_session
from lifecycle.errors import NotFound
from lifecycle.models import Customer
from lifecycle.registry import get_product
from lifecycle.web import ratelimit
from lifecycle.web.auth import now

router = APIRouter(prefix="/calendars", tags=["calendars"])

SessionDep = Annotated[Session, Depends(get_session)]
CONTENT_TYPE = "text/calendar; charset=utf-8"


def _respond(
    request: Request, data: bytes, last_modified: dt.datetime, *, filename: str, private: bool
) -> Response:
    etag = feeds.etag_of(data)
    headers = {
        "ETag": etag,
        "Last-Modified": format_datetime(last_modified.astimezone(dt.UTC), usegmt=True),
        "Cache-Control": "private, max-age=300" if private else "public, max-age=300",
        "Content-Disposition": f'inline; filename="{filename}"',
    }
    if private:  # the URL itself is the secret: keep it out of referrers and search engines
        headers["Referrer-Policy"] = "no-referrer"
        headers["X-Robots-Tag"] = "noindex, nofollow"
    if feeds.not_modified(
        request.headers.get("if-none-match"), request.headers.get("if-modified-since"), etag, last_modified
    ):
        return Response(status_code=304, headers=headers)
    body = b"" if request.method == "HEAD" else data
    headers["Content-Length"] = str(len(data))
    return Response(content=body, media_type=CONTENT_TYPE, headers=headers)


# HEAD is served by the same function, registered apart so the OpenAPI operation ids stay unique.
@router.head("/products/{slug}.ics", include_in_schema=False)
@router.get("/products/{slug}.ics", summary="Public calendar feed of a product")
def product_calendar(slug: str, request: Request, session: SessionDep) -> Response:
    try:
        product = get_product(session, slug)
    except NotFound:
        raise HTTPException(status_code=404, detail="no such product") from None
    at = now()
    data = feeds.product_feed(session, product.slug, at)
    return _respond(
        request,
        data,
        feeds.product_last_modified(session, product, at),
        filename=f"{product.slug}.ics",
        private=False,
    )


@router.head("/customers/{token}.ics", include_in_schema=False)
@router.get("/customers/{token}.ics", summary="Private calendar feed of a customer")
def customer_calendar(token: str, request: Request, session: SessionDep) -> Response:
    at = now()
    ratelimit.check(request, ratelimit.CALENDAR, at)  # only unknown tokens count: polling never does
    customer = (
        session.exec(select(Customer).where(Customer.calendar_token == token)).first() if token else None
    )
    if customer is None:
        ratelimit.failed(request, session, ratelimit.CALENDAR, at, token)
        session.commit()  # the audit event outlives the 404
        raise HTTPException(status_code=404, detail="no such calendar")
    data = feeds.customer_feed(session, customer, at)
    return _respond(
        request,
        data,
        feeds.customer_last_modified(session, customer, at),
        filename=f"{customer.key}.ics",
        private=True,
    )
