"""What a calendar feed contains, which feeds a change affects, and the HTTP caching of feeds.

- A product's public feed: every milestone of the product and of its releases, and the release dates.
- A customer's private feed: the milestones and release dates of every release they still run, and
  the product-level milestones of those products, with acknowledgement links on upcoming ones.
- An email's attachment: the milestones the email speaks of.

`Feeds` loads what any number of feeds need in a handful of queries (never one per feed), and
`ics` turns the rows into bytes; its fingerprints digest those inputs, so the exports can tell that a
feed is unchanged without rendering it. `affected` answers the exports' question "which files may
this change touch": the products of the changed milestones and the customers who deploy them.

The one clock reading of the package is the signing time of acknowledgement links: the ack page
checks a link's age against `ack_link_days` with the real clock (itsdangerous), so links are signed at
the start of the current UTC month of the real clock, not of `at`. Besides milestones turning into
history, a feed therefore changes on its own only on the 1st of a month, and its links stay valid for
about `ack_link_days - 31` days.

HTTP: a strong ETag (a hash of the bytes) and Last-Modified, computed from the database and `at`: the
latest milestone change, release registration or deployment change, the moment the latest milestone
became history (midnight UTC after its date: the feed lost that event's alarms then), and the month's
ack-link signing time. Edits without a timestamp of their own (a release's date or upgrade target, a
name) change the ETag only, which is what calendar apps send back (If-None-Match decides then).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import time
from collections.abc import Iterable
from email.utils import parsedate_to_datetime
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple

import sqlalchemy as sa
from sqlmodel import Session, col, select

from lifecycle import content, links
from lifecycle.calendar import ics
from lifecycle.calendar.ics import MilestoneRow, ReleaseRow
from lifecycle.config import get_settings
from lifecycle.models import (
    Customer,
    Deployment,
    Milestone,
    MilestoneChange,
    MilestoneStatus,
    Product,
    Release,
)
from lifecycle.registry import get_product

# Above this many ids, load every row and pick in Python rather than send a huge IN list.
LOAD_ALL_ABOVE = 2000
CHUNK = 900


def chunks(ids: Iterable[int]) -> Iterable[list[int]]:
    ids = sorted(set(ids))
    for i in range(0, len(ids), CHUNK):
        yield ids[i : i + CHUNK]


# ------------------------------------------------------------------------------------------- loading


def load_milestones(session: Session, condition) -> list[MilestoneRow]:
    """Milestones matching `condition`, with product, release and their latest change: two queries."""
    rows = session.exec(
        select(Milestone, Product, Release)
        .join(Product, col(Product.id) == Milestone.product_id)
        .join(Release, col(Release.id) == Milestone.release_id, isouter=True)
        .where(condition)
    ).all()
    latest: dict[int | None, MilestoneChange] = {}
    if rows:
        changes = session.exec(
            select(MilestoneChange)
            .join(
                Milestone,
                sa.and_(
                    col(Milestone.id) == MilestoneChange.milestone_id,
                    col(Milestone.revision) == MilestoneChange.revision,
                ),
            )
            .where(condition)
            .order_by(col(MilestoneChange.id))
        ).all()
        latest = {ch.milestone_id: ch for ch in changes}  # the last row of the current revision wins
    return [MilestoneRow(m, p, r, latest.get(m.id)) for m, p, r in rows]


def _columns(model) -> list[tuple[str, sa.Column]]:
    """(attribute, column) of every mapped column of a table model, in a fixed order."""
    return [(attr.key, attr.columns[0]) for attr in sa.inspect(model).column_attrs]


def _made(model, columns: list[tuple[str, sa.Column]], values: tuple):
    """A row of `model` that belongs to no session, from `values` in the order of `columns`."""
    return model(**dict(zip((key for key, _ in columns), values, strict=True)))


# Session-free copies of milestone rows, keyed by every column value they were built from (any edit of
# the milestone, its product, its release or its latest change is another key): a delivery run reads the
# values afresh each time and rebuilds only rows whose values changed. Bounded; cleared when full.
_COPIES: dict[tuple, MilestoneRow] = {}
COPIES_MAX = 50_000


def load_copies(session: Session, ids: list[int]) -> list[MilestoneRow]:
    """What `load_milestones` returns for these milestone ids, as session-free copies (they outlive the
    session), read with two plain queries: building ORM objects and copying them was most of the cost of
    an email's `.ics` once a fleet's customers share few milestones."""
    if not ids:
        return []
    parts = [_columns(Milestone), _columns(Product), _columns(Release)]
    change_cols = _columns(MilestoneChange)
    M, P, R = Milestone.__table__, Product.__table__, Release.__table__  # type: ignore[attr-defined]
    MC = MilestoneChange.__table__  # type: ignore[attr-defined]
    conn = session.connection()
    latest: dict[int, tuple] = {}
    for chunk in chunks(ids):
        for ch in conn.execute(
            sa.select(*(c for _, c in change_cols))
            .join(M, sa.and_(M.c.id == MC.c.milestone_id, M.c.revision == MC.c.revision))
            .where(M.c.id.in_(chunk))
            .order_by(MC.c.id)
        ):
            latest[ch.milestone_id] = tuple(ch)  # the last row of the current revision wins
    rows: list[MilestoneRow] = []
    n_m, n_p = len(parts[0]), len(parts[1])
    for chunk in chunks(ids):
        for found in conn.execute(
            sa.select(*(c for part in parts for _, c in part))
            .select_from(M)
            .join(P, P.c.id == M.c.product_id)
            .join(R, R.c.id == M.c.release_id, isouter=True)
            .where(M.c.id.in_(chunk))
        ):
            values = tuple(found)
            change = latest.get(values[0])
            key = (values, change)
            row = _COPIES.get(key)
            if row is None:
                m, p, r = values[:n_m], values[n_m : n_m + n_p], values[n_m + n_p :]
                row = MilestoneRow(
                    _made(Milestone, parts[0], m),
                    _made(Product, parts[1], p),
                    _made(Release, parts[2], r) if r[0] is not None else None,
                    _made(MilestoneChange, change_cols, change) if change is not None else None,
                )
                if len(_COPIES) >= COPIES_MAX:
                    _COPIES.clear()
                _COPIES[key] = row
            rows.append(row)
    return rows


def load_releases(session: Session, condition) -> list[ReleaseRow]:
    return [
        ReleaseRow(r, p)
        for r, p in session.exec(
            select(Release, Product).join(Product, col(Product.id) == Release.product_id).where(condition)
        ).all()
    ]


def active_deployments(
    session: Session, customer_ids: Iterable[int] | None = None
) -> list[tuple[int, int, int]]:
    """(customer id, release id, product id) of every deployment still running."""
    query = (
        select(Deployment.customer_id, Deployment.release_id, Release.product_id)
        .join(Release, col(Release.id) == Deployment.release_id)
        .where(col(Deployment.removed_at).is_(None))
    )
    if customer_ids is None:
        return [(c, r, p) for c, r, p in session.exec(query).all()]
    out: list[tuple[int, int, int]] = []
    for chunk in chunks(customer_ids):
        out.extend(
            (c, r, p) for c, r, p in session.exec(query.where(col(Deployment.customer_id).in_(chunk))).all()
        )
    return out


def _in(column, ids: set[int] | None):
    """`column IN ids`; everything for None or a set too large to send."""
    if ids is None or len(ids) > LOAD_ALL_ABOVE:
        return sa.true()
    return column.in_(sorted(ids)) if ids else sa.false()


def ack_issued_at() -> dt.datetime:
    """The start of the current UTC month of the real clock: when this month's ack links are signed."""
    # time.time(), as itsdangerous itself uses to check them: the one clock reading of the package.
    now = dt.datetime.fromtimestamp(time.time(), dt.UTC)
    return now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


class AckLinks:
    """Acknowledgement links of one build, all signed at `ack_issued_at()`.

    Same secret and salt as `links.ack_token`, so `links.read_ack_token` accepts them.
    """

    def __init__(self, session: Session):
        self.session = session
        self.cache: dict[tuple[int, int], str] = {}
        self.issued: dt.datetime | None = None

    def url(self, customer_id: int, release_id: int) -> str:
        key = (customer_id, release_id)
        if key not in self.cache:
            if self.issued is None:
                self.issued = ack_issued_at()
            self.cache[key] = links.ack_url(self.session, customer_id, release_id, issued_at=self.issued)
        return self.cache[key]


class Feeds:
    """What the feeds of some products and customers need, loaded at once (None: all of them)."""

    def __init__(
        self,
        session: Session,
        at: dt.datetime,
        *,
        products: Iterable[int] | None = None,
        customers: Iterable[int] | None = None,
    ):
        self.at = at
        self.acks = AckLinks(session)
        self._digests: dict[tuple[str, int], str] = {}
        self._secret_digest: str | None = None
        product_ids = None if products is None else set(products)
        customer_ids = None if customers is None else set(customers)
        self.deps: dict[int, tuple[set[int], set[int]]] = {}
        for customer_id, release_id, product_id in active_deployments(session, customer_ids):
            releases, prods = self.deps.setdefault(customer_id, (set(), set()))
            releases.add(release_id)
            prods.add(product_id)
        run_releases = {r for rs, _ in self.deps.values() for r in rs}
        run_products = {p for _, ps in self.deps.values() for p in ps}
        m_cond: sa.ColumnElement[bool]
        r_cond: sa.ColumnElement[bool]
        if product_ids is None or customer_ids is None:
            m_cond = r_cond = sa.true()
        else:
            m_cond = sa.or_(
                _in(Milestone.product_id, product_ids),
                _in(Milestone.release_id, run_releases),
                sa.and_(col(Milestone.release_id).is_(None), _in(Milestone.product_id, run_products)),
            )
            r_cond = sa.or_(_in(Release.product_id, product_ids), _in(Release.id, run_releases))
        self.by_product: dict[int, list[MilestoneRow]] = {}
        self.by_release: dict[int, list[MilestoneRow]] = {}
        self.product_level: dict[int, list[MilestoneRow]] = {}
        for row in load_milestones(session, m_cond):
            assert row.product.id is not None
            self.by_product.setdefault(row.product.id, []).append(row)
            if row.release is not None:
                assert row.release.id is not None
                self.by_release.setdefault(row.release.id, []).append(row)
            else:
                self.product_level.setdefault(row.product.id, []).append(row)
        self.releases: dict[int, ReleaseRow] = {}
        self.product_releases: dict[int, list[ReleaseRow]] = {}
        for rel in load_releases(session, r_cond):
            assert rel.release.id is not None and rel.product.id is not None
            self.releases[rel.release.id] = rel
            self.product_releases.setdefault(rel.product.id, []).append(rel)

    def _customer_rows(
        self, customer: Customer
    ) -> tuple[list[MilestoneRow], list[ReleaseRow], list[int], bool]:
        """(milestone rows, release rows, ids of the releases that get ack links, has deployments)."""
        assert customer.id is not None
        release_ids, product_ids = self.deps.get(customer.id, (set(), set()))
        rows = [row for r in sorted(release_ids) for row in self.by_release.get(r, [])]
        rows += [row for p in sorted(product_ids) for row in self.product_level.get(p, [])]
        acked = sorted(
            {
                row.release.id
                for row in rows
                if row.release is not None
                and row.release.id is not None
                and row.milestone.status != MilestoneStatus.WITHDRAWN
                and not ics.is_history(row, self.at)
            }
        )
        releases = [self.releases[r] for r in sorted(release_ids) if r in self.releases]
        return rows, releases, acked, bool(release_ids)

    def product(self, product: Product) -> bytes:
        assert product.id is not None
        return ics.product_feed(
            product,
            self.by_product.get(product.id, []),
            self.product_releases.get(product.id, []),
            at=self.at,
        )

    def customer(self, customer: Customer) -> bytes:
        rows, releases, acked, deployed = self._customer_rows(customer)
        assert customer.id is not None
        acks = {r: self.acks.url(customer.id, r) for r in acked}
        return ics.customer_feed(
            customer, rows, releases, at=self.at, has_deployments=deployed, ack_urls=acks
        )

    # Fingerprints: a digest of everything a feed's bytes are built from (every field of its rows, the
    # history flag of each milestone rather than `at`, the settings and the code of the renderer), so
    # that an unchanged fingerprint means unchanged bytes and the feed need not be rendered at all.

    def _digest(self, kind: str, row) -> str:
        key = (kind, row.milestone.id if kind == "m" else row.release.id)
        if key not in self._digests:
            parts: tuple
            if kind == "m":
                parts = (
                    _fields(row.milestone),
                    _fields(row.product),
                    _fields(row.release),
                    _fields(row.change),
                    ics.is_history(row, self.at),
                )
            else:
                parts = (_fields(row.release), _fields(row.product))
            self._digests[key] = _hash(parts)
        return self._digests[key]

    def product_fingerprint(self, product: Product) -> str:
        assert product.id is not None
        return _hash(
            (
                _renderer(),
                _settings(),
                _fields(product),
                sorted(self._digest("m", r) for r in self.by_product.get(product.id, [])),
                sorted(self._digest("r", r) for r in self.product_releases.get(product.id, [])),
            )
        )

    def customer_fingerprint(self, customer: Customer) -> str:
        rows, releases, acked, deployed = self._customer_rows(customer)
        acks = (ack_issued_at(), self._secret(), acked) if acked else None
        return _hash(
            (
                _renderer(),
                _settings(),
                _fields(customer),
                sorted(self._digest("m", r) for r in rows),
                sorted(self._digest("r", r) for r in releases),
                deployed,
                acks,
            )
        )

    def _secret(self) -> str:
        if self._secret_digest is None:
            self._secret_digest = _hash(links.secret_key(self.acks.session))
        return self._secret_digest


# The planner's bookkeeping, never part of an event.
_NOT_RENDERED = frozenset({"needs_plan"})


def _fields(obj) -> tuple | None:
    """Every field of a row (but bookkeeping): a field added later is in the fingerprint by itself."""
    if obj is None:
        return None
    return tuple(getattr(obj, name) for name in type(obj).model_fields if name not in _NOT_RENDERED)


def _hash(value) -> str:
    return hashlib.sha256(repr(value).encode()).hexdigest()[:32]


def _settings() -> tuple:
    settings = get_settings()
    return settings.base_url, settings.stage_list


@lru_cache
def _renderer() -> str:
    """The code that turns rows into bytes: a new version renders every feed again."""
    return _hash([Path(str(module.__file__)).read_bytes() for module in (ics, content)])


# ------------------------------------------------------------------------------------------ public API


def product_feed(session: Session, product_slug: str, at: dt.datetime) -> bytes:
    """The public feed of one product as of `at`. Raises NotFound for an unknown slug."""
    product = get_product(session, product_slug)
    assert product.id is not None
    return Feeds(session, at, products=[product.id], customers=[]).product(product)


def customer_feed(session: Session, customer: Customer, at: dt.datetime) -> bytes:
    """The private feed of one customer as of `at`, in their locale."""
    assert customer.id is not None
    return Feeds(session, at, products=[], customers=[customer.id]).customer(customer)


class CustomerRef(NamedTuple):
    """What an attachment needs of its customer (a delivery run has it without loading the row)."""

    id: int
    locale: str


def remember(session: Session, milestone_ids: Iterable[int], memo: dict) -> dict[int, MilestoneRow]:
    """The rows of these milestones kept in `memo` (a delivery run's), reading those it does not hold
    yet: a channel that builds many attachments reads them all at once before (`EmailChannel`)."""
    known = memo.setdefault("ics-rows", {})
    missing = sorted({int(i) for i in milestone_ids} - known.keys())
    if missing:
        for row in load_copies(session, missing):
            known[row.milestone.id] = row  # outlives this session (sessions expire on commit)
    return known


def attachment(
    session: Session,
    milestone_ids: list[int],
    at: dt.datetime,
    customer: Customer | CustomerRef | None = None,
    memo: dict | None = None,
) -> bytes:
    """The `.ics` attached to an email (MIME type `text/calendar`, METHOD:PUBLISH): the events of the
    given milestones, linking to the portal with acknowledgement links when it goes to a customer.

    `memo`: a dict kept for one delivery run (the attachments of many customers): each milestone's row
    is read once per run; links are signed per customer."""
    ids = sorted({int(i) for i in milestone_ids})
    if memo is None:
        rows = load_milestones(session, col(Milestone.id).in_(ids)) if ids else []
    else:
        known = remember(session, ids, memo)
        rows = [known[i] for i in ids if i in known]
    if customer is None:
        return ics.attachment(rows, at=at)
    acks = AckLinks(session)
    assert customer.id is not None
    urls = {
        row.release.id: acks.url(customer.id, row.release.id)
        for row in rows
        if row.release is not None
        and row.release.id is not None
        and row.milestone.status != MilestoneStatus.WITHDRAWN
        and not ics.is_history(row, at)
    }
    return ics.attachment(rows, at=at, locale=customer.locale, audience="customer", ack_urls=urls)


def affected(
    session: Session, milestone_ids: Iterable[int], customer_ids: Iterable[int] = ()
) -> tuple[set[int], set[int]]:
    """(product ids, customer ids) whose feeds a change of these milestones (and customers) touches:
    the milestones' products, and every customer who runs or ran a release they concern (a removed
    deployment takes its events out of the customer's feed)."""
    product_ids: set[int] = set()
    release_ids: set[int] = set()
    product_level: set[int] = set()
    for chunk in chunks(milestone_ids):
        for product_id, release_id in session.exec(
            select(Milestone.product_id, Milestone.release_id).where(col(Milestone.id).in_(chunk))
        ).all():
            product_ids.add(product_id)
            if release_id is None:
                product_level.add(product_id)
            else:
                release_ids.add(release_id)
    customers = set(customer_ids)
    deploying = (
        select(Deployment.customer_id).join(Release, col(Release.id) == Deployment.release_id).distinct()
    )
    for chunk in chunks(release_ids):
        customers.update(session.exec(deploying.where(col(Deployment.release_id).in_(chunk))).all())
    for chunk in chunks(product_level):
        customers.update(session.exec(deploying.where(col(Release.product_id).in_(chunk))).all())
    return product_ids, customers


# ----------------------------------------------------------------------------------------- HTTP caching


def etag_of(data: bytes) -> str:
    return '"' + hashlib.sha256(data).hexdigest()[:32] + '"'


def not_modified(
    if_none_match: str | None, if_modified_since: str | None, etag: str, last_modified: dt.datetime
) -> bool:
    """RFC 9110 13.2.2: If-None-Match decides when present; If-Modified-Since only otherwise."""
    if if_none_match is not None:
        if if_none_match.strip() == "*":
            return True
        tags = {t.strip().removeprefix("W/") for t in if_none_match.split(",")}  # weak comparison for GET
        return etag in tags
    if if_modified_since:
        try:
            since = parsedate_to_datetime(if_modified_since)
        except (TypeError, ValueError, IndexError):
            return False
        if since is None or since.tzinfo is None:
            return False
        return last_modified.replace(microsecond=0) <= since
    return False


def _aware(value) -> dt.datetime | None:
    """Aggregates bypass the column type on SQLite: normalise to an aware UTC datetime."""
    if value is None:
        return None
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def _day(value) -> dt.date | None:
    if value is None or isinstance(value, dt.date):
        return value
    return dt.date.fromisoformat(str(value)[:10])


def _milestone_stamps(session: Session, condition, at: dt.datetime) -> tuple[list[dt.datetime | None], bool]:
    """([latest change, when the latest milestone became history], whether an ack link is in the feed)."""
    today = ics.today(at)
    planned = col(Milestone.status) != MilestoneStatus.WITHDRAWN
    changed, past, upcoming = session.exec(
        select(
            sa.func.max(Milestone.changed_at),
            sa.func.max(sa.case((sa.and_(planned, col(Milestone.date) < today), Milestone.date))),
            sa.func.count(
                sa.case(
                    (
                        sa.and_(
                            planned,
                            col(Milestone.date) >= today,
                            col(Milestone.release_id).is_not(None),
                            col(Release.ended).is_(None),
                        ),
                        Milestone.id,
                    )
                )
            ),
        )
        .select_from(Milestone)
        .join(Release, col(Release.id) == Milestone.release_id, isouter=True)
        .where(condition)
    ).one()
    past = _day(past)
    became_history = dt.datetime.combine(past + dt.timedelta(days=1), dt.time(), dt.UTC) if past else None
    return [_aware(changed), became_history], bool(upcoming)


def product_last_modified(session: Session, product: Product, at: dt.datetime) -> dt.datetime:
    """When the product feed last changed: a milestone change, a new release, a milestone turning into
    history, else the product's creation."""
    stamps, _ = _milestone_stamps(session, Milestone.product_id == product.id, at)
    stamps.append(
        _aware(
            session.exec(
                select(sa.func.max(Release.created_at)).where(Release.product_id == product.id)
            ).one()
        )
    )
    stamps.append(product.created_at)
    return max(s for s in stamps if s is not None)


def customer_last_modified(session: Session, customer: Customer, at: dt.datetime) -> dt.datetime:
    """When the customer feed last changed: the latest change of an included milestone or of one of
    the customer's deployments (adding or removing one changes the feed), a milestone turning into
    history, this month's ack-link signing when the feed has ack links, else their creation."""
    assert customer.id is not None
    deps = active_deployments(session, [customer.id])
    stamps: list[dt.datetime | None] = [customer.created_at]
    if deps:
        release_ids, product_ids = sorted({r for _, r, _ in deps}), sorted({p for _, _, p in deps})
        cond = sa.or_(
            col(Milestone.release_id).in_(release_ids),
            sa.and_(col(Milestone.release_id).is_(None), col(Milestone.product_id).in_(product_ids)),
        )
        milestone_stamps, has_acks = _milestone_stamps(session, cond, at)
        stamps.extend(milestone_stamps)
        if has_acks:
            stamps.append(ack_issued_at())
    row = session.exec(
        select(sa.func.max(Deployment.added_at), sa.func.max(Deployment.removed_at)).where(
            Deployment.customer_id == customer.id
        )
    ).one()
    stamps.extend(_aware(s) for s in row)
    return max(s for s in stamps if s is not None)
