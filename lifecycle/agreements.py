"""Upgrade agreements: per customer and release, with full history.

Once a customer has acknowledged, planned or completed an upgrade for a release, routine reminders for
that release stop (the scheduler checks `AGREED_STATUSES`); change and cancellation notices still go.
Every new agreement or decline tells the account rep (a rep notice of kind `agreement`).

One rule for every channel (portal, acknowledgement link, API, CLI): a plan can be recorded only while
the customer runs the release and the release still has a milestone that is not withdrawn (`closed`).
Recording exactly what is already recorded changes nothing and adds no history (a replayed form).
"""

from __future__ import annotations

import datetime as dt

from sqlmodel import Session, select

from lifecycle import inflight, registry
from lifecycle import validation as v
from lifecycle.errors import InputError
from lifecycle.models import (
    Agreement,
    AgreementChange,
    Customer,
    Deployment,
    Milestone,
    MilestoneStatus,
    Notice,
    NoticeKind,
    NoticeStatus,
    Release,
)

CHANNELS = ("cli", "web", "api", "phone", "email-link", "import")

# Why a plan cannot be recorded, in the words the customer reads (portal and acknowledgement page).
NOT_RUN = "You do not run this release."
ALL_WITHDRAWN = ("Every lifecycle milestone of this release has been withdrawn: "
                 "there is no upgrade plan to record.")


def closed(session: Session, customer: Customer, release: Release) -> str | None:
    """Why `customer` can no longer record an upgrade plan for `release` (`NOT_RUN`, `ALL_WITHDRAWN`), or
    None while they can: their deployment is removed, or every milestone that applies to the release
    (its own and its product's) is withdrawn. A release with no milestones yet stays open."""
    if not session.exec(select(Deployment.id).where(
            Deployment.customer_id == customer.id, Deployment.release_id == release.id,
            Deployment.removed_at.is_(None))).first():
        return NOT_RUN
    statuses = set(session.exec(select(Milestone.status).where(
        Milestone.product_id == release.product_id,
        (Milestone.release_id == release.id) | Milestone.release_id.is_(None))).all())
    if statuses == {MilestoneStatus.WITHDRAWN}:
        return ALL_WITHDRAWN
    return None


def record(session: Session, **kwargs) -> Agreement:
    """Record an upgrade plan (see `save`); the agreement as it now stands."""
    return save(session, **kwargs)[0]


def save(
    session: Session, *, customer: Customer, release: Release, status: str, at: dt.datetime,
    target_version: str | None = None, planned_date: dt.date | None = None, by: str | None = None,
    feedback: str | None = None, channel: str = "cli",
) -> tuple[Agreement, bool]:
    """(agreement, whether anything changed). The same status, target, date and feedback as already
    recorded change nothing: no history row, no audit event, no notice to the rep."""
    status = v.agreement_status(status)
    reason = closed(session, customer, release)
    if reason == NOT_RUN:
        raise InputError("version", f"customer {customer.key!r} does not run release {release.version!r}")
    if reason == ALL_WITHDRAWN:
        raise InputError("version", f"every milestone of release {release.version!r} is withdrawn: there is no "
                                    "upgrade plan to record")
    if channel not in CHANNELS:
        raise InputError("channel", f"unknown channel {channel!r}")
    if target_version:
        target_version = v.version(target_version, "target")
        if not session.exec(select(Release.id).where(Release.product_id == release.product_id,
                                                      Release.version == target_version)).first():
            raise InputError("target", f"no release {target_version!r} of this product")
        if target_version == release.version:
            raise InputError("target", "the target version is the release itself")
    if by:
        by = v.name(by, "by", max_length=254)
    feedback = v.text(feedback, "feedback")
    if planned_date is not None:
        planned_date = v.in_range(planned_date, "planned_date")
        if status == "planned" and planned_date < at.date():
            raise InputError("planned_date", f"{planned_date.isoformat()} is in the past: a planned upgrade needs "
                                             "a date from today on")
    agreement = session.exec(
        select(Agreement).where(Agreement.customer_id == customer.id, Agreement.release_id == release.id)
    ).first()
    previous = agreement.status if agreement else None
    if agreement is not None and (agreement.status, agreement.target_version, agreement.planned_date,
                                  agreement.feedback) == (status, target_version, planned_date, feedback):
        return agreement, False
    if agreement is None:
        agreement = Agreement(customer_id=customer.id, release_id=release.id)
    agreement.status, agreement.target_version, agreement.planned_date = status, target_version, planned_date
    agreement.by, agreement.channel, agreement.feedback, agreement.at = by, channel, feedback, at
    session.add(agreement)
    session.flush()
    session.add(AgreementChange(agreement_id=agreement.id, status=status, target_version=target_version,
                                planned_date=planned_date, by=by, channel=channel, feedback=feedback, at=at))
    registry.audit(session, at, "agreement.record", f"{customer.key} release {release.id}",
                   {"status": status, "target": target_version, "planned_date": planned_date,
                    "channel": channel}, by)
    if status != previous:
        _tell_rep(session, customer, release, agreement, at)
    inflight.cancel_in_flight(session, at=at, reason="agreement", customer_id=customer.id, release_id=release.id)
    return agreement, True


def _tell_rep(session: Session, customer: Customer, release: Release, agreement: Agreement,
              at: dt.datetime) -> None:
    """A rep notice, delivered by the scheduler like every other notice."""
    change_no = len(session.exec(select(AgreementChange.id).where(
        AgreementChange.agreement_id == agreement.id)).all())
    session.add(Notice(
        key=f"agreement:{customer.id}:r{release.id}:{change_no}", customer_id=customer.id,
        release_id=release.id, kind=NoticeKind.AGREEMENT, audience="rep", slot=str(change_no),
        due_at=at, status=NoticeStatus.PLANNED, detail=agreement.status, created_at=at,
    ))


def record_cli(session: Session, *, customer_key: str, product: str, version: str, status: str,
               at: dt.datetime, **kwargs) -> Agreement:
    customer = registry.get_customer(session, customer_key)
    prod = registry.get_product(session, product)
    release = registry.get_release(session, prod, version)
    return record(session, customer=customer, release=release, status=status, at=at, **kwargs)


def history(session: Session, agreement_id: int) -> list[AgreementChange]:
    return list(session.exec(select(AgreementChange).where(AgreementChange.agreement_id == agreement_id)
                             .order_by(AgreementChange.at, AgreementChange.id)).all())
