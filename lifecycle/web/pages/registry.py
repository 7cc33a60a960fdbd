"""The registry for product managers: the timeline of every release and milestone, and the forms to
add, move and withdraw."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Form, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from itsdangerous import BadSignature
from sqlmodel import Session, select

from lifecycle import registry
from lifecycle import validation as v
from lifecycle.errors import InputError
from lifecycle.models import (
    Milestone,
    MilestoneKind,
    Product,
    Release,
    Role,
)
from lifecycle.validation import valid_id
from lifecycle.web import auth
from lifecycle.web import timeline as timeline_layout
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

# ------------------------------------------------------------------------------------------- registry


def timeline(session: Session, at: dt.datetime) -> dict:
    """The registry chart: the rows read from the database, laid out by `lifecycle.web.timeline`."""
    today = at.date()
    products = session.exec(select(Product).order_by(Product.slug)).all()
    releases = session.exec(select(Release)).all()
    milestones = session.exec(select(Milestone)).all()
    moved_from = {r["id"]: r["history"][-1]["old_date"] for r in registry.milestone_rows(session, at)
                  if r["history"] and r["history"][-1]["action"] == "moved" and r["history"][-1]["old_date"]}
    by_release: dict[int | None, list[Milestone]] = {}
    for m in milestones:
        by_release.setdefault(m.release_id if m.release_id else -m.product_id, []).append(m)

    def markers(ms: list[Milestone]) -> list[timeline_layout.Marker]:
        return [timeline_layout.Marker(m.id, m.kind, kind_label(m.kind), m.date, m.status,
                                       dt.date.fromisoformat(moved_from[m.id]) if m.id in moved_from else None)
                for m in ms]

    rows: list[timeline_layout.TimelineRow] = []
    for p in products:
        if by_release.get(-p.id):
            rows.append(timeline_layout.TimelineRow(f"{p.slug} (all versions)", p.slug, None,
                                                    milestones=markers(by_release[-p.id])))
        for r in sorted((r for r in releases if r.product_id == p.id), key=lambda r: registry.version_key(r.version)):
            ms = by_release.get(r.id, [])
            rows.append(timeline_layout.TimelineRow(
                f"{p.slug} {r.version}", p.slug, r.version, released=r.released,
                ended=registry.release_ended(r, ms, today), ended_undated=r.ended, milestones=markers(ms)))
    return timeline_layout.layout(rows, today, {k.value: kind_label(k.value) for k in MilestoneKind})


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
        "web/registry.html", status=status, principal=principal, active="/registry", who=who(session, principal),
        title="Lifecycle registry", chart=timeline(session, at), milestones=milestones, scopes=scopes,
        kinds=[k.value for k in MilestoneKind], kind_label=kind_label, done=done,
        error=error or {}, can_edit=principal.role == Role.PM, today=at.date().isoformat())


@router.get("/registry", response_class=HTMLResponse)
def registry_page(request: Request, session: SessionDep, done: str | None = None) -> Response:
    principal = guard(request, session, Role.PM, Role.REP)
    if isinstance(principal, Response):
        return principal
    try:  # the confirmation of the last change, signed so that nobody can put words on this page
        message = auth.untimed_serializer(session, FLASH_SALT).loads(done) if done else None
    except BadSignature:
        message = None
    return _registry(session, principal, now(), done=message)


def _registry_write(request: Request, session: Session, csrf: str, form: str, action) -> Response:
    """Run one PM form: CSRF, then `action(at, by)` returning the message to show; errors re-render."""
    principal = form_guard(request, session, csrf, Role.PM)
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
    return RedirectResponse(f"/registry?done={quote(flash)}", status_code=303)


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


