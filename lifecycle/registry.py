"""Products, releases, milestones, customers, contacts and deployments: add, move, withdraw, remove.

Plain functions over a session; the caller owns the transaction (all or nothing). Every function that
changes who should be told what marks the affected milestones `needs_plan`, and the planner
(`lifecycle.scheduler.plan`) picks them up. Upserts return what happened: created, updated, unchanged.
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
from typing import Literal

import sqlalchemy as sa
from sqlmodel import Session, select

from lifecycle import inflight, policy
from lifecycle import validation as v
from lifecycle.errors import InputError, NotFound, ShortNotice
from lifecycle.models import (
    AuditEvent,
    Contact,
    Customer,
    Deployment,
    Milestone,
    MilestoneChange,
    MilestoneStatus,
    Product,
    Release,
)

Change = Literal["created", "updated", "unchanged"]


def audit(session: Session, at: dt.datetime, action: str, subject: str, detail: dict | None = None,
          actor: str | None = None) -> None:
    session.add(AuditEvent(at=at, actor=actor, action=action, subject=subject,
                           detail=json.dumps(detail, default=str, ensure_ascii=False) if detail else None))


# ------------------------------------------------------------------------------------------- lookups


def get_product(session: Session, slug: str, field: str = "product") -> Product:
    product = session.exec(select(Product).where(Product.slug == slug)).first()
    if product is None:
        raise NotFound(field, f"no product {slug!r}")
    return product


def get_release(session: Session, product: Product, version: str, field: str = "version") -> Release:
    release = session.exec(
        select(Release).where(Release.product_id == product.id, Release.version == version)
    ).first()
    if release is None:
        raise NotFound(field, f"product {product.slug!r} has no release {version!r}")
    return release


def get_customer(session: Session, key: str, field: str = "customer") -> Customer:
    customer = session.exec(select(Customer).where(Customer.key == key)).first()
    if customer is None:
        raise NotFound(field, f"no customer {key!r}")
    return customer


def find_milestone(session: Session, product: Product, release: Release | None, kind: str) -> Milestone | None:
    return session.exec(
        select(Milestone).where(
            Milestone.product_id == product.id,
            Milestone.scope == (release.id if release else 0),
            Milestone.kind == kind,
        )
    ).first()


def get_milestone(session: Session, product_slug: str, version: str | None, kind: str) -> Milestone:
    product = get_product(session, product_slug)
    release = get_release(session, product, version) if version else None
    kind = v.milestone_kind(kind)
    milestone = find_milestone(session, product, release, kind)
    if milestone is None:
        where = f"{product.slug} {version}" if version else product.slug
        raise NotFound("kind", f"{where} has no {kind} milestone")
    return milestone


def mark_dirty(session: Session, *, release_ids=(), product_ids=(), milestone_ids=()) -> None:
    """Ask the planner to re-plan the milestones touched by a change."""
    conds = []
    if release_ids:
        conds.append(Milestone.release_id.in_(list(release_ids)))
    if product_ids:
        conds.append(sa.and_(Milestone.release_id.is_(None), Milestone.product_id.in_(list(product_ids))))
    if milestone_ids:
        conds.append(Milestone.id.in_(list(milestone_ids)))
    if conds:
        session.exec(sa.update(Milestone).where(sa.or_(*conds)).values(needs_plan=True))


def _mark_customer_dirty(session: Session, customer_id: int) -> None:
    rows = session.exec(
        select(Deployment.release_id, Release.product_id)
        .join(Release, Release.id == Deployment.release_id)
        .where(Deployment.customer_id == customer_id)
    ).all()
    mark_dirty(session, release_ids={r for r, _ in rows}, product_ids={p for _, p in rows})


# ------------------------------------------------------------------------------------------ products


def upsert_product(session: Session, *, slug: str, name: str, at: dt.datetime) -> tuple[Product, Change]:
    slug, name = v.slug(slug), v.name(name)
    product = session.exec(select(Product).where(Product.slug == slug)).first()
    if product is None:
        product = Product(slug=slug, name=name, created_at=at)
        session.add(product)
        session.flush()
        audit(session, at, "product.add", slug, {"name": name})
        return product, "created"
    if product.name != name:
        product.name = name
        session.add(product)
        audit(session, at, "product.update", slug, {"name": name})
        return product, "updated"
    return product, "unchanged"


def upsert_release(
    session: Session, *, product: str | Product, version: str, at: dt.datetime,
    released: dt.date | None = None, upgrade_to: str | None = None,
) -> tuple[Release, Change]:
    prod = product if isinstance(product, Product) else get_product(session, product)
    version = v.version(version)
    upgrade_to = v.version(upgrade_to, "upgrade_to") if upgrade_to else None
    released = v.in_range(released, "released") if released else None
    if upgrade_to == version:
        raise InputError("upgrade_to", f"release {version!r} cannot upgrade to itself")
    release = session.exec(
        select(Release).where(Release.product_id == prod.id, Release.version == version)
    ).first()
    if release is None:
        release = Release(product_id=prod.id, version=version, released=released, upgrade_to=upgrade_to,
                          created_at=at)
        session.add(release)
        session.flush()
        audit(session, at, "release.add", f"{prod.slug} {version}",
              {"released": released, "upgrade_to": upgrade_to})
        return release, "created"
    changed = False
    if released is not None and release.released != released:
        release.released, changed = released, True
    if upgrade_to is not None and release.upgrade_to != upgrade_to:
        release.upgrade_to, changed = upgrade_to, True
    if changed:
        session.add(release)
        audit(session, at, "release.update", f"{prod.slug} {version}",
              {"released": release.released, "upgrade_to": release.upgrade_to})
    return release, "updated" if changed else "unchanged"


# ---------------------------------------------------------------------------------------- milestones


def check_short_notice(date: dt.date, at: dt.datetime, allow: bool, reason: str | None,
                       field: str = "date") -> str | None:
    """The short-notice guard: a date less than 3 months after `at` needs an explicit reason.

    Returns the reason to record when the date is short notice, None otherwise. Past dates are history.
    """
    if not policy.is_short_notice(date, at):
        return None
    if not allow or not (reason or "").strip():
        deadline = policy.contract_deadline(date)
        raise ShortNotice(
            field,
            f"{date.isoformat()} is less than 3 months after {at.date().isoformat()}: customers are "
            f"promised at least 3 months' notice (the first notice had to go out by "
            f"{deadline.isoformat()}). Use --allow-short-notice --reason \"...\" to register it anyway; "
            "every affected customer is then notified at once and the compliance report records it as "
            "short notice.",
        )
    return v.reason(reason)


def _scope_label(product: Product, release: Release | None) -> str:
    return f"{product.slug} {release.version}" if release else product.slug


def add_milestone(
    session: Session, *, product: str | Product, version: str | Release | None, kind: str, date: dt.date,
    at: dt.datetime, allow_short_notice: bool = False, reason: str | None = None, by: str | None = None,
) -> tuple[Milestone, Change]:
    """Register a milestone. An existing planned one with the same date is unchanged; a different
    date is refused (use `move`); a withdrawn one is reinstated."""
    prod = product if isinstance(product, Product) else get_product(session, product)
    if isinstance(version, Release) or version is None:
        release = version
    else:
        release = get_release(session, prod, version)
    kind = v.milestone_kind(kind)
    date = v.in_range(date, "date")
    existing = find_milestone(session, prod, release, kind)
    label = f"{_scope_label(prod, release)} {kind}"
    if existing is not None and existing.status == MilestoneStatus.PLANNED:
        if existing.date == date:
            return existing, "unchanged"
        raise InputError("date", f"{label} is already registered for {existing.date.isoformat()}: "
                                 "use `lifecycle milestone move` to change its date")
    short = check_short_notice(date, at, allow_short_notice, reason)
    if existing is not None:  # reinstating a withdrawn milestone
        existing.status = MilestoneStatus.PLANNED
        old = existing.date
        existing.date, existing.revision = date, existing.revision + 1
        existing.changed_at, existing.needs_plan = at, True
        existing.short_notice_reason = short or existing.short_notice_reason
        session.add(existing)
        session.add(MilestoneChange(milestone_id=existing.id, revision=existing.revision, action="reinstated",
                                    old_date=old, new_date=date, reason=reason, short_notice=bool(short),
                                    by=by, at=at))
        audit(session, at, "milestone.reinstate", label, {"date": date, "reason": reason}, by)
        return existing, "updated"
    milestone = Milestone(
        product_id=prod.id, release_id=release.id if release else None, scope=release.id if release else 0,
        kind=kind, date=date, short_notice_reason=short, registered_at=at, changed_at=at, needs_plan=True,
    )
    session.add(milestone)
    session.flush()
    session.add(MilestoneChange(milestone_id=milestone.id, revision=1, action="created", new_date=date,
                                reason=reason if short or reason else None, short_notice=bool(short),
                                by=by, at=at))
    audit(session, at, "milestone.add", label, {"date": date, "short_notice": short}, by)
    return milestone, "created"


def move_milestone(
    session: Session, milestone: Milestone, *, date: dt.date, reason: str, at: dt.datetime,
    allow_short_notice: bool = False, by: str | None = None,
) -> tuple[Milestone, Change]:
    reason = v.reason(reason)
    date = v.in_range(date, "date")
    if milestone.status == MilestoneStatus.WITHDRAWN:
        raise InputError("kind", "the milestone is withdrawn: add it again to reinstate it")
    if milestone.date == date:
        return milestone, "unchanged"
    short = check_short_notice(date, at, allow_short_notice, reason)
    old = milestone.date
    milestone.date, milestone.revision = date, milestone.revision + 1
    milestone.changed_at, milestone.needs_plan = at, True
    if short:
        milestone.short_notice_reason = short
    session.add(milestone)
    session.add(MilestoneChange(milestone_id=milestone.id, revision=milestone.revision, action="moved",
                                old_date=old, new_date=date, reason=reason, short_notice=bool(short),
                                by=by, at=at))
    audit(session, at, "milestone.move", f"milestone {milestone.id}",
          {"from": old, "to": date, "reason": reason}, by)
    inflight.cancel_in_flight(session, at=at, reason="moved", milestone_id=milestone.id)
    return milestone, "updated"


def withdraw_milestone(
    session: Session, milestone: Milestone, *, reason: str, at: dt.datetime, by: str | None = None,
) -> tuple[Milestone, Change]:
    reason = v.reason(reason)
    if milestone.status == MilestoneStatus.WITHDRAWN:
        return milestone, "unchanged"
    milestone.status, milestone.revision = MilestoneStatus.WITHDRAWN, milestone.revision + 1
    milestone.changed_at, milestone.needs_plan = at, True
    session.add(milestone)
    session.add(MilestoneChange(milestone_id=milestone.id, revision=milestone.revision, action="withdrawn",
                                old_date=milestone.date, reason=reason, by=by, at=at))
    audit(session, at, "milestone.withdraw", f"milestone {milestone.id}", {"reason": reason}, by)
    inflight.cancel_in_flight(session, at=at, reason="withdrawn", milestone_id=milestone.id)
    return milestone, "updated"


# ---------------------------------------------------------------------------------------- customers


def upsert_customer(
    session: Session, *, key: str, name: str, timezone: str, locale: str, account_rep: str, at: dt.datetime,
    service_start: dt.date | None = None, service_end: dt.date | None = None, cores: int | None = None,
) -> tuple[Customer, Change]:
    key, name = v.customer_key(key), v.name(name)
    timezone, locale = v.timezone(timezone), v.locale(locale)
    account_rep = v.email(account_rep, "account_rep")
    cores = v.cores(cores)
    service_start = v.in_range(service_start, "service.start") if service_start else None
    service_end = v.in_range(service_end, "service.end") if service_end else None
    if service_start and service_end and service_end < service_start:
        raise InputError("service.end", f"{service_end} is before the service start {service_start}")
    values = dict(name=name, timezone=timezone, locale=locale, account_rep=account_rep,
                  service_start=service_start, service_end=service_end, cores=cores)
    customer = session.exec(select(Customer).where(Customer.key == key)).first()
    if customer is None:
        customer = Customer(key=key, calendar_token=new_calendar_token(), created_at=at, **values)
        session.add(customer)
        session.flush()
        audit(session, at, "customer.add", key, values)
        return customer, "created"
    changed = {k: val for k, val in values.items() if getattr(customer, k) != val}
    if not changed:
        return customer, "unchanged"
    for k, val in changed.items():
        setattr(customer, k, val)
    session.add(customer)
    if changed.keys() & {"timezone", "service_start", "service_end"}:
        _mark_customer_dirty(session, customer.id)
    audit(session, at, "customer.update", key, changed)
    return customer, "updated"


def new_calendar_token() -> str:
    return secrets.token_urlsafe(24)  # 192 bits


def rotate_calendar_token(session: Session, customer: Customer, at: dt.datetime) -> str:
    customer.calendar_token = new_calendar_token()
    session.add(customer)
    audit(session, at, "customer.calendar_token.rotate", customer.key)
    return customer.calendar_token


def upsert_contact(session: Session, *, customer: str | Customer, email: str, at: dt.datetime,
                   name: str | None = None) -> tuple[Contact, Change]:
    cust = customer if isinstance(customer, Customer) else get_customer(session, customer)
    email = v.email(email)
    name = v.name(name, "name") if name else None
    contact = session.exec(
        select(Contact).where(Contact.customer_id == cust.id, sa.func.lower(Contact.email) == email.lower())
    ).first()
    if contact is None:
        contact = Contact(customer_id=cust.id, email=email, name=name, created_at=at)
        session.add(contact)
        session.flush()
        audit(session, at, "contact.add", cust.key, {"email": email})
        return contact, "created"
    changed = False
    if name and contact.name != name:
        contact.name, changed = name, True
    if contact.undeliverable:
        # Adding a flagged address again is the rep confirming it works: email it again.
        contact.undeliverable, contact.undeliverable_reason, changed = False, None, True
        audit(session, at, "contact.revalidate", cust.key, {"email": contact.email})
    if changed:
        session.add(contact)
        return contact, "updated"
    return contact, "unchanged"


def add_deployment(session: Session, *, customer: str | Customer, product: str | Product, version: str,
                   at: dt.datetime, cores: int | None = None) -> tuple[Deployment, Change]:
    cust = customer if isinstance(customer, Customer) else get_customer(session, customer)
    prod = product if isinstance(product, Product) else get_product(session, product)
    release = get_release(session, prod, v.version(version))
    cores = v.cores(cores)
    dep = session.exec(
        select(Deployment).where(Deployment.customer_id == cust.id, Deployment.release_id == release.id)
    ).first()
    change: Change
    if dep is None:
        dep = Deployment(customer_id=cust.id, release_id=release.id, cores=cores, added_at=at)
        change = "created"
    elif dep.removed_at is not None:
        dep.removed_at, dep.added_at, dep.cores = None, at, cores if cores is not None else dep.cores
        change = "updated"
    elif cores is not None and dep.cores != cores:
        dep.cores, change = cores, "updated"
    else:
        return dep, "unchanged"
    session.add(dep)
    session.flush()
    mark_dirty(session, release_ids=[release.id], product_ids=[prod.id])
    audit(session, at, "deployment.add", f"{cust.key} {prod.slug} {release.version}", {"cores": cores})
    return dep, change


def remove_deployment(session: Session, *, customer: str, product: str, version: str,
                      at: dt.datetime) -> Deployment:
    cust = get_customer(session, customer)
    prod = get_product(session, product)
    release = get_release(session, prod, version)
    dep = session.exec(
        select(Deployment).where(Deployment.customer_id == cust.id, Deployment.release_id == release.id,
                                 Deployment.removed_at.is_(None))
    ).first()
    if dep is None:
        raise NotFound("version", f"customer {cust.key!r} does not run {prod.slug} {release.version}")
    dep.removed_at = at
    session.add(dep)
    mark_dirty(session, release_ids=[release.id], product_ids=[prod.id])
    audit(session, at, "deployment.remove", f"{cust.key} {prod.slug} {release.version}")
    return dep


# ------------------------------------------------------------------------------------------ listings


def milestone_rows(session: Session, at: dt.datetime) -> list[dict]:
    """Every milestone with its history, in a stable order (product, version, kind).

    `past` marks history: milestones whose date is before `at` are shown but never notified."""
    rows = session.exec(
        select(Milestone, Product, Release)
        .join(Product, Product.id == Milestone.product_id)
        .join(Release, Release.id == Milestone.release_id, isouter=True)
        .order_by(Product.slug, Release.version, Milestone.kind, Milestone.id)
    ).all()
    history: dict[int, list[dict]] = {}
    for ch in session.exec(select(MilestoneChange).order_by(MilestoneChange.milestone_id, MilestoneChange.revision,
                                                             MilestoneChange.id)).all():
        history.setdefault(ch.milestone_id, []).append({
            "revision": ch.revision, "action": ch.action,
            "old_date": ch.old_date.isoformat() if ch.old_date else None,
            "new_date": ch.new_date.isoformat() if ch.new_date else None,
            "reason": ch.reason, "short_notice": ch.short_notice, "by": ch.by, "at": ch.at.isoformat(),
        })
    return [
        {
            "id": m.id, "product": p.slug, "version": r.version if r else None, "kind": m.kind,
            "date": m.date.isoformat(), "status": m.status, "revision": m.revision,
            "short_notice_reason": m.short_notice_reason, "past": policy.is_history(m.date, at),
            "history": history.get(m.id, []),
        }
        for m, p, r in sorted(rows, key=lambda row: (row[1].slug, version_key(row[2].version if row[2] else ""),
                                                     row[0].kind))
    ]


def version_key(version: str) -> tuple:
    """Natural order for version strings: 1.9 < 1.10, 3.16 < 3.18."""
    import re

    return tuple((0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"[.\-_+~]", version))
