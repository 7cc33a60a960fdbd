"""The public page of a product, `/products/<slug>`: what its calendar events link to.

Anyone may open it (no login): product name, releases newest first with their release date and
recommended upgrade, every milestone with its date and status (planned, withdrawn or history, by the
same rule as the calendars), releases that ended upstream without a published date, and the links to
subscribe to the product's feed. It shows nothing about customers, and no change reasons (those are
internal). The clock is read once here and passed down.
"""

from __future__ import annotations

import datetime as dt

from fastapi import APIRouter, Response
from fastapi.responses import HTMLResponse
from sqlmodel import Session, select

from lifecycle import links, registry
from lifecycle.calendar import ics
from lifecycle.content import kind_label
from lifecycle.errors import NotFound
from lifecycle.models import Milestone, MilestoneStatus, Product, Release
from lifecycle.web.auth import SessionDep, now
from lifecycle.web.pages import render_page

router = APIRouter(include_in_schema=False)


def _status(milestone: Milestone, release: Release | None, at: dt.datetime) -> str:
    if milestone.status == MilestoneStatus.WITHDRAWN:
        return "withdrawn"
    return "history" if ics.history(milestone.date, release.ended if release else None, at) else "planned"


def _milestone(m: Milestone, release: Release | None, at: dt.datetime) -> dict:
    return {
        "kind": m.kind,
        "label": kind_label(m.kind, "en"),
        "date": m.date,
        "status": _status(m, release, at),
    }


def product_view(session: Session, product: Product, at: dt.datetime) -> dict:
    """Releases (newest first) with their milestones, and the product-level milestones: two queries."""
    releases = session.exec(select(Release).where(Release.product_id == product.id)).all()
    milestones = session.exec(select(Milestone).where(Milestone.product_id == product.id)).all()
    by_release: dict[int | None, list[Milestone]] = {}
    for m in milestones:
        by_release.setdefault(m.release_id, []).append(m)

    def listed(ms: list[Milestone], release: Release | None) -> list[dict]:
        return [_milestone(m, release, at) for m in sorted(ms, key=lambda m: (m.date, m.kind))]

    views = [
        {
            "id": r.id,
            "version": r.version,
            "released": r.released,
            "upgrade_to": r.upgrade_to,
            "ended": kind_label(r.ended, "en") if r.ended else None,
            "milestones": listed(by_release.get(r.id, []), r),
        }
        for r in sorted(releases, key=lambda r: registry.version_key(r.version), reverse=True)
    ]
    feed = links.product_calendar_url(product.slug)
    return {
        "product": product,
        "releases": views,
        "product_milestones": listed(by_release.get(None, []), None),
        "today": ics.today(at),
        "feed_url": feed,
        "webcal_url": links.webcal_url(feed),
    }


@router.get("/products/{slug}", response_class=HTMLResponse)
def product_page(slug: str, session: SessionDep) -> Response:
    try:
        product = registry.get_product(session, slug)
    except NotFound:
        return render_page(
            "web/message.html",
            status=404,
            title="Not found",
            heading="No such product",
            text="There is no product with this name.",
        )
    return render_page("web/product.html", title=product.name, **product_view(session, product, now()))
