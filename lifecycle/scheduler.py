"""Planning and releasing notices. The database is the truth; time is passed in.

`plan(session, at)` re-plans the milestones marked `needs_plan`, a chunk of milestones at a time with
a few set-based statements per chunk (never a query per customer):

- stage notices for every affected customer (active deployment of the release, or of any release of
  the product for a product-level milestone), due at 09:00 local on the stage date, or on the first
  day of the customer's service when the stage falls before it; stages after the service ends are
  skipped (`service-lapsed`);
- a "date changed" notice for every affected customer already notified, when the milestone moved;
  its overdue stages are then covered by that notice;
- a cancellation for every affected customer already notified, when it was withdrawn; the rest is
  cancelled;
- planned notices of customers no longer affected are cancelled; past milestones get no new notices.

`release_due(session, at)` turns due notices into deliveries: catch-up (only the latest overdue stage
of a customer and milestone goes; older ones are skipped), agreements stop routine reminders, a lapsed
service or a past milestone skips, a due 1-month stage without agreement escalates to the rep. Then a
conditional update claims the due notices and one INSERT ... SELECT per channel creates the
deliveries (unique on notice, channel, recipient).

Both run under one planner lock (a PostgreSQL advisory lock; on SQLite, BEGIN IMMEDIATE), so any
number of ticks, workers or beats can run at once without doing anything twice.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, select

from lifecycle import policy
from lifecycle.config import get_settings
from lifecycle.models import (
    AGREED_STATUSES,
    Agreement,
    Contact,
    Customer,
    Delivery,
    DeliveryStatus,
    Deployment,
    Milestone,
    MilestoneChange,
    MilestoneStatus,
    Notice,
    NoticeKind,
    NoticeStatus,
    Release,
)

PLANNER_LOCK_ID = 7_242_001
CHUNK = 200
# Skipped stages with these reasons may come back when the situation changes (renewal, re-deploy).
REPLANNABLE = {None, "service-lapsed", "service-not-started", "not-affected", "milestone-passed", "withdrawn",
               "moved"}
N = Notice.__table__
D = Delivery.__table__


@dataclass
class PlanResult:
    milestones: int = 0
    created: int = 0
    updated: int = 0
    cancelled: int = 0
    changes: int = 0
    withdrawals: int = 0

    def as_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class ReleaseResult:
    released: int = 0
    skipped: Counter = field(default_factory=Counter)
    escalations: int = 0
    deliveries: int = 0
    recovered: int = 0

    def as_dict(self) -> dict:
        return {**self.__dict__, "skipped": dict(self.skipped)}


def lock_planner(session: Session) -> None:
    """Serialise planners: a transaction-scoped advisory lock on PostgreSQL (SQLite's BEGIN IMMEDIATE
    already serialises every writer)."""
    if session.get_bind().dialect.name == "postgresql":
        session.exec(sa.text("SELECT pg_advisory_xact_lock(:k)").bindparams(k=PLANNER_LOCK_ID))


def insert_ignore(session: Session, table: sa.Table):
    """INSERT ... ON CONFLICT DO NOTHING for the current dialect."""
    mod = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    return mod.insert(table).on_conflict_do_nothing()


def notice_key(kind: str, customer_id: int, milestone_id: int | str, slot: str) -> str:
    return f"{kind}:{customer_id}:{milestone_id}:{slot}"


# ------------------------------------------------------------------------------------------- planning


def plan(session: Session, at: dt.datetime, *, chunk: int = CHUNK) -> PlanResult:
    """Re-plan every milestone marked `needs_plan`. Idempotent; the caller commits."""
    lock_planner(session)
    result = PlanResult()
    stages = get_settings().stage_list
    hour = get_settings().send_hour
    last_id = 0
    while True:
        q = (select(Milestone).where(Milestone.needs_plan.is_(True), Milestone.id > last_id)
             .order_by(Milestone.id).limit(chunk))
        if session.get_bind().dialect.name == "postgresql":
            q = q.with_for_update()  # a concurrent mark_dirty waits and re-marks after us
        milestones = list(session.exec(q).all())
        if not milestones:
            break
        last_id = milestones[-1].id
        _plan_chunk(session, milestones, at, stages, hour, result)
        session.exec(sa.update(Milestone).where(Milestone.id.in_([m.id for m in milestones]))
                     .values(needs_plan=False))
        result.milestones += len(milestones)
    return result


def _affected(session: Session, milestone_ids: list[int]):
    """(milestone id, customer id, timezone, service start, service end) of every affected customer."""
    dep_release = sa.alias(Release.__table__, "dep_release")
    q = (
        sa.select(Milestone.id, Customer.id, Customer.timezone, Customer.service_start, Customer.service_end)
        .select_from(Milestone.__table__)
        .join(dep_release, sa.or_(
            dep_release.c.id == Milestone.release_id,
            sa.and_(Milestone.release_id.is_(None), dep_release.c.product_id == Milestone.product_id)))
        .join(Deployment.__table__, sa.and_(Deployment.release_id == dep_release.c.id,
                                            Deployment.removed_at.is_(None)))
        .join(Customer.__table__, Customer.id == Deployment.customer_id)
        .where(Milestone.id.in_(milestone_ids))
        .distinct()
    )
    return session.exec(q).all()


def _plan_chunk(session: Session, milestones: list[Milestone], at: dt.datetime, stages: tuple[str, ...],
                hour: int, result: PlanResult) -> None:
    ids = [m.id for m in milestones]
    by_id = {m.id: m for m in milestones}
    affected: dict[int, dict[int, tuple]] = {m: {} for m in ids}
    for mid, cid, tz, start, end in _affected(session, ids):
        affected[mid][cid] = (tz, start, end)

    existing: dict[str, tuple] = {}
    notified: dict[tuple[int, int], int] = {}  # (milestone, customer) -> highest revision told
    for row in session.exec(
        sa.select(N.c.id, N.c.key, N.c.milestone_id, N.c.customer_id, N.c.kind, N.c.status, N.c.status_reason,
                  N.c.due_at, N.c.revision, N.c.milestone_date)
        .where(N.c.milestone_id.in_(ids), N.c.audience == "customer")
    ).all():
        existing[row.key] = row
        if row.status in (NoticeStatus.SENT, NoticeStatus.RELEASED):
            k = (row.milestone_id, row.customer_id)
            notified[k] = max(notified.get(k, 0), row.revision)

    last_change = {
        (ch.milestone_id, ch.revision): ch
        for ch in session.exec(select(MilestoneChange).where(MilestoneChange.milestone_id.in_(ids)))
    }

    inserts: list[dict] = []
    updates: list[dict] = []
    cancels: list[tuple[int, str]] = []
    desired_keys: set[str] = set()
    due_cache: dict[tuple, dt.datetime] = {}

    for mid in ids:
        m = by_id[mid]
        mdate, mrev, mchanged = m.date, m.revision, m.changed_at
        past = policy.is_history(mdate, at.date())
        # Stage dates depend on the milestone only: once per milestone, not per customer.
        stage_dates = [(stage, policy.stage_date(mdate, stage)) for stage in stages]
        for cid, (tz, start, end) in affected[mid].items():
            told = notified.get((mid, cid), 0)
            if m.status == MilestoneStatus.WITHDRAWN:
                if told:
                    key = notice_key(NoticeKind.WITHDRAWN, cid, mid, str(mrev))
                    desired_keys.add(key)
                    if key not in existing:
                        inserts.append(_notice_row(key, cid, m, NoticeKind.WITHDRAWN, str(mrev), None, mchanged,
                                                   at))
                        result.withdrawals += 1
                continue
            changed_now = bool(told) and told < mrev and not past
            if changed_now:
                action = last_change.get((mid, mrev))
                if action is None or action.action in ("moved", "reinstated"):
                    key = notice_key(NoticeKind.CHANGED, cid, mid, str(mrev))
                    desired_keys.add(key)
                    if key not in existing:
                        inserts.append(_notice_row(key, cid, m, NoticeKind.CHANGED, str(mrev), None, mchanged, at))
                        result.changes += 1
            if past:
                continue
            for stage, sdate in stage_dates:
                send_day = sdate
                status, reason = NoticeStatus.PLANNED, None
                if start is not None and send_day < start:
                    send_day = start  # not yet a customer: tell them on their first day of service
                if end is not None and send_day > end:
                    status, reason = NoticeStatus.SKIPPED, "service-lapsed"
                elif send_day > mdate:
                    status, reason = NoticeStatus.SKIPPED, "service-not-started"
                ck = (send_day, tz)
                due = due_cache.get(ck)
                if due is None:
                    due = due_cache[ck] = policy.local_instant(send_day, tz, hour)
                if status == NoticeStatus.PLANNED and changed_now and due <= mchanged:
                    status, reason = NoticeStatus.SKIPPED, "covered-by-change"
                key = f"stage:{cid}:{mid}:{stage}"
                desired_keys.add(key)
                old = existing.get(key)
                if old is None:
                    inserts.append(_notice_row(key, cid, m, NoticeKind.STAGE, stage, sdate, due, at, status, reason))
                elif _replannable(old) and (
                    old.due_at != due or old.status != status or old.status_reason != reason
                    or old.revision != mrev or old.milestone_date != mdate
                ):
                    updates.append({"b_id": old.id, "due_at": due, "stage_date": sdate, "status": status,
                                    "status_reason": reason, "revision": mrev, "milestone_date": mdate})
    # Planned notices nobody wants any more: deployment removed, service changed, milestone withdrawn
    # or passed.
    for key, row in existing.items():
        if row.status == NoticeStatus.PLANNED and key not in desired_keys:
            m = by_id[row.milestone_id]
            if m.status == MilestoneStatus.WITHDRAWN:
                reason = "withdrawn"
            elif policy.is_history(m.date, at.date()):
                reason = "milestone-passed"
            else:
                reason = "not-affected"
            cancels.append((row.id, reason))

    if inserts:
        bulk_insert_notices(session, inserts)
        result.created += len(inserts)
    if updates:
        session.connection().execute(
            N.update().where(N.c.id == sa.bindparam("b_id")).values(
                due_at=sa.bindparam("due_at"), stage_date=sa.bindparam("stage_date"),
                status=sa.bindparam("status"), status_reason=sa.bindparam("status_reason"),
                revision=sa.bindparam("revision"), milestone_date=sa.bindparam("milestone_date")),
            updates,
        )
        result.updated += len(updates)
    if cancels:
        session.connection().execute(
            N.update().where(N.c.id == sa.bindparam("b_id"), N.c.status == NoticeStatus.PLANNED)
            .values(status=NoticeStatus.CANCELLED, status_reason=sa.bindparam("reason")),
            [{"b_id": i, "reason": r} for i, r in cancels],
        )
        result.cancelled += len(cancels)


def _replannable(row) -> bool:
    """Unsent stages may be re-planned; sent ones, and ones skipped by catch-up or agreement, stay."""
    if row.status == NoticeStatus.PLANNED:
        return True
    return row.status in (NoticeStatus.SKIPPED, NoticeStatus.CANCELLED) and row.status_reason in REPLANNABLE


# Column order of the rows `_notice_row` builds and `bulk_insert_notices` writes.
NOTICE_COLUMNS = ("key", "customer_id", "milestone_id", "release_id", "kind", "audience", "slot", "revision",
                  "milestone_date", "stage_date", "due_at", "status", "status_reason", "created_at")
_DATE_COLS = (8, 9)
_TIME_COLS = (10, 13)


def _notice_row(key: str, customer_id: int, m: Milestone, kind: str, slot: str, sdate: dt.date | None,
                due: dt.datetime, at: dt.datetime, status: str = NoticeStatus.PLANNED,
                reason: str | None = None) -> tuple:
    """A customer notice as a tuple in NOTICE_COLUMNS order (tuples, not dicts: millions in a cold plan)."""
    return (key, customer_id, m.id, m.release_id, str(kind), "customer", slot, m.revision, m.date, sdate, due,
            str(status), reason, at)


def bulk_insert_notices(session: Session, rows: list[tuple]) -> None:
    """Insert many notice rows at once: COPY on PostgreSQL, the driver's executemany on SQLite.

    Both bypass SQLAlchemy's per-value processing, so values are rendered here the way the UTCDateTime
    and Date columns store them (naive UTC; on SQLite the text format SQLAlchemy reads back)."""
    conn = session.connection()
    cols = ", ".join(NOTICE_COLUMNS)
    if conn.dialect.name == "postgresql":
        raw = conn.connection.driver_connection
        with raw.cursor() as cur, cur.copy(f"COPY notice ({cols}) FROM STDIN") as copy:
            for row in rows:
                row = list(row)
                for i in _TIME_COLS:
                    row[i] = _naive_utc(row[i])
                copy.write_row(row)
        return
    rendered = {}

    def text(value):
        if value is None:
            return None
        out = rendered.get(value)
        if out is None:
            if isinstance(value, dt.datetime):
                out = _naive_utc(value).strftime("%Y-%m-%d %H:%M:%S.%f")
            else:
                out = value.isoformat()
            rendered[value] = out
        return out

    params = []
    for row in rows:
        row = list(row)
        for i in _DATE_COLS + _TIME_COLS:
            row[i] = text(row[i])
        params.append(tuple(row))
    conn.exec_driver_sql(f"INSERT INTO notice ({cols}) VALUES ({', '.join('?' * len(NOTICE_COLUMNS))})", params)


def _naive_utc(value: dt.datetime | None) -> dt.datetime | None:
    return None if value is None else value.astimezone(dt.UTC).replace(tzinfo=None)


# ------------------------------------------------------------------------------------------ releasing


def _due_stage(at: dt.datetime):
    return sa.and_(N.c.status == NoticeStatus.PLANNED, N.c.kind == NoticeKind.STAGE, N.c.due_at <= at)


def _skip(session: Session, where, reason: str) -> int:
    res = session.connection().execute(
        N.update().where(where).values(status=NoticeStatus.SKIPPED, status_reason=reason))
    return res.rowcount or 0


def release_due(session: Session, at: dt.datetime) -> ReleaseResult:
    """Decide what is due at `at` and create its deliveries. The caller commits."""
    lock_planner(session)
    result = ReleaseResult()
    C = Customer.__table__
    A = Agreement.__table__
    conn = session.connection()

    # History and service are judged on the customer's own calendar day: at 20:00 UTC it is already
    # tomorrow in Kiritimati and still yesterday in Pago Pago. One pass per timezone with something due.
    zones = conn.execute(sa.select(C.c.timezone).distinct().where(
        C.c.id.in_(sa.select(N.c.customer_id).where(_due_stage(at))))).scalars().all()
    for tz in zones:
        local_today = policy.local_date(at, tz)
        in_zone = sa.select(C.c.id).where(C.c.timezone == tz)
        # A past milestone is history: never notified.
        result.skipped["milestone-passed"] += _skip(
            session, sa.and_(_due_stage(at), N.c.customer_id.in_(in_zone), N.c.milestone_date < local_today),
            "milestone-passed")
        # Service no longer (or not yet) active on the send date.
        lapsed = in_zone.where(sa.or_(C.c.service_end < local_today, C.c.service_start > local_today))
        result.skipped["service-lapsed"] += _skip(
            session, sa.and_(_due_stage(at), N.c.customer_id.in_(lapsed)), "service-lapsed")

    agreed = sa.exists().where(A.c.customer_id == N.c.customer_id, A.c.release_id == N.c.release_id,
                               A.c.status.in_([s.value for s in AGREED_STATUSES]))

    # Escalate to the rep: a due 1-month stage without an agreement, whether it goes out now, is about
    # to be superseded by catch-up, or was covered by a change notice after a move (the key makes it once).
    one_month_due = sa.and_(
        N.c.kind == NoticeKind.STAGE, N.c.slot == policy.ESCALATION_STAGE, N.c.due_at <= at,
        N.c.due_at > at - dt.timedelta(days=62),  # a 1-month stage of a milestone not yet past: keeps the scan short
        N.c.release_id.is_not(None), N.c.milestone_date >= at.date() - dt.timedelta(days=1),
        sa.or_(N.c.status == NoticeStatus.PLANNED,
               sa.and_(N.c.status == NoticeStatus.SKIPPED, N.c.status_reason == "covered-by-change")))
    esc_key = sa.literal(f"{NoticeKind.ESCALATION.value}:") + sa.cast(N.c.customer_id, sa.String) + ":" + \
        sa.cast(N.c.milestone_id, sa.String) + f":{policy.ESCALATION_STAGE}"
    escalated = sa.exists().where(sa.alias(N, "esc").c.key == esc_key)
    esc_source = conn.execute(
        sa.select(N.c.customer_id, N.c.milestone_id, N.c.release_id, N.c.revision, N.c.milestone_date)
        .where(one_month_due, ~agreed, ~escalated)
    ).all()
    if esc_source:
        rows = [{
            "key": notice_key(NoticeKind.ESCALATION, r.customer_id, r.milestone_id, policy.ESCALATION_STAGE),
            "customer_id": r.customer_id, "milestone_id": r.milestone_id, "release_id": r.release_id,
            "kind": NoticeKind.ESCALATION.value, "audience": "rep", "slot": policy.ESCALATION_STAGE,
            "revision": r.revision, "milestone_date": r.milestone_date, "due_at": at,
            "status": NoticeStatus.PLANNED.value, "created_at": at,
        } for r in esc_source]
        # RETURNING, not rowcount: psycopg reports -1 for INSERT ... ON CONFLICT DO NOTHING.
        for i in range(0, len(rows), 500):  # multi-row VALUES: stay under SQLite's variable limit
            res = conn.execute(insert_ignore(session, N).values(rows[i:i + 500]).returning(N.c.id))
            result.escalations += len(res.all())

    # Routine reminders stop once the customer has agreed on an upgrade for the release.
    result.skipped["agreement"] += _skip(session, sa.and_(_due_stage(at), agreed), "agreement")

    # Catch-up: of several due stages of one customer and milestone, only the latest is sent.
    later = sa.alias(N, "later")
    newer_due = sa.exists().where(
        later.c.customer_id == N.c.customer_id, later.c.milestone_id == N.c.milestone_id,
        later.c.kind == NoticeKind.STAGE, later.c.due_at <= at, later.c.stage_date > N.c.stage_date,
        later.c.status.in_([NoticeStatus.PLANNED, NoticeStatus.RELEASED, NoticeStatus.SENT]),
    )
    result.skipped["superseded"] += _skip(session, sa.and_(_due_stage(at), newer_due), "superseded")

    # Claim what is due (conditional update: only rows still planned).
    released = session.connection().execute(
        N.update().where(N.c.status == NoticeStatus.PLANNED, N.c.due_at <= at)
        .values(status=NoticeStatus.RELEASED, released_at=at).returning(N.c.id)
    ).scalars().all()
    result.released = len(released)
    if released:
        result.deliveries = _create_deliveries(session, released, at)
    result.skipped = +result.skipped
    return result


def _create_deliveries(session: Session, notice_ids: list[int], at: dt.datetime) -> int:
    """One INSERT ... SELECT per channel and audience; duplicates are impossible (unique key)."""
    C, K = Customer.__table__, Contact.__table__
    conn = session.connection()
    total = 0
    cols = ["notice_id", "customer_id", "channel", "recipient", "contact_id", "status", "attempts",
            "next_attempt_at", "created_at", "updated_at"]
    at_naive = at.astimezone(dt.UTC).replace(tzinfo=None)
    now = sa.literal(at_naive, sa.DateTime)
    for chunk_start in range(0, len(notice_ids), 5000):
        ids = notice_ids[chunk_start:chunk_start + 5000]
        customer_notices = sa.and_(N.c.id.in_(ids), N.c.audience == "customer")
        sources = [
            # the portal inbox holds every customer notice
            sa.select(N.c.id, N.c.customer_id, sa.literal("portal"), C.c.key, sa.null(),
                      sa.literal(DeliveryStatus.PENDING.value), sa.literal(0), now, now, now)
            .join(C, C.c.id == N.c.customer_id).where(customer_notices),
            # email to every deliverable contact
            sa.select(N.c.id, N.c.customer_id, sa.literal("email"), K.c.email, K.c.id,
                      sa.literal(DeliveryStatus.PENDING.value), sa.literal(0), now, now, now)
            .join(K, sa.and_(K.c.customer_id == N.c.customer_id, K.c.undeliverable.is_(False)))
            .where(customer_notices),
            # rep notices go to the account rep by email
            sa.select(N.c.id, N.c.customer_id, sa.literal("email"), C.c.account_rep, sa.null(),
                      sa.literal(DeliveryStatus.PENDING.value), sa.literal(0), now, now, now)
            .join(C, C.c.id == N.c.customer_id).where(N.c.id.in_(ids), N.c.audience == "rep"),
        ]
        for src in sources:
            total += len(conn.execute(insert_ignore(session, D).from_select(cols, src).returning(D.c.id)).all())
    return total


def customers_with_due_deliveries(session: Session, at: dt.datetime, limit: int | None = None) -> list[int]:
    q = (sa.select(D.c.customer_id).where(D.c.status == DeliveryStatus.PENDING, D.c.next_attempt_at <= at)
         .distinct().order_by(D.c.customer_id))
    if limit:
        q = q.limit(limit)
    return list(session.connection().execute(q).scalars().all())


def recover_stale(session: Session, at: dt.datetime) -> int:
    """Take back claims of dead or stalled workers and settle unknown sends (lifecycle.recovery.recover:
    what could not have been sent goes back to pending, what may have been sent is reconciled)."""
    from lifecycle.recovery import recover

    return recover(session, at)
