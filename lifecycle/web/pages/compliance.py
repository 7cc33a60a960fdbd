"""The compliance page for product managers (`/registry/compliance`): per product and milestone, how
many customers were told on time, late (with the cause), not told (with the cause) and are pending;
a drill-down to the customers of one milestone (and one status), and the same rows as CSV. The data is
`lifecycle.reports.compliance`, as `lifecycle report compliance --json` and `GET /api/reports/compliance`
give it; `reports.compliance_summary` counts it per milestone."""

from __future__ import annotations

import datetime as dt
from urllib.parse import urlencode

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse
from sqlmodel import select

from lifecycle import reports
from lifecycle.models import Product, Role
from lifecycle.web.auth import SessionDep, now
from lifecycle.web.pages.common import guard, kind_label, render_page, who

router = APIRouter(include_in_schema=False)

STATUS_LABELS = {
    "on-time": "told on time",
    "late": "told late",
    "not-notified": "not told",
    "pending": "pending",
    "withdrawn": "withdrawn",
}
STATUS_STYLE = {
    "on-time": "risk-green",
    "late": "risk-amber",
    "not-notified": "risk-red",
    "pending": "status-none",
    "withdrawn": "status-declined",
}


def _matches(
    row: dict, product: str | None, version: str | None, milestone: str | None, status: str | None
) -> bool:
    """A drill-down filter; version '-' is a product-level milestone (as on the command line)."""
    return (
        (not product or row["product"] == product)
        and (not version or (row["version"] or "-") == version)
        and (not milestone or row["milestone"] == milestone)
        and (not status or row["status"] == status)
    )


def _query(**params) -> str:
    return urlencode({k: val for k, val in params.items() if val})


@router.get("/registry/compliance", response_class=HTMLResponse)
def compliance_page(
    request: Request,
    session: SessionDep,
    product: str | None = None,
    version: str | None = None,
    milestone: str | None = None,
    status: str | None = None,
) -> Response:
    principal = guard(request, session, Role.PM)
    if isinstance(principal, Response):
        return principal
    at: dt.datetime = now()
    data = reports.compliance(session, at)
    names = {p.slug: p.name for p in session.exec(select(Product))}
    groups = reports.compliance_summary(data)
    for g in groups:
        g["product_name"] = names.get(g["product"], g["product"])
        g["release"] = (
            f"{g['product_name']} {g['version']}" if g["version"] else f"{g['product_name']} (all versions)"
        )
        g["query"] = {"product": g["product"], "version": g["version"] or "-", "milestone": g["milestone"]}
        g["links"] = {
            s: "/registry/compliance?" + _query(**g["query"], status=s) + "#customers"
            for s in reports.STATUSES
        }
        g["all"] = "/registry/compliance?" + _query(**g["query"]) + "#customers"
    drill = any((product, version, milestone, status))
    rows = (
        [
            r | {"product_name": names.get(r["product"], r["product"])}
            for r in data["rows"]
            if _matches(r, product, version, milestone, status)
        ]
        if drill
        else []
    )
    focus = (
        next(
            (
                g
                for g in groups
                if (product, version or "-", milestone)
                == (g["product"], g["query"]["version"], g["milestone"])
            ),
            None,
        )
        if product and milestone
        else None
    )
    filters = _query(product=product, version=version, milestone=milestone, status=status)
    return render_page(
        "web/compliance.html",
        principal=principal,
        active="/registry/compliance",
        who=who(session, principal),
        title="Compliance",
        groups=groups,
        totals=data["totals"],
        rows=rows,
        drill=drill,
        focus=focus,
        status_filter=status,
        status_labels=STATUS_LABELS,
        status_style=STATUS_STYLE,
        statuses=reports.STATUSES,
        kind_label=kind_label,
        today=at.date().isoformat(),
        csv_url="/registry/compliance.csv" + (f"?{filters}" if filters else ""),
    )


@router.get("/registry/compliance.csv")
def compliance_csv(
    request: Request,
    session: SessionDep,
    product: str | None = None,
    version: str | None = None,
    milestone: str | None = None,
    status: str | None = None,
) -> Response:
    principal = guard(request, session, Role.PM)
    if isinstance(principal, Response):
        return principal
    at = now()
    rows = [
        r for r in reports.compliance(session, at)["rows"] if _matches(r, product, version, milestone, status)
    ]
    return Response(
        "\ufeff" + reports.compliance_csv(rows),
        media_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="compliance-{at.date().isoformat()}.csv"',
            "Cache-Control": "no-store",
        },
    )
