"""Thin tasks: ids in, plain functions of `lifecycle` out. JSON arguments only."""

from __future__ import annotations

import datetime as dt
import logging

from celery.signals import worker_ready

from lifecycle.config import get_settings
from tasks.application import app

log = logging.getLogger(__name__)


def _at(at: str | None) -> dt.datetime:
    from lifecycle import clock

    return dt.datetime.fromisoformat(at) if at else clock.now()  # simulated under `lifecycle serve --at`


TASK_CUSTOMERS = 50  # customers per `lifecycle.deliver` message: enough work to share among workers


def _in_process() -> bool:
    """The embedded default (the file-system broker, polled about once a second per consumer): the
    tick delivers in-process rather than through queued messages."""
    return str(app.conf.broker_url or "").startswith("filesystem")


def _now() -> dt.datetime:
    return _at(None)


@app.task(name="lifecycle.tick", ignore_result=True)
def tick(at: str | None = None) -> dict:
    """Plan and release what is due, then deliver it: in-process on the embedded default (draining
    while work remains), else by handing batches of customer ids to the workers."""
    from lifecycle.delivery import deliver_all
    from lifecycle.ticks import prepare, refresh_calendar_exports

    when = _at(at)
    # The calendar exports after the notices are on their way: a first tick, or the first of a day,
    # may render every customer's calendar (minutes for a large fleet).
    result = prepare(when, calendars=False)
    if _in_process():
        # Drain: deliver, then look again (as of now) while new work keeps falling due, a bounded
        # number of rounds; the next beat picks up the rest. Not bound by the broker's polling.
        for _ in range(10):
            if not result.customers:
                break
            result.deliver.add(deliver_all(when, result.customers, clock=None if at else _now))
            if at is not None:
                break
            when = max(when, _at(None))
            with _session() as session:
                from lifecycle.scheduler import customers_with_due_deliveries

                result.customers = customers_with_due_deliveries(session, when)
        refresh_calendar_exports(result)
        log.info("tick %s: %s", when.isoformat(), result.as_dict())
        return result.as_dict()
    # A message per batch of customers with something due, each claiming whichever customers are due
    # when it runs (`deliver_due`): any copy makes progress, so a lost or expired message costs
    # nothing, and a copy that finds nothing left returns at once. Copies older than a few ticks are
    # dropped unrun: newer ones are behind them in the queue.
    expires = max(get_settings().tick_seconds * 3, 5.0)
    for _ in range(0, len(result.customers), TASK_CUSTOMERS):
        deliver_due.apply_async((TASK_CUSTOMERS, when.isoformat()), expires=expires)
    refresh_calendar_exports(result)
    log.info("tick %s: %s", when.isoformat(), result.as_dict())
    return result.as_dict()


def _session():
    from lifecycle.db import session_scope

    return session_scope()


# A repeat is harmless (claims are conditional), so acknowledge late, and give the message back when
# the pool process running it dies (reject_on_worker_lost): another process takes it at once, and its
# delivery run sees the dead process's claim (lifecycle.liveness) and takes its deliveries back.
@app.task(name="lifecycle.deliver", acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def deliver(customer_ids: list[int], at: str | None = None) -> dict:
    """Deliver what is due for a batch of customers (lifecycle.delivery.deliver_all)."""
    from lifecycle.delivery import deliver_all

    # Deliver as of now, not as of the tick that queued us: a message that waited must not
    # record a send time in the past.
    when = max(_at(at), _at(None)) if at else _at(None)
    return deliver_all(when, [int(i) for i in customer_ids], clock=_now).as_dict()


@app.task(name="lifecycle.deliver_due", acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def deliver_due(limit: int = 100, at: str | None = None) -> dict:
    """Delivery runs over whichever customers are due, `limit` customers each, while some are left
    (for up to a minute): the messages still queued behind it then find nothing and return at once."""
    import time

    from lifecycle.delivery import DeliverResult
    from lifecycle.delivery import deliver_due as run

    result, started = DeliverResult(), time.monotonic()
    while time.monotonic() - started < 60:
        when = max(_at(at), _at(None)) if at else _at(None)
        done = run(when, customers=int(limit))
        result.add(done)
        if not done.claimed:
            break
    return result.as_dict()


@app.task(name="lifecycle.deliver_customer", acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def deliver_customer(customer_id: int, at: str | None = None) -> dict:
    """One customer (messages queued by an earlier version)."""
    return deliver([customer_id], at)


@worker_ready.connect
def resume_after_restart(sender=None, **_) -> None:
    """A worker that starts (perhaps replacing one that was killed mid-delivery) asks for a tick at
    once rather than at the next beat: the tick takes back the dead worker's claims and re-queues its
    customers. A tick too many is harmless."""
    tick.delay()
