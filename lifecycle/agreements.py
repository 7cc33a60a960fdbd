"""Upgrade agreements: per customer and release, with full history.

One rule for every channel (portal, acknowledgement link, API, CLI, the rep's form):

- a plan can be recorded only while the customer runs the release and the release still has a
  milestone that is not withdrawn (`closed`);
- a valid plan (`policy.plan_problem`): `planned` needs a target and a date from today on; a target
  is a later release of the same product that has not itself ended on the planned date. A refused
  plan raises `PlanError`, whose text pages translate for the customer;
- a plan dated after the milestone is accepted but at risk (`policy.plan_at_risk`): it does not stop
  reminders or escalation (the scheduler's `agreed_at_due` is the same rule in SQL), and the rep's
  digest says so.

Every change (status, target, date or feedback) tells the account rep: a rep notice of kind
`agreement` per change, delivered in the rep's daily digest. Recording exactly what is already
recorded changes nothing and adds no history (a replayed form). `completed` means the deployment
moved: `move_deployment` records the new one.
"""

from __future__ import annotations

import datetime as dt

from sqlmodel import Session, col, select

from lifecycle import inflight, policy, registry, reps
from lifecycle import validation as v
from lifecycle.errors import InputError
from lifecycle.i18n import N_
from lifecycle.models import (
    Agreement,
    AgreementChange,
    Customer,
    Deployment,
    Milestone,
    MilestoneKind,
    MilestoneStatus,
    Notice,
    NoticeKind,
    NoticeStatus,
    Product,
    Release,
    pk,
)

CHANNELS = ("cli", "web", "api", "phone", "email-link", "import")

# Why a plan cannot be recorded, in the words the customer reads (portal and acknowledgement page).
NOT_RUN = N_("You do not run this release.")
ALL_WITHDRAWN = N_(
    "Every lifecycle milestone of this release has been withdrawn: there is no upgrade plan to record."
)


class PlanError(InputError):
    """A plan that cannot work (`policy.PlanProblem`); `text`/`values` let a page translate it."""

    def __init__(self, problem: policy.PlanProblem, values: dict):
        self.problem, self.values = problem, values
        self.text = policy.PLAN_TEXTS[problem]
        super().__init__(policy.PLAN_FIELDS[problem], self.text.format(**values))


def closed(session: Session, customer: Customer, release: Release) -> str | None:
    """Why `customer` can no longer record an upgrade plan for `release` (`NOT_RUN`, `ALL_WITHDRAWN`), or
    None while they can: their deployment is removed, or every milestone that applies to the release
    (its own and its product's) is withdrawn. A release with no milestones yet stays open."""
    if not session.exec(
        select(Deployment.id).where(
            Deployment.customer_id == customer.id,
            Deployment.release_id == release.id,
            col(Deployment.removed_at).is_(None),
        )
    ).first():
        return NOT_RUN
    statuses = set(
        session.exec(
            select(Milestone.status).where(
                Milestone.product_id == release.product_id,
                (col(Milestone.release_id) == release.id) | col(Milestone.release_id).is_(None),
            )
        ).all()
    )
    if statuses == {MilestoneStatus.WITHDRAWN}:
        return ALL_WITHDRAWN
    return None


def targets(session: Session, product_id: int) -> dict[str, policy.Target]:
    """Every release of a product as an upgrade target, with the day it ends: its end of life (its
    own, else the product's), or ended without a date."""
    releases = session.exec(select(Release).where(Release.product_id == product_id)).all()
    eol = {
        m.release_id: m.date
        for m in session.exec(
            select(Milestone).where(
                Milestone.product_id == product_id,
                Milestone.kind == MilestoneKind.END_OF_LIFE,
                Milestone.status == MilestoneStatus.PLANNED,
            )
        )
    }
    product_end = eol.get(None)
    return {
        r.version: policy.Target(r.version, eol.get(r.id, product_end), r.ended == MilestoneKind.END_OF_LIFE)
        for r in releases
    }


def target_choices(session: Session, release: Release, today: dt.date) -> list[policy.Target]:
    """What a picker offers: later releases not ended today, newest first, with their end dates."""
    return policy.valid_targets(release.version, targets(session, release.product_id), today)


def next_milestone(session: Session, release: Release, today: dt.date) -> Milestone | None:
    """The release's next milestone (its own or its product's) not withdrawn and not past."""
    return session.exec(
        select(Milestone)
        .where(
            Milestone.product_id == release.product_id,
            (col(Milestone.release_id) == release.id) | col(Milestone.release_id).is_(None),
            Milestone.status == MilestoneStatus.PLANNED,
            Milestone.date >= today,
        )
        .order_by(col(Milestone.date), col(Milestone.kind))
    ).first()


def check(
    session: Session,
    release: Release,
    status: str,
    target: str | None,
    planned_date: dt.date | None,
    today: dt.date,
) -> None:
    """Raise `PlanError` for a plan that cannot work (`policy.plan_problem`)."""
    problem = policy.plan_problem(
        status, release.version, target, planned_date, today, targets(session, release.product_id)
    )
    if problem is not None:
        raise PlanError(*problem)


def record(session: Session, **kwargs) -> Agreement:
    """Record an upgrade plan (see `save`); the agreement as it now stands."""
    return save(session, **kwargs)[0]


def save(
    session: Session,
    *,
    customer: Customer,
    release: Release,
    status: str,
    at: dt.datetime,
    target_version: str | None = None,
    planned_date: dt.date | None = None,
    by: str | None = None,
    feedback: str | None = None,
    channel: str = "cli",
    recorded_by: str | None = None,
) -> tuple[Agreement, bool]:
    """(agreement, whether anything changed). The same status, target and date as recorded, and no
    new feedback, change nothing: no history row, no audit event, no notice to the rep. Feedback
    stays on the agreement until newer feedback replaces it."""
    status = v.agreement_status(status)
    reason = closed(session, customer, release)
    if reason == NOT_RUN:
        raise InputError("version", f"customer {customer.key!r} does not run release {release.version!r}")
    if reason == ALL_WITHDRAWN:
        raise InputError(
            "version",
            f"every milestone of release {release.version!r} is withdrawn: there is no "
            "upgrade plan to record",
        )
    if channel not in CHANNELS:
        raise InputError("channel", f"unknown channel {channel!r}")
    target_version = v.version(target_version, "target") if target_version else None
    if by:
        by = v.name(by, "by", max_length=254)
    if recorded_by:
        recorded_by = v.name(recorded_by, "recorded_by", max_length=254)
    feedback = v.text(feedback, "feedback")
    if planned_date is not None:
        planned_date = v.in_range(planned_date, "planned_date")
    check(session, release, status, target_version, planned_date, policy.local_date(at, customer.timezone))
    agreement = session.exec(
        select(Agreement).where(Agreement.customer_id == customer.id, Agreement.release_id == release.id)
    ).first()
    if (
        agreement is not None
        and (agreement.status, agreement.target_version, agreement.planned_date)
        == (status, target_version, planned_date)
        and feedback in (None, agreement.feedback)
    ):
        return agreement, False
    if agreement is None:
        agreement = Agreement(customer_id=pk(customer), release_id=pk(release))
    agreement.status, agreement.target_version, agreement.planned_date = status, target_version, planned_date
    agreement.by, agreement.channel, agreement.at = by, channel, at
    agreement.recorded_by = recorded_by or by
    if feedback is not None:
        agreement.feedback = feedback
    session.add(agreement)
    session.flush()
    change = AgreementChange(
        agreement_id=pk(agreement),
        status=status,
        target_version=target_version,
        planned_date=planned_date,
        by=by,
        channel=channel,
        feedback=feedback,
        recorded_by=agreement.recorded_by,
        at=at,
    )
    session.add(change)
    session.flush()
    registry.audit(
        session,
        at,
        "agreement.record",
        f"{customer.key} release {release.id}",
        {
            "status": status,
            "target": target_version,
            "planned_date": planned_date,
            "channel": channel,
            "feedback": bool(feedback),
        },
        recorded_by or by,
    )
    _tell_rep(session, customer, release, change, at)
    from lifecycle import escalations

    escalations.sync(session, at, customer_id=customer.id)
    inflight.cancel_in_flight(
        session, at=at, reason="agreement", customer_id=customer.id, release_id=release.id
    )
    return agreement, True


def _tell_rep(
    session: Session, customer: Customer, release: Release, change: AgreementChange, at: dt.datetime
) -> None:
    """A rep notice for one agreement change, due in the rep's next daily digest (`reps.digest_due`);
    the scheduler delivers it like every other notice. The slot names the change it reports."""
    session.add(
        Notice(
            key=policy.notice_key(NoticeKind.AGREEMENT, pk(customer), None, f"r{release.id}:{change.id}"),
            customer_id=pk(customer),
            release_id=release.id,
            kind=NoticeKind.AGREEMENT,
            audience="rep",
            slot=str(change.id),
            due_at=reps.digest_due(session, customer.account_rep, at),
            status=NoticeStatus.PLANNED,
            detail=change.status,
            created_at=at,
        )
    )


def move_deployment(
    session: Session,
    *,
    customer: Customer,
    release: Release,
    target_version: str,
    at: dt.datetime,
    by: str | None = None,
) -> Deployment:
    """A completed upgrade: the customer now runs `target_version` instead of `release` (same cores)."""
    product = session.get_one(Product, release.product_id)
    target = registry.get_release(session, product, v.version(target_version, "target"), field="target")
    if policy.version_key(target.version) <= policy.version_key(release.version):
        raise InputError("target", f"{target.version} is not a later release than {release.version}")
    old = session.exec(
        select(Deployment).where(
            Deployment.customer_id == customer.id,
            Deployment.release_id == release.id,
            col(Deployment.removed_at).is_(None),
        )
    ).first()
    if old is None:
        raise InputError(
            "version", f"customer {customer.key!r} does not run {product.slug} {release.version}"
        )
    dep, _ = registry.add_deployment(
        session, customer=customer, product=product, version=target.version, cores=old.cores, at=at
    )
    registry.remove_deployment(
        session, customer=customer.key, product=product.slug, version=release.version, at=at
    )
    registry.audit(
        session,
        at,
        "deployment.move",
        f"{customer.key} {product.slug} {release.version}",
        {"to": target.version},
        by,
    )
    return dep


def record_cli(
    session: Session, *, customer_key: str, product: str, version: str, status: str, at: dt.datetime, **kwargs
) -> Agreement:
    customer = registry.get_customer(session, customer_key)
    prod = registry.get_product(session, product)
    release = registry.get_release(session, prod, version)
    return record(session, customer=customer, release=release, status=status, at=at, **kwargs)


def history(session: Session, agreement_id: int) -> list[AgreementChange]:
    return list(
        session.exec(
            select(AgreementChange)
            .where(AgreementChange.agreement_id == agreement_id)
            .order_by(col(AgreementChange.at), col(AgreementChange.id))
        ).all()
    )
