"""The agreements report: per customer and release with an upcoming milestone, who has agreed to what.

One data function (`agreement_rows`) feeds the CLI (`lifecycle report agreements`), the API and the
rep dashboard, so they always agree. Risk is the rep's traffic light, computed by one rule
(`policy.risk`) with its reasons: red when every contact bounced, the plan is at risk or there is no
agreement within a month; amber with no agreement within 3 months; green otherwise. Each row also
carries the latest feedback, who recorded the agreement, and the escalation work item of its
milestone (if any).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Generator, Iterable, Iterator
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, select

from lifecycle import paging, policy, registry
from lifecycle.models import (
    Agreement,
    AgreementStatus,
    Contact,
    Customer,
    Deployment,
    Escalation,
    Milestone,
    MilestoneStatus,
    Product,
    Release,
    pk,
)
from lifecycle.registry import version_key

RISKS = ("red", "amber", "green")
CSV_COLUMNS = (
    "customer",
    "customer_name",
    "rep",
    "product",
    "version",
    "milestone",
    "milestone_date",
    "days_left",
    "agreement",
    "target",
    "planned_date",
    "at_risk",
    "by",
    "recorded_by",
    "agreed_at",
    "channel",
    "feedback",
    "cores",
    "contacts",
    "bounced",
    "risk",
    "risk_reason",
    "escalation",
    "escalation_state",
    "escalation_owner",
)


def _rep_matches(column, rep: str):
    return sa.func.lower(column) == rep.strip().lower()


CHUNK = 900  # deployments read per round trip (their ids go in IN lists: under every database's limit)


def agreement_rows(
    session: Session,
    *,
    at: dt.datetime,
    rep: str | None = None,
    customer_id: int | None = None,
    product: str | None = None,
) -> list[dict]:
    """Every row of `iter_agreement_rows`, in a list (the dashboard)."""
    return list(iter_agreement_rows(session, at=at, rep=rep, customer_id=customer_id, product=product))


def row_key(row: dict) -> tuple:
    """The report's order: days left, customer, product, natural version order."""
    return (
        row["milestone_date"],
        row["customer"],
        row["product"],
        version_key(row["version"]),
        row["version"],
    )


def cursor(row: dict) -> list:
    """The sort key of a row, as `iter_agreement_rows(after=...)` takes it."""
    return [row["milestone_date"], row["customer"], row["product"], row["version"]]


def iter_agreement_rows(
    session: Session,
    *,
    at: dt.datetime,
    rep: str | None = None,
    customer_id: int | None = None,
    product: str | None = None,
    after: list | None = None,
    chunk: int = CHUNK,
) -> Iterator[dict]:
    """One row per (customer, deployed release) whose next planned milestone is on or after `at`'s date,
    sorted by days left (then customer, product, version). `rep` limits to that rep's customers,
    `customer_id` to one customer, `product` to one product; `after` (a row's `cursor`) resumes after
    that row. Read a chunk of deployments at a time, ordered by the database (the next milestone's date
    is a subquery), so memory holds a chunk whatever the fleet."""
    today = at.date()
    nxt = (
        sa.select(sa.func.min(Milestone.date))
        .where(
            col(Milestone.status) == MilestoneStatus.PLANNED,
            col(Milestone.date) >= today,
            sa.or_(
                col(Milestone.release_id) == Deployment.release_id,
                sa.and_(col(Milestone.release_id).is_(None), col(Milestone.product_id) == Release.product_id),
            ),
        )
        .scalar_subquery()
    )
    inner: Any = (
        sa.select(
            col(Deployment.cores).label("cores"),
            col(Customer.id).label("customer_id"),
            col(Customer.key).label("customer_key"),
            col(Customer.name).label("customer_name"),
            col(Customer.account_rep).label("rep"),
            col(Customer.timezone).label("timezone"),
            col(Release.id).label("release_id"),
            col(Release.version).label("version"),
            col(Release.upgrade_to).label("upgrade_to"),
            col(Product.id).label("product_id"),
            col(Product.slug).label("product_slug"),
            col(Product.name).label("product_name"),
            nxt.label("next_date"),
        )
        .join(Customer, col(Customer.id) == Deployment.customer_id)
        .join(Release, col(Release.id) == Deployment.release_id)
        .join(Product, col(Product.id) == Release.product_id)
        .where(col(Deployment.removed_at).is_(None))
    )
    if rep:
        inner = inner.where(_rep_matches(Customer.account_rep, rep))
    if customer_id is not None:
        inner = inner.where(col(Customer.id) == customer_id)
    if product:
        inner = inner.where(col(Product.slug) == product)
    d = inner.subquery()
    q = (
        sa.select(d)
        .where(d.c.next_date.is_not(None))
        .order_by(d.c.next_date, d.c.customer_key, d.c.product_slug, d.c.release_id)
        .execution_options(yield_per=chunk)
    )
    if after is not None:
        # the rows of the cursor's (date, customer, product) come again; those up to it are skipped
        q = q.where(
            paging.after([d.c.next_date, d.c.customer_key, d.c.product_slug], after[:3], inclusive=True)
        )
        resume = (after[0], after[1], after[2], version_key(after[3]), after[3])
    group: list[dict] = []

    def flush() -> Iterator[dict]:
        for row in sorted(group, key=row_key):
            if after is None or row_key(row) > resume:
                yield row
        group.clear()

    with session.execute(q) as result:  # closed with the generator: a page stops early
        for part in result.partitions():
            for row in _chunk_rows(session, at, part):
                if group and row_key(group[0])[:3] != row_key(row)[:3]:
                    yield from flush()
                group.append(row)
    yield from flush()


def only(rows: Iterable[dict], *, risk: str | None = None, agreement: str | None = None) -> Iterator[dict]:
    """The rows of this risk and agreement status (a generator stays one: it is closed with the rows)."""
    try:
        for row in rows:
            if (risk is None or row["risk"] == risk) and (agreement is None or row["agreement"] == agreement):
                yield row
    finally:
        if isinstance(rows, Generator):
            rows.close()


def _chunk_rows(session: Session, at: dt.datetime, deployments) -> list[dict]:
    """The rows of a chunk of deployments (each with its next milestone's date), in the chunk's order."""
    today = at.date()
    release_ids = {r.release_id for r in deployments}
    product_ids = {r.product_id for r in deployments}
    milestones = session.exec(
        select(Milestone).where(
            Milestone.status == MilestoneStatus.PLANNED,
            Milestone.date >= today,
            sa.or_(
                col(Milestone.release_id).in_(release_ids),
                sa.and_(col(Milestone.release_id).is_(None), col(Milestone.product_id).in_(product_ids)),
            ),
        )
    ).all()
    by_release: dict[int, list[Milestone]] = {}
    by_product: dict[int, list[Milestone]] = {}
    for m in milestones:
        if m.release_id is None:
            by_product.setdefault(m.product_id, []).append(m)
        else:
            by_release.setdefault(m.release_id, []).append(m)
    customer_ids = {r.customer_id for r in deployments}
    agreements = {
        (a.customer_id, a.release_id): a
        for a in session.exec(
            select(Agreement).where(
                col(Agreement.customer_id).in_(customer_ids), col(Agreement.release_id).in_(release_ids)
            )
        ).all()
    }
    contacts = registry.contact_counts(session, customer_ids)
    work = {
        (e.customer_id, e.milestone_id): e
        for e in session.exec(
            select(Escalation)
            .where(col(Escalation.customer_id).in_(customer_ids))
            .order_by(col(Escalation.id))
        )
    }
    rows: list[dict[str, Any]] = []
    for dep in deployments:
        candidates = by_release.get(dep.release_id, []) + by_product.get(dep.product_id, [])
        nxt = min(candidates, key=lambda m: (m.date, m.kind))
        agr = agreements.get((dep.customer_id, dep.release_id))
        status = agr.status if agr else AgreementStatus.NONE.value
        target, planned = (agr.target_version, agr.planned_date) if agr else (None, None)
        total, bounced = contacts.get(dep.customer_id, (0, 0))
        light = policy.risk(
            status=status,
            target=target,
            planned_date=planned,
            milestone_date=nxt.date,
            today=policy.local_date(at, dep.timezone),
            contacts=total,
            bounced=bounced,
        )
        item = work.get((dep.customer_id, pk(nxt)))
        rows.append(
            {
                "customer": dep.customer_key,
                "customer_name": dep.customer_name,
                "customer_id": dep.customer_id,
                "rep": dep.rep,
                "product": dep.product_slug,
                "product_name": dep.product_name,
                "version": dep.version,
                "release_id": dep.release_id,
                "upgrade_to": dep.upgrade_to,
                "milestone_id": nxt.id,
                "milestone": nxt.kind,
                "milestone_date": nxt.date,
                "days_left": policy.days_left(nxt.date, today),
                "agreement": status,
                "target": target,
                "planned_date": planned,
                "at_risk": policy.plan_at_risk(status, target, planned, nxt.date),
                "by": agr.by if agr else None,
                "recorded_by": agr.recorded_by if agr else None,
                "agreed_at": agr.at if agr else None,
                "channel": agr.channel if agr else None,
                "feedback": agr.feedback if agr else None,
                "cores": dep.cores,
                "contacts": total,
                "bounced": bounced,
                "risk": light.colour,
                "risk_reason": light.reason,
                "escalation": item.id if item else None,
                "escalation_state": item.state if item else None,
                "escalation_owner": item.owner if item else None,
            }
        )
    return rows


def _cell(value):
    """A CSV cell a spreadsheet shows as text: dates in ISO, and text that a spreadsheet would run
    as a formula (= + - @ tab CR at the start: names come from customers) prefixed with a quote."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def rows_to_csv(rows: list[dict]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for r in rows:
        writer.writerow([_cell(r[c]) for c in CSV_COLUMNS])
    return out.getvalue()


def jsonable(rows: list[dict]) -> list[dict]:
    return [{k: (val.isoformat() if isinstance(val, dt.date) else val) for k, val in r.items()} for r in rows]


def undeliverable_contacts(
    session: Session, *, rep: str | None = None, customer_id: int | None = None
) -> list[dict]:
    """Contacts flagged undeliverable (a bounce or drop) of a rep's customers, with the provider's reason
    and when it was reported."""
    q = (
        select(Contact, Customer)
        .join(Customer, col(Customer.id) == Contact.customer_id)
        .where(col(Contact.undeliverable).is_(True))
        .order_by(Customer.key, Contact.email)
    )
    if rep:
        q = q.where(_rep_matches(Customer.account_rep, rep))
    if customer_id is not None:
        q = q.where(Customer.id == customer_id)
    return [
        {
            "customer": c.key,
            "customer_name": c.name,
            "email": ct.email,
            "name": ct.name,
            "reason": ct.undeliverable_reason,
            "since": ct.undeliverable_at,
        }
        for ct, c in session.exec(q).all()
    ]
