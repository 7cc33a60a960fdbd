"""The set-based writer of an import (`lifecycle.importing`): the same rows as the registry functions,
written in batches.

The registry functions (`lifecycle.registry`) write one row and one audit row at a time; that is right
for a command that changes one thing, and far too slow for a file of 20,000 customers and 100,000
deployments. Here the current state is loaded once (plain tuples keyed by natural keys), the file is
diffed against it in memory, and inserts, updates and audit rows are written with `executemany` in
batches (SQLite and PostgreSQL alike). The rows are exactly those the registry functions would write:
tests/test_bulk_import.py imports files both ways and compares every row, audit rows included.

What goes through the registry functions still, one at a time: milestone moves, withdrawals and
reinstatements (few per file, and they carry the churn rules: change history, in-flight deliveries
cancelled, re-planning). New milestones, products, releases, customers, contacts and deployments are
written in bulk. Memory: the records read from the file, plus one batch of rows at a time, plus the
natural keys and ids of the rows already in the database.
"""

from __future__ import annotations

import datetime as dt
import json
import operator
from collections.abc import Iterable, Iterator

import sqlalchemy as sa
from sqlmodel import Session

from lifecycle import policy, registry
from lifecycle.errors import InputError, InputErrors
from lifecycle.models import (
    AuditEvent,
    Contact,
    Customer,
    Deployment,
    Milestone,
    MilestoneChange,
    MilestoneStatus,
    Product,
    Release,
    table_of,
)

BATCH = 5000
IN_CHUNK = 900  # ids per IN (...) list: well under every database's limit on bound parameters

P, R, M = table_of(Product), table_of(Release), table_of(Milestone)
C, CT, D = table_of(Customer), table_of(Contact), table_of(Deployment)
A, MC = table_of(AuditEvent), table_of(MilestoneChange)
CUSTOMER_FIELDS = ("name", "timezone", "locale", "account_rep", "service_start", "service_end", "cores")


def _rows(conn: sa.Connection, stmt: sa.Select) -> list[sa.Row]:
    return list(conn.execute(stmt).all())  # fetchall: far cheaper than a fetch per row


def _chunks(items: Iterable, size: int = IN_CHUNK) -> Iterator[list]:
    batch: list = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def _memo(processor):
    """A bind processor that converts each distinct value once: an import's timestamps are all `at`, and
    its dates repeat."""
    if processor is None:
        return None
    seen: dict = {}

    def process(value):
        try:
            return seen[value]
        except KeyError:
            out = seen[value] = processor(value)
            if len(seen) > 100_000:
                seen.clear()
            return out
        except TypeError:  # not hashable
            return processor(value)

    return process


class _Insert:
    """A table's INSERT compiled once for the connection's dialect: rows are converted by the columns'
    own bind processors (the very conversion SQLAlchemy applies) and handed to the driver's executemany,
    without SQLAlchemy's per-statement work for each batch of rows."""

    def __init__(self, conn: sa.Connection, table: sa.Table, columns: Iterable[str]):
        columns = list(columns)
        compiled = table.insert().compile(dialect=conn.dialect, column_keys=columns)
        self.sql = str(compiled)
        order = list(compiled.positiontup or ()) if compiled.positional else columns
        self.positional = compiled.positional
        self.columns = [
            (name, _memo(table.c[name].type._cached_bind_processor(conn.dialect))) for name in order
        ]
        self._values = operator.itemgetter(*order) if len(order) > 1 else (lambda r: (r[order[0]],))
        self._convert = [(i, p) for i, (_, p) in enumerate(self.columns) if p]

    def params(self, rows: list[dict]) -> list:
        values, convert = self._values, self._convert
        out = []
        for r in rows:
            row = values(r)
            if convert:
                row = list(row)
                for i, p in convert:
                    row[i] = p(row[i])
            out.append(tuple(row))
        if self.positional:
            return out
        names = [c for c, _ in self.columns]
        return [dict(zip(names, row, strict=True)) for row in out]


class _Writer:
    """Rows queued per statement, written `BATCH` at a time (executemany). Inserts go straight to the
    driver (`_Insert`); updates, few, through SQLAlchemy."""

    def __init__(self, conn: sa.Connection):
        self.conn = conn
        self.queues: dict[str, tuple[sa.Executable | sa.Table, list[dict]]] = {}
        self.inserts: dict[str, _Insert] = {}

    def add(self, name: str, target: sa.Executable | sa.Table, row: dict) -> None:
        queue = self.queues.setdefault(name, (target, []))[1]
        queue.append(row)
        if len(queue) >= BATCH:
            self.flush(name)

    def flush(self, name: str | None = None) -> None:
        for key in [name] if name else list(self.queues):
            queued = self.queues.get(key)
            if queued is None or not queued[1]:
                continue
            target, rows = queued
            if isinstance(target, sa.Table):
                insert = self.inserts.get(key)
                if insert is None:
                    insert = self.inserts[key] = _Insert(self.conn, target, rows[0])
                if self.conn.dialect.name == "postgresql":
                    self._copy(target, insert, rows)
                else:
                    self.conn.exec_driver_sql(insert.sql, insert.params(rows))
            else:
                self.conn.execute(target, rows)
            rows.clear()

    def _copy(self, table: sa.Table, insert: _Insert, rows: list[dict]) -> None:
        """PostgreSQL: COPY ... FROM STDIN, the values converted as for an INSERT, in this transaction."""
        names = [c for c, _ in insert.columns]
        columns = ", ".join('"' + n + '"' for n in names)
        raw = self.conn.connection.driver_connection
        assert raw is not None  # an open connection
        with raw.cursor() as cur, cur.copy(f'COPY "{table.name}" ({columns}) FROM STDIN') as copy:
            for row in insert.params(rows):
                copy.write_row([row[n] for n in names])

    def insert_all(self, name: str, table: sa.Table, rows: Iterable[dict]) -> None:
        for row in rows:
            self.add(name, table, row)
        self.flush(name)


_JSON = json.JSONEncoder(default=str, ensure_ascii=False)  # json.dumps(..., default=str, ensure_ascii=False)
_STRING = json.encoder.encode_basestring  # the C encoder json.dumps uses for ensure_ascii=False
_CONSTANTS = {None: "null", True: "true", False: "false"}


def audit_json(detail: dict) -> str:
    """`json.dumps(detail, default=str, ensure_ascii=False)`, the same text, for an audit row's detail.

    An import writes one a row (158,075 at the reference fleet): a flat mapping of text, whole numbers,
    dates and flags is written directly, a third of the time `json` takes; anything else goes to `json`."""
    parts = []
    for key, value in detail.items():
        kind = type(value)
        if type(key) is not str:
            return _JSON.encode(detail)
        if kind is str:
            text = _STRING(value)
        elif kind is bool or value is None:
            text = _CONSTANTS[value]
        elif kind is int:
            text = int.__repr__(value)
        elif kind is dt.date:
            text = '"' + value.isoformat() + '"'
        else:
            return _JSON.encode(detail)
        parts.append(_STRING(key) + ": " + text)
    return "{" + ", ".join(parts) + "}"


def _audit_row(at: dt.datetime, action: str, subject: str, detail: dict | None) -> dict:
    """What `registry.audit` writes."""
    return {
        "at": at,
        "actor": None,
        "action": action,
        "subject": subject,
        "detail": audit_json(detail) if detail else None,
    }


def _path_error(path: str, exc: InputError) -> InputErrors:
    return InputErrors([InputError(f"{path}.{exc.field}" if exc.field else path, exc.message)])


def apply(session: Session, products, customers, *, at: dt.datetime, source: str, on_progress=None):
    """Write an import whose records (`importing._Product`, `importing._Customer`) passed every check."""
    from lifecycle.importing import ImportSummary

    summary = ImportSummary(source=source)
    session.flush()
    conn = session.connection()
    writer = _Writer(conn)
    total = sum(
        1 + len(p.milestones) + len(p.retire) + sum(1 + len(r.milestones) for r in p.releases)
        for p in products
    ) + sum(1 + len(c.contacts) + len(c.deployments) for c in customers)
    done = 0

    def progress(n: int = 1) -> None:
        nonlocal done
        done += n
        if on_progress:
            on_progress(done, total)

    if products:
        change_id, hold_until = _products(
            session, conn, writer, products, summary, at=at, source=source, progress=progress
        )
        summary.change_id, summary.hold_until = change_id, hold_until
    if customers:
        _customers(session, conn, writer, customers, summary, at=at, progress=progress)
    writer.flush()
    session.flush()
    session.expire_all()  # rows were written behind the ORM's back: read them afresh from here on
    return summary


# ------------------------------------------------------------------------------ products and releases


def _products(
    session: Session,
    conn: sa.Connection,
    writer: _Writer,
    products,
    summary,
    *,
    at: dt.datetime,
    source: str,
    progress,
) -> tuple[int | None, dt.datetime | None]:
    from lifecycle import importing  # importing imports this module (lazily) too

    slugs = [p.slug for p in products]
    current = {}
    for chunk in _chunks(slugs):
        for found in _rows(conn, sa.select(P.c.id, P.c.slug, P.c.name).where(P.c.slug.in_(chunk))):
            current[found.slug] = found
    audits: list[dict] = []
    for p in products:
        row = current.get(p.slug)
        if row is None:
            writer.add("product+", P, {"slug": p.slug, "name": p.name, "created_at": at})
            audits.append(_audit_row(at, "product.add", p.slug, {"name": p.name}))
            summary.count("products", "created")
        elif row.name != p.name:
            writer.add(
                "product~",
                P.update().where(P.c.id == sa.bindparam("_id")).values(name=sa.bindparam("name")),
                {"_id": row.id, "name": p.name},
            )
            audits.append(_audit_row(at, "product.update", p.slug, {"name": p.name}))
            summary.count("products", "updated")
        else:
            summary.count("products", "unchanged")
        progress()
    writer.flush()
    pid: dict[str, int] = {}
    for chunk in _chunks(slugs):
        pid.update(
            (r.slug, r.id) for r in _rows(conn, sa.select(P.c.id, P.c.slug).where(P.c.slug.in_(chunk)))
        )

    # Releases: the state of every release of these products, then the diff.
    releases: dict[tuple[int, str], sa.Row] = {}
    for chunk in _chunks(pid.values()):
        for row in _rows(
            conn,
            sa.select(R.c.id, R.c.product_id, R.c.version, R.c.released, R.c.upgrade_to, R.c.ended).where(
                R.c.product_id.in_(chunk)
            ),
        ):
            releases[(row.product_id, row.version)] = row
    update_release = (
        R.update()
        .where(R.c.id == sa.bindparam("_id"))
        .values(
            released=sa.bindparam("released"),
            upgrade_to=sa.bindparam("upgrade_to"),
            ended=sa.bindparam("ended"),
        )
    )
    release_change: dict[tuple[str, str], str] = {}
    for p in products:
        for r in p.releases:
            label = f"{p.slug} {r.version}"
            before = releases.get((pid[p.slug], r.version))
            if before is None:
                ended = r.ended if r.ended_known else None
                writer.add(
                    "release+",
                    R,
                    {
                        "product_id": pid[p.slug],
                        "version": r.version,
                        "released": r.released,
                        "upgrade_to": r.upgrade_to,
                        "ended": ended,
                        "created_at": at,
                    },
                )
                audits.append(
                    _audit_row(
                        at,
                        "release.add",
                        label,
                        {"released": r.released, "upgrade_to": r.upgrade_to, "ended": ended},
                    )
                )
                release_change[(p.slug, r.version)] = "created"
                if ended:
                    summary.ended.append({"release": label, "phase": ended})
                continue
            released, upgrade_to, ended = before.released, before.upgrade_to, before.ended
            if r.released is not None:
                released = r.released
            if r.upgrade_to is not None:
                upgrade_to = r.upgrade_to
            if r.ended_known:
                ended = r.ended
            if (released, upgrade_to, ended) != (before.released, before.upgrade_to, before.ended):
                writer.add(
                    "release~",
                    update_release,
                    {"_id": before.id, "released": released, "upgrade_to": upgrade_to, "ended": ended},
                )
                audits.append(
                    _audit_row(
                        at,
                        "release.update",
                        label,
                        {"released": released, "upgrade_to": upgrade_to, "ended": ended},
                    )
                )
                release_change[(p.slug, r.version)] = "updated"
                if ended and ended != before.ended:
                    summary.ended.append({"release": label, "phase": ended})
            else:
                release_change[(p.slug, r.version)] = "unchanged"
    writer.flush()
    rid: dict[tuple[str, str], int] = {}
    slug_of = {v: k for k, v in pid.items()}
    for chunk in _chunks(pid.values()):
        for row in _rows(
            conn, sa.select(R.c.id, R.c.product_id, R.c.version).where(R.c.product_id.in_(chunk))
        ):
            rid[(slug_of[row.product_id], row.version)] = row.id
    writer.insert_all("audit", A, audits)
    audits.clear()

    # Milestones: new ones in bulk; moves, withdrawals and reinstatements through the registry.
    change_set = None

    def change_of_file():
        nonlocal change_set
        if change_set is None:
            change_set = registry.begin_change(session, action="import", summary=f"import {source}", at=at)
        return change_set

    created: list[tuple] = []  # (milestone row, change row without milestone_id, audit row)

    def milestone(p, m, release_version: str | None) -> None:
        if m.action in ("unchanged", "withdrawn"):
            if m.action == "withdrawn":
                summary.notes.append(
                    f"{m.path}: left alone: the milestone is withdrawn in the registry (give "
                    "it a reason in the file, or add it again with `lifecycle milestone add "
                    "... --reason`, to reinstate it)"
                )
            summary.count("milestones", "unchanged")
            progress()
            return
        try:
            if m.action == "create":
                short = registry.check_short_notice(m.date, at, bool(m.effective_reason), m.effective_reason)
                written = registry.customer_reason_json(m.customer_reason)
                release_id = rid[(p.slug, release_version)] if release_version is not None else None
                ch = change_of_file()
                created.append(
                    (
                        {
                            "product_id": pid[p.slug],
                            "release_id": release_id,
                            "scope": release_id or 0,
                            "kind": m.kind,
                            "date": m.date,
                            "status": MilestoneStatus.PLANNED.value,
                            "revision": 1,
                            "short_notice_reason": short,
                            "registered_at": at,
                            "changed_at": at,
                            "needs_plan": True,
                        },
                        {
                            "change_id": ch.id,
                            "revision": 1,
                            "action": "created",
                            "old_date": None,
                            "new_date": m.date,
                            "reason": m.effective_reason if short or m.effective_reason else None,
                            "short_notice": bool(short),
                            "reason_code": m.code,
                            "customer_reason": written,
                            "by": None,
                            "at": at,
                        },
                        _audit_row(at, "milestone.add", m.label, {"date": m.date, "short_notice": short}),
                    )
                )
                change = "created"
                history = policy.is_history(m.date, at)
                summary.history += history
                summary.added.append({"milestone": m.label, "date": m.date.isoformat(), "history": history})
            else:
                product = session.get_one(Product, m.existing.product_id)
                release = session.get(Release, m.existing.release_id) if m.existing.release_id else None
                change = importing.reinstate_or_move(
                    session, m, product, release, at=at, change=change_of_file(), summary=summary
                )
        except InputErrors:
            raise
        except InputError as exc:  # the checks should have caught it; still name the path
            raise _path_error(m.path, exc) from None
        summary.count("milestones", change)
        if policy.is_short_notice(m.date, at):
            summary.short_notice.append(
                {"milestone": m.label, "date": m.date.isoformat(), "reason": m.effective_reason}
            )
        progress()

    for p in products:
        for m in p.milestones:
            milestone(p, m, None)
        for r in p.releases:
            summary.count("releases", release_change[(p.slug, r.version)])
            progress()
            for m in r.milestones:
                milestone(p, m, r.version)
        for ret in p.retire:
            try:
                importing.retire_milestone(session, ret, at=at, change=change_of_file(), summary=summary)
            except InputError as exc:
                raise _path_error(p.path, exc) from None
            progress()
        summary.warnings.extend(p.warnings)
    session.flush()
    if created:
        writer.insert_all("milestone+", M, (c[0] for c in created))
        ids: dict[tuple[int, int, str], int] = {}
        for chunk in _chunks(pid.values()):
            for row in _rows(
                conn, sa.select(M.c.id, M.c.product_id, M.c.scope, M.c.kind).where(M.c.product_id.in_(chunk))
            ):
                ids[(row.product_id, row.scope, row.kind)] = row.id
        writer.insert_all(
            "milestonechange+",
            MC,
            (
                {**c[1], "milestone_id": ids[(c[0]["product_id"], c[0]["scope"], c[0]["kind"])]}
                for c in created
            ),
        )
        writer.insert_all("audit", A, (c[2] for c in created))
    created.clear()
    if change_set is None:
        return None, None
    return change_set.id, change_set.hold_until


# ------------------------------------------------------------------------- customers, contacts, deployments


def _customers(
    session: Session, conn: sa.Connection, writer: _Writer, customers, summary, *, at: dt.datetime, progress
) -> None:
    keys = [c.key for c in customers]
    current: dict[str, sa.Row] = {}
    for chunk in _chunks(keys):
        for found in _rows(
            conn, sa.select(C.c.id, C.c.key, *(C.c[f] for f in CUSTOMER_FIELDS)).where(C.c.key.in_(chunk))
        ):
            current[found.key] = found
    # Pass 1: the customers themselves, so that new ones have ids.
    update_customer = (
        C.update()
        .where(C.c.id == sa.bindparam("_id"))
        .values(**{f: sa.bindparam(f) for f in CUSTOMER_FIELDS})
    )
    outcome: dict[str, tuple[str, dict]] = {}  # key -> (created/updated/unchanged, audit detail)
    dirty_customers: list[int] = []
    for c in customers:
        row = current.get(c.key)
        values = {f: c.values[f] for f in CUSTOMER_FIELDS}
        if row is None:
            writer.add(
                "customer+",
                C,
                {"key": c.key, **values, "calendar_token": registry.new_calendar_token(), "created_at": at},
            )
            outcome[c.key] = ("created", values)
            continue
        changed = {f: val for f, val in values.items() if getattr(row, f) != val}
        if not changed:
            outcome[c.key] = ("unchanged", {})
            continue
        writer.add("customer~", update_customer, {"_id": row.id, **values})
        outcome[c.key] = ("updated", changed)
        if changed.keys() & {"timezone", "service_start", "service_end"}:
            dirty_customers.append(row.id)
    writer.flush()
    cid: dict[str, int] = {k: r.id for k, r in current.items()}
    new_keys = [k for k, (what, _) in outcome.items() if what == "created"]
    for chunk in _chunks(new_keys):
        cid.update((r.key, r.id) for r in _rows(conn, sa.select(C.c.id, C.c.key).where(C.c.key.in_(chunk))))
    current.clear()

    # The state of the contacts and deployments of the customers that were there before.
    existing_ids = [cid[k] for k, (what, _) in outcome.items() if what != "created"]
    contacts: dict[tuple[int, str], sa.Row] = {}
    deployments: dict[tuple[int, int], sa.Row] = {}
    dirty_releases: set[int] = set()
    dirty_products: set[int] = set()
    dirty_set = set(dirty_customers)
    for chunk in _chunks(existing_ids):
        for found in _rows(
            conn,
            sa.select(CT.c.id, CT.c.customer_id, CT.c.email, CT.c.name).where(CT.c.customer_id.in_(chunk)),
        ):
            contacts[(found.customer_id, found.email.lower())] = found
        for found in _rows(
            conn,
            sa.select(D.c.id, D.c.customer_id, D.c.release_id, D.c.cores, D.c.removed_at).where(
                D.c.customer_id.in_(chunk)
            ),
        ):
            deployments[(found.customer_id, found.release_id)] = found
    # Releases named by deployments: (slug, version) -> (release id, product id).
    slugs = {d.product for c in customers for d in c.deployments}
    releases: dict[tuple[str, str], tuple[int, int]] = {}
    for chunk in _chunks(slugs):
        for row in _rows(
            conn,
            sa.select(R.c.id, R.c.product_id, R.c.version, P.c.slug)
            .join(P, P.c.id == R.c.product_id)
            .where(P.c.slug.in_(chunk)),
        ):
            releases[(row.slug, row.version)] = (row.id, row.product_id)
    if dirty_set:  # what `registry._mark_customer_dirty` marks: the releases the customer ran before
        product_of = {r: p for r, p in releases.values()}
        missing = {rel for (cust, rel) in deployments if cust in dirty_set} - product_of.keys()
        for chunk in _chunks(missing):
            product_of.update(
                (r.id, r.product_id)
                for r in _rows(conn, sa.select(R.c.id, R.c.product_id).where(R.c.id.in_(chunk)))
            )
        for cust, rel in deployments:
            if cust in dirty_set:
                dirty_releases.add(rel)
                dirty_products.add(product_of[rel])

    # Pass 2: contacts and deployments, and every audit row in the order the registry writes them.
    update_contact = CT.update().where(CT.c.id == sa.bindparam("_id")).values(name=sa.bindparam("name"))
    update_deployment = (
        D.update()
        .where(D.c.id == sa.bindparam("_id"))
        .values(
            removed_at=sa.bindparam("removed_at"),
            added_at=sa.bindparam("added_at"),
            cores=sa.bindparam("cores"),
        )
    )
    update_cores = D.update().where(D.c.id == sa.bindparam("_id")).values(cores=sa.bindparam("cores"))
    changed_deployments: list[tuple[str, int]] = []  # (path, release id) for the ended-release warnings
    for c in customers:
        what, detail = outcome[c.key]
        summary.count("customers", what)
        if what != "unchanged":
            writer.add(
                "audit",
                A,
                _audit_row(at, f"customer.{'add' if what == 'created' else 'update'}", c.key, detail),
            )
        progress()
        customer_id = cid[c.key]
        for ct in c.contacts:
            row = contacts.get((customer_id, ct.email.lower()))
            if row is None:
                writer.add(
                    "contact+",
                    CT,
                    {
                        "customer_id": customer_id,
                        "email": ct.email,
                        "name": ct.name,
                        "undeliverable": False,
                        "undeliverable_reason": None,
                        "undeliverable_at": None,
                        "created_at": at,
                    },
                )
                writer.add("audit", A, _audit_row(at, "contact.add", c.key, {"email": ct.email}))
                summary.count("contacts", "created")
            elif ct.name and row.name != ct.name:  # a bounced address stays flagged (force=None)
                writer.add("contact~", update_contact, {"_id": row.id, "name": ct.name})
                summary.count("contacts", "updated")
            else:
                summary.count("contacts", "unchanged")
            progress()
        for d in c.deployments:
            release_id, product_id = releases[(d.product, d.version)]
            row = deployments.get((customer_id, release_id))
            if row is None:
                writer.add(
                    "deployment+",
                    D,
                    {
                        "customer_id": customer_id,
                        "release_id": release_id,
                        "cores": d.cores,
                        "added_at": at,
                        "removed_at": None,
                    },
                )
                change = "created"
            elif row.removed_at is not None:
                writer.add(
                    "deployment~",
                    update_deployment,
                    {
                        "_id": row.id,
                        "removed_at": None,
                        "added_at": at,
                        "cores": d.cores if d.cores is not None else row.cores,
                    },
                )
                change = "updated"
            elif d.cores is not None and row.cores != d.cores:
                writer.add("deployment cores", update_cores, {"_id": row.id, "cores": d.cores})
                change = "updated"
            else:
                change = "unchanged"
            summary.count("deployments", change)
            if change != "unchanged":
                dirty_releases.add(release_id)
                dirty_products.add(product_id)
                writer.add(
                    "audit",
                    A,
                    _audit_row(at, "deployment.add", f"{c.key} {d.product} {d.version}", {"cores": d.cores}),
                )
                changed_deployments.append((d.path, release_id))
            progress()
    writer.flush()
    # Ended releases: one look per release, not per deployment.
    warnings = registry.ended_warnings(session, {r for _, r in changed_deployments}, at)
    for path, release_id in changed_deployments:
        if warnings.get(release_id):
            summary.notes.append(f"{path}: warning: {warnings[release_id]}")
    for chunk in _chunks(dirty_releases):
        registry.mark_dirty(session, release_ids=chunk)
    for chunk in _chunks(dirty_products):
        registry.mark_dirty(session, product_ids=chunk)
