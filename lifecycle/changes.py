"""Registry change sets: what a change will do (preview), the changes still on hold, and undo.

A change set (`RegistryChange`) groups the milestone changes of one action: a CLI command, a web form,
an API call, an import. The notices it makes due at once (short notice, date changed, cancellation,
reinstated) wait until its `hold_until` (LIFECYCLE_CHANGE_HOLD, 10 minutes by default), so a slip can
be taken back before any customer sees it.

- `preview(at, apply)` runs the change and the real planner in a transaction that is always rolled
  back, and describes what would happen: the customers affected, the notices that would go at once
  (held until ...) and those planned, per stage and channel, short notice, history, agreements and
  escalations. Nothing is written.
- `undo(change_id, at)` reverts each milestone of a set to its state before the change, as a new
  revision (calendar clients only accept a higher SEQUENCE): a created milestone is deleted, a move is
  moved back, a withdrawal reinstated, a reinstatement withdrawn again. Since nothing was released in
  the hold, customers' knowledge equals the restored state and the planner sends nothing. Undo is
  refused after the hold, twice, when a milestone changed again since, or when something the change
  caused was already released.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter, defaultdict
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, select

from lifecycle import policy, registry, scheduler
from lifecycle.config import get_settings
from lifecycle.db import get_engine
from lifecycle.errors import InputError, NotFound
from lifecycle.models import (
    AGREED_STATUSES,
    Agreement,
    Customer,
    Deployment,
    Milestone,
    MilestoneChange,
    MilestoneStatus,
    Notice,
    NoticeKind,
    NoticeStatus,
    RegistryChange,
    Release,
    pk,
    table_of,
)
from lifecycle.policy import SkipReason

N = table_of(Notice)


def _utc(value: dt.datetime) -> dt.datetime:
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value


# ----------------------------------------------------------------------------------------------- listing


def list_changes(session: Session, at: dt.datetime, *, limit: int = 50) -> list[dict]:
    """The latest change sets, newest first, with whether they are still on hold (can be undone)."""
    changes = session.exec(select(RegistryChange).order_by(col(RegistryChange.id).desc()).limit(limit)).all()
    counts = (
        Counter(
            session.exec(
                select(MilestoneChange.change_id).where(
                    col(MilestoneChange.change_id).in_([c.id for c in changes])
                )
            ).all()
        )
        if changes
        else Counter()
    )
    return [
        {
            "id": c.id,
            "action": c.action,
            "summary": c.summary,
            "by": c.by,
            "at": _utc(c.at).isoformat(),
            "hold_until": _utc(c.hold_until).isoformat(),
            "milestones": counts.get(c.id, 0),
            "state": "undone"
            if c.undone_at
            else "applied"
            if c.action == "undo"
            else ("held" if at <= _utc(c.hold_until) else "released"),
            "undone_at": _utc(c.undone_at).isoformat() if c.undone_at else None,
            "undone_by": c.undone_by,
        }
        for c in changes
    ]


# -------------------------------------------------------------------------------------------------- undo


def undo(session: Session, change_id: int, *, at: dt.datetime, by: str | None = None) -> dict:
    """Revert a change set within its hold. The caller commits."""
    change = session.get(RegistryChange, change_id) if 0 < change_id < 2**31 else None
    if change is None:
        raise NotFound("change", f"no change #{change_id}")
    if change.action == "undo":
        raise InputError("change", f"change #{change_id} is an undo: make the change again instead")
    if change.undone_at is not None:
        raise InputError(
            "change",
            f"change #{change_id} was already undone on "
            f"{_utc(change.undone_at).isoformat(timespec='minutes')}",
        )
    hold_until = _utc(change.hold_until)
    if at > hold_until:
        raise InputError(
            "change",
            f"the hold of change #{change_id} ended at {hold_until.isoformat(timespec='minutes')}: "
            "its notices may have reached customers. Make a new change instead "
            "(move the milestone back, or withdraw or reinstate it).",
        )
    rows = session.exec(
        select(MilestoneChange)
        .where(MilestoneChange.change_id == change_id)
        .order_by(col(MilestoneChange.id).desc())
    ).all()
    milestones = (
        {
            m.id: m
            for m in session.exec(
                select(Milestone).where(col(Milestone.id).in_([ch.milestone_id for ch in rows]))
            )
        }
        if rows
        else {}
    )
    latest: dict[int, MilestoneChange] = {}
    for ch in rows:
        latest.setdefault(ch.milestone_id, ch)
    for mid, ch in latest.items():
        m = milestones[mid]
        if m.revision != ch.revision:
            raise InputError(
                "change",
                f"{registry.describe(session, m)} changed again since (now revision "
                f"{m.revision}): undo that change first",
            )
    told = (
        session.connection()
        .execute(
            sa.select(sa.func.count())
            .select_from(N)
            .where(
                N.c.milestone_id.in_(list(milestones)),
                N.c.released_at >= change.at,
                N.c.status.in_([NoticeStatus.RELEASED, NoticeStatus.SENT, NoticeStatus.FAILED]),
            )
        )
        .scalar_one()
        if milestones
        else 0
    )
    if told:
        raise InputError(
            "change",
            f"{told} notice(s) caused by change #{change_id} already went out: make a new change instead",
        )
    change.undone_at, change.undone_by = at, by
    session.add(change)
    session.flush()
    undo_set = registry.begin_change(
        session,
        action="undo",
        summary=f"undo #{change_id}: {change.summary}",
        at=at,
        by=by,
        hold=dt.timedelta(0),
    )
    reverted: list[dict[str, Any]] = []
    for ch in rows:  # newest first: a set that touched one milestone twice unwinds in order
        m = milestones[ch.milestone_id]
        label = registry.describe(session, m)
        if ch.action == "created":
            _delete_milestone(session, m)
            reverted.append({"milestone": label, "action": "deleted"})
            continue
        before = m.date
        if ch.action == "moved":
            assert ch.old_date is not None  # a move records the date it moved from
            m.date = ch.old_date
        elif ch.action == "withdrawn":
            m.status = MilestoneStatus.PLANNED
        elif ch.action == "reinstated":
            m.status, m.date = MilestoneStatus.WITHDRAWN, ch.old_date or m.date
        else:
            continue
        m.revision += 1
        m.changed_at, m.needs_plan = at, True
        m.short_notice_reason = _short_notice_reason(session, pk(m))
        session.add(m)
        session.add(
            MilestoneChange(
                milestone_id=pk(m),
                change_id=undo_set.id,
                revision=m.revision,
                action="undone",
                old_date=before,
                new_date=m.date,
                reason=f"undo of change #{change_id}",
                by=by,
                at=at,
            )
        )
        reverted.append(
            {
                "milestone": label,
                "action": f"{ch.action} undone",
                "date": m.date.isoformat(),
                "status": m.status,
                "revision": m.revision,
            }
        )
    registry.audit(session, at, "change.undo", f"change {change_id}", {"summary": change.summary}, by)
    return {"change": change_id, "summary": change.summary, "undo_change": undo_set.id, "reverted": reverted}


def _short_notice_reason(session: Session, milestone_id: int) -> str | None:
    """The short-notice reason of the change that set the date the milestone has again."""
    reason = None
    for ch, _ in registry.effective_changes(session, [milestone_id]):
        if ch.action in ("created", "moved", "reinstated"):
            reason = ch.reason if ch.short_notice else None
    return reason


def _delete_milestone(session: Session, milestone: Milestone) -> None:
    """A milestone whose creation is undone never existed: its unsent notices and history go too."""
    conn = session.connection()
    conn.execute(N.delete().where(N.c.milestone_id == milestone.id))
    conn.execute(table_of(MilestoneChange).delete().where(col(MilestoneChange.milestone_id) == milestone.id))
    session.delete(milestone)
    session.flush()
    # Re-plan the product's other milestones, which also re-renders its calendars without this one
    # (a product left with none is refreshed by the exports' daily check).
    conn.execute(
        sa.update(table_of(Milestone))
        .where(table_of(Milestone).c.product_id == milestone.product_id)
        .values(needs_plan=True)
    )


# ------------------------------------------------------------------------------------------------ preview


def preview(at: dt.datetime, apply: Callable[[Session], Any], *, url: str | None = None) -> dict:
    """What `apply` (a registry change) would do, planned by the real planner; nothing is written."""
    with Session(get_engine(url), expire_on_commit=False) as session:
        try:
            return _preview(session, at, apply)
        finally:
            session.rollback()


def _preview(session: Session, at: dt.datetime, apply: Callable[[Session], Any]) -> dict:
    dirty_before = set(session.exec(select(Milestone.id).where(col(Milestone.needs_plan).is_(True))).all())
    before = {row.id: row.status for row in session.connection().execute(sa.select(N.c.id, N.c.status))}
    last_set = session.exec(select(sa.func.max(RegistryChange.id))).one() or 0
    described = apply(session)
    session.flush()
    ids = (
        set(session.exec(select(Milestone.id).where(col(Milestone.needs_plan).is_(True))).all())
        - dirty_before
    )
    hold_until = at + get_settings().change_hold_delta
    sets = session.exec(select(RegistryChange).where(col(RegistryChange.id) > last_set)).all()
    if sets:  # the milestones the change touched, also those still waiting for the planner before it
        ids |= set(
            session.exec(
                select(MilestoneChange.milestone_id).where(
                    col(MilestoneChange.change_id).in_([c.id for c in sets])
                )
            ).all()
        )
    if sets:
        hold_until = max(_utc(c.hold_until) for c in sets)
    scheduler.plan(session, at)
    milestones = (
        {m.id: m for m in session.exec(select(Milestone).where(col(Milestone.id).in_(ids)))} if ids else {}
    )
    notices = (
        session.exec(
            select(Notice).where(col(Notice.milestone_id).in_(ids), Notice.audience == "customer")
        ).all()
        if ids
        else []
    )
    customers = (
        {
            c.id: c
            for c in session.exec(
                select(Customer).where(col(Customer.id).in_({n.customer_id for n in notices}))
            )
        }
        if notices
        else {}
    )
    from lifecycle.channels.fanout import planned

    recipients = planned(session, [pk(n) for n in notices if n.status == NoticeStatus.PLANNED])

    at_once: dict[tuple, set[int]] = defaultdict(set)
    later: dict[tuple, list] = defaultdict(list)
    cancelled: Counter = Counter()
    deliveries_now: Counter = Counter()
    deliveries_later: Counter = Counter()
    for n in notices:
        if n.status == NoticeStatus.PLANNED:
            label = (n.kind, n.slot if n.kind == NoticeKind.STAGE else None)
            channels = Counter(r["channel"] for r in recipients.get(pk(n), []))
            if _utc(n.due_at) <= hold_until:
                at_once[label].add(n.customer_id)
                deliveries_now.update(channels)
            else:
                later[label].append((_utc(n.due_at), n.customer_id))
                deliveries_later.update(channels)
        elif n.status == NoticeStatus.CANCELLED and before.get(n.id) == NoticeStatus.PLANNED:
            cancelled[n.status_reason or "cancelled"] += 1
    affected = _affected_customers(session, milestones.values())
    release_ids = {m.release_id for m in milestones.values() if m.release_id}
    agreements = (
        session.exec(
            select(Agreement, Customer, Release)
            .join(Customer, col(Customer.id) == Agreement.customer_id)
            .join(Release, col(Release.id) == Agreement.release_id)
            .where(
                col(Agreement.release_id).in_(release_ids),
                col(Agreement.status).in_([s.value for s in AGREED_STATUSES]),
            )
        ).all()
        if release_ids
        else []
    )
    agreed = {(a.customer_id, a.release_id) for a, _, _ in agreements}
    escalate = sorted(
        {
            customers[n.customer_id].key
            for n in notices
            if n.kind == NoticeKind.STAGE
            and n.slot == policy.ESCALATION_STAGE
            and n.status in (NoticeStatus.PLANNED, NoticeStatus.SKIPPED)
            and n.status_reason in (None, SkipReason.COVERED_BY_CHANGE, SkipReason.SUPERSEDED)
            and n.milestone_date == milestones[n.milestone_id].date
            and milestones[n.milestone_id].status == MilestoneStatus.PLANNED
            and n.release_id is not None
            and (n.customer_id, n.release_id) not in agreed
        }
    )
    return {
        "at": at.isoformat(),
        "change": described,
        "milestones": [_milestone_line(session, m, at) for m in milestones.values()],
        "affected_customers": {"count": len(affected), "customers": sorted(affected)},
        "at_once": {
            "held_until": hold_until.isoformat(),
            "notices": [
                {"kind": k, "stage": s, "customers": len(c)} for (k, s), c in sorted(at_once.items(), key=str)
            ],
            "deliveries": dict(deliveries_now),
        },
        "planned": [
            {
                "kind": k,
                "stage": s,
                "customers": len({c for _, c in rows}),
                "first_due": min(d for d, _ in rows).isoformat(),
                "last_due": max(d for d, _ in rows).isoformat(),
            }
            for (k, s), rows in sorted(later.items(), key=lambda kv: min(d for d, _ in kv[1]))
        ],
        "planned_deliveries": dict(deliveries_later),
        "cancelled": dict(cancelled),
        "agreements": [
            {"customer": c.key, "version": r.version, "status": a.status} for a, c, r in agreements
        ],
        "escalations": {"customers": escalate, "count": len(escalate)},
    }


def _affected_customers(session: Session, milestones) -> set[str]:
    out: set[str] = set()
    for m in milestones:
        q = (
            select(Customer.key)
            .join(Deployment, col(Deployment.customer_id) == Customer.id)
            .join(Release, col(Release.id) == Deployment.release_id)
            .where(col(Deployment.removed_at).is_(None))
        )
        q = (
            q.where(Release.id == m.release_id)
            if m.release_id
            else q.where(Release.product_id == m.product_id)
        )
        out.update(session.exec(q).all())
    return out


def _milestone_line(session: Session, m: Milestone, at: dt.datetime) -> dict:
    return {
        "milestone": registry.describe(session, m),
        "date": m.date.isoformat(),
        "status": m.status,
        "revision": m.revision,
        "short_notice": policy.is_short_notice(m.date, at),
        "history": policy.is_history(m.date, at),
    }


def preview_lines(p: dict) -> list[str]:
    """The preview for people, one line each."""
    out = ["Preview (nothing is written):"]
    for m in p["milestones"]:
        note = (
            " — history: recorded, never notified"
            if m["history"]
            else (" — short notice: less than 3 months away" if m["short_notice"] else "")
        )
        out.append(f"  {m['milestone']}: {m['status']} on {m['date']} (revision {m['revision']}){note}")
    aff = p["affected_customers"]
    out.append(
        f"  affected customers: {aff['count']}"
        + (
            f" ({', '.join(aff['customers'][:20])}" + (", …" if aff["count"] > 20 else "") + ")"
            if aff["count"]
            else ""
        )
    )
    now = p["at_once"]
    if now["notices"]:
        out.append(f"  at once, held until {now['held_until'][:16].replace('T', ' ')} UTC:")
        for n in now["notices"]:
            out.append(
                f"    {n['kind']}{' ' + n['stage'] if n['stage'] else ''}: {n['customers']} customer(s)"
            )
        out.append("    deliveries: " + ", ".join(f"{k} {v}" for k, v in sorted(now["deliveries"].items())))
    else:
        out.append("  nothing goes out at once")
    for n in p["planned"]:
        out.append(
            f"  planned {n['kind']}{' ' + n['stage'] if n['stage'] else ''}: {n['customers']} customer(s), "
            f"from {n['first_due'][:10]}"
            + (f" to {n['last_due'][:10]}" if n["last_due"][:10] != n["first_due"][:10] else "")
        )
    if p["cancelled"]:
        out.append("  cancelled: " + ", ".join(f"{v} ({k})" for k, v in sorted(p["cancelled"].items())))
    if p["agreements"]:
        out.append(
            "  agreements (routine reminders stay stopped): "
            + ", ".join(f"{a['customer']} {a['version']} {a['status']}" for a in p["agreements"])
        )
    if p["escalations"]["count"]:
        out.append(
            f"  escalations to reps at the 1-month stage without an agreement: {p['escalations']['count']} "
            f"({', '.join(p['escalations']['customers'][:20])})"
        )
    return out
