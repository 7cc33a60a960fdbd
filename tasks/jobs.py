"""Thin tasks: ids in, plain functions of `lifecycle` out. JSON arguments only."""

from __future__ import annotations

import datetime as dt
import logging

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
    for customer_id in result.customers:
        deliver_customer.delay(customer_id, when.isoformat())
    log.info("tick %s: %s", when.isoformat(), result.as_dict())
    return result.as_dict()


# A repeat is harmless (claims are conditional), so acknowledge late: a worker killed mid-task
# leaves the message for another worker, and the stale-claim recovery covers the rest.
@app.task(name="lifecycle.deliver_customer", acks_late=True, ignore_result=True)
def deliver_customer(customer_id: int, at: str | None = None) -> dict:
    from lifecycle.delivery import deliver_customer as deliver

    # Deliver as of now, not as of the tick that queued us: a message that waited must not
    # record a send time in the past.
    when = max(_at(at), _at(None)) if at else _at(None)
    return deliver(customer_id, when).as_dict()
