"""Planning and releasing notices. The database is the truth; time is passed in.

`plan(session, at)` re-plans the milestones marked `needs_plan`, a chunk of milestones at a time with
a few set-based statements per chunk (never a query per customer). For every affected customer
(a deployment of the release, or of any release of the product for a product-level milestone):

- what the customer was last told about the milestone (their latest sent notice: a date, or that it
  was withdrawn) is compared with the milestone now. A different date gets a "date changed" notice
  (also when the new date has passed: a correction), a withdrawal a cancellation, a milestone added
  back after they heard it was withdrawn a "reinstated" notice. Each is due when the change was made.
- stage notices are keyed by the date they announce, so a moved milestone gets every stage again for
  its new date and never two for the same date. A stage is due at its effective instant
  (`policy.effective_due`): its own 09:00 local, or when the customer became affected under the
  current date if that is later. A change notice counts as every stage that fell due before it went
  out (`covered-by-change`); stages that fall due at the same instant are caught up to the latest
  (`superseded`); a stage due after the service ends is `service-lapsed`, one due after the deployment
  was removed is not wanted; one whose effective day is after the milestone is history. All of this
  is judged at the notice's due instant, so the outcome does not depend on when ticks run.
- planned notices nobody wants any more are cancelled with the reason (moved, withdrawn, replaced by
  a later change, not affected).

`release_due(session, at)` turns due notices into deliveries: agreements recorded before a stage fell
due stop it, a due 1-month stage without agreement escalates to the rep (once per milestone date), a
tick later than `policy.CATCH_UP_GRACE` (an outage) sends only the latest overdue stage and nothing
about a milestone that has passed. Then a conditional update claims the due notices and one
INSERT ... SELECT per channel source creates the deliveries (unique on notice, channel, recipient):
each channel says who its recipients are (lifecycle.channels.fanout).

Both run under one planner lock (a PostgreSQL advisory lock; on SQLite, BEGIN IMMEDIATE), so any
number of ticks, workers or beats can run at once without doing anything twice.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, col, select

from lifecycle import policy, registry, reps
from lifecycle.config import get_settings
from lifecycle.models import (
    CHANGE_NOTICE_KINDS,
    Agreement,
    AgreementChange,
    Customer,
    Delivery,
    DeliveryStatus,
    Deployment,
    Milestone,
    MilestoneStatus,
    Notice,
    NoticeKind,
    NoticeStatus,
    Release,
    pk,
    table_of,
)
from lifecycle.policy import SkipReason

PLANNER_LOCK_ID = 7_242_001
CHUNK = 200
N = table_of(Notice)
D = table_of(Delivery)
TOLD = (NoticeStatus.SENT, NoticeStatus.RELEASED)
# Actions of a milestone change that set its current date.
DATING = ("created", "moved", "reinstated")


@dataclass
class PlanResult:
    milestones: int = 0
    created: int = 0
    updated: int = 0
    cancelled: int = 0
    changes: int = 0
    withdrawals: int = 0
    reinstatements: int = 0
    # The milestones re-planned (calendar exports refresh only what they affect); not in as_dict.
    milestone_ids: list[int] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "milestone_ids"}


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
    already serialises every writer). Advisory locks are per database, so the key names the schema:
    deployments (and test runs) in other schemas of the same database plan independently."""
    if session.get_bind().dialect.name == "postgresql":
        session.connection().execute(
            sa.text("SELECT pg_advisory_xact_lock(hashtext(current_schema() || :ns), :k)").bindparams(
                ns=":planner", k=PLANNER_LOCK_ID
            )
        )


def insert_ignore(session: Session, table: sa.Table):
    """INSERT ... ON CONFLICT DO NOTHING for the current dialect."""
    mod = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    return mod.insert(table).on_conflict_do_nothing()


notice_key = policy.notice_key


# ------------------------------------------------------------------------------------------- planning


def plan(session: Session, at: dt.datetime, *, chunk: int = CHUNK) -> PlanResult:
    """Re-plan every milestone marked `needs_plan`. Idempotent; the caller commits."""
    lock_planner(session)
    result = PlanResult()
    stages = get_settings().stage_list
    hour = get_settings().send_hour
    last_id = 0
    while True:
        q = (
            select(Milestone)
            .where(col(Milestone.needs_plan).is_(True), col(Milestone.id) > last_id)
            .order_by(col(Milestone.id))
            .limit(chunk)
        )
        if session.get_bind().dialect.name == "postgresql":
            q = q.with_for_update()  # a concurrent mark_dirty waits and re-marks after us
        milestones = list(session.exec(q).all())
        if not milestones:
            break
        last_id = pk(milestones[-1])
        _plan_chunk(session, milestones, at, stages, hour, result)
        session.exec(
            sa.update(Milestone)
            .where(col(Milestone.id).in_([m.id for m in milestones]))
            .values(needs_plan=False)
        )
        result.milestones += len(milestones)
        result.milestone_ids.extend(pk(m) for m in milestones)
    return result


@dataclass
class _Affected:
    """A customer affected by a milestone: where and when they run it."""

    tz: str
    start: dt.date | None
    end: dt.date | None
    since: dt.datetime  # when they started running it (the earliest deployment still running)
    removed: dt.datetime | None  # when they stopped (no deployment left running), or None


def _affected(session: Session, milestones: list[Milestone]) -> dict[int, dict[int, _Affected]]:
    """Every customer affected by each milestone: deployments still running, and deployments removed
    since the milestone was registered (notices that fell due before the removal still go)."""
    dep_release = sa.alias(table_of(Release), "dep_release")
    M, C, Dep = table_of(Milestone), table_of(Customer), table_of(Deployment)
    q = (
        sa.select(
            M.c.id, C.c.id, C.c.timezone, C.c.service_start, C.c.service_end, Dep.c.added_at, Dep.c.removed_at
        )
        .select_from(M)
        .join(
            dep_release,
            sa.or_(
                dep_release.c.id == M.c.release_id,
                sa.and_(M.c.release_id.is_(None), dep_release.c.product_id == M.c.product_id),
            ),
        )
        .join(
            Dep,
            sa.and_(
                Dep.c.release_id == dep_release.c.id,
                sa.or_(Dep.c.removed_at.is_(None), Dep.c.removed_at > M.c.registered_at),
            ),
        )
        .join(C, C.c.id == Dep.c.customer_id)
        .where(M.c.id.in_([m.id for m in milestones]))
    )
    out: dict[int, dict[int, _Affected]] = {pk(m): {} for m in milestones}
    for mid, cid, tz, start, end, added, removed in session.connection().execute(q).all():
        added, removed = _aware(added), _aware(removed)
        a = out[mid].get(cid)
        if a is None:
            out[mid][cid] = _Affected(tz, start, end, added, removed)
        elif removed is None:  # a running deployment wins over removed ones
            a.since = added if a.removed is not None else min(a.since, added)
            a.removed = None
        elif a.removed is not None:
            a.since, a.removed = min(a.since, added), max(a.removed, removed)
    return out


def _aware(value):
    if value is None or isinstance(value, dt.datetime) and value.tzinfo is not None:
        return value
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    return value.replace(tzinfo=dt.UTC)


def _told_rank(row) -> tuple:
    return (row.revision, row.kind != NoticeKind.STAGE, _aware(row.released_at) or _aware(row.due_at), row.id)


def _plan_chunk(
    session: Session,
    milestones: list[Milestone],
    at: dt.datetime,
    stages: tuple[str, ...],
    hour: int,
    result: PlanResult,
) -> None:
    ids = [pk(m) for m in milestones]
    by_id = {pk(m): m for m in milestones}
    affected = _affected(session, milestones)

    existing: dict[str, sa.Row] = {}
    told: dict[tuple[int, int], sa.Row] = {}  # (milestone, customer) -> the latest notice they were given
    for row in (
        session.connection()
        .execute(
            sa.select(
                N.c.id,
                N.c.key,
                N.c.milestone_id,
                N.c.customer_id,
                N.c.kind,
                N.c.status,
                N.c.status_reason,
                N.c.due_at,
                N.c.revision,
                N.c.milestone_date,
                N.c.released_at,
            ).where(N.c.milestone_id.in_(ids), N.c.audience == "customer")
        )
        .all()
    ):
        existing[row.key] = row
        if row.status in TOLD:
            k = (row.milestone_id, row.customer_id)
            if k not in told or _told_rank(row) > _told_rank(told[k]):
                told[k] = row

    # When notices about each milestone's current date, and about each revision, may first go: the
    # change's instant, or the end of its hold (LIFECYCLE_CHANGE_HOLD) so that it can still be undone.
    dated: dict[int, dt.datetime] = {}
    released_at: dict[tuple[int, int], dt.datetime] = {}
    for ch, release_at in registry.effective_changes(session, ids):
        released_at[(ch.milestone_id, ch.revision)] = release_at
        if ch.action in DATING:
            dated[ch.milestone_id] = release_at

    inserts: list[tuple] = []
    updates: list[dict] = []
    desired_keys: set[str] = set()

    def want(row: sa.Row | None, key: str, values: tuple) -> None:
        """Insert a notice, or re-plan an existing one if it may still change (unsent)."""
        desired_keys.add(key)
        if row is None:
            inserts.append(values)
        elif _replannable(row):
            due, sdate, status, reason, rev, mdate = (
                values[10],
                values[9],
                values[11],
                values[12],
                values[7],
                values[8],
            )
            if (
                _aware(row.due_at) != due
                or row.status != status
                or row.status_reason != reason
                or row.revision != rev
                or row.milestone_date != mdate
            ):
                updates.append(
                    {
                        "b_id": row.id,
                        "due_at": due,
                        "stage_date": sdate,
                        "status": status,
                        "status_reason": reason,
                        "revision": rev,
                        "milestone_date": mdate,
                    }
                )

    for mid in ids:
        m = by_id[mid]
        mdate, mrev = m.date, m.revision
        withdrawn = m.status == MilestoneStatus.WITHDRAWN
        change_at = released_at.get((mid, mrev)) or _aware(m.changed_at)
        date_set = dated.get(mid) or _aware(m.registered_at)
        # Stage dates depend on the milestone only: once per milestone, not per customer.
        stage_dates = [(stage, policy.stage_date(mdate, stage)) for stage in stages]
        for cid, a in affected[mid].items():
            last = told.get((mid, cid))
            # 1. What changed since the customer last heard about it.
            change_kind = None
            if last is not None and (a.removed is None or a.removed > _aware(m.changed_at)):
                if withdrawn:
                    if last.kind != NoticeKind.WITHDRAWN:
                        change_kind = NoticeKind.WITHDRAWN
                elif last.kind == NoticeKind.WITHDRAWN:
                    change_kind = NoticeKind.REINSTATED
                elif last.milestone_date != mdate:
                    change_kind = NoticeKind.CHANGED
            change_due = None
            if change_kind is not None:
                key = notice_key(change_kind, cid, mid, str(mrev))
                old = existing.get(key)
                want(old, key, _notice_row(key, cid, m, change_kind, str(mrev), None, change_at, at))
                if old is None:
                    result.changes += change_kind == NoticeKind.CHANGED
                    result.withdrawals += change_kind == NoticeKind.WITHDRAWN
                    result.reinstatements += change_kind == NoticeKind.REINSTATED
                if old is None or old.status != NoticeStatus.CANCELLED:
                    change_due = _aware(old.due_at) if old is not None else change_at
            if withdrawn:
                continue
            # 2. The stages of the current date, due at their effective instants (policy rules).
            since = max(a.since, date_set)
            planned: list[tuple[str, dt.date, dt.datetime, str, str | None, sa.Row | None]] = []
            for stage, sdate in stage_dates:
                day, due = policy.effective_due(
                    sdate, a.tz, affected_since=since, service_start=a.start, hour=hour
                )
                old = existing.get(notice_key(NoticeKind.STAGE, cid, mid, stage, mdate))
                outcome = policy.stage_outcome(
                    day,
                    due,
                    mdate,
                    service_start=a.start,
                    service_end=a.end,
                    removed=a.removed,
                    change_due=change_due,
                )
                if outcome is None or (
                    old is None
                    and outcome[1] in (SkipReason.SERVICE_NOT_STARTED, SkipReason.MILESTONE_PASSED)
                ):
                    continue  # not wanted, or history with nothing planned before: nothing to plan
                planned.append((stage, sdate, due, *outcome, old))
            superseded = policy.caught_up(
                [
                    (sdate, due, status == NoticeStatus.PLANNED or (old is not None and old.status in TOLD))
                    for _, sdate, due, status, _, old in planned
                ]
            )
            for (stage, sdate, due, status, reason, old), caught in zip(planned, superseded, strict=True):
                if caught and status == NoticeStatus.PLANNED:
                    status, reason = NoticeStatus.SKIPPED, SkipReason.SUPERSEDED
                key = notice_key(NoticeKind.STAGE, cid, mid, stage, mdate)
                want(
                    old,
                    key,
                    _notice_row(key, cid, m, NoticeKind.STAGE, stage, sdate, due, at, status, reason),
                )

    # Planned notices nobody wants any more.
    cancels: list[tuple[int, str]] = []
    for key, row in existing.items():
        if row.status != NoticeStatus.PLANNED or key in desired_keys:
            continue
        m = by_id[row.milestone_id]
        if m.status == MilestoneStatus.WITHDRAWN:
            reason = SkipReason.WITHDRAWN
        elif row.kind == NoticeKind.STAGE and row.milestone_date != m.date:
            reason = SkipReason.MOVED
        elif row.kind in CHANGE_NOTICE_KINDS:
            reason = SkipReason.REPLACED
        elif policy.is_history(m.date, at.date()):
            reason = SkipReason.MILESTONE_PASSED
        else:
            reason = SkipReason.NOT_AFFECTED
        cancels.append((row.id, str(reason)))

    if inserts:
        bulk_insert_notices(session, inserts)
        result.created += len(inserts)
    if updates:
        session.connection().execute(
            N.update()
            .where(N.c.id == sa.bindparam("b_id"))
            .values(
                due_at=sa.bindparam("due_at"),
                stage_date=sa.bindparam("stage_date"),
                status=sa.bindparam("status"),
                status_reason=sa.bindparam("status_reason"),
                revision=sa.bindparam("revision"),
                milestone_date=sa.bindparam("milestone_date"),
            ),
            updates,
        )
        result.updated += len(updates)
    if cancels:
        session.connection().execute(
            N.update()
            .where(N.c.id == sa.bindparam("b_id"), N.c.status == NoticeStatus.PLANNED)
            .values(status=NoticeStatus.CANCELLED, status_reason=sa.bindparam("reason")),
            [{"b_id": i, "reason": r} for i, r in cancels],
        )
        result.cancelled += len(cancels)


def _replannable(row) -> bool:
    """Unsent notices may be re-planned; sent ones, and ones skipped for good (an agreement, an
    outage's catch-up), stay as they are."""
    if row.status == NoticeStatus.PLANNED:
        return True
    return row.status in (NoticeStatus.SKIPPED, NoticeStatus.CANCELLED) and row.status_reason in REPLANNABLE


# Plan-time outcomes are recomputed on every re-plan; release-time ones are final.
REPLANNABLE = policy.REPLANNABLE | {SkipReason.SUPERSEDED, SkipReason.COVERED_BY_CHANGE}


# Column order of the rows `_notice_row` builds and `bulk_insert_notices` writes.
NOTICE_COLUMNS = (
    "key",
    "customer_id",
    "milestone_id",
    "release_id",
    "kind",
    "audience",
    "slot",
    "revision",
    "milestone_date",
    "stage_date",
    "due_at",
    "status",
    "status_reason",
    "created_at",
)
_DATE_COLS = (8, 9)
_TIME_COLS = (10, 13)


def _notice_row(
    key: str,
    customer_id: int,
    m: Milestone,
    kind: str,
    slot: str,
    sdate: dt.date | None,
    due: dt.datetime,
    at: dt.datetime,
    status: str = NoticeStatus.PLANNED,
    reason: str | None = None,
) -> tuple:
    """A customer notice as a tuple in NOTICE_COLUMNS order (tuples, not dicts: millions in a cold plan)."""
    return (
        key,
        customer_id,
        m.id,
        m.release_id,
        str(kind),
        "customer",
        slot,
        m.revision,
        m.date,
        sdate,
        due,
        str(status),
        reason,
        at,
    )


def bulk_insert_notices(session: Session, rows: list[tuple]) -> None:
    """Insert many notice rows at once: COPY on PostgreSQL, the driver's executemany on SQLite.

    Both bypass SQLAlchemy's per-value processing, so values are rendered here the way the UTCDateTime
    and Date columns store them (naive UTC; on SQLite the text format SQLAlchemy reads back)."""
    conn = session.connection()
    cols = ", ".join(NOTICE_COLUMNS)
    if conn.dialect.name == "postgresql":
        raw = conn.connection.driver_connection
        assert raw is not None
        with raw.cursor() as cur, cur.copy(f"COPY notice ({cols}) FROM STDIN") as copy:
            for tup in rows:
                row = list(tup)
                for i in _TIME_COLS:
                    row[i] = _naive_utc(row[i])
                copy.write_row(row)
        return
    rendered: dict[dt.date, str] = {}

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
    for tup in rows:
        row = list(tup)
        for i in _DATE_COLS + _TIME_COLS:
            row[i] = text(row[i])
        params.append(tuple(row))
    conn.exec_driver_sql(
        f"INSERT INTO notice ({cols}) VALUES ({', '.join('?' * len(NOTICE_COLUMNS))})", params
    )


def _naive_utc(value: dt.datetime | None) -> dt.datetime | None:
    return None if value is None else value.astimezone(dt.UTC).replace(tzinfo=None)


# ------------------------------------------------------------------------------------------ releasing


def _due_stage(at: dt.datetime):
    return sa.and_(N.c.status == NoticeStatus.PLANNED, N.c.kind == NoticeKind.STAGE, N.c.due_at <= at)


def _skip(session: Session, where, reason: str) -> int:
    res = session.connection().execute(
        N.update().where(where).values(status=NoticeStatus.SKIPPED, status_reason=reason)
    )
    return res.rowcount or 0


def agreed_at_due(A: sa.Table = table_of(Agreement)):
    """SQL: the notice's customer had agreed an upgrade of its release by the notice's due instant (and
    has not gone back on it since). Judged at the due instant, so a late tick changes nothing.

    A plan at risk does not count (`policy.counts_as_agreed`): a `planned` upgrade dated after the
    milestone the notice speaks of, or without a target or date."""
    AC, later = table_of(AgreementChange), sa.alias(table_of(AgreementChange), "later")

    def counts(t):
        return sa.or_(
            t.c.status.in_(["acknowledged", "completed"]),
            sa.and_(
                t.c.status == "planned",
                t.c.target_version.is_not(None),
                t.c.planned_date.is_not(None),
                t.c.planned_date <= N.c.milestone_date,
            ),
        )

    went_back = (
        sa.exists()
        .where(later.c.agreement_id == A.c.id, ~counts(later), later.c.at > AC.c.at)
        .correlate_except(later)
    )
    since = (
        sa.select(AC.c.id)
        .where(AC.c.agreement_id == A.c.id, counts(AC), AC.c.at <= N.c.due_at, ~went_back)
        .correlate_except(AC)
    )
    return (
        sa.exists()
        .where(
            A.c.customer_id == N.c.customer_id, A.c.release_id == N.c.release_id, counts(A), sa.exists(since)
        )
        .correlate_except(A)
    )


def release_due(session: Session, at: dt.datetime) -> ReleaseResult:
    """Decide what is due at `at` and create its deliveries. The caller commits."""
    lock_planner(session)
    result = ReleaseResult()
    C = table_of(Customer)
    conn = session.connection()
    outage = at - policy.CATCH_UP_GRACE

    # After an outage (a tick later than the grace), a milestone that has passed on the customer's own
    # calendar day is history: not notified. One pass per timezone with something that overdue.
    late = sa.and_(_due_stage(at), N.c.due_at < outage)
    zones = (
        conn.execute(
            sa.select(C.c.timezone).distinct().where(C.c.id.in_(sa.select(N.c.customer_id).where(late)))
        )
        .scalars()
        .all()
    )
    for tz in zones:
        local_today = policy.local_date(at, tz)
        in_zone = sa.select(C.c.id).where(C.c.timezone == tz)
        result.skipped[SkipReason.MILESTONE_PASSED] += _skip(
            session,
            sa.and_(late, N.c.customer_id.in_(in_zone), N.c.milestone_date < local_today),
            SkipReason.MILESTONE_PASSED,
        )

    agreed = agreed_at_due()

    # Escalate to the rep: a due 1-month stage without an agreement, whether it goes out now, was caught
    # up by a later stage, or was covered by a change notice after a move. Once per milestone date (the
    # key names it): a move re-plans the escalation for the new date.
    one_month_due = sa.and_(
        N.c.kind == NoticeKind.STAGE,
        N.c.slot == policy.ESCALATION_STAGE,
        N.c.due_at <= at,
        N.c.due_at
        > at - dt.timedelta(days=62),  # a 1-month stage of a milestone not yet past: keeps the scan short
        N.c.release_id.is_not(None),
        N.c.milestone_date >= at.date() - dt.timedelta(days=1),
        sa.or_(
            N.c.status == NoticeStatus.PLANNED,
            sa.and_(
                N.c.status == NoticeStatus.SKIPPED,
                N.c.status_reason.in_([SkipReason.COVERED_BY_CHANGE, SkipReason.SUPERSEDED]),
            ),
        ),
    )
    esc_source = conn.execute(
        sa.select(
            N.c.customer_id, N.c.milestone_id, N.c.release_id, N.c.revision, N.c.milestone_date, N.c.due_at
        ).where(one_month_due, ~agreed)
    ).all()
    if esc_source:
        # Due in the rep's daily digest after the stage fell due (judged at that instant, not the tick's).
        rep_of = dict(
            conn.execute(
                sa.select(C.c.id, C.c.account_rep).where(C.c.id.in_({r.customer_id for r in esc_source}))
            ).all()
        )
        settings = reps.settings_of(session, rep_of.values())
        hour = get_settings().send_hour
        by_key: dict[str, dict[str, Any]] = {}
        for r in esc_source:
            key = notice_key(
                NoticeKind.ESCALATION,
                r.customer_id,
                r.milestone_id,
                policy.ESCALATION_STAGE,
                r.milestone_date,
            )
            by_key[key] = {
                "key": key,
                "customer_id": r.customer_id,
                "milestone_id": r.milestone_id,
                "release_id": r.release_id,
                "kind": NoticeKind.ESCALATION.value,
                "audience": "rep",
                "slot": policy.ESCALATION_STAGE,
                "revision": r.revision,
                "milestone_date": r.milestone_date,
                "stage_date": None,
                "status": NoticeStatus.PLANNED.value,
                "due_at": policy.digest_due(
                    _aware(r.due_at), settings[rep_of[r.customer_id].lower()].timezone, hour
                ),
                "created_at": at,
            }
        have = set(conn.execute(sa.select(N.c.key).where(N.c.key.in_(list(by_key)))).scalars())
        rows = [row for key, row in by_key.items() if key not in have]
        # RETURNING, not rowcount: psycopg reports -1 for INSERT ... ON CONFLICT DO NOTHING.
        for i in range(0, len(rows), 500):  # multi-row VALUES: stay under SQLite's variable limit
            res = conn.execute(insert_ignore(session, N).values(rows[i : i + 500]).returning(N.c.id))
            result.escalations += len(res.all())

    # Routine reminders stop once the customer has agreed on an upgrade for the release.
    result.skipped[SkipReason.AGREEMENT] += _skip(
        session, sa.and_(_due_stage(at), agreed), SkipReason.AGREEMENT
    )

    # An outage: of several overdue stages of one customer and milestone date, only the latest is sent.
    later = sa.alias(N, "later")
    newer_due = sa.exists().where(
        later.c.customer_id == N.c.customer_id,
        later.c.milestone_id == N.c.milestone_id,
        later.c.milestone_date == N.c.milestone_date,
        later.c.kind == NoticeKind.STAGE,
        later.c.due_at <= at,
        later.c.stage_date > N.c.stage_date,
        later.c.status.in_([NoticeStatus.PLANNED, NoticeStatus.RELEASED, NoticeStatus.SENT]),
    )
    result.skipped[SkipReason.OUTAGE] += _skip(session, sa.and_(late, newer_due), SkipReason.OUTAGE)

    # Claim what is due (conditional update: only rows still planned).
    released = (
        session.connection()
        .execute(
            N.update()
            .where(N.c.status == NoticeStatus.PLANNED, N.c.due_at <= at)
            .values(status=NoticeStatus.RELEASED, released_at=at)
            .returning(N.c.id)
        )
        .scalars()
        .all()
    )
    result.released = len(released)
    if released:
        result.deliveries = _create_deliveries(session, released, at)
    result.skipped = Counter({str(k): v for k, v in result.skipped.items() if v})
    return result


def _create_deliveries(session: Session, notice_ids: Sequence[int], at: dt.datetime) -> int:
    """Every channel's recipients of the released notices (lifecycle.channels.fanout): one INSERT ...
    SELECT per channel source; duplicates are impossible (unique key)."""
    from lifecycle.channels.fanout import create_deliveries

    return create_deliveries(session, notice_ids, at)


def customers_with_due_deliveries(session: Session, at: dt.datetime, limit: int | None = None) -> list[int]:
    q = (
        sa.select(D.c.customer_id)
        .where(D.c.status == DeliveryStatus.PENDING, D.c.next_attempt_at <= at)
        .distinct()
        .order_by(D.c.customer_id)
    )
    if limit:
        q = q.limit(limit)
    return list(session.connection().execute(q).scalars().all())


def recover_stale(session: Session, at: dt.datetime) -> int:
    """Take back claims of dead or stalled workers and settle unknown sends (lifecycle.recovery.recover:
    what could not have been sent goes back to pending, what may have been sent is reconciled)."""
    from lifecycle.recovery import recover

    return recover(session, at)
