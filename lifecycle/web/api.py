"""The JSON API under /api/ (OpenAPI at /docs). Bearer tokens from `lifecycle token create`.

Roles: `pm` writes the registry (products, releases, milestones, imports) and reads everything; `rep`
works on their own customers (deployments, agreements by phone, the agreements report); `customer`
reads their own inbox, marks messages read, records their agreements and gets their calendar link.
The role is checked first (403, independent of the data asked for), then the customer scope (404 for
anything outside it, so that keys and ids never leak).

Routes are thin: every rule lives in lifecycle.registry / agreements / importing / dashboard, whose
InputError becomes a 422 naming the field and whose ShortNotice becomes a 409.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Generator, Iterable, Iterator
from contextlib import contextmanager
from itertools import islice
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field
from sqlmodel import Session, col, select

from lifecycle import agreements, dashboard, escalations, inbox, links, loader, paging, policy, registry, reps
from lifecycle import validation as v
from lifecycle.config import get_settings
from lifecycle.errors import InputError, InputErrors, ShortNotice
from lifecycle.models import (
    Agreement,
    AgreementChange,
    Customer,
    Deployment,
    Escalation,
    InboxMessage,
    Milestone,
    Product,
    Release,
    Role,
    pk,
)
from lifecycle.validation import MAX_CORES, valid_id
from lifecycle.web.auth import Principal, PrincipalDep, SessionDep, now, require, visible_customer

router = APIRouter(prefix="/api", tags=["api"])

PM, REP, CUSTOMER = Role.PM.value, Role.REP.value, Role.CUSTOMER.value
ANY = (PM, REP, CUSTOMER)
Kind = Literal["end-of-sale", "end-of-full-support", "end-of-maintenance", "end-of-life"]
Status = Literal["acknowledged", "planned", "completed", "declined"]


def _day(value):
    """Dates as `YYYY-MM-DD` only: pydantic alone also takes a Unix time (1798675200) or a datetime."""
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return value
    if not isinstance(value, str):
        raise ValueError(f"expected a date (YYYY-MM-DD), got {v.describe(value)}")
    try:
        return v.date(value)
    except InputError as exc:
        raise ValueError(exc.message) from None


Day = Annotated[dt.date, BeforeValidator(_day)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class ProductIn(Strict):
    slug: str = Field(min_length=1, max_length=64, examples=["acp"])
    name: str = Field(min_length=1, max_length=200, examples=["Alauda Container Platform"])


class ReleaseIn(Strict):
    version: str = Field(min_length=1, max_length=64, examples=["3.16"])
    released: Day | None = None
    upgrade_to: str | None = Field(default=None, max_length=64)


CustomerReason = Annotated[
    dict[str, Annotated[str, Field(max_length=2000)]] | None,
    Field(
        default=None,
        description="Why, written for customers: {locale: text} (en, zh-CN). The `reason` is internal; "
        "without this, customers read a neutral sentence in their language.",
    ),
]


class MilestoneIn(Strict):
    product: str = Field(min_length=1, max_length=64)
    version: str | None = Field(
        default=None, max_length=64, description="Omit for a product-level milestone."
    )
    kind: Kind
    date: Day
    allow_short_notice: bool = False
    reason: str | None = Field(
        default=None,
        max_length=2000,
        description="Internal; required for short notice and to reinstate a withdrawn one.",
    )
    customer_reason: CustomerReason = None


class MoveIn(Strict):
    date: Day
    reason: str = Field(min_length=1, max_length=2000)
    allow_short_notice: bool = False
    customer_reason: CustomerReason = None


class WithdrawIn(Strict):
    reason: str = Field(min_length=1, max_length=2000)
    customer_reason: CustomerReason = None


class DeploymentIn(Strict):
    product: str = Field(min_length=1, max_length=64)
    version: str = Field(min_length=1, max_length=64)
    cores: int | None = Field(default=None, ge=0, le=MAX_CORES)


class AgreementIn(Strict):
    product: str = Field(min_length=1, max_length=64)
    version: str = Field(min_length=1, max_length=64)
    status: Status
    target: str | None = Field(default=None, max_length=64, description="Target version of the same product.")
    planned_date: Day | None = None
    by: str | None = Field(default=None, max_length=254, description="Name or email of who agreed.")
    feedback: str | None = Field(default=None, max_length=10000)
    move_deployment: bool = Field(
        default=False,
        description="With status completed and a target: the customer "
        "now runs the target instead (the deployment moves).",
    )


class ContactIn(Strict):
    email: str = Field(min_length=3, max_length=254)
    name: str | None = Field(default=None, max_length=200)
    force: bool = Field(
        default=False,
        description="Add an address that bounced again (it works now): clears the "
        "bounce; recorded in the audit log.",
    )


class ChannelIn(Strict):
    kind: Literal["webhook", "slack", "teams"] = Field(
        description="The channel: a signed webhook (Standard "
        "Webhooks), a Slack incoming webhook, a Teams Workflows webhook."
    )
    url: str = Field(
        min_length=1, max_length=2000, description="The endpoint; kept encrypted, never shown again."
    )
    label: str | None = Field(default=None, max_length=100, description="A name people see.")


class EscalationIn(Strict):
    state: Literal["open", "in-progress", "resolved"] | None = None
    note: str | None = Field(default=None, max_length=5000)


class RepIn(Strict):
    name: str | None = Field(default=None, max_length=200, description="Shown to customers in email footers.")
    locale: str | None = Field(
        default=None,
        max_length=16,
        description="Language of the daily digest: en or a language with a catalog (zh-CN).",
    )
    timezone: str | None = Field(
        default=None, max_length=64, description="IANA timezone of the 09:00 digest."
    )


# -------------------------------------------------------------------------------------------- helpers


def _loc(field: str | None) -> list:
    return ["body", *(field.split(".") if field else [])]


@contextmanager
def domain_errors() -> Iterator[None]:
    """Bad input from the domain layer as FastAPI-shaped error details: 409 short notice, 422 the rest."""
    try:
        yield
    except ShortNotice as exc:
        raise HTTPException(
            409,
            [
                {
                    "loc": _loc(exc.field),
                    "type": "short_notice",
                    "msg": f"{exc.message} (send allow_short_notice: true with a reason)",
                }
            ],
        ) from None
    except InputErrors as exc:
        raise HTTPException(
            422, [{"loc": _loc(e.field), "msg": e.message, "type": "value_error"} for e in exc.errors]
        ) from None
    except InputError as exc:
        raise HTTPException(
            422, [{"loc": _loc(exc.field), "msg": exc.message, "type": "value_error"}]
        ) from None


def _product(session: Session, slug: str) -> Product:
    product = session.exec(select(Product).where(Product.slug == slug)).first()
    if product is None:
        raise HTTPException(404, f"no product {slug!r}")
    return product


def _milestone(session: Session, milestone_id: int) -> Milestone:
    milestone = session.get(Milestone, milestone_id) if valid_id(milestone_id) else None
    if milestone is None:
        raise HTTPException(404, f"no milestone {milestone_id}")
    return milestone


def _milestone_out(session: Session, milestone: Milestone, at: dt.datetime) -> dict:
    return registry.milestone_rows(session, at, ids=[pk(milestone)])[0]


Cursor = Annotated[
    str | None, Query(max_length=paging.MAX_CURSOR, description="`next_cursor` of the previous page.")
]


def _cursor(cursor: str | None, *shape) -> list | None:
    """The key in a page's `cursor`; one this list did not hand out is a 422 naming `cursor`."""
    if cursor is None:
        return None
    try:
        return paging.decode(cursor, *shape)
    except InputError as exc:
        raise HTTPException(
            422, [{"loc": ["query", "cursor"], "msg": exc.message, "type": "value_error"}]
        ) from None


def _page(rows: Iterable[dict], limit: int, key: Callable[[dict], list]) -> tuple[list[dict], str | None]:
    """The first `limit` rows, and the cursor of the last one when more follow (one more is read to
    know). A generator is closed at once: its database cursor goes with it."""
    found = list(islice(rows, limit + 1))
    if isinstance(rows, Generator):
        rows.close()
    page = found[:limit]
    return page, paging.encode(key(page[-1])) if len(found) > limit else None


def customer_out(c: Customer) -> dict:
    return {
        "key": c.key,
        "name": c.name,
        "timezone": c.timezone,
        "locale": c.locale,
        "account_rep": c.account_rep,
        "service_start": c.service_start,
        "service_end": c.service_end,
        "cores": c.cores,
    }


def agreement_list(session: Session, customer: Customer) -> list[dict]:
    rows = session.exec(
        select(Agreement, Release, Product)
        .join(Release, col(Release.id) == Agreement.release_id)
        .join(Product, col(Product.id) == Release.product_id)
        .where(col(Agreement.customer_id) == customer.id)
        .order_by(Product.slug, Release.version)
    ).all()
    changes: dict[int, list[dict]] = {}
    if rows:
        for ch in session.exec(
            select(AgreementChange)
            .where(col(AgreementChange.agreement_id).in_([a.id for a, _, _ in rows]))
            .order_by(col(AgreementChange.at), col(AgreementChange.id))
        ).all():
            changes.setdefault(ch.agreement_id, []).append(
                {
                    "status": ch.status,
                    "target": ch.target_version,
                    "planned_date": ch.planned_date,
                    "by": ch.by,
                    "channel": ch.channel,
                    "feedback": ch.feedback,
                    "recorded_by": ch.recorded_by,
                    "at": ch.at,
                }
            )
    today = policy.local_date(now(), customer.timezone)
    out = []
    for a, r, p in rows:
        nxt = agreements.next_milestone(session, r, today)
        out.append(
            {
                "product": p.slug,
                "version": r.version,
                "status": a.status,
                "target": a.target_version,
                "planned_date": a.planned_date,
                "by": a.by,
                "recorded_by": a.recorded_by,
                "channel": a.channel,
                "feedback": a.feedback,
                "at": a.at,
                "at_risk": nxt is not None
                and policy.plan_at_risk(a.status, a.target_version, a.planned_date, nxt.date),
                "history": changes.get(pk(a), []),
            }
        )
    return out


def _inbox_message(session: Session, customer: Customer, message_id: int) -> InboxMessage:
    msg = session.get(InboxMessage, message_id) if valid_id(message_id) else None
    if msg is None or msg.customer_id != customer.id:
        raise HTTPException(404, f"no message {message_id}")
    return msg


def _message_out(m: InboxMessage, full: bool = False) -> dict:
    out = {
        "id": m.id,
        "subject": m.subject,
        "created_at": m.created_at,
        "read_at": m.read_at,
        "unread": m.read_at is None,
    }
    if full:
        out |= {"body_text": m.body_text, "body_html": m.body_html}
    return out


# ------------------------------------------------------------------------------------------------ me


@router.get("/me", summary="Who this token is")
def me(principal: PrincipalDep, session: SessionDep) -> dict:
    customer = session.get(Customer, principal.customer_id) if principal.customer_id else None
    return {
        "role": principal.role,
        "customer": customer.key if customer else None,
        "rep": principal.rep_email,
        "label": principal.label,
    }


# ------------------------------------------------------------------------------------------ registry


@router.get("/products", summary="List products (any role)")
def list_products(principal: PrincipalDep, session: SessionDep) -> list[dict]:
    return [{"slug": p.slug, "name": p.name} for p in session.exec(select(Product).order_by(Product.slug))]


@router.post("/products", status_code=201, summary="Register or rename a product (pm)")
def add_product(body: ProductIn, principal: PrincipalDep, session: SessionDep) -> dict:
    require(principal, PM)
    with domain_errors():
        product, change = registry.upsert_product(session, slug=body.slug, name=body.name, at=now())
    session.commit()
    return {"slug": product.slug, "name": product.name, "change": change}


@router.get("/products/{slug}", summary="A product with its releases and milestones (any role)")
def get_product(slug: str, principal: PrincipalDep, session: SessionDep) -> dict:
    product = _product(session, slug)
    releases = sorted(
        session.exec(select(Release).where(Release.product_id == product.id)).all(),
        key=lambda r: registry.version_key(r.version),
    )
    milestones = registry.milestone_rows(session, now(), product=product.slug)
    return {
        "slug": product.slug,
        "name": product.name,
        "releases": [
            {"version": r.version, "released": r.released, "upgrade_to": r.upgrade_to} for r in releases
        ],
        "milestones": milestones,
        "calendar": links.product_calendar_url(product.slug),
    }


@router.post("/products/{slug}/releases", status_code=201, summary="Register or update a release (pm)")
def add_release(slug: str, body: ReleaseIn, principal: PrincipalDep, session: SessionDep) -> dict:
    require(principal, PM)
    product = _product(session, slug)
    with domain_errors():
        release, change = registry.upsert_release(
            session,
            product=product,
            version=body.version,
            at=now(),
            released=body.released,
            upgrade_to=body.upgrade_to,
        )
    session.commit()
    return {
        "product": product.slug,
        "version": release.version,
        "released": release.released,
        "upgrade_to": release.upgrade_to,
        "change": change,
    }


class MilestonePage(BaseModel):
    """A page of milestones: by product, natural version order, lifecycle order of kinds."""

    milestones: list[dict] = Field(
        description="Each milestone with its status, revision, whether it is history (`past`) and its "
        "history of changes."
    )
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last page.")


@router.get(
    "/milestones", summary="Milestones with their history (any role), in pages", response_model=MilestonePage
)
def list_milestones(
    principal: PrincipalDep,
    session: SessionDep,
    product: Annotated[str | None, Query(max_length=64, description="Only this product.")] = None,
    status: Annotated[Literal["planned", "withdrawn"] | None, Query(description="Only this status.")] = None,
    cursor: Cursor = None,
    limit: Annotated[int, Query(ge=1, le=1000, description="Milestones per page.")] = 100,
) -> dict:
    after = _cursor(
        cursor, paging.text, paging.optional_text, paging.one_of(*policy.LIFECYCLE_ORDER), paging.integer
    )
    rows = registry.iter_milestone_rows(session, now(), product=product, status=status, after=after)
    page, next_cursor = _page(rows, limit, registry.milestone_cursor)
    return {"milestones": page, "next_cursor": next_cursor}


DryRun = Annotated[
    bool,
    Query(
        description="Preview: what the change would do (customers affected, notices "
        "at once and planned per stage and channel); nothing is written."
    ),
]


def _preview(session: Session, at: dt.datetime, apply) -> dict:
    from lifecycle import changes

    session.rollback()  # the preview runs in its own transaction, always rolled back
    with domain_errors():
        return changes.preview(at, apply)


def _held(session: Session, milestone: Milestone) -> dict:
    change = registry.current_change(session, milestone)
    return {"change_id": change.id, "hold_until": change.hold_until.isoformat()} if change else {}


def _change(session: Session, at: dt.datetime, apply, dry_run: bool, milestone) -> dict:
    """Preview a registry change (`dry_run`), or make it and answer with the milestone it leaves
    (`milestone(session)` finds it), its result and its hold."""
    if dry_run:
        return _preview(session, at, apply)
    with domain_errors():
        done = apply(session)
    row = milestone(session)
    session.commit()
    return _milestone_out(session, row, at) | {"change": done["result"]} | _held(session, row)


@router.post("/milestones", status_code=201, summary="Register a milestone (pm; short-notice guard: 409)")
def add_milestone(
    body: MilestoneIn, principal: PrincipalDep, session: SessionDep, dry_run: DryRun = False
) -> dict:
    require(principal, PM)
    at = now()

    def apply(s: Session):
        m, change = registry.add_milestone(
            s,
            product=body.product,
            version=body.version or None,
            kind=body.kind,
            date=body.date,
            at=at,
            allow_short_notice=body.allow_short_notice,
            reason=body.reason,
            by=principal.actor,
            customer_reason=body.customer_reason,
        )
        return {"action": "add", "milestone": registry.describe(s, m), "result": change}

    return _change(
        session,
        at,
        apply,
        dry_run,
        lambda s: registry.get_milestone(s, body.product, body.version or None, body.kind),
    )


@router.post(
    "/milestones/{milestone_id}/move", summary="Move a milestone to a new date (pm; short-notice guard: 409)"
)
def move_milestone(
    milestone_id: int, body: MoveIn, principal: PrincipalDep, session: SessionDep, dry_run: DryRun = False
) -> dict:
    require(principal, PM)
    at = now()
    _milestone(session, milestone_id)

    def apply(s: Session):
        m, change = registry.move_milestone(
            s,
            s.get_one(Milestone, milestone_id),
            date=body.date,
            reason=body.reason,
            at=at,
            allow_short_notice=body.allow_short_notice,
            by=principal.actor,
            customer_reason=body.customer_reason,
        )
        return {"action": "move", "milestone": registry.describe(s, m), "result": change}

    return _change(session, at, apply, dry_run, lambda s: s.get_one(Milestone, milestone_id))


@router.post("/milestones/{milestone_id}/withdraw", summary="Withdraw a milestone (pm)")
def withdraw_milestone(
    milestone_id: int, body: WithdrawIn, principal: PrincipalDep, session: SessionDep, dry_run: DryRun = False
) -> dict:
    require(principal, PM)
    at = now()
    _milestone(session, milestone_id)

    def apply(s: Session):
        m, change = registry.withdraw_milestone(
            s,
            s.get_one(Milestone, milestone_id),
            reason=body.reason,
            at=at,
            by=principal.actor,
            customer_reason=body.customer_reason,
        )
        return {"action": "withdraw", "milestone": registry.describe(s, m), "result": change}

    return _change(session, at, apply, dry_run, lambda s: s.get_one(Milestone, milestone_id))


@router.get("/changes", summary="The latest registry changes, with their hold (pm)")
def list_changes(
    principal: PrincipalDep, session: SessionDep, limit: Annotated[int, Query(ge=1, le=500)] = 50
) -> list[dict]:
    from lifecycle import changes

    require(principal, PM)
    return changes.list_changes(session, now(), limit=limit)


@router.post("/changes/{change_id}/undo", summary="Undo a registry change within its hold (pm)")
def undo_change(change_id: int, principal: PrincipalDep, session: SessionDep) -> dict:
    from lifecycle import changes

    require(principal, PM)
    with domain_errors():
        result = changes.undo(session, change_id, at=now(), by=principal.actor)
    session.commit()
    return result


async def import_body(request: Request) -> bytes:
    """The raw body of an import, read up to LIFECYCLE_IMPORT_MAX_BYTES: FastAPI's own JSON parsing
    has no size or depth limit (a body nested 100,000 deep would be a 500)."""
    limit = get_settings().import_max_bytes
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise HTTPException(
                413,
                [
                    {
                        "loc": ["body"],
                        "msg": f"larger than {limit} bytes (LIFECYCLE_IMPORT_MAX_BYTES)",
                        "type": "too_large",
                    }
                ],
            )
    return bytes(body)


def _body_format(content_type: str | None) -> str | None:
    kind = (content_type or "").split(";")[0].strip().lower()
    if kind == "application/json" or kind.endswith("+json"):
        return "json"
    if kind in ("application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml"):
        return "yaml"
    return None  # JSON when it starts with { or [, YAML otherwise


_IMPORT_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {"type": "object"},
                "example": {"products": [{"slug": "acp", "name": "ACP"}]},
            },
            "application/yaml": {"schema": {"type": "object"}},
        },
    }
}


@router.post(
    "/import",
    summary="Import a registry document (pm; the YAML/JSON import shape, all or nothing)",
    openapi_extra=_IMPORT_BODY,
)
def import_registry(
    principal: PrincipalDep,
    session: SessionDep,
    request: Request,
    body: Annotated[bytes, Depends(import_body)],
    dry_run: DryRun = False,
) -> dict:
    """The body is read by the same strict loader as `lifecycle import` (YAML or JSON by Content-Type):
    an unreadable body, one nested too deep or with duplicate keys is a 422 naming the line or path."""
    require(principal, PM)
    from lifecycle.importing import import_registry as run_import

    try:
        data = loader.load_bytes(body, source="body", fmt=_body_format(request.headers.get("content-type")))
    except InputError as exc:
        errors = exc.errors if isinstance(exc, InputErrors) else [exc]
        raise HTTPException(
            422, [{"loc": ["body"], "msg": str(e), "type": "value_error"} for e in errors]
        ) from None
    at = now()
    if dry_run:
        return _preview(session, at, lambda s: run_import(s, data, at=at, source="api").to_dict())
    with domain_errors():
        summary = run_import(session, data, at=at, source="api")
    session.commit()
    return summary.to_dict()


# ------------------------------------------------------------------------------------------ customers


class CustomerOut(BaseModel):
    key: str
    name: str
    timezone: str
    locale: str
    account_rep: str
    service_start: dt.date | None = None
    service_end: dt.date | None = None
    cores: int | None = None


class CustomerPage(BaseModel):
    """A page of customers in key order."""

    customers: list[CustomerOut]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last page.")


@router.get(
    "/customers",
    summary="Customers in scope: all (pm), the rep's own (rep), itself (customer); in pages",
    response_model=CustomerPage,
)
def list_customers(
    principal: PrincipalDep,
    session: SessionDep,
    cursor: Annotated[
        str | None, Query(max_length=200, description="`next_cursor` of the previous page.")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000, description="Customers per page.")] = 100,
) -> dict:
    q = select(Customer).order_by(Customer.key).limit(limit + 1)  # one more: is there a next page?
    cond = principal.customer_filter()
    if cond is not None:
        q = q.where(cond)
    if cursor is not None:
        q = q.where(Customer.key > cursor)
    found = session.exec(q).all()
    page = found[:limit]
    return {
        "customers": [customer_out(c) for c in page],
        "next_cursor": page[-1].key if len(found) > limit else None,
    }


@router.get("/customers/{key}", summary="A customer in scope")
def get_customer(key: str, principal: PrincipalDep, session: SessionDep) -> dict:
    return customer_out(visible_customer(session, principal, key))


@router.get("/customers/{key}/deployments", summary="Releases a customer runs")
def list_deployments(key: str, principal: PrincipalDep, session: SessionDep) -> list[dict]:
    customer = visible_customer(session, principal, key)
    rows = session.exec(
        select(Deployment, Release, Product)
        .join(Release, col(Release.id) == Deployment.release_id)
        .join(Product, col(Product.id) == Release.product_id)
        .where(Deployment.customer_id == customer.id, col(Deployment.removed_at).is_(None))
        .order_by(Product.slug, Release.version)
    ).all()
    return [
        {"product": p.slug, "version": r.version, "cores": d.cores, "added_at": d.added_at}
        for d, r, p in rows
    ]


@router.post(
    "/customers/{key}/deployments", status_code=201, summary="Record that a customer runs a release (pm, rep)"
)
def add_deployment(key: str, body: DeploymentIn, principal: PrincipalDep, session: SessionDep) -> dict:
    require(principal, PM, REP)
    customer = visible_customer(session, principal, key)
    with domain_errors():
        dep, change = registry.add_deployment(
            session, customer=customer, product=body.product, version=body.version, cores=body.cores, at=now()
        )
    session.commit()
    return {
        "customer": customer.key,
        "product": body.product,
        "version": body.version,
        "cores": dep.cores,
        "change": change,
    }


@router.delete(
    "/customers/{key}/deployments/{product}/{version}",
    summary="A customer no longer runs a release (pm, rep)",
)
def remove_deployment(
    key: str, product: str, version: str, principal: PrincipalDep, session: SessionDep
) -> dict:
    require(principal, PM, REP)
    customer = visible_customer(session, principal, key)
    try:
        registry.remove_deployment(session, customer=customer.key, product=product, version=version, at=now())
    except InputError as exc:
        raise HTTPException(404, exc.message) from None
    session.commit()
    return {"customer": customer.key, "product": product, "version": version, "removed": True}


@router.get("/customers/{key}/agreements", summary="A customer's upgrade agreements with their history")
def list_agreements(key: str, principal: PrincipalDep, session: SessionDep) -> list[dict]:
    return agreement_list(session, visible_customer(session, principal, key))


@router.post(
    "/customers/{key}/agreements",
    status_code=201,
    summary="Record an upgrade agreement (customer: their own; rep: by phone; pm)",
)
def record_agreement(key: str, body: AgreementIn, principal: PrincipalDep, session: SessionDep) -> dict:
    customer = visible_customer(session, principal, key)
    channel = "phone" if principal.role == REP else "api"
    with domain_errors():
        product = registry.get_product(session, v.slug(body.product, "product"))
        release = registry.get_release(session, product, v.version(body.version))
        at = now()
        agreement = agreements.record(
            session,
            customer=customer,
            release=release,
            status=body.status,
            at=at,
            target_version=body.target or None,
            planned_date=body.planned_date,
            by=body.by or principal.actor,
            feedback=body.feedback,
            channel=channel,
            recorded_by=principal.actor,
        )
        if body.move_deployment:
            if agreement.status != "completed" or not agreement.target_version:
                raise InputError("move_deployment", "needs status completed and a target")
            agreements.move_deployment(
                session,
                customer=customer,
                release=release,
                target_version=agreement.target_version,
                at=at,
                by=principal.actor,
            )
    session.commit()
    return next(
        a
        for a in agreement_list(session, customer)
        if a["product"] == product.slug and a["version"] == release.version
    ) | {"id": agreement.id}


@router.get("/customers/{key}/inbox", summary="A customer's portal inbox, newest first, in pages")
def list_inbox(
    key: str,
    principal: PrincipalDep,
    session: SessionDep,
    unread: Annotated[bool, Query(description="Only unread messages.")] = False,
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
    per_page: Annotated[int, Query(ge=1, le=500)] = 100,
) -> dict:
    customer = visible_customer(session, principal, key)
    box = inbox.page(session, customer, unread_only=unread, number=page, per_page=per_page)
    return {
        "unread": box.unread,
        "total": box.total,
        "page": box.page,
        "pages": box.pages,
        "timezone": customer.timezone,
        "messages": [
            _message_out(m) | {"received": v["received"], "later": v["later"], "changed_by": v["changed_by"]}
            for m, v in zip(_messages(session, box), box.messages, strict=True)
        ],
    }


def _messages(session: Session, box) -> list[InboxMessage]:
    found = {
        m.id: m
        for m in session.exec(
            select(InboxMessage).where(col(InboxMessage.id).in_([v["id"] for v in box.messages]))
        )
    }
    return [found[v["id"]] for v in box.messages]


@router.post("/customers/{key}/inbox/read-all", summary="Mark every inbox message read (the customer)")
def mark_all_read(key: str, principal: PrincipalDep, session: SessionDep) -> dict:
    require(principal, CUSTOMER)
    customer = visible_customer(session, principal, key)
    n = inbox.mark_all_read(session, customer, now())
    session.commit()
    return {"marked": n, "unread": 0}


@router.get(
    "/customers/{key}/inbox/{message_id}", summary="One inbox message (reading it does not mark it read)"
)
def get_inbox_message(key: str, message_id: int, principal: PrincipalDep, session: SessionDep) -> dict:
    customer = visible_customer(session, principal, key)
    return _message_out(_inbox_message(session, customer, message_id), full=True)


@router.post("/customers/{key}/inbox/{message_id}/read", summary="Mark an inbox message read (the customer)")
def mark_read(key: str, message_id: int, principal: PrincipalDep, session: SessionDep) -> dict:
    require(principal, CUSTOMER)
    customer = visible_customer(session, principal, key)
    msg = _inbox_message(session, customer, message_id)
    if msg.read_at is None:
        msg.read_at = now()
        session.add(msg)
        session.commit()
    return _message_out(msg)


@router.get("/customers/{key}/calendar", summary="A customer's private calendar feed (https and webcal)")
def calendar_link(key: str, principal: PrincipalDep, session: SessionDep) -> dict:
    customer = visible_customer(session, principal, key)
    url = links.calendar_url(customer.calendar_token)
    return {"url": url, "webcal": links.webcal_url(url)}


@router.post(
    "/customers/{key}/calendar/rotate", summary="A new private calendar link; the old one stops working"
)
def rotate_calendar(key: str, principal: PrincipalDep, session: SessionDep) -> dict:
    customer = visible_customer(session, principal, key)
    registry.rotate_calendar_token(session, customer, now())
    session.commit()
    url = links.calendar_url(customer.calendar_token)
    return {"url": url, "webcal": links.webcal_url(url)}


@router.get("/customers/{key}/contacts", summary="A customer's contacts, with bounces (reason and date)")
def list_contacts(key: str, principal: PrincipalDep, session: SessionDep) -> list[dict]:
    return registry.contact_rows(session, visible_customer(session, principal, key))


@router.post(
    "/customers/{key}/contacts",
    status_code=201,
    summary="Add a contact (pm, rep); a bounced address again needs force",
)
def add_contact(key: str, body: ContactIn, principal: PrincipalDep, session: SessionDep) -> dict:
    require(principal, PM, REP)
    customer = visible_customer(session, principal, key)
    with domain_errors():
        contact, change = registry.upsert_contact(
            session,
            customer=customer,
            email=body.email,
            name=body.name,
            force=body.force,
            at=now(),
            by=principal.actor,
        )
    session.commit()
    return next(c for c in registry.contact_rows(session, customer) if c["email"] == contact.email) | {
        "change": change
    }


@router.delete("/customers/{key}/contacts/{email}", summary="Remove a contact (pm, rep)")
def remove_contact(key: str, email: str, principal: PrincipalDep, session: SessionDep) -> dict:
    require(principal, PM, REP)
    customer = visible_customer(session, principal, key)
    try:
        contact = registry.remove_contact(
            session, customer=customer, email=email, at=now(), by=principal.actor
        )
    except InputError as exc:
        raise HTTPException(404, exc.message) from None
    session.commit()
    return {"customer": customer.key, "email": contact.email, "removed": True}


# -------------------------------------------------------------------------------------------- channels


@router.get(
    "/customers/{key}/channels", summary="A customer's channel subscriptions (email and portal are implicit)"
)
def list_channels(key: str, principal: PrincipalDep, session: SessionDep) -> list[dict]:
    from lifecycle.channels import subscriptions

    customer = visible_customer(session, principal, key)
    return subscriptions.rows(session, customer_ids=[pk(customer)])


@router.post(
    "/customers/{key}/channels",
    status_code=201,
    summary="Subscribe a customer to a channel; a webhook's signing secret is in this answer only",
)
def add_channel(key: str, body: ChannelIn, principal: PrincipalDep, session: SessionDep) -> dict:
    from lifecycle.channels import subscriptions

    customer = visible_customer(session, principal, key)
    with domain_errors():
        row, once = subscriptions.add(
            session,
            customer=customer,
            kind=body.kind,
            url=body.url,
            label=body.label,
            at=now(),
            by=principal.actor,
        )
    session.commit()
    return subscriptions.row_view(session, row) | once


def _channel(session: Session, customer: Customer, channel_id: int):
    from lifecycle.channels import subscriptions

    try:
        return subscriptions.get(session, customer, channel_id)
    except InputError as exc:
        raise HTTPException(404, exc.message) from None


@router.post(
    "/customers/{key}/channels/{channel_id}/test",
    summary="Send a test message through a subscription now and record the result",
)
def test_channel(key: str, channel_id: int, principal: PrincipalDep, session: SessionDep) -> dict:
    from lifecycle.channels import subscriptions

    customer = visible_customer(session, principal, key)
    result = subscriptions.test(
        session, _channel(session, customer, channel_id), at=now(), by=principal.actor
    )
    session.commit()
    return result


@router.delete(
    "/customers/{key}/channels/{channel_id}", summary="Unsubscribe (pending deliveries are cancelled)"
)
def remove_channel(key: str, channel_id: int, principal: PrincipalDep, session: SessionDep) -> dict:
    from lifecycle.channels import subscriptions

    customer = visible_customer(session, principal, key)
    row = _channel(session, customer, channel_id)
    subscriptions.remove(session, row, at=now(), by=principal.actor)
    session.commit()
    return {"customer": customer.key, "id": channel_id, "removed": True}


# ----------------------------------------------------------------------------------------- escalations


def _escalation(session: Session, principal: Principal, escalation_id: int):
    item = session.get(Escalation, escalation_id) if valid_id(escalation_id) else None
    if item is None or not principal.sees(session.get_one(Customer, item.customer_id)):
        raise HTTPException(404, f"no escalation {escalation_id}")
    return item


class EscalationPage(BaseModel):
    """A page of escalation work items: open, in progress, then resolved; soonest due first."""

    escalations: list[dict] = Field(description="Each item with its due date, days left and notes.")
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last page.")


@router.get(
    "/escalations",
    summary="Escalation work items, open first, in pages (pm: all or one rep; rep: their own)",
    response_model=EscalationPage,
)
def list_escalations(
    principal: PrincipalDep,
    session: SessionDep,
    state: Annotated[Literal["open", "in-progress", "resolved"] | None, Query()] = None,
    rep: Annotated[str | None, Query(description="Only this rep's customers (pm).")] = None,
    customer: Annotated[str | None, Query(description="Only this customer.")] = None,
    cursor: Cursor = None,
    limit: Annotated[int, Query(ge=1, le=1000, description="Items per page.")] = 100,
) -> dict:
    require(principal, PM, REP)
    after = _cursor(cursor, paging.integer, paging.day, paging.text, paging.integer)
    rep = principal.rep_email if principal.role == REP else rep
    customer_id = visible_customer(session, principal, customer).id if customer else None
    rows = escalations.rows(
        session, at=now(), rep=rep, state=state, customer_id=customer_id, after=after, limit=limit + 1
    )
    page, next_cursor = _page(rows, limit, escalations.cursor)
    return {"escalations": escalations.jsonable(page), "next_cursor": next_cursor}


@router.get("/escalations/{escalation_id}", summary="One escalation with its notes")
def get_escalation(escalation_id: int, principal: PrincipalDep, session: SessionDep) -> dict:
    require(principal, PM, REP)
    item = _escalation(session, principal, escalation_id)
    return escalations.jsonable(escalations.rows(session, at=now(), ids=[item.id]))[0]


@router.patch(
    "/escalations/{escalation_id}", summary="Work on an escalation: a new state and/or a note (pm, rep)"
)
def update_escalation(
    escalation_id: int, body: EscalationIn, principal: PrincipalDep, session: SessionDep
) -> dict:
    require(principal, PM, REP)
    item = _escalation(session, principal, escalation_id)
    with domain_errors():
        escalations.update(session, item, at=now(), by=principal.actor, state=body.state, note=body.note)
    session.commit()
    return escalations.jsonable(escalations.rows(session, at=now(), ids=[item.id]))[0]


# ---------------------------------------------------------------------------------------------- reps


@router.get("/reps", summary="Reps' settings (pm: every rep; rep: their own)")
def list_reps(principal: PrincipalDep, session: SessionDep) -> list[dict]:
    require(principal, PM, REP)
    if principal.role == REP:
        return [reps.get(session, principal.rep_email or "").as_dict()]
    return [r.as_dict() for r in reps.listing(session)]


@router.put("/reps/{email}", summary="Set a rep's name, digest language and timezone (pm; a rep: their own)")
def set_rep(email: str, body: RepIn, principal: PrincipalDep, session: SessionDep) -> dict:
    require(principal, PM, REP)
    if principal.role == REP and email.strip().lower() != (principal.rep_email or "").lower():
        raise HTTPException(404, f"no rep {email!r}")
    with domain_errors():
        rep, change = reps.upsert(
            session,
            email=email,
            name=body.name,
            locale=body.locale,
            timezone=body.timezone,
            at=now(),
            by=principal.actor,
        )
    session.commit()
    return rep.as_dict() | {"change": change}


# -------------------------------------------------------------------------------------------- reports


class ComplianceReport(BaseModel):
    """A page of the compliance report: the rows of up to `limit` customers, in customer key order."""

    at: str = Field(description="The instant the report is computed at (ISO 8601).")
    totals: dict[str, int] = Field(
        description="Rows per status, over this page (the whole report when "
        "`next_cursor` is null and no cursor was given)."
    )
    rows: list[dict] | None = Field(
        default=None, description="Per customer and milestone (without `summary`)."
    )
    summary: list[dict] | None = Field(
        default=None, description="Per product, release and milestone, over this page (with `summary=true`)."
    )
    next_cursor: str | None = Field(
        default=None, description="Pass as `cursor` for the next page; null on the last page."
    )


@router.get(
    "/reports/compliance",
    summary="Compliance report (pm): `lifecycle report compliance --json`, in pages",
    responses={200: {"model": ComplianceReport}},
)  # documents the shape; rows keep their nulls
def compliance_report(
    principal: PrincipalDep,
    session: SessionDep,
    at: Annotated[dt.datetime | None, Query(description="Pretend it is this instant (default now).")] = None,
    summary: Annotated[
        bool, Query(description="Per product, release and milestone instead of per customer (`--summary`).")
    ] = False,
    cursor: Annotated[
        str | None, Query(max_length=200, description="`next_cursor` of the previous page.")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=5000, description="Customers per page.")] = 1000,
) -> dict:
    """Per customer and milestone: when the first notice went out against the 3-month deadline, with the
    status (on-time, late, pending, not-notified, withdrawn) and its cause; the same JSON as the CLI.
    A page holds the rows of `limit` customers; `next_cursor` leads to the next."""
    from collections import Counter

    from lifecycle import reports

    require(principal, PM)
    when = v.instant(at) if at is not None else now()
    rows = list(reports.compliance_rows(session, when, after=cursor, customers=limit))
    # the key of the page's last customer (with or without rows), unless no customer follows it
    last = _last_customer_key(session, cursor, limit)
    more = last is not None and last != reports.last_customer(session)
    totals = Counter(r["status"] for r in rows)
    out = {
        "at": when.isoformat(),
        "totals": dict(sorted(totals.items())),
        "next_cursor": last if more else None,
    }
    if summary:
        return out | {"summary": reports.compliance_summary(rows)}
    return out | {"rows": rows}


def _last_customer_key(session: Session, after: str | None, limit: int) -> str | None:
    q = select(Customer.key).order_by(Customer.key).limit(limit)
    if after is not None:
        q = q.where(Customer.key > after)
    keys = session.exec(q).all()
    return keys[-1] if keys else None


class AgreementsReport(BaseModel):
    """A page of the agreements report: fewest days left first, then customer, product and version."""

    at: str = Field(description="The instant the report is computed at (ISO 8601).")
    rows: list[dict] = Field(
        description="Per customer and deployed release with an upcoming milestone: agreement, risk, "
        "escalation (`lifecycle report agreements --json`)."
    )
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last page.")


@router.get(
    "/reports/agreements",
    summary="Agreements report, in pages (pm: everyone, optionally one rep; rep: their own)",
    response_model=AgreementsReport,
)
def agreements_report(
    principal: PrincipalDep,
    session: SessionDep,
    at: Annotated[dt.datetime | None, Query(description="Pretend it is this instant (default now).")] = None,
    rep: Annotated[str | None, Query(description="Only this rep's customers (pm).")] = None,
    customer: Annotated[str | None, Query(description="Only this customer.")] = None,
    product: Annotated[str | None, Query(description="Only this product.")] = None,
    risk: Annotated[Literal["red", "amber", "green"] | None, Query(description="Only this risk.")] = None,
    agreement: Annotated[
        Literal["none", "acknowledged", "planned", "completed", "declined"] | None,
        Query(description="Only this agreement status."),
    ] = None,
    cursor: Cursor = None,
    limit: Annotated[int, Query(ge=1, le=1000, description="Rows per page.")] = 100,
) -> dict:
    require(principal, PM, REP)
    after = _cursor(cursor, paging.day, paging.text, paging.text, paging.text)
    when = v.instant(at) if at is not None else now()
    customer_id = visible_customer(session, principal, customer).id if customer else None
    rep = principal.rep_email if principal.role == REP else rep
    rows = dashboard.iter_agreement_rows(
        session, at=when, rep=rep, customer_id=customer_id, product=product, after=after
    )
    page, next_cursor = _page(dashboard.only(rows, risk=risk, agreement=agreement), limit, dashboard.cursor)
    return {"at": when.isoformat(), "rows": dashboard.jsonable(page), "next_cursor": next_cursor}
