"""A reference fleet for the planning benchmark, written with bulk Core inserts.

At scale 1.0: 20,000 customers in 30 timezones around the world with 1-2 contacts each, 100 products of
20 releases, 4 milestones per release (8,000), and 100,000 deployments (3 to 7 releases per customer,
so about 50 customers per release at every scale). Milestone dates are spread from half a year before
`at` to three years after it (the past ones are history: never notified); every milestone is marked
`needs_plan`, as after a bulk import. Service periods are mostly active; some end within the horizon,
a few have ended or not yet started. Everything but the calendar tokens comes from one seeded random
generator, so a scale and a seed always give the same fleet.

The registry functions are not used: they write one row (and an audit row) at a time, far too slow for
100,000 deployments. Rows are streamed in batches, never held as a whole fleet in memory.
"""

from __future__ import annotations

import datetime as dt
import random
import secrets
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass

import sqlalchemy as sa

from lifecycle.db import get_engine
from lifecycle.models import Contact, Customer, Deployment, Milestone, MilestoneKind, Product, Release

AT = dt.datetime(2027, 1, 1, tzinfo=dt.UTC)
SEED = 20270101
BATCH = 5000
RELEASES_PER_PRODUCT = 20
DEPLOYMENTS_PER_CUSTOMER = (3, 4, 5, 6, 7)  # cycled: 5 on average
KINDS = (
    MilestoneKind.END_OF_SALE,
    MilestoneKind.END_OF_FULL_SUPPORT,
    MilestoneKind.END_OF_MAINTENANCE,
    MilestoneKind.END_OF_LIFE,
)
TIMEZONES = (
    "America/Los_Angeles",
    "America/Denver",
    "America/Chicago",
    "America/New_York",
    "America/Toronto",
    "America/Mexico_City",
    "America/Bogota",
    "America/Sao_Paulo",
    "Pacific/Honolulu",
    "Europe/London",
    "Europe/Paris",
    "Europe/Berlin",
    "Europe/Madrid",
    "Europe/Istanbul",
    "Europe/Moscow",
    "Africa/Lagos",
    "Africa/Cairo",
    "Africa/Johannesburg",
    "Asia/Dubai",
    "Asia/Kolkata",
    "Asia/Kathmandu",
    "Asia/Jakarta",
    "Asia/Singapore",
    "Asia/Shanghai",
    "Asia/Seoul",
    "Asia/Tokyo",
    "Australia/Adelaide",
    "Australia/Sydney",
    "Pacific/Auckland",
    "UTC",
)
PAST_DAYS, FUTURE_DAYS = 183, 3 * 365  # milestone dates: from at - PAST_DAYS to at + FUTURE_DAYS


@dataclass(frozen=True)
class FleetSize:
    customers: int
    products: int
    releases: int
    milestones: int
    deployments: int  # planned; the generator reports what it wrote

    def as_dict(self) -> dict:
        return asdict(self)


def size_for(scale: float) -> FleetSize:
    """The fleet at `scale` (1.0 = the reference fleet). Densities stay the same at every scale."""
    if scale <= 0:
        raise ValueError("scale must be positive")
    products = max(1, round(100 * scale))
    releases = products * RELEASES_PER_PRODUCT
    customers = max(len(DEPLOYMENTS_PER_CUSTOMER), round(20_000 * scale))
    deployments = sum(DEPLOYMENTS_PER_CUSTOMER[i % len(DEPLOYMENTS_PER_CUSTOMER)] for i in range(customers))
    return FleetSize(
        customers=customers,
        products=products,
        releases=releases,
        milestones=releases * len(KINDS),
        deployments=deployments,
    )


def _batched(rows: Iterable[dict], size: int = BATCH) -> Iterator[list[dict]]:
    batch: list[dict] = []
    for row in rows:
        batch.append(row)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def _insert(conn: sa.Connection, table: sa.Table, rows: Iterable[dict]) -> int:
    n = 0
    for batch in _batched(rows):
        conn.execute(table.insert(), batch)
        n += len(batch)
    return n


def _products(size: FleetSize, at: dt.datetime) -> Iterator[dict]:
    for pid in range(1, size.products + 1):
        yield {"id": pid, "slug": f"product-{pid:03d}", "name": f"Product {pid}", "created_at": at}


def _releases(size: FleetSize, at: dt.datetime) -> Iterator[dict]:
    rid = 0
    for pid in range(1, size.products + 1):
        for n in range(RELEASES_PER_PRODUCT):
            rid += 1
            upgrade_to = f"{n // 4 + 2}.0" if n < RELEASES_PER_PRODUCT - 4 else None
            yield {
                "id": rid,
                "product_id": pid,
                "version": f"{n // 4 + 1}.{n % 4}",
                "released": (at - dt.timedelta(days=40 * (RELEASES_PER_PRODUCT - n))).date(),
                "upgrade_to": upgrade_to,
                "created_at": at,
            }


def _milestones(size: FleetSize, at: dt.datetime, rng: random.Random) -> Iterator[dict]:
    today = at.date()
    for rid in range(1, size.releases + 1):
        pid = (rid - 1) // RELEASES_PER_PRODUCT + 1
        # Four dates per release, in kind order (end of sale first, end of life last).
        days = sorted(rng.randint(-PAST_DAYS, FUTURE_DAYS) for _ in KINDS)
        for kind, offset in zip(KINDS, days, strict=True):
            yield {
                "product_id": pid,
                "release_id": rid,
                "scope": rid,
                "kind": kind.value,
                "date": today + dt.timedelta(days=offset),
                "status": "planned",
                "revision": 1,
                "short_notice_reason": None,
                "registered_at": at - dt.timedelta(days=30),
                "changed_at": at - dt.timedelta(days=30),
                "needs_plan": True,
            }


def _service(rng: random.Random, today: dt.date) -> tuple[dt.date, dt.date | None]:
    roll = rng.random()
    start = today - dt.timedelta(days=rng.randint(30, 2000))
    if roll < 0.03:  # a new customer whose service starts later
        start = today + dt.timedelta(days=rng.randint(1, 300))
    roll = rng.random()
    if roll < 0.75:
        end = None
    elif roll < 0.90:  # ends within the horizon: later stages are skipped (service-lapsed)
        end = today + dt.timedelta(days=rng.randint(60, 1000))
    elif roll < 0.95:  # already ended
        end = today - dt.timedelta(days=rng.randint(1, 25))
    else:
        end = today + dt.timedelta(days=rng.randint(1500, 3000))
    if end is not None and end <= start:
        end = start + dt.timedelta(days=365)
    return start, end


def _customers(size: FleetSize, at: dt.datetime, rng: random.Random) -> Iterator[dict]:
    today = at.date()
    for cid in range(1, size.customers + 1):
        start, end = _service(rng, today)
        yield {
            "id": cid,
            "key": f"customer-{cid:05d}",
            "name": f"Customer {cid}",
            "timezone": rng.choice(TIMEZONES),
            "locale": "zh-CN" if rng.random() < 0.3 else "en",
            "account_rep": f"rep-{cid % 200:03d}@vendor.example",
            "service_start": start,
            "service_end": end,
            "cores": rng.choice((None, 16, 64, 256)),
            "calendar_token": secrets.token_urlsafe(24),
            "created_at": at - dt.timedelta(days=400),
        }


def _contacts(size: FleetSize, at: dt.datetime, rng: random.Random) -> Iterator[dict]:
    for cid in range(1, size.customers + 1):
        for n in range(1 if rng.random() < 0.5 else 2):
            yield {
                "customer_id": cid,
                "email": f"ops{n}@customer-{cid:05d}.example",
                "name": f"Ops {n}",
                "undeliverable": False,
                "undeliverable_reason": None,
                "created_at": at,
            }


def _deployments(size: FleetSize, at: dt.datetime, rng: random.Random) -> Iterator[dict]:
    for cid in range(1, size.customers + 1):
        count = min(DEPLOYMENTS_PER_CUSTOMER[(cid - 1) % len(DEPLOYMENTS_PER_CUSTOMER)], size.releases)
        for rid in rng.sample(range(1, size.releases + 1), count):
            removed = at - dt.timedelta(days=rng.randint(1, 90)) if rng.random() < 0.02 else None
            yield {
                "customer_id": cid,
                "release_id": rid,
                "cores": rng.choice((None, 8, 32)),
                "added_at": at - dt.timedelta(days=rng.randint(100, 900)),
                "removed_at": removed,
            }


def generate(url: str, *, scale: float = 1.0, at: dt.datetime = AT, seed: int = SEED) -> dict:
    """Write the fleet at `scale` into the (migrated, empty) database at `url`; return the row counts."""
    size = size_for(scale)
    rng = random.Random(seed)
    engine = get_engine(url)
    counts = {}
    with engine.begin() as conn:
        counts["products"] = _insert(conn, Product.__table__, _products(size, at))
        counts["releases"] = _insert(conn, Release.__table__, _releases(size, at))
        counts["milestones"] = _insert(conn, Milestone.__table__, _milestones(size, at, rng))
        counts["customers"] = _insert(conn, Customer.__table__, _customers(size, at, rng))
        counts["contacts"] = _insert(conn, Contact.__table__, _contacts(size, at, rng))
        counts["deployments"] = _insert(conn, Deployment.__table__, _deployments(size, at, rng))
        if conn.dialect.name == "postgresql":  # explicit ids were written: move the sequences on
            for table in ("product", "release", "customer"):
                conn.exec_driver_sql(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))"
                )
    return counts
