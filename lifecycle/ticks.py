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

from lifecycle import escalations, scheduler
from lifecycle.db import session_scope
from lifecycle.delivery import DeliverResult, deliver_all

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


def prepare(at: dt.datetime) -> TickResult:
    result = TickResult(at=at)
    with session_scope() as session:
        result.release.recovered = scheduler.recover_stale(session, at)
        result.plan = scheduler.plan(session, at)
        recovered = result.release.recovered
        result.release = scheduler.release_due(session, at)
        result.release.recovered = recovered
        result.work_items = escalations.sync(session, at)
        result.customers = scheduler.customers_with_due_deliveries(session, at)
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
    result = prepare(at)
    result.deliver.add(deliver_all(at, result.customers))
    return result
