"""The fan-out: who gets a set of notices on which channel, from each channel's own recipient source.

`create_deliveries` (the scheduler releasing notices), `planned` (the plan preview and the change
preview) read the same selects, so what the preview shows is what a release creates. Duplicates are
impossible: deliveries are unique on (notice, channel, recipient).
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session

from lifecycle.channels.base import RECIPIENT_COLUMNS, N
from lifecycle.channels.registry import CHANNELS
from lifecycle.models import Delivery, DeliveryStatus, table_of

D = table_of(Delivery)
CHUNK = 5000


def sources(notice_ids: Sequence[int]) -> list[sa.Select]:
    """Every channel's recipient source for these notices, for every audience it serves."""
    out = []
    for channel in CHANNELS.values():
        for audience in sorted(channel.audiences):
            out.append(
                channel.recipients(audience, sa.and_(N.c.id.in_(notice_ids), N.c.audience == audience))
            )
    return out


def create_deliveries(session: Session, notice_ids: Sequence[int], at: dt.datetime) -> int:
    """One INSERT ... SELECT per channel source: pending deliveries, due at `at`. Returns how many."""
    conn = session.connection()
    mod = postgresql if conn.dialect.name == "postgresql" else sqlite
    now = sa.literal(at.astimezone(dt.UTC).replace(tzinfo=None), sa.DateTime)
    cols = [*RECIPIENT_COLUMNS, "status", "attempts", "next_attempt_at", "created_at", "updated_at"]
    total = 0
    for start in range(0, len(notice_ids), CHUNK):
        for src in sources(notice_ids[start : start + CHUNK]):
            src = src.add_columns(sa.literal(DeliveryStatus.PENDING.value), sa.literal(0), now, now, now)
            # RETURNING, not rowcount: psycopg reports -1 for INSERT ... ON CONFLICT DO NOTHING.
            total += len(
                conn.execute(
                    mod.insert(D).on_conflict_do_nothing().from_select(cols, src).returning(D.c.id)
                ).all()
            )
    return total


def planned(session: Session, notice_ids: list[int]) -> dict[int, list[dict]]:
    """The recipients each notice would get if released now: notice id -> [{channel, recipient}], in
    the registry's channel order, recipients sorted."""
    conn = session.connection()
    found: dict[int, list[tuple[int, str, str]]] = defaultdict(list)
    order = {name: i for i, name in enumerate(CHANNELS)}
    for start in range(0, len(notice_ids), CHUNK):
        for src in sources(notice_ids[start : start + CHUNK]):
            for row in conn.execute(src).all():
                found[row[0]].append((order.get(row[2], len(order)), row[2], row[3]))
    return {
        nid: [{"channel": ch, "recipient": rcpt} for _, ch, rcpt in sorted(rows)]
        for nid, rows in found.items()
    }
