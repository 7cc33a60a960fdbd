"""The registry for product managers: the timeline of every release and milestone, and the forms to
add, move and withdraw, each in two steps.

A form first posts to its preview (`step=preview`, the default): the change runs with the real planner
in a transaction that is always rolled back (`lifecycle.changes.preview`), and the page shows who
would be told what; nothing is written. Its Confirm button posts the same values again with
`step=confirm`, which makes the change. "Back to the form" (`step=edit`) shows the form again as typed.
A refused change shows the form again with the values entered and the problem in the page's words
(never a CLI flag). Notices a change makes due at once are held (LIFECYCLE_CHANGE_HOLD); the page
lists the changes still on hold, each with an Undo button.

Undo has no confirmation step of its own: within the hold nothing has reached a customer, so it only
takes back the PM's own change, and it is refused once anything went out; making the change again is
always possible. Waiting on a second page would only eat into the hold.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass, fields
from typing import Annotated

import sqlalchemy as sa
from fastapi import APIRouter, Form, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from itsdangerous import BadSignature
from sqlmodel import Session, col, select

from lifecycle import changes, policy, registry
from lifecycle import validation as v
from lifecycle.errors import InputError, ShortNotice
from lifecycle.models import (
    Customer,
    Milestone,
    MilestoneChange,
    MilestoneKind,
    MilestoneStatus,
    Product,
    RegistryChange,
    Release,
    Role,
    pk,
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

KINDS = [k for k in policy.LIFECYCLE_ORDER if k in {m.value for m in MilestoneKind}]
FIELD_LABELS = {
    "date": "Date",
    "reason": "Reason",
    "kind": "Kind",
    "milestone": "Milestone",
    "release": "Release",
    "scope": "Release",
    "product": "Release",
    "version": "Release",
    "customer_reason.en": "Note for customers (English)",
    "customer_reason.zh-CN": "Note for customers (Chinese)",
}
NOTICE_WORDS = {
    "changed": "date-changed notice",
    "withdrawn": "cancellation",
    "reinstated": "reinstated notice",
    "escalation": "escalation to the rep",
}
STAGE_WORDS = {
    "6m": "6-month reminder",
    "3m": "3-month reminder",
    "1m": "1-month reminder",
    "1w": "1-week reminder",
}


def _utc(value: dt.datetime) -> dt.datetime:
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value


def when(ts: dt.datetime | str, at: dt.datetime) -> str:
    """An instant for the page: '14:05 UTC' today, '2027-04-10 14:05 UTC' another day."""
    ts = _utc(dt.datetime.fromisoformat(ts) if isinstance(ts, str) else ts)
    return ts.strftime("%H:%M UTC" if ts.date() == at.date() else "%Y-%m-%d %H:%M UTC")


# ------------------------------------------------------------------------------------------ read models


def held_milestones(session: Session, at: dt.datetime) -> dict[int, dt.datetime]:
    """Milestones whose current revision comes from a change still on hold: id -> end of the hold."""
    rows = session.exec(
        select(MilestoneChange.milestone_id, RegistryChange.hold_until)
        .join(RegistryChange, col(RegistryChange.id) == MilestoneChange.change_id)
        .join(
            Milestone,
            sa.and_(
                col(Milestone.id) == MilestoneChange.milestone_id,
                col(Milestone.revision) == MilestoneChange.revision,
            ),
        )
        .where(
            col(RegistryChange.undone_at).is_(None),
            RegistryChange.action != "undo",
            RegistryChange.hold_until > at,
        )
    ).all()
    return {mid: _utc(until) for mid, until in rows}


def _names(session: Session) -> tuple[dict[int, Product], dict[int, Release]]:
    return (
        {pk(p): p for p in session.exec(select(Product))},
        {pk(r): r for r in session.exec(select(Release))},
    )


def scope_label(product: Product, release: Release | None) -> str:
    """'Alauda Container Platform 3.16', or '… (all versions)' for product-level milestones."""
    return f"{product.name} {release.version}" if release else f"{product.name} (all versions)"


def milestone_label(session: Session, m: Milestone) -> str:
    product = session.get(Product, m.product_id)
    release = session.get(Release, m.release_id) if m.release_id else None
    assert product is not None
    return f"{scope_label(product, release)} · {kind_label(m.kind)}"


def timeline(session: Session, at: dt.datetime) -> dict:
    """The registry chart: the rows read from the database, laid out by `lifecycle.web.timeline`."""
    today = at.date()
    products = session.exec(select(Product).order_by(Product.name, Product.slug)).all()
    releases = session.exec(select(Release)).all()
    milestones = session.exec(select(Milestone)).all()
    held = held_milestones(session, at)
    moved_from = {
        r["id"]: r["history"][-1]["old_date"]
        for r in registry.milestone_rows(session, at)
        if r["history"] and r["history"][-1]["action"] == "moved" and r["history"][-1]["old_date"]
    }
    by_release: dict[int | None, list[Milestone]] = {}
    for m in milestones:
        by_release.setdefault(m.release_id if m.release_id else -m.product_id, []).append(m)

    def markers(ms: list[Milestone]) -> list[timeline_layout.Marker]:
        return [
            timeline_layout.Marker(
                pk(m),
                m.kind,
                kind_label(m.kind),
                m.date,
                m.status,
                dt.date.fromisoformat(moved_from[m.id]) if m.id in moved_from else None,
                held.get(pk(m)),
            )
            for m in ms
        ]

    rows: list[timeline_layout.TimelineRow] = []
    for p in products:
        if by_release.get(-pk(p)):
            rows.append(
                timeline_layout.TimelineRow(
                    scope_label(p, None),
                    p.slug,
                    None,
                    suffix="(all versions)",
                    milestones=markers(by_release[-pk(p)]),
                )
            )
        for r in sorted(
            (r for r in releases if r.product_id == p.id), key=lambda r: registry.version_key(r.version)
        ):
            ms = by_release.get(r.id, [])
            rows.append(
                timeline_layout.TimelineRow(
                    scope_label(p, r),
                    p.slug,
                    r.version,
                    released=r.released,
                    suffix=r.version,
                    ended=registry.release_ended(r, ms, today),
                    ended_undated=r.ended,
                    milestones=markers(ms),
                )
            )
    return timeline_layout.layout(rows, today, {k.value: kind_label(k.value) for k in MilestoneKind})


def _milestone_rows(session: Session, at: dt.datetime) -> list[dict]:
    """The milestones table and pickers: product and release names, lifecycle order, held changes."""
    products = {p.slug: p for p in session.exec(select(Product))}
    held = held_milestones(session, at)
    rows = registry.milestone_rows(session, at)
    for r in rows:
        product = products[r["product"]]
        r["product_name"] = product.name
        r["scope_label"] = (
            f"{product.name} {r['version']}" if r["version"] else f"{product.name} (all versions)"
        )
        r["held_until"] = when(held[r["id"]], at) if r["id"] in held else None
    return sorted(
        rows,
        key=lambda r: (
            r["product_name"],
            r["product"],
            r["version"] is not None,
            registry.version_key(r["version"] or ""),
            timeline_layout.kind_rank(r["kind"]),
        ),
    )


def _scopes(session: Session) -> list[dict]:
    """The add form's release picker: per product, its releases, then 'all versions' (product-wide)."""
    releases = session.exec(select(Release)).all()
    groups = []
    for p in session.exec(select(Product).order_by(Product.name, Product.slug)).all():
        options = [
            {"value": f"{p.slug}|{r.version}", "label": f"{p.name} {r.version}"}
            for r in sorted(
                (r for r in releases if r.product_id == p.id), key=lambda r: registry.version_key(r.version)
            )
        ]
        options.append({"value": f"{p.slug}|", "label": f"{p.name}: all versions (product-wide)"})
        groups.append({"label": p.name, "options": options})
    return groups


def _held_changes(session: Session, at: dt.datetime) -> list[dict]:
    return [
        c | {"until": when(c["hold_until"], at), "made": when(c["at"], at)}
        for c in changes.list_changes(session, at)
        if c["state"] == "held"
    ]


# ----------------------------------------------------------------------------------------------- forms


@dataclass
class ChangeForm:
    """The values of one registry form as submitted (strings), carried through preview and confirm."""

    action: str  # add | move | withdraw
    scope: str = ""  # add: "slug|version", "slug|" for product-wide
    milestone: str = ""  # move, withdraw: the milestone id
    kind: str = ""
    date: str = ""
    reason: str = ""
    allow_short_notice: bool = False
    customer_reason_en: str = ""
    customer_reason_zh: str = ""
    revision: str = ""  # move, withdraw: the revision previewed, so a confirm notices a change in between

    def hidden(self) -> list[tuple[str, str]]:
        """The values as hidden fields of the preview page (the action is the form's URL)."""
        out = []
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "action" or value in ("", False):
                continue
            out.append((f.name, "true" if value is True else str(value)))
        return out

    def as_dict(self) -> dict:
        return asdict(self)

    def customer_reason(self) -> dict[str, str] | None:
        written = {
            loc: text.strip()
            for loc, text in (("en", self.customer_reason_en), ("zh-CN", self.customer_reason_zh))
            if text.strip()
        }
        return written or None

    def day(self) -> dt.date:
        if not self.date.strip():
            raise InputError("date", "choose a date")
        return v.date(self.date, "date")


def _milestone_by_id(session: Session, milestone_id: str) -> Milestone:
    try:
        number = int(milestone_id)
    except ValueError:
        number = 0
    milestone = session.get(Milestone, number) if valid_id(number) else None
    if milestone is None:
        raise InputError("milestone", "choose a milestone")
    return milestone


def _apply_add(s: Session, form: ChangeForm, at: dt.datetime, by: str) -> dict:
    if "|" not in form.scope:
        raise InputError(
            "scope", "choose a release (or a product's “all versions” for a product-wide milestone)"
        )
    slug, version = form.scope.split("|", 1)
    if form.kind not in KINDS:
        raise InputError("kind", "choose a kind of milestone")
    product = registry.get_product(s, slug, "scope")
    release = registry.get_release(s, product, version, "scope") if version else None
    existing = registry.find_milestone(s, product, release, form.kind)
    day = form.day()
    if existing is not None and existing.status == MilestoneStatus.PLANNED and existing.date != day:
        raise InputError(
            "date",
            f"{scope_label(product, release)} already has its {kind_label(form.kind)} on "
            f"{existing.date.isoformat()}: use “Move a milestone” to change its date",
        )
    m, result = registry.add_milestone(
        s,
        product=product,
        version=release,
        kind=form.kind,
        date=day,
        at=at,
        allow_short_notice=form.allow_short_notice,
        reason=form.reason or None,
        by=by,
        customer_reason=form.customer_reason(),
    )
    verb = {"created": "added", "updated": "reinstated", "unchanged": "already registered"}[result]
    plan = {"created": "Add", "updated": "Reinstate", "unchanged": "Already registered:"}[result]
    return {
        "milestone_id": m.id,
        "result": result,
        "date": m.date,
        "text": f"{milestone_label(s, m)} on {m.date.isoformat()}: {verb}",
        "plan": f"{plan} {milestone_label(s, m)} on {m.date.isoformat()}",
    }


def _apply_move(s: Session, form: ChangeForm, at: dt.datetime, by: str) -> dict:
    m = _milestone_by_id(s, form.milestone)
    old = m.date
    m, result = registry.move_milestone(
        s,
        m,
        date=form.day(),
        reason=form.reason,
        at=at,
        allow_short_notice=form.allow_short_notice,
        by=by,
        customer_reason=form.customer_reason(),
    )
    text = (
        f"{milestone_label(s, m)} moved to {m.date.isoformat()} (revision {m.revision})"
        if result == "updated"
        else f"{milestone_label(s, m)} is already on {m.date.isoformat()}"
    )
    return {
        "milestone_id": m.id,
        "result": result,
        "date": m.date,
        "text": text,
        "plan": f"Move {milestone_label(s, m)} from {old.isoformat()} to {m.date.isoformat()}"
        if result == "updated"
        else text,
    }


def _apply_withdraw(s: Session, form: ChangeForm, at: dt.datetime, by: str) -> dict:
    m = _milestone_by_id(s, form.milestone)
    m, result = registry.withdraw_milestone(
        s, m, reason=form.reason, at=at, by=by, customer_reason=form.customer_reason()
    )
    text = f"{milestone_label(s, m)} " + ("withdrawn" if result == "updated" else "was already withdrawn")
    return {
        "milestone_id": m.id,
        "result": result,
        "date": m.date,
        "text": text,
        "plan": f"Withdraw {milestone_label(s, m)} of {m.date.isoformat()}" if result == "updated" else text,
    }


APPLY = {"add": _apply_add, "move": _apply_move, "withdraw": _apply_withdraw}
URLS = {
    "add": "/registry/milestones",
    "move": "/registry/milestones/move",
    "withdraw": "/registry/milestones/withdraw",
}
TITLES = {"add": "Add a milestone", "move": "Move a milestone", "withdraw": "Withdraw a milestone"}
CONFIRM = {"add": "Confirm: add it", "move": "Confirm: move it", "withdraw": "Confirm: withdraw it"}


def page_error(exc: InputError, form: ChangeForm) -> str:
    """A refusal in the words of the page: what to do, never a command-line flag."""
    if isinstance(exc, ShortNotice):
        why = "this date is less than 3 months away (customers are promised 3 months' notice)"
        try:
            deadline = policy.contract_deadline(form.day()).isoformat()
            why += f"; the first notice had to go out by {deadline}"
        except InputError:
            pass
        if not form.reason.strip():
            return (
                f"Give a reason: {why}. With a reason and “Allow short notice” ticked, every affected "
                "customer is told at once."
            )
        return f"Tick “Allow short notice” to confirm: {why}, so every affected customer is told at once."
    message = exc.message
    if exc.field == "reason" and message == "a reason is required":
        return "Give a reason: it is kept in the milestone's history and shown to other product managers."
    if exc.field == "date" and message.startswith("invalid date"):
        return "Date: enter a date as YYYY-MM-DD."
    if exc.field == "kind" and "withdrawn" in message:
        return "This milestone is withdrawn: add it again (with a reason) to reinstate it."
    label = FIELD_LABELS.get(exc.field or "", (exc.field or "").capitalize())
    text = message[:1].upper() + message[1:]
    return f"{label}: {message}" if label and not message.lower().startswith(("choose", "give")) else text


# ------------------------------------------------------------------------------------------------ pages


def _registry(
    session: Session,
    principal: Principal,
    at: dt.datetime,
    *,
    status: int = 200,
    done: str | None = None,
    error: dict | None = None,
    form: ChangeForm | None = None,
    selected: str = "",
) -> HTMLResponse:
    session.rollback()  # show what is committed, never the remains of a refused change
    milestones = _milestone_rows(session, at)
    values = form.as_dict() if form else {}
    return render_page(
        "web/registry.html",
        status=status,
        principal=principal,
        active="/registry",
        who=who(session, principal),
        title="Lifecycle registry",
        chart=timeline(session, at),
        milestones=milestones,
        scopes=_scopes(session),
        kinds=KINDS,
        kind_label=kind_label,
        done=done,
        error=error or {},
        values=values,
        selected=str(values.get("milestone") or selected),
        held=_held_changes(session, at) if principal.role == Role.PM else [],
        can_edit=principal.role == Role.PM,
        today=at.date().isoformat(),
    )


@router.get("/registry", response_class=HTMLResponse)
def registry_page(
    request: Request, session: SessionDep, done: str | None = None, milestone: str | None = None
) -> Response:
    principal = guard(request, session, Role.PM, Role.REP)
    if isinstance(principal, Response):
        return principal
    try:  # the confirmation of the last change, signed so that nobody can put words on this page
        message = auth.untimed_serializer(session, FLASH_SALT).loads(done) if done else None
    except BadSignature:
        message = None
    return _registry(session, principal, now(), done=message, selected=milestone or "")


def _redirect_with(session: Session, message: str) -> Response:
    flash = auth.untimed_serializer(session, FLASH_SALT).dumps(message)
    return RedirectResponse(f"/registry?done={quote(flash)}", status_code=303)


def _refused(
    session: Session,
    principal: Principal,
    at: dt.datetime,
    form: ChangeForm,
    exc: InputError,
) -> HTMLResponse:
    session.rollback()
    return _registry(
        session,
        principal,
        at,
        status=422,
        form=form,
        error={"form": form.action, "field": exc.field, "message": page_error(exc, form)},
    )


def _held_note(session: Session, milestone_id: int, at: dt.datetime) -> str:
    milestone = session.get(Milestone, milestone_id)
    change = registry.current_change(session, milestone) if milestone else None
    if change is None or _utc(change.hold_until) <= at:
        return ""
    return (
        f" Notices it makes due at once are held until {when(change.hold_until, at)}: until then you can "
        "undo it under “Changes on hold”."
    )


def _preview_view(session: Session, preview: dict, form: ChangeForm, at: dt.datetime) -> dict:
    """The preview in the page's words: names instead of keys, stages in words, instants as times."""
    keys = preview["affected_customers"]["customers"]
    names = (
        dict(session.exec(select(Customer.key, Customer.name).where(col(Customer.key).in_(keys))).all())
        if keys
        else {}
    )

    def notice(n: dict) -> str:
        return (
            STAGE_WORDS.get(n["stage"], f"{n['stage']} reminder")
            if n["kind"] == "stage"
            else NOTICE_WORDS.get(n["kind"], n["kind"])
        )

    milestone = preview["milestones"][0] if preview["milestones"] else None
    return {
        "affected": [{"key": k, "name": names.get(k, k)} for k in keys],
        "count": preview["affected_customers"]["count"],
        "held_until": when(preview["at_once"]["held_until"], at),
        "at_once": [{"what": notice(n), "customers": n["customers"]} for n in preview["at_once"]["notices"]],
        "deliveries": preview["at_once"]["deliveries"],
        "planned": [
            {
                "what": notice(n),
                "customers": n["customers"],
                "first": n["first_due"][:10],
                "last": n["last_due"][:10],
            }
            for n in preview["planned"]
        ],
        "planned_deliveries": preview["planned_deliveries"],
        "cancelled": sum(preview["cancelled"].values()),
        "agreements": preview["agreements"],
        "escalations": preview["escalations"]["count"],
        "history": bool(milestone and milestone["history"]),
        "short_notice": bool(
            milestone
            and milestone["short_notice"]
            and not milestone["history"]
            and milestone["status"] == MilestoneStatus.PLANNED
        ),
        "unchanged": preview["change"]["result"] == "unchanged",
        "text": preview["change"]["plan"],
    }


def _change_step(request: Request, session: Session, csrf: str, step: str, form: ChangeForm) -> Response:
    """One registry form, in its steps: preview (the default), edit (back to the form), confirm."""
    principal = form_guard(request, session, csrf, Role.PM)
    if isinstance(principal, Response):
        return principal
    at, by = now(), principal.actor
    if step == "edit":
        return _registry(session, principal, at, form=form)
    apply = APPLY[form.action]
    stale = None
    if step == "confirm" and form.revision and form.action != "add":
        current = (
            session.get(Milestone, int(form.milestone))
            if form.milestone.isdigit() and valid_id(int(form.milestone))
            else None
        )
        if current is not None and str(current.revision) != form.revision:
            stale = (
                f"This milestone changed while you were looking at the preview (now revision "
                f"{current.revision}): check the new preview before you confirm."
            )
    if step == "confirm" and stale is None:
        try:
            done = apply(session, form, at, by)
        except InputError as exc:
            return _refused(session, principal, at, form, exc)
        session.commit()
        past = (
            " It is in the past: recorded as history, shown in calendars, and no customer is notified."
            if form.action == "add" and done["result"] != "unchanged" and done["date"] < at.date()
            else ""
        )
        held = _held_note(session, done["milestone_id"], at) if done["result"] != "unchanged" else ""
        return _redirect_with(session, done["text"] + "." + past + held)
    session.rollback()  # the preview runs in its own transaction, always rolled back
    try:
        preview = changes.preview(at, lambda s: apply(s, form, at, by))
    except InputError as exc:
        return _refused(session, principal, at, form, exc)
    if form.action != "add":
        m = session.get(Milestone, int(form.milestone))
        assert m is not None  # the preview found it
        form.revision = str(m.revision)
    return render_page(
        "web/registry_preview.html",
        principal=principal,
        active="/registry",
        who=who(session, principal),
        title=f"Preview: {TITLES[form.action].lower()}",
        heading=TITLES[form.action],
        action=form.action,
        url=URLS[form.action],
        hidden=form.hidden(),
        confirm=CONFIRM[form.action],
        stale=stale,
        p=_preview_view(session, preview, form, at),
    )


Text = Annotated[str, Form()]


@router.post("/registry/milestones", response_class=HTMLResponse)
def registry_add(
    request: Request,
    session: SessionDep,
    csrf: Text = "",
    step: Text = "preview",
    scope: Text = "",
    kind: Text = "",
    date: Text = "",
    reason: Text = "",
    allow_short_notice: Annotated[bool, Form()] = False,
    customer_reason_en: Text = "",
    customer_reason_zh: Text = "",
) -> Response:
    form = ChangeForm(
        "add",
        scope=scope,
        kind=kind,
        date=date,
        reason=reason,
        allow_short_notice=allow_short_notice,
        customer_reason_en=customer_reason_en,
        customer_reason_zh=customer_reason_zh,
    )
    return _change_step(request, session, csrf, step, form)


@router.post("/registry/milestones/move", response_class=HTMLResponse)
def registry_move(
    request: Request,
    session: SessionDep,
    csrf: Text = "",
    step: Text = "preview",
    milestone: Text = "",
    date: Text = "",
    reason: Text = "",
    allow_short_notice: Annotated[bool, Form()] = False,
    revision: Text = "",
    customer_reason_en: Text = "",
    customer_reason_zh: Text = "",
) -> Response:
    form = ChangeForm(
        "move",
        milestone=milestone,
        date=date,
        reason=reason,
        allow_short_notice=allow_short_notice,
        customer_reason_en=customer_reason_en,
        customer_reason_zh=customer_reason_zh,
        revision=revision,
    )
    return _change_step(request, session, csrf, step, form)


@router.post("/registry/milestones/withdraw", response_class=HTMLResponse)
def registry_withdraw(
    request: Request,
    session: SessionDep,
    csrf: Text = "",
    step: Text = "preview",
    milestone: Text = "",
    reason: Text = "",
    revision: Text = "",
    customer_reason_en: Text = "",
    customer_reason_zh: Text = "",
) -> Response:
    form = ChangeForm(
        "withdraw",
        milestone=milestone,
        reason=reason,
        customer_reason_en=customer_reason_en,
        customer_reason_zh=customer_reason_zh,
        revision=revision,
    )
    return _change_step(request, session, csrf, step, form)


@router.post("/registry/changes/{change_id}/undo", response_class=HTMLResponse)
def registry_undo(change_id: str, request: Request, session: SessionDep, csrf: Text = "") -> Response:
    """Take a change back within its hold (see the module docstring for why there is no second step)."""
    principal = form_guard(request, session, csrf, Role.PM)
    if isinstance(principal, Response):
        return principal
    at = now()
    try:
        result = changes.undo(
            session, int(change_id) if change_id.isdigit() else 0, at=at, by=principal.actor
        )
    except InputError as exc:
        session.rollback()
        message = exc.message[:1].upper() + exc.message[1:]
        return _registry(session, principal, at, status=422, error={"form": "undo", "message": message})
    session.commit()
    return _redirect_with(session, f"Undone: {result['summary']}. No customer was told about it.")
