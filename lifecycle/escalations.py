"""Escalations as work items: a customer without an agreement at the 1-month stage of a milestone.

The scheduler sends the escalation notice (`scheduler.release_due`); `sync` turns each into a work
item owned by the account rep (one unresolved item per customer and milestone: an escalation for a
moved date joins the open one) and resolves the items whose reason has gone:

- `agreement`: the customer agreed (an at-risk plan does not count: `policy.counts_as_agreed`);
- `withdrawn`: the milestone was withdrawn;
- `moved`: the milestone moved beyond its 1-month stage;
- `not-affected`: the customer no longer runs the release;
- `passed`: the milestone's date has passed.

A rep moves an item open -> in progress -> resolved (`set_state`) and adds notes. Every read shows
the milestone's current date: the due date is read from the milestone, never copied.
`sync` runs at every tick and whenever an agreement is recorded; set-based statements only.
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlmodel import Session, col, select

from lifecycle import paging, policy, registry
from lifecycle import validation as v
from lifecycle.errors import InputError, NotFound
from lifecycle.models import (
    Agreement,
    Customer,
    Deployment,
    Escalation,
    EscalationNote,
    EscalationState,
    Milestone,
    MilestoneStatus,
    Notice,
    NoticeKind,
    Product,
    Release,
    pk,
    table_of,
)

STATES = tuple(s.value for s in EscalationState)
# What a rep may do to an item: forward, or reopen.
TRANSITIONS = {
    EscalationState.OPEN: {EscalationState.IN_PROGRESS, EscalationState.RESOLVED},
    EscalationState.IN_PROGRESS: {EscalationState.OPEN, EscalationState.RESOLVED},
    EscalationState.RESOLVED: {EscalationState.OPEN},
}
STATE_LABELS = {"open": "open", "in-progress": "in progress", "resolved": "resolved"}
RESOLUTION_LABELS = {
    "agreement": "an agreement arrived",
    "withdrawn": "the milestone was withdrawn",
    "moved": "the milestone moved beyond its 1-month stage",
    "not-affected": "the customer no longer runs the release",
    "passed": "the milestone date has passed",
    "rep": "resolved by the rep",
}
E, N, M = table_of(Escalation), table_of(Notice), table_of(Milestone)


def agreed_now(A=table_of(Agreement), milestone_date=M.c.date):
    """SQL: the current agreement counts as agreed for a milestone on `milestone_date`
    (`policy.counts_as_agreed`)."""
    return sa.or_(
        A.c.status.in_(["acknowledged", "completed"]),
        sa.and_(
            A.c.status == "planned",
            A.c.target_version.is_not(None),
            A.c.planned_date.is_not(None),
            A.c.planned_date <= milestone_date,
        ),
    )


def sync(session: Session, at: dt.datetime, *, customer_id: int | None = None) -> dict[str, int]:
    """Create the work items of new escalation notices and resolve the ones whose reason has gone.
    Returns counts {"created": n, <resolution>: n}."""
    session.flush()  # pending ORM rows (a new agreement, a notice) take part in the set-based statements
    conn = session.connection()
    counts: dict[str, int] = {}
    C = table_of(Customer)
    mine = (lambda q, col: q.where(col == customer_id)) if customer_id is not None else (lambda q, col: q)
    # 1. New escalation notices without an item, unless an unresolved one for the milestone exists.
    open_for = sa.exists().where(
        E.c.customer_id == N.c.customer_id,
        E.c.milestone_id == N.c.milestone_id,
        E.c.state != EscalationState.RESOLVED,
    )
    has_item = sa.exists().where(E.c.notice_id == N.c.id)
    source = mine(
        sa.select(
            N.c.id,
            N.c.customer_id,
            N.c.milestone_id,
            N.c.release_id,
            C.c.account_rep,
            sa.literal(EscalationState.OPEN.value),
            sa.literal(_naive(at), sa.DateTime),
            sa.literal(_naive(at), sa.DateTime),
        )
        .join(C, C.c.id == N.c.customer_id)
        .where(
            # A literal, not a parameter: the partial index ix_notice_escalation is planned only for it.
            N.c.kind == sa.literal(NoticeKind.ESCALATION.value, literal_execute=True),
            N.c.milestone_id.is_not(None),
            N.c.release_id.is_not(None),
            ~has_item,
            ~open_for,
        ),
        N.c.customer_id,
    )
    # One notice per customer and milestone at a time: the newest (a moved date's) wins.
    rows = conn.execute(source.order_by(N.c.id.desc())).all()
    seen, fresh = set(), []
    for r in rows:
        if (r[1], r[2]) not in seen:
            seen.add((r[1], r[2]))
            fresh.append(r)
    if fresh:
        conn.execute(
            E.insert(),
            [
                {
                    "notice_id": r[0],
                    "customer_id": r[1],
                    "milestone_id": r[2],
                    "release_id": r[3],
                    "owner": r[4].lower(),
                    "state": r[5],
                    "created_at": at,
                    "updated_at": at,
                }
                for r in fresh
            ],
        )
        counts["created"] = len(fresh)
    # 2. Resolve what no longer needs work, first reason first.
    A, Dep = table_of(Agreement), table_of(Deployment)
    unresolved = E.c.state != EscalationState.RESOLVED
    if customer_id is not None:
        unresolved = sa.and_(unresolved, E.c.customer_id == customer_id)
    milestone = sa.select(M.c.id).where(M.c.id == E.c.milestone_id)
    agreed = sa.exists().where(
        A.c.customer_id == E.c.customer_id,
        A.c.release_id == E.c.release_id,
        M.c.id == E.c.milestone_id,
        agreed_now(A, M.c.date),
    )
    withdrawn = sa.exists(milestone.where(M.c.status == MilestoneStatus.WITHDRAWN))
    running = sa.exists().where(
        Dep.c.customer_id == E.c.customer_id, Dep.c.release_id == E.c.release_id, Dep.c.removed_at.is_(None)
    )
    for name, cond in [("agreement", agreed), ("withdrawn", withdrawn), ("not-affected", ~running)]:
        n = (
            conn.execute(
                E.update()
                .where(unresolved, cond)
                .values(state=EscalationState.RESOLVED, resolution=name, resolved_at=at, updated_at=at)
            ).rowcount
            or 0
        )
        if n:
            counts[name] = n
    # Passed, or moved beyond the 1-month stage, on the customer's own calendar. Calendar months are
    # not SQL arithmetic: SQL only leaves out the dates for which neither can be true anywhere on
    # earth (a vendor's fleet holds thousands of unresolved items between the two, every tick), and
    # each (date, time zone) pair is judged once.
    last_passed, first_moved = _candidate_window(at)
    by_reason: dict[str, list[int]] = {}
    verdicts: dict[tuple[dt.date, str], str | None] = {}
    for eid, day, tz in conn.execute(
        sa.select(E.c.id, M.c.date, C.c.timezone)
        .join(M, M.c.id == E.c.milestone_id)
        .join(C, C.c.id == E.c.customer_id)
        .where(unresolved, sa.or_(M.c.date <= last_passed, M.c.date >= first_moved))
    ).all():
        if (day, tz) not in verdicts:
            verdicts[(day, tz)] = _gone(day, tz, at)
        verdict = verdicts[(day, tz)]
        if verdict is not None:
            by_reason.setdefault(verdict, []).append(eid)
    for name, ids in by_reason.items():
        conn.execute(
            E.update()
            .where(E.c.id.in_(ids), unresolved)
            .values(state=EscalationState.RESOLVED, resolution=name, resolved_at=at, updated_at=at)
        )
        counts[name] = len(ids)
    return counts


def _gone(day: dt.date, tz: str, at: dt.datetime) -> str | None:
    """ "passed" when a milestone on `day` is history for a customer in `tz` at `at`, "moved" when its
    1-month stage is still ahead there, None while the escalation still stands."""
    today = policy.local_date(at, tz)
    if day < today:
        return "passed"
    if today < policy.stage_date(day, policy.ESCALATION_STAGE):
        return "moved"
    return None


def _candidate_window(at: dt.datetime) -> tuple[dt.date, dt.date]:
    """(last, first): `_gone` can only be true for a date <= last or >= first, in any time zone. A
    local date is within a day of the UTC date, and a stage of m months and w weeks lies at least
    28m + 7w days before its milestone."""
    utc_date = at.astimezone(dt.UTC).date()
    stage = policy.parse_stage(policy.ESCALATION_STAGE)
    shortest = dt.timedelta(days=28 * stage.months + 7 * stage.weeks)
    return utc_date, utc_date - dt.timedelta(days=1) + shortest


def _naive(at: dt.datetime) -> dt.datetime:
    return at.astimezone(dt.UTC).replace(tzinfo=None)


def rows(
    session: Session,
    *,
    at: dt.datetime,
    rep: str | None = None,
    customer_id: int | None = None,
    state: str | None = None,
    ids: list[int] | None = None,
    after: list | None = None,
    limit: int | None = None,
) -> list[dict]:
    """Work items for a rep's customers: open first, then in progress, then resolved; soonest due
    first. Each with the milestone's current date (its due date), days left and its notes.
    A page: `limit` items after `after` (the `cursor` of an item), in the database's order."""
    rank = sa.case({s: i for i, s in enumerate(STATES)}, value=Escalation.state, else_=len(STATES))
    # sqlmodel's select() accepts any number of entities, but its overloads stop at four
    q = (
        select(Escalation, Customer, Milestone, Release, Product)  # type: ignore[call-overload]
        .join(Customer, Customer.id == Escalation.customer_id)
        .join(Milestone, Milestone.id == Escalation.milestone_id)
        .join(Release, Release.id == Escalation.release_id)
        .join(Product, Product.id == Release.product_id)
    )
    if rep:
        q = q.where(sa.func.lower(Customer.account_rep) == rep.strip().lower())
    if customer_id is not None:
        q = q.where(Escalation.customer_id == customer_id)
    if state:
        q = q.where(Escalation.state == state)
    if ids is not None:
        q = q.where(col(Escalation.id).in_(ids))
    if after is not None:
        q = q.where(paging.after([rank, Milestone.date, Customer.key, Escalation.id], after))
    if limit is not None:
        q = q.order_by(rank, Milestone.date, Customer.key, Escalation.id).limit(limit)
    found = session.exec(q).all()
    notes: dict[int, list[dict]] = {}
    if found:
        for note in session.exec(
            select(EscalationNote)
            .where(col(EscalationNote.escalation_id).in_([e.id for e, *_ in found]))
            .order_by(col(EscalationNote.at), col(EscalationNote.id))
        ):
            notes.setdefault(note.escalation_id, []).append({"text": note.text, "by": note.by, "at": note.at})
    order = {s: i for i, s in enumerate(STATES)}
    out = []
    for e, c, m, r, p in found:
        withdrawn = m.status == MilestoneStatus.WITHDRAWN
        out.append(
            {
                "id": e.id,
                "state": e.state,
                "state_label": STATE_LABELS.get(e.state, e.state),
                "owner": e.owner,
                "customer": c.key,
                "customer_name": c.name,
                "product": p.slug,
                "product_name": p.name,
                "version": r.version,
                "milestone": m.kind,
                "due_date": m.date,
                "milestone_withdrawn": withdrawn,
                "days_left": policy.days_left(m.date, policy.local_date(at, c.timezone)),
                "resolution": e.resolution,
                "resolution_label": RESOLUTION_LABELS.get(e.resolution or "", ""),
                "resolved_at": e.resolved_at,
                "created_at": e.created_at,
                "updated_at": e.updated_at,
                "notes": notes.get(e.id, []),
            }
        )
    if limit is None:  # a page keeps the database's order, which its cursor continues
        out.sort(key=lambda x: (order.get(x["state"], len(STATES)), x["due_date"], x["customer"], x["id"]))
    return out


def cursor(item: dict) -> list:
    """The sort key of an item, as `rows(after=...)` takes it."""
    return [STATES.index(item["state"]), item["due_date"], item["customer"], item["id"]]


def get(session: Session, escalation_id: int) -> Escalation:
    found = session.get(Escalation, escalation_id) if v.valid_id(escalation_id) else None
    if found is None:
        raise NotFound("escalation", f"no escalation {escalation_id}")
    return found


def update(
    session: Session,
    escalation: Escalation,
    *,
    at: dt.datetime,
    by: str | None,
    state: str | None = None,
    note: str | None = None,
) -> Escalation:
    """A rep's work on an item: a new state (`TRANSITIONS`) and/or a note."""
    note = v.text(note, "note", max_length=5000)
    if state is None and note is None:
        raise InputError("state", "give a new state or a note")
    if state is not None and state != escalation.state:
        if state not in STATES:
            raise InputError("state", f"unknown state {state!r} (use one of {', '.join(STATES)})")
        if state not in TRANSITIONS[EscalationState(escalation.state)]:
            raise InputError("state", f"an escalation that is {escalation.state} cannot become {state}")
        escalation.state = state
        escalation.resolution = "rep" if state == EscalationState.RESOLVED else None
        escalation.resolved_at = at if state == EscalationState.RESOLVED else None
        registry.audit(session, at, "escalation.state", f"escalation {escalation.id}", {"state": state}, by)
    if note is not None:
        session.add(EscalationNote(escalation_id=pk(escalation), text=note, by=by, at=at))
        registry.audit(session, at, "escalation.note", f"escalation {escalation.id}", None, by)
    escalation.updated_at = at
    session.add(escalation)
    session.flush()
    return escalation


def jsonable(items: list[dict]) -> list[dict]:
    def conv(val):
        if isinstance(val, dt.date):
            return val.isoformat()
        if isinstance(val, list):
            return [conv(x) for x in val]
        if isinstance(val, dict):
            return {k: conv(x) for k, x in val.items()}
        return val

    return [conv(i) for i in items]
