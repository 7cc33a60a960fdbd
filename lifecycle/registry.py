"""Products, releases, milestones, customers, contacts and deployments: add, move, withdraw, remove.

Plain functions over a session; the caller owns the transaction (all or nothing). Every function that
changes who should be told what marks the affected milestones `needs_plan`, and the planner
(`lifecycle.scheduler.plan`) picks them up. Upserts return what happened: created, updated, unchanged.
"""

from __future__ import annotations

import datetime as dt
import enum
import json
import secrets
from collections.abc import Iterable, Iterator
from typing import Any, Final, Literal

import sqlalchemy as sa
from sqlmodel import Session, col, select

from lifecycle import inflight, policy
from lifecycle import validation as v
from lifecycle.config import get_settings
from lifecycle.errors import InputError, NotFound, ShortNotice
from lifecycle.models import (
    AuditEvent,
    Contact,
    Customer,
    Deployment,
    Milestone,
    MilestoneChange,
    MilestoneKind,
    MilestoneStatus,
    Product,
    RegistryChange,
    Release,
    pk,
)

Change = Literal["created", "updated", "unchanged"]


def audit(
    session: Session,
    at: dt.datetime,
    action: str,
    subject: str,
    detail: dict | None = None,
    actor: str | None = None,
) -> None:
    session.add(
        AuditEvent(
            at=at,
            actor=actor,
            action=action,
            subject=subject,
            detail=json.dumps(detail, default=str, ensure_ascii=False) if detail else None,
        )
    )


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


def find_release(session: Session, product: Product, version: str) -> Release | None:
    return session.exec(
        select(Release).where(Release.product_id == product.id, Release.version == version)
    ).first()


def get_customer(session: Session, key: str, field: str = "customer") -> Customer:
    customer = session.exec(select(Customer).where(Customer.key == key)).first()
    if customer is None:
        raise NotFound(field, f"no customer {key!r}")
    return customer


def find_milestone(
    session: Session, product: Product, release: Release | None, kind: str
) -> Milestone | None:
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
    conds: list[sa.ColumnElement[bool]] = []
    if release_ids:
        conds.append(col(Milestone.release_id).in_(list(release_ids)))
    if product_ids:
        conds.append(
            sa.and_(col(Milestone.release_id).is_(None), col(Milestone.product_id).in_(list(product_ids)))
        )
    if milestone_ids:
        conds.append(col(Milestone.id).in_(list(milestone_ids)))
    if conds:
        session.exec(sa.update(Milestone).where(sa.or_(*conds)).values(needs_plan=True))


def _mark_customer_dirty(session: Session, customer_id: int) -> None:
    rows = session.exec(
        select(Deployment.release_id, Release.product_id)
        .join(Release, col(Release.id) == Deployment.release_id)
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


class _Unset(enum.Enum):
    UNSET = enum.auto()


_UNSET: Final = _Unset.UNSET


def upsert_release(
    session: Session,
    *,
    product: str | Product,
    version: str,
    at: dt.datetime,
    released: dt.date | None = None,
    upgrade_to: str | None = None,
    ended: str | None | _Unset = _UNSET,
) -> tuple[Release, Change]:
    """Register or update a release. `ended` (a milestone kind, or None) records the phase known to
    have ended without a published date; left as it is when not given."""
    prod = product if isinstance(product, Product) else get_product(session, product)
    version = v.version(version)
    upgrade_to = v.version(upgrade_to, "upgrade_to") if upgrade_to else None
    released = v.in_range(released, "released") if released else None
    if upgrade_to == version:
        raise InputError("upgrade_to", f"release {version!r} cannot upgrade to itself")
    if ended is not _UNSET and ended is not None:
        ended = v.milestone_kind(ended, "ended")
    release = session.exec(
        select(Release).where(Release.product_id == prod.id, Release.version == version)
    ).first()
    if release is None:
        assert prod.id is not None
        release = Release(
            product_id=prod.id,
            version=version,
            released=released,
            upgrade_to=upgrade_to,
            ended=None if ended is _UNSET else ended,
            created_at=at,
        )
        session.add(release)
        session.flush()
        audit(
            session,
            at,
            "release.add",
            f"{prod.slug} {version}",
            {"released": released, "upgrade_to": upgrade_to, "ended": release.ended},
        )
        return release, "created"
    changed = False
    if released is not None and release.released != released:
        release.released, changed = released, True
    if upgrade_to is not None and release.upgrade_to != upgrade_to:
        release.upgrade_to, changed = upgrade_to, True
    if ended is not _UNSET and release.ended != ended:
        release.ended, changed = ended, True
    if changed:
        session.add(release)
        audit(
            session,
            at,
            "release.update",
            f"{prod.slug} {version}",
            {"released": release.released, "upgrade_to": release.upgrade_to, "ended": release.ended},
        )
    return release, "updated" if changed else "unchanged"


# ---------------------------------------------------------------------------------------- milestones


def check_short_notice(
    date: dt.date, at: dt.datetime, allow: bool, reason: str | None, field: str = "date"
) -> str | None:
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
            f"{deadline.isoformat()}). Allow short notice and give a reason to register it anyway; every "
            "affected customer is then notified at once and the compliance report records it as short notice.",
        )
    return v.reason(reason)


def _scope_label(product: Product, release: Release | None) -> str:
    return f"{product.slug} {release.version}" if release else product.slug


def begin_change(
    session: Session,
    *,
    action: str,
    summary: str,
    at: dt.datetime,
    by: str | None = None,
    hold: dt.timedelta | None = None,
) -> RegistryChange:
    """Open a change set. Notices it makes due at once are held until `at` + LIFECYCLE_CHANGE_HOLD."""
    hold = get_settings().change_hold_delta if hold is None else hold
    change = RegistryChange(action=action, summary=summary[:2000], by=by, at=at, hold_until=at + hold)
    session.add(change)
    session.flush()
    return change


def current_change(session: Session, milestone: Milestone) -> RegistryChange | None:
    """The change set that made the milestone's current revision."""
    ch = session.exec(
        select(MilestoneChange)
        .where(MilestoneChange.milestone_id == milestone.id, MilestoneChange.revision == milestone.revision)
        .order_by(col(MilestoneChange.id).desc())
    ).first()
    return session.get(RegistryChange, ch.change_id) if ch is not None and ch.change_id else None


def describe(session: Session, milestone: Milestone) -> str:
    """'acp 3.16 end-of-life', or 'acp end-of-sale' for a product-level milestone."""
    product = session.get(Product, milestone.product_id)
    release = session.get(Release, milestone.release_id) if milestone.release_id else None
    assert product is not None
    return _scope_label(product, release) + f" {milestone.kind}"


def effective_changes(session: Session, milestone_ids) -> list[tuple[MilestoneChange, dt.datetime]]:
    """The history of these milestones that still counts, oldest first, with the instant each change's
    notices were released from its hold. Changes of an undone change set never happened, for timing."""
    ids = list(milestone_ids)
    if not ids:
        return []
    rows = session.exec(
        select(MilestoneChange, RegistryChange)
        .join(RegistryChange, col(RegistryChange.id) == MilestoneChange.change_id, isouter=True)
        .where(col(MilestoneChange.milestone_id).in_(ids))
        .order_by(col(MilestoneChange.milestone_id), col(MilestoneChange.revision), col(MilestoneChange.id))
    ).all()
    out = []
    for ch, rc in rows:
        if rc is not None and rc.undone_at is not None:
            continue
        hold = rc.hold_until if rc is not None else ch.at
        out.append((ch, max(_utc(hold), _utc(ch.at))))
    return out


def _utc(value: dt.datetime) -> dt.datetime:
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value


def order_problems(
    session: Session,
    product_id: int,
    changes: dict[tuple[int | None, str], dt.date | None],
) -> list[tuple[int | None, policy.OrderViolation]]:
    """The lifecycle-order violations a product would have with `changes` applied ((release id or None
    for product-level, kind) -> new date, None = withdrawn): (release id, violation) pairs, only those
    that involve a changed milestone (data already inconsistent upstream is not blamed on a new change)."""
    dates: dict[int | None, dict[str, dt.date]] = {}
    for m in session.exec(
        select(Milestone).where(
            Milestone.product_id == product_id, Milestone.status == MilestoneStatus.PLANNED
        )
    ):
        dates.setdefault(m.release_id, {})[m.kind] = m.date
    for (release_id, kind), date in changes.items():
        if date is None:
            dates.get(release_id, {}).pop(kind, None)
        else:
            dates.setdefault(release_id, {})[kind] = date
    product_level = dates.get(None, {})
    touched = set(changes)
    out: list[tuple[int | None, policy.OrderViolation]] = []
    for release_id, ds in dates.items():
        if release_id is None:
            continue
        for viol in policy.order_violations(ds):
            if (release_id, viol.earlier) in touched or (release_id, viol.later) in touched:
                out.append((release_id, viol))
        for viol in policy.product_violations(product_level, ds):
            if (release_id, viol.earlier) in touched or (None, viol.later) in touched:
                out.append((release_id, viol))
    return out


def check_order(
    session: Session,
    milestone_product_id: int,
    release: Release | None,
    kind: str,
    date: dt.date,
    field: str = "date",
) -> None:
    """Refuse a date that would put a product's milestones out of lifecycle order, naming the conflict."""
    problems = order_problems(session, milestone_product_id, {(release.id if release else None, kind): date})
    if problems:
        release_id, viol = problems[0]
        where = session.get(Release, release_id)
        product = session.get(Product, milestone_product_id)
        assert where is not None and product is not None
        raise InputError(field, f"{product.slug} {where.version}: {viol.message()}")


def customer_reason_json(customer_reason: dict[str, str] | str | None) -> str | None:
    """Text written for customers, as stored: JSON {locale: text}. A plain string is English."""
    if not customer_reason:
        return None
    if isinstance(customer_reason, str):
        customer_reason = {"en": customer_reason}
    if not isinstance(customer_reason, dict):
        raise InputError("customer_reason", "expected text, or a mapping of locale to text")
    out = {}
    for locale, text in customer_reason.items():
        locale = v.locale(locale, "customer_reason")
        out[locale] = v.reason(text, f"customer_reason.{locale}")
    return json.dumps(out, ensure_ascii=False, sort_keys=True) if out else None


def add_milestone(
    session: Session,
    *,
    product: str | Product,
    version: str | Release | None,
    kind: str,
    date: dt.date,
    at: dt.datetime,
    allow_short_notice: bool = False,
    reason: str | None = None,
    by: str | None = None,
    reason_code: str | None = None,
    customer_reason: dict[str, str] | str | None = None,
    check_lifecycle_order: bool = True,
    change: RegistryChange | None = None,
) -> tuple[Milestone, Change]:
    """Register a milestone. An existing planned one with the same date is unchanged; a different
    date is refused (use `move`); a withdrawn one is reinstated, which needs a reason: customers who
    were told it was cancelled are told it applies again."""
    prod = product if isinstance(product, Product) else get_product(session, product)
    if isinstance(version, Release) or version is None:
        release = version
    else:
        release = get_release(session, prod, version)
    kind = v.milestone_kind(kind)
    date = v.in_range(date, "date")
    existing = find_milestone(session, prod, release, kind)
    label = f"{_scope_label(prod, release)} {kind}"
    assert prod.id is not None
    if existing is not None and existing.status == MilestoneStatus.PLANNED:
        if existing.date == date:
            return existing, "unchanged"
        raise InputError(
            "date",
            f"{label} is already registered for {existing.date.isoformat()}: "
            "use `lifecycle milestone move` to change its date",
        )
    written = customer_reason_json(customer_reason)
    if check_lifecycle_order:
        check_order(session, prod.id, release, kind, date)
    if existing is not None:  # reinstating a withdrawn milestone
        if not (reason or "").strip():
            raise InputError(
                "reason",
                f"{label} was withdrawn: give a reason to reinstate it (customers who "
                "were told it was cancelled are told it applies again)",
            )
        reason = v.reason(reason)
        short = check_short_notice(date, at, allow_short_notice, reason)
        existing.status = MilestoneStatus.PLANNED
        old = existing.date
        existing.date, existing.revision = date, existing.revision + 1
        existing.changed_at, existing.needs_plan = at, True
        existing.short_notice_reason = short or existing.short_notice_reason
        session.add(existing)
        change = change or begin_change(
            session, action="reinstate", summary=f"reinstate {label} on {date}", at=at, by=by
        )
        assert existing.id is not None
        session.add(
            MilestoneChange(
                milestone_id=existing.id,
                change_id=change.id,
                revision=existing.revision,
                action="reinstated",
                old_date=old,
                new_date=date,
                reason=reason,
                short_notice=bool(short),
                reason_code=reason_code,
                customer_reason=written,
                by=by,
                at=at,
            )
        )
        audit(session, at, "milestone.reinstate", label, {"date": date, "reason": reason}, by)
        return existing, "updated"
    short = check_short_notice(date, at, allow_short_notice, reason)
    release_id = release.id if release else None
    milestone = Milestone(
        product_id=prod.id,
        release_id=release_id,
        scope=release_id if release_id is not None else 0,
        kind=kind,
        date=date,
        short_notice_reason=short,
        registered_at=at,
        changed_at=at,
        needs_plan=True,
    )
    session.add(milestone)
    session.flush()
    assert milestone.id is not None
    change = change or begin_change(session, action="add", summary=f"add {label} on {date}", at=at, by=by)
    session.add(
        MilestoneChange(
            milestone_id=milestone.id,
            change_id=change.id,
            revision=1,
            action="created",
            new_date=date,
            reason=reason if short or reason else None,
            short_notice=bool(short),
            reason_code=reason_code,
            customer_reason=written,
            by=by,
            at=at,
        )
    )
    audit(session, at, "milestone.add", label, {"date": date, "short_notice": short}, by)
    return milestone, "created"


def move_milestone(
    session: Session,
    milestone: Milestone,
    *,
    date: dt.date,
    reason: str,
    at: dt.datetime,
    allow_short_notice: bool = False,
    by: str | None = None,
    reason_code: str | None = None,
    customer_reason: dict[str, str] | str | None = None,
    check_lifecycle_order: bool = True,
    change: RegistryChange | None = None,
) -> tuple[Milestone, Change]:
    """Move a milestone to a new date (also into the past: a correction). Customers already told about
    it hear of the change; its reminders follow the new date."""
    reason = v.reason(reason)
    date = v.in_range(date, "date")
    if milestone.status == MilestoneStatus.WITHDRAWN:
        raise InputError("kind", "the milestone is withdrawn: add it again to reinstate it")
    if milestone.date == date:
        return milestone, "unchanged"
    written = customer_reason_json(customer_reason)
    assert milestone.id is not None
    if check_lifecycle_order:
        check_order(
            session,
            milestone.product_id,
            session.get(Release, milestone.release_id) if milestone.release_id else None,
            milestone.kind,
            date,
        )
    short = check_short_notice(date, at, allow_short_notice, reason)
    old = milestone.date
    milestone.date, milestone.revision = date, milestone.revision + 1
    milestone.changed_at, milestone.needs_plan = at, True
    if short:
        milestone.short_notice_reason = short
    session.add(milestone)
    change = change or begin_change(
        session,
        action="move",
        summary=f"move {describe(session, milestone)} from {old} to {date}",
        at=at,
        by=by,
    )
    session.add(
        MilestoneChange(
            milestone_id=milestone.id,
            change_id=change.id,
            revision=milestone.revision,
            action="moved",
            old_date=old,
            new_date=date,
            reason=reason,
            short_notice=bool(short),
            reason_code=reason_code,
            customer_reason=written,
            by=by,
            at=at,
        )
    )
    audit(
        session,
        at,
        "milestone.move",
        f"milestone {milestone.id}",
        {"from": old, "to": date, "reason": reason},
        by,
    )
    inflight.cancel_in_flight(session, at=at, reason="moved", milestone_id=milestone.id)
    return milestone, "updated"


def withdraw_milestone(
    session: Session,
    milestone: Milestone,
    *,
    reason: str,
    at: dt.datetime,
    by: str | None = None,
    reason_code: str | None = None,
    customer_reason: dict[str, str] | str | None = None,
    change: RegistryChange | None = None,
) -> tuple[Milestone, Change]:
    reason = v.reason(reason)
    if milestone.status == MilestoneStatus.WITHDRAWN:
        return milestone, "unchanged"
    written = customer_reason_json(customer_reason)
    assert milestone.id is not None
    milestone.status, milestone.revision = MilestoneStatus.WITHDRAWN, milestone.revision + 1
    milestone.changed_at, milestone.needs_plan = at, True
    session.add(milestone)
    change = change or begin_change(
        session, action="withdraw", summary=f"withdraw {describe(session, milestone)}", at=at, by=by
    )
    session.add(
        MilestoneChange(
            milestone_id=milestone.id,
            change_id=change.id,
            revision=milestone.revision,
            action="withdrawn",
            old_date=milestone.date,
            reason=reason,
            reason_code=reason_code,
            customer_reason=written,
            by=by,
            at=at,
        )
    )
    audit(session, at, "milestone.withdraw", f"milestone {milestone.id}", {"reason": reason}, by)
    inflight.cancel_in_flight(session, at=at, reason="withdrawn", milestone_id=milestone.id)
    return milestone, "updated"


def release_ended(
    release: Release | Any, milestones: Iterable[Milestone | Any], today: dt.date
) -> str | None:
    """The lifecycle phase a release is known to have ended (its latest past milestone, or the phase
    upstream marked ended without a date), or None while it is still supported. `release` needs only
    `.ended`, each milestone `.kind`, `.status` and `.date` (rows of those columns will do)."""
    order = [k.value for k in MilestoneKind]
    ended = [
        m.kind for m in milestones if m.status == MilestoneStatus.PLANNED and policy.is_history(m.date, today)
    ]
    if release.ended:
        ended.append(release.ended)
    return max(ended, key=order.index) if ended else None


# ---------------------------------------------------------------------------------------- customers


def upsert_customer(
    session: Session,
    *,
    key: str,
    name: str,
    timezone: str,
    locale: str,
    account_rep: str,
    at: dt.datetime,
    service_start: dt.date | None = None,
    service_end: dt.date | None = None,
    cores: int | None = None,
) -> tuple[Customer, Change]:
    key, name = v.customer_key(key), v.name(name)
    timezone, locale = v.timezone(timezone), v.locale(locale)
    account_rep = v.email(account_rep, "account_rep")
    cores = v.cores(cores)
    service_start = v.in_range(service_start, "service.start") if service_start else None
    service_end = v.in_range(service_end, "service.end") if service_end else None
    if service_start and service_end and service_end < service_start:
        raise InputError("service.end", f"{service_end} is before the service start {service_start}")
    values: dict[str, Any] = dict(
        name=name,
        timezone=timezone,
        locale=locale,
        account_rep=account_rep,
        service_start=service_start,
        service_end=service_end,
        cores=cores,
    )
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
        assert customer.id is not None
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


def upsert_contact(
    session: Session,
    *,
    customer: str | Customer,
    email: str,
    at: dt.datetime,
    name: str | None = None,
    force: bool | None = False,
    by: str | None = None,
) -> tuple[Contact, Change]:
    """Add a contact (or rename one). Adding an address that bounced again is refused unless `force`
    (someone confirmed it works): then the flag is cleared and the audit records who forced it.
    `force=None` (an import re-stating its contacts) leaves a bounced address flagged."""
    cust = customer if isinstance(customer, Customer) else get_customer(session, customer)
    email = v.email(email)
    name = v.name(name, "name") if name else None
    contact = session.exec(
        select(Contact).where(Contact.customer_id == cust.id, sa.func.lower(Contact.email) == email.lower())
    ).first()
    if contact is None:
        assert cust.id is not None
        contact = Contact(customer_id=cust.id, email=email, name=name, created_at=at)
        session.add(contact)
        session.flush()
        audit(session, at, "contact.add", cust.key, {"email": email}, by)
        return contact, "created"
    changed = False
    if contact.undeliverable and force is False:
        when = f" on {contact.undeliverable_at.date().isoformat()}" if contact.undeliverable_at else ""
        raise InputError(
            "email",
            f"{contact.email} bounced{when} ({contact.undeliverable_reason or 'undeliverable'}): "
            "add it again with --force (force) once you know it works",
        )
    if name and contact.name != name:
        contact.name, changed = name, True
    if contact.undeliverable and force:
        # The rep confirms the address works: email it again, and say who decided so.
        audit(
            session,
            at,
            "contact.revalidate",
            cust.key,
            {
                "email": contact.email,
                "forced": True,
                "bounce": contact.undeliverable_reason,
                "bounced_at": contact.undeliverable_at,
            },
            by,
        )
        contact.undeliverable, contact.undeliverable_reason, contact.undeliverable_at = False, None, None
        changed = True
    if changed:
        session.add(contact)
        return contact, "updated"
    return contact, "unchanged"


def contact_counts(session: Session, customer_ids) -> dict[int, tuple[int, int]]:
    """Customer id -> (contacts, undeliverable contacts), for the customers that have any."""
    return {
        cid: (total, bad or 0)
        for cid, total, bad in session.exec(
            select(
                col(Contact.customer_id),
                sa.func.count(col(Contact.id)),
                sa.func.sum(sa.case((col(Contact.undeliverable).is_(True), 1), else_=0)),
            )
            .where(col(Contact.customer_id).in_(customer_ids))
            .group_by(col(Contact.customer_id))
        ).all()
    }


def contact_rows(session: Session, customer: Customer) -> list[dict]:
    """A customer's contacts with their bounced state: the provider's reason and when it was reported."""
    return [
        {
            "email": c.email,
            "name": c.name,
            "bounced": c.undeliverable,
            "bounce_reason": c.undeliverable_reason,
            "bounced_at": c.undeliverable_at,
            "added_at": c.created_at,
        }
        for c in session.exec(
            select(Contact).where(Contact.customer_id == customer.id).order_by(sa.func.lower(Contact.email))
        )
    ]


def remove_contact(
    session: Session, *, customer: str | Customer, email: str, at: dt.datetime, by: str | None = None
) -> Contact:
    """Remove a contact: no more email to it. Past deliveries keep the address they went to; pending
    ones to it fail ("the contact was removed")."""
    from lifecycle.delivery import settle_notices
    from lifecycle.models import Delivery, DeliveryStatus, table_of

    cust = customer if isinstance(customer, Customer) else get_customer(session, customer)
    email = (email or "").strip()
    contact = session.exec(
        select(Contact).where(Contact.customer_id == cust.id, sa.func.lower(Contact.email) == email.lower())
    ).first()
    if contact is None:
        raise NotFound("email", f"customer {cust.key!r} has no contact {email!r}")
    D = table_of(Delivery)
    conn = session.connection()
    pending = (
        conn.execute(
            D.update()
            .where(D.c.contact_id == contact.id, D.c.status == DeliveryStatus.PENDING)
            .values(status=DeliveryStatus.FAILED, error="the contact was removed", updated_at=at)
            .returning(D.c.notice_id)
        )
        .scalars()
        .all()
    )
    conn.execute(D.update().where(D.c.contact_id == contact.id).values(contact_id=None))
    settle_notices(session, sorted(set(pending)))
    audit(
        session,
        at,
        "contact.remove",
        cust.key,
        {"email": contact.email, "bounced": contact.undeliverable},
        by,
    )
    session.delete(contact)
    session.flush()
    return contact


def ended_warning(session: Session, release: Release, at: dt.datetime) -> str | None:
    """A warning for someone recording a deployment of a release that has already ended."""
    return ended_warnings(session, [pk(release)], at).get(pk(release))


def ended_warnings(session: Session, release_ids, at: dt.datetime) -> dict[int, str | None]:
    """`ended_warning` for many releases at once (a bulk import): release id -> warning or None."""
    ids = sorted(set(release_ids))
    out: dict[int, str | None] = {}
    session.flush()  # what the ORM's queries would do first: the rows below are read on its connection
    for start in range(0, len(ids), 900):
        chunk = ids[start : start + 900]
        # Columns, not ORM objects: a fleet's import asks about thousands of releases at once.
        conn = session.connection()
        rows = conn.execute(
            sa.select(col(Release.id), col(Release.version), col(Release.ended), col(Product.slug))
            .join(Product, col(Product.id) == Release.product_id)
            .where(col(Release.id).in_(chunk))
        ).all()
        milestones: dict[int, list] = {}
        for m in conn.execute(
            sa.select(
                col(Milestone.release_id), col(Milestone.kind), col(Milestone.status), col(Milestone.date)
            ).where(col(Milestone.release_id).in_(chunk))
        ):
            if m.release_id is not None:
                milestones.setdefault(m.release_id, []).append(m)
        for release in rows:
            rid = release.id
            own = milestones.get(rid, [])
            ended = release_ended(release, own, at.date())
            if ended is None or (ended in ("end-of-sale", "end-of-full-support") and not release.ended):
                out[rid] = None  # still maintained: running it is ordinary
                continue
            dated = [m for m in own if m.kind == ended and m.status == MilestoneStatus.PLANNED]
            when = f"on {dated[0].date.isoformat()}" if dated else "(the date was not published)"
            out[rid] = (
                f"{release.slug} {release.version} has already reached {ended} {when}: that is "
                "history, and no notice will be sent about it"
            )
    return out


def add_deployment(
    session: Session,
    *,
    customer: str | Customer,
    product: str | Product,
    version: str,
    at: dt.datetime,
    cores: int | None = None,
) -> tuple[Deployment, Change]:
    cust = customer if isinstance(customer, Customer) else get_customer(session, customer)
    prod = product if isinstance(product, Product) else get_product(session, product)
    release = get_release(session, prod, v.version(version))
    cores = v.cores(cores)
    dep = session.exec(
        select(Deployment).where(Deployment.customer_id == cust.id, Deployment.release_id == release.id)
    ).first()
    change: Change
    if dep is None:
        assert cust.id is not None and release.id is not None
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


def remove_deployment(
    session: Session, *, customer: str, product: str, version: str, at: dt.datetime
) -> Deployment:
    cust = get_customer(session, customer)
    prod = get_product(session, product)
    release = get_release(session, prod, version)
    dep = session.exec(
        select(Deployment).where(
            Deployment.customer_id == cust.id,
            Deployment.release_id == release.id,
            col(Deployment.removed_at).is_(None),
        )
    ).first()
    if dep is None:
        raise NotFound("version", f"customer {cust.key!r} does not run {prod.slug} {release.version}")
    dep.removed_at = at
    session.add(dep)
    mark_dirty(session, release_ids=[release.id], product_ids=[prod.id])
    audit(session, at, "deployment.remove", f"{cust.key} {prod.slug} {release.version}")
    return dep


# ------------------------------------------------------------------------------------------ listings


LISTING_CHUNK = 900  # rows read per round trip by streamed listings (ids go in an IN list: under every limit)


def milestone_rows(session: Session, at: dt.datetime, **filters) -> list[dict]:
    """Every milestone with its history (`iter_milestone_rows`), in a list."""
    return list(iter_milestone_rows(session, at, **filters))


def milestone_key(row: dict) -> tuple:
    """The order of milestones within a product: natural version order (product-level ones last),
    lifecycle order of kinds."""
    return (
        version_key(row["version"] or ""),
        policy.LIFECYCLE_ORDER.index(row["kind"]),
        row["version"] or "",
        row["id"],
    )


def milestone_cursor(row: dict) -> list:
    return [row["product"], row["version"], row["kind"], row["id"]]


def iter_milestone_rows(
    session: Session,
    at: dt.datetime,
    *,
    product: str | None = None,
    status: str | None = None,
    ids: list[int] | None = None,
    after: list | None = None,
    chunk: int = LISTING_CHUNK,
) -> Iterator[dict]:
    """Every milestone with its history, in a stable order (product, natural version order, lifecycle
    order of kinds), read a chunk at a time: memory holds a chunk and one product's milestones.

    `past` marks history: milestones whose date is before `at` are shown but never notified.
    `product`, `status`, `ids` narrow the list; `after` (`milestone_cursor` of a row) resumes after
    that row."""
    q = (
        select(  # type: ignore[call-overload]
            col(Milestone.id),
            col(Product.slug),
            col(Release.version),
            col(Milestone.kind),
            col(Milestone.date),
            col(Milestone.status),
            col(Milestone.revision),
            col(Milestone.short_notice_reason),
            col(Release.ended),
        )
        .join(Product, col(Product.id) == Milestone.product_id)
        .join(Release, col(Release.id) == Milestone.release_id, isouter=True)
        .order_by(col(Product.slug), col(Milestone.id))
        .execution_options(yield_per=chunk)
    )
    if product is not None:
        q = q.where(Product.slug == product)
    if status is not None:
        q = q.where(Milestone.status == status)
    if ids is not None:
        q = q.where(col(Milestone.id).in_(ids))
    if after is not None:
        q = q.where(col(Product.slug) >= after[0])
        resume = (after[0], milestone_key({"version": after[1], "kind": after[2], "id": after[3]}))
    group: list[dict] = []

    def flush() -> Iterator[dict]:
        for row in sorted(group, key=milestone_key):
            if after is None or (row["product"], milestone_key(row)) > resume:
                yield row
        group.clear()

    with session.execute(q) as result:  # closed with the generator: a page stops early
        for part in result.partitions():
            history = _milestone_history(session, [r[0] for r in part])
            for mid, slug, version, kind, date, status_, revision, short, ended in part:
                if group and group[0]["product"] != slug:
                    yield from flush()
                group.append(
                    {
                        "id": mid,
                        "product": slug,
                        "version": version,
                        "kind": kind,
                        "date": date.isoformat(),
                        "status": status_,
                        "revision": revision,
                        "short_notice_reason": short,
                        "past": policy.is_history(date, at),
                        "release_ended": ended,
                        "history": history.get(mid, []),
                    }
                )
    yield from flush()


def _milestone_history(session: Session, ids: list[int]) -> dict[int, list[dict]]:
    history: dict[int, list[dict]] = {}
    for ch in session.exec(
        select(MilestoneChange)
        .where(col(MilestoneChange.milestone_id).in_(ids))
        .order_by(col(MilestoneChange.milestone_id), col(MilestoneChange.revision), col(MilestoneChange.id))
    ).all():
        history.setdefault(ch.milestone_id, []).append(
            {
                "revision": ch.revision,
                "action": ch.action,
                "old_date": ch.old_date.isoformat() if ch.old_date else None,
                "new_date": ch.new_date.isoformat() if ch.new_date else None,
                "reason": ch.reason,
                "reason_code": ch.reason_code,
                "customer_reason": json.loads(ch.customer_reason) if ch.customer_reason else None,
                "short_notice": ch.short_notice,
                "by": ch.by,
                "at": ch.at.isoformat(),
            }
        )
    return history


def release_rows(session: Session, at: dt.datetime, product: str | None = None) -> list[dict]:
    """Every release (of one product), newest version first per product, with whether it has ended."""
    q = select(Release, Product).join(Product, col(Product.id) == Release.product_id)
    if product:
        q = q.where(Product.id == get_product(session, product).id)
    rows = session.exec(q).all()
    milestones: dict[int | None, list[Milestone]] = {}
    for m in session.exec(select(Milestone).where(col(Milestone.release_id).in_([r.id for r, _ in rows]))):
        milestones.setdefault(m.release_id, []).append(m)
    out = []
    for r, p in sorted(rows, key=lambda rp: (rp[1].slug, version_key(rp[0].version)), reverse=False):
        ms = milestones.get(r.id, [])
        ended = release_ended(r, ms, at.date())
        dated = [m for m in ms if m.kind == ended and m.status == MilestoneStatus.PLANNED]
        out.append(
            {
                "product": p.slug,
                "version": r.version,
                "released": r.released.isoformat() if r.released else None,
                "upgrade_to": r.upgrade_to,
                "ended": ended,
                "ended_date": dated[0].date.isoformat() if dated else None,
                "ended_without_date": r.ended,
            }
        )
    return out


version_key = policy.version_key  # natural order for version strings: 1.9 < 1.10
