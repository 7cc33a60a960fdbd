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


@app.task(name="lifecycle.tick", ignore_result=True)
def tick(at: str | None = None) -> dict:
    """Plan and release what is due, then hand each customer with due deliveries to a worker."""
    from lifecycle.ticks import prepare

    when = _at(at)
    result = prepare(when)
    # Every tick queues every customer with something due, so a lost message costs one tick at most.
    # Copies older than a few ticks are dropped unrun: newer ones are behind them in the queue, and
    # running them would only find nothing left to claim.
    expires = max(get_settings().tick_seconds * 3, 5.0)
    for customer_id in result.customers:
        deliver_customer.apply_async((customer_id, when.isoformat()), expires=expires)
    log.info("tick %s: %s", when.isoformat(), result.as_dict())
    return result.as_dict()


# A repeat is harmless (claims are conditional), so acknowledge late, and give the message back when
# the pool process running it dies (reject_on_worker_lost): another process takes it at once, and its
# recovery sees the dead process's claim (lifecycle.liveness) and takes its deliveries back.
@app.task(name="lifecycle.deliver_customer", acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def deliver_customer(customer_id: int, at: str | None = None) -> dict:
    from lifecycle.delivery import deliver_customer as deliver

    # Deliver as of now, not as of the tick that queued us: a message that waited must not
    # record a send time in the past.
    when = max(_at(at), _at(None)) if at else _at(None)
    return deliver(customer_id, when).as_dict()


@worker_ready.connect
def resume_after_restart(sender=None, **_) -> None:
    """A worker that starts (perhaps replacing one that was killed mid-delivery) asks for a tick at
    once rather than at the next beat: the tick takes back the dead worker's claims and re-queues its
    customers. A tick too many is harmless."""
    tick.delay()
