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
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, select

from lifecycle import policy, registry
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


def agreement_rows(
    session: Session,
    *,
    at: dt.datetime,
    rep: str | None = None,
    customer_id: int | None = None,
    product: str | None = None,
) -> list[dict]:
    """One row per (customer, deployed release) whose next planned milestone is on or after `at`'s date,
    sorted by days left. `rep` limits to that rep's customers, `customer_id` to one customer."""
    today = at.date()
    q = (
        select(Deployment, Customer, Release, Product)
        .join(Customer, col(Customer.id) == Deployment.customer_id)
        .join(Release, col(Release.id) == Deployment.release_id)
        .join(Product, col(Product.id) == Release.product_id)
        .where(col(Deployment.removed_at).is_(None))
    )
    if rep:
        q = q.where(_rep_matches(Customer.account_rep, rep))
    if customer_id is not None:
        q = q.where(Customer.id == customer_id)
    if product:
        q = q.where(Product.slug == product)
    deployments = session.exec(q).all()
    if not deployments:
        return []
    release_ids = {r.id for _, _, r, _ in deployments}
    product_ids = {p.id for _, _, _, p in deployments}
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
    customer_ids = {c.id for _, c, _, _ in deployments}
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
    for dep, cust, rel, prod in deployments:
        candidates = by_release.get(pk(rel), []) + by_product.get(pk(prod), [])
        if not candidates:
            continue
        nxt = min(candidates, key=lambda m: (m.date, m.kind))
        agr = agreements.get((pk(cust), pk(rel)))
        status = agr.status if agr else AgreementStatus.NONE.value
        target, planned = (agr.target_version, agr.planned_date) if agr else (None, None)
        total, bounced = contacts.get(pk(cust), (0, 0))
        light = policy.risk(
            status=status,
            target=target,
            planned_date=planned,
            milestone_date=nxt.date,
            today=policy.local_date(at, cust.timezone),
            contacts=total,
            bounced=bounced,
        )
        item = work.get((pk(cust), pk(nxt)))
        rows.append(
            {
                "customer": cust.key,
                "customer_name": cust.name,
                "customer_id": cust.id,
                "rep": cust.account_rep,
                "product": prod.slug,
                "product_name": prod.name,
                "version": rel.version,
                "release_id": rel.id,
                "upgrade_to": rel.upgrade_to,
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
    rows.sort(key=lambda r: (r["days_left"], r["customer"], r["product"], version_key(r["version"])))
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
