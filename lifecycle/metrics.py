"""Prometheus metrics, read from the database at scrape time (`GET /metrics`).

A custom collector rather than counters kept in memory: the web process, the Celery workers and the
CLI all write to the database, so whichever process is scraped tells the same truth, and several
processes need no shared state. Every query is an aggregate (a row per kind, stage, channel and
status), and the lag histogram covers a recent window only (`LAG_WINDOW`), bucketed in SQL.

Labels carry no customer data: only notice kind, stage, channel and status, whose values come from
fixed lists (a change notice's revision is not a label: its stage label is empty). What may still be
sensitive is the size of the fleet; set LIFECYCLE_METRICS_TOKEN to require a bearer token.

Metrics:
- `lifecycle_notices{kind,stage,status}` (gauge): notices per state: planned, released, sent, failed,
  skipped, cancelled.
- `lifecycle_deliveries{channel,status}` (gauge): deliveries per channel and state.
- `lifecycle_deliveries_sent_total{channel,kind,stage}` (counter): deliveries a provider accepted (or the
  portal delivered): `rate()` gives deliveries/s; by kind and stage, the notices sent through each channel.
- `lifecycle_delivery_failures_total{channel,status}` (counter): deliveries failed for good or bounced.
- `lifecycle_delivery_lag_seconds{channel}` (gauge histogram, over the last `LAG_WINDOW`): `sent_at`
  minus the notice's due instant, for deliveries sent in the window.
- `lifecycle_oldest_undelivered_due_seconds` (gauge): how long the oldest notice that is due and not yet
  delivered (planned or released) has been due; 0 when none. The "promise at risk" signal.
- `lifecycle_undelivered_due_notices` (gauge): how many such notices there are.
- `lifecycle_metrics_database_up` (gauge): 1 when the database answered this scrape.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Iterator

import sqlalchemy as sa

from lifecycle.models import Delivery, DeliveryStatus, Notice, NoticeStatus, table_of

log = logging.getLogger(__name__)

N, D = table_of(Notice), table_of(Delivery)
LAG_WINDOW = dt.timedelta(hours=24)
# Seconds: a minute, 5 and 15 minutes, an hour, 4 hours, a day, 3 days, a week.
LAG_BUCKETS = (60.0, 300.0, 900.0, 3600.0, 14400.0, 86400.0, 259200.0, 604800.0)
UNDELIVERED = (NoticeStatus.PLANNED.value, NoticeStatus.RELEASED.value)
FAILURES = (DeliveryStatus.FAILED.value, DeliveryStatus.BOUNCED.value)


def _stage(table) -> sa.ColumnElement:
    """A stage reminder's stage ("3m"); empty for other kinds (their slot is a revision: unbounded)."""
    return sa.case((table.c.kind == "stage", table.c.slot), else_="")


def _seconds_between(dialect: str, later, earlier) -> sa.ColumnElement:
    if dialect == "sqlite":
        return (sa.func.julianday(later) - sa.func.julianday(earlier)) * 86400.0
    return sa.extract("epoch", later - earlier)


def snapshot(conn: sa.Connection, at: dt.datetime) -> dict:
    """Everything /metrics shows, as plain data (also what the tests read)."""
    stage = _stage(N)
    notices = [
        tuple(r)
        for r in conn.execute(
            sa.select(N.c.kind, stage, N.c.status, sa.func.count()).group_by(N.c.kind, stage, N.c.status)
        )
    ]
    deliveries = [
        tuple(r)
        for r in conn.execute(
            sa.select(D.c.channel, D.c.status, sa.func.count()).group_by(D.c.channel, D.c.status)
        )
    ]
    sent = [
        tuple(r)
        for r in conn.execute(
            sa.select(D.c.channel, N.c.kind, stage, sa.func.count())
            .join(N, N.c.id == D.c.notice_id)
            .where(D.c.sent_at.is_not(None))  # sent once: stays counted if it bounces later
            .group_by(D.c.channel, N.c.kind, stage)
        )
    ]
    failures = [
        tuple(r)
        for r in conn.execute(
            sa.select(D.c.channel, D.c.status, sa.func.count())
            .where(D.c.status.in_(FAILURES))
            .group_by(D.c.channel, D.c.status)
        )
    ]

    lag = _seconds_between(conn.dialect.name, D.c.sent_at, N.c.due_at)
    cols = [D.c.channel, sa.func.count(), sa.func.sum(lag)]
    cols += [sa.func.sum(sa.case((lag <= bound, 1), else_=0)) for bound in LAG_BUCKETS]
    histogram = {}
    for row in conn.execute(
        sa.select(*cols)
        .join(N, N.c.id == D.c.notice_id)
        .where(D.c.sent_at.is_not(None), D.c.sent_at > at - LAG_WINDOW, D.c.sent_at <= at)
        .group_by(D.c.channel)
    ):
        channel, count, total, *buckets = row
        histogram[channel] = {
            "count": int(count),
            "sum": float(total or 0.0),
            "buckets": [(bound, int(n or 0)) for bound, n in zip(LAG_BUCKETS, buckets, strict=True)],
        }

    oldest, waiting = conn.execute(
        sa.select(sa.func.min(N.c.due_at), sa.func.count()).where(
            N.c.status.in_(UNDELIVERED), N.c.due_at <= at
        )
    ).one()
    if isinstance(oldest, str):  # an aggregate's datetime may come back as SQLite's text
        oldest = dt.datetime.fromisoformat(oldest)
    if oldest is not None and oldest.tzinfo is None:
        oldest = oldest.replace(tzinfo=dt.UTC)  # stored as naive UTC
    age = max((at - oldest).total_seconds(), 0.0) if oldest is not None else 0.0
    return {
        "notices": notices,
        "deliveries": deliveries,
        "sent": sent,
        "failures": failures,
        "lag": histogram,
        "oldest_undelivered_due_seconds": age,
        "undelivered_due_notices": int(waiting),
    }


class DatabaseCollector:
    """A prometheus_client collector: each scrape reads the database once (see the module's doc)."""

    def __init__(self, engine: Callable[[], sa.Engine], clock: Callable[[], dt.datetime]):
        self.engine, self.clock = engine, clock

    def describe(self):
        return []  # no metrics at registration: the first scrape reads the database

    def collect(self) -> Iterator:
        from prometheus_client.core import CounterMetricFamily, GaugeHistogramMetricFamily, GaugeMetricFamily

        up = GaugeMetricFamily("lifecycle_metrics_database_up", "1 when the database answered this scrape.")
        try:
            with self.engine().connect() as conn:
                data = snapshot(conn, self.clock())
        except Exception as exc:  # noqa: BLE001 - a scrape reports the outage, it does not fail
            log.warning("metrics: the database did not answer: %s", exc)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up

        notices = GaugeMetricFamily(
            "lifecycle_notices", "Notices per kind, stage and state.", labels=["kind", "stage", "status"]
        )
        for kind, stage, status, count in data["notices"]:
            notices.add_metric([kind, stage or "", status], count)
        yield notices

        deliveries = GaugeMetricFamily(
            "lifecycle_deliveries", "Deliveries per channel and state.", labels=["channel", "status"]
        )
        for channel, status, count in data["deliveries"]:
            deliveries.add_metric([channel, status], count)
        yield deliveries

        sent = CounterMetricFamily(
            "lifecycle_deliveries_sent",
            "Deliveries a provider accepted or the portal delivered, per channel, notice kind and stage.",
            labels=["channel", "kind", "stage"],
        )
        for channel, kind, stage, count in data["sent"]:
            sent.add_metric([channel, kind, stage or ""], count)
        yield sent

        failures = CounterMetricFamily(
            "lifecycle_delivery_failures",
            "Deliveries failed for good or bounced.",
            labels=["channel", "status"],
        )
        for channel, status, count in data["failures"]:
            failures.add_metric([channel, status], count)
        yield failures

        hours = int(LAG_WINDOW.total_seconds() // 3600)
        lag = GaugeHistogramMetricFamily(
            "lifecycle_delivery_lag_seconds",
            f"sent_at minus the notice's due instant, for deliveries sent in the last {hours} h.",
            labels=["channel"],
        )
        for channel, h in sorted(data["lag"].items()):
            buckets = [(_le(bound), n) for bound, n in h["buckets"]] + [("+Inf", h["count"])]
            lag.add_metric([channel], buckets, gsum_value=h["sum"])
        yield lag

        oldest = GaugeMetricFamily(
            "lifecycle_oldest_undelivered_due_seconds",
            "How long the oldest notice that is "
            "due and not delivered yet has been due (0: none). The promise at risk.",
        )
        oldest.add_metric([], data["oldest_undelivered_due_seconds"])
        yield oldest
        waiting = GaugeMetricFamily("lifecycle_undelivered_due_notices", "Notices due and not delivered yet.")
        waiting.add_metric([], data["undelivered_due_notices"])
        yield waiting


def _le(bound: float) -> str:
    return str(int(bound)) if bound == int(bound) else str(bound)


def exposition(engine: Callable[[], sa.Engine], clock: Callable[[], dt.datetime]) -> tuple[bytes, str]:
    """The text exposition of a registry holding only the database collector: (body, content type)."""
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.exposition import CONTENT_TYPE_LATEST

    registry = CollectorRegistry(auto_describe=False)
    registry.register(DatabaseCollector(engine, clock))
    return generate_latest(registry), CONTENT_TYPE_LATEST
