"""One scheduler tick: recover stale claims, plan, release what is due, keep the escalation work items
in step, deliver.

`prepare(at)` does the database part in one transaction under the planner lock and returns the
customers with something to deliver; `tick(at)` then delivers them synchronously, a batch of customers
per delivery run (lifecycle.delivery.deliver_due), while the Celery tick task hands batches of customer
ids to workers instead (or, on the embedded default, delivers them in-process). Either way the database is the truth:
whatever a lost broker message did not deliver is found again by the next tick.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa

from lifecycle import escalations, policy, scheduler
from lifecycle.db import session_scope
from lifecycle.delivery import DeliverResult, deliver_all
from lifecycle.models import (
    Customer,
    Delivery,
    DeliveryStatus,
    Escalation,
    EscalationState,
    Milestone,
    Notice,
    NoticeStatus,
    table_of,
)

log = logging.getLogger(__name__)


@dataclass
class TickResult:
    at: dt.datetime
    plan: scheduler.PlanResult = field(default_factory=scheduler.PlanResult)
    release: scheduler.ReleaseResult = field(default_factory=scheduler.ReleaseResult)
    deliver: DeliverResult = field(default_factory=DeliverResult)
    customers: list[int] = field(default_factory=list)
    exports_refreshed: int = 0  # calendar export files rewritten
    exports_rendered: int = 0  # calendar export files rendered (rewritten or found unchanged)
    work_items: dict = field(default_factory=dict)  # escalation work items created and resolved

    def as_dict(self) -> dict:
        return {
            "at": self.at.isoformat(),
            "plan": self.plan.as_dict(),
            "release": self.release.as_dict(),
            "deliver": self.deliver.as_dict(),
            "customers": len(self.customers),
            "exports_refreshed": self.exports_refreshed,
            "exports_rendered": self.exports_rendered,
            "work_items": self.work_items,
        }


def prepare(at: dt.datetime, *, calendars: bool = True) -> TickResult:
    """The database part of a tick; then, unless `calendars` is False (the caller refreshes them after
    delivering: notices first), the calendar exports."""
    result = TickResult(at=at)
    with session_scope() as session:
        result.release.recovered = scheduler.recover_stale(session, at)
        result.plan = scheduler.plan(session, at)
        recovered = result.release.recovered
        result.release = scheduler.release_due(session, at)
        result.release.recovered = recovered
        result.work_items = escalations.sync(session, at)
        result.customers = scheduler.customers_with_due_deliveries(session, at)
    if calendars:
        refresh_calendar_exports(result)
    return result


def refresh_calendar_exports(result: TickResult) -> None:
    """Bring the static calendar exports up to date: the calendars of the products and customers the
    re-planned milestones concern (all of them when the planner does not say which), and on the first
    tick of a new UTC day every calendar, when milestones that just passed lose their alarms and ack
    links. Only calendars whose inputs changed are rendered (see `lifecycle.calendar.exports`). A tick
    that re-planned nothing on the same day costs one small file read."""
    from lifecycle.calendar import exports

    changed = result.plan.milestones > 0
    try:
        if not changed and not exports.day_changed(result.at):
            return
        milestone_ids = getattr(result.plan, "milestone_ids", None) if changed else ()
        with session_scope() as session:
            refresh = exports.refresh_exports(session, at=result.at, milestone_ids=milestone_ids)
    except OSError as exc:
        log.warning("calendar exports not refreshed: %s", exc)
        return
    result.exports_rendered, result.exports_refreshed = refresh.rendered, len(refresh.written)


def tick(at: dt.datetime) -> TickResult:
    """Plan and deliver everything due by `at`, synchronously. Idempotent."""
    result = prepare(at, calendars=False)
    result.deliver.add(deliver_all(at, result.customers))
    refresh_calendar_exports(result)  # after the notices: a first tick may render every customer's calendar
    return result


def quiet_until(session, at: dt.datetime) -> dt.datetime | None:
    """After a tick at `at`: the earliest instant at which another tick could find anything to do, judged
    from the database (None when it cannot be said: milestones to plan, sends in flight or unsettled,
    deliveries already due). Errs early: a tick at the instant returned may still find nothing.

    Every time-driven step of a tick is bounded here:
    - release: the next planned notice's due instant (late ticks, catch-up and agreements are judged
      there too);
    - escalations from stages already skipped (covered by a change notice): the next skipped notice
      falling due;
    - delivery: the next pending delivery's attempt;
    - work items resolved because their milestone passed: the first midnight after an open item's
      milestone date in its customer's timezone;
    - calendar exports (history moves at the UTC day): the next UTC midnight.
    Everything else a tick does follows a write to the database, which the caller watches for."""
    N, D, E, M = table_of(Notice), table_of(Delivery), table_of(Escalation), table_of(Milestone)
    conn = session.connection()

    def first(q):
        return conn.execute(q.limit(1)).first() is not None

    if first(sa.select(M.c.id).where(M.c.needs_plan.is_(True))) or first(
        sa.select(D.c.id).where(D.c.status.in_([DeliveryStatus.SENDING, DeliveryStatus.UNKNOWN]))
    ):
        return None
    day = at.astimezone(dt.UTC).date() + dt.timedelta(days=1)
    bounds = [dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)]
    for q in (
        sa.select(sa.func.min(N.c.due_at)).where(N.c.status == NoticeStatus.PLANNED),
        sa.select(sa.func.min(N.c.due_at)).where(N.c.status == NoticeStatus.SKIPPED, N.c.due_at > at),
        sa.select(sa.func.min(D.c.next_attempt_at)).where(D.c.status == DeliveryStatus.PENDING),
    ):
        value = conn.execute(q).scalar()
        if value is not None:
            bounds.append(scheduler._aware(value))
    # Open work items are few (sync resolves them): the first local midnight after each one's milestone.
    C = table_of(Customer)
    for day, tz in conn.execute(
        sa.select(M.c.date, C.c.timezone)
        .join(E, E.c.milestone_id == M.c.id)
        .join(C, C.c.id == E.c.customer_id)
        .where(E.c.state != EscalationState.RESOLVED)
        .distinct()
    ):
        if isinstance(day, str):
            day = dt.date.fromisoformat(day)
        bounds.append(policy.local_instant(day + dt.timedelta(days=1), tz, hour=0))
    until = min(bounds)
    return until if until > at else None


def remember(at: dt.datetime, result: TickResult) -> None:
    """After a CLI tick on a SQLite file: write down until when nothing can be due (`lifecycle.idle`), so
    that the next `lifecycle tick` with nothing due answers without opening the database. The database
    files are looked at before and after the question; a write by anyone in between leaves no note."""
    from lifecycle import idle
    from lifecycle.config import get_settings
    from lifecycle.db import dispose_engines

    settings = get_settings()
    db = idle.database_file(settings.database_url)
    if db is None:
        return
    state_dir = Path(settings.state_dir)
    try:
        dispose_engines()  # SQLite checkpoints its log when the last connection closes: now, not at exit
        before = idle.settled_snapshot(db)
        with session_scope() as session:
            until = quiet_until(session, at)
        dispose_engines()
        if until is None or idle.snapshot(db) != before:
            idle.forget(state_dir, db)
            return
        shape = TickResult(at=at).as_dict()
        idle.write_note(state_dir, db, at=at, until=until, files=before, shape=shape)
    except OSError as exc:
        log.warning("idle note not written: %s", exc)
