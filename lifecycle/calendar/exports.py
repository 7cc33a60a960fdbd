"""Static calendar exports: `DIR/products/<slug>.ics` and `DIR/customers/<key>.ics`.

Files are written atomically (temporary file + rename) and only when their bytes change, so a web
server or a sync job serving the folder sees either the old or the new file, and unchanged files keep
their modification time.

Refreshed by what changed (`refresh_exports`): a registry change re-renders only the files it
affects, the product's calendar and the calendars of the customers who deploy it (`feeds.affected`),
plus files that do not exist yet. History changes with the date (a milestone that just passed loses
its alarms and acknowledgement link), so the first refresh of a new UTC day re-renders everything;
the UTC date of the last full render is kept in `DIR/.as-of`. That daily full refresh is also the
safety net for changes that re-plan no milestone (a product renamed, a release's upgrade target or
release date changed, a new customer's or release's first dates): those reach the exports the next
UTC day at the latest, and at once through `lifecycle calendar export` and the HTTP feeds, which are
always built fresh.
"""

from __future__ import annotations

import datetime as dt
import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from sqlmodel import Session, select

from lifecycle.calendar import feeds, ics
from lifecycle.config import get_settings
from lifecycle.models import Customer, Product

STAMP = ".as-of"


@dataclass
class Refresh:
    """What a refresh did: how many files it rendered, which it (re)wrote, and whether it was full."""

    rendered: int = 0
    written: list[Path] = field(default_factory=list)
    full: bool = False


def write_if_changed(path: Path, data: bytes) -> bool:
    """Write atomically (temporary file + rename), and only when the bytes differ. True if written."""
    try:
        if path.read_bytes() == data:
            return False
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return True


def _out(out_dir: Path | None) -> Path:
    return Path(out_dir) if out_dir is not None else get_settings().calendar_dir


def rendered_on(out_dir: Path | None = None) -> dt.date | None:
    """The UTC date of the last full render of the folder, or None (never, or an unreadable stamp)."""
    try:
        return dt.date.fromisoformat((_out(out_dir) / STAMP).read_text().strip())
    except (OSError, ValueError):
        return None


def day_changed(at: dt.datetime, out_dir: Path | None = None) -> bool:
    """True when the folder was fully rendered on another UTC day than `at`'s (history has moved)."""
    day = rendered_on(out_dir)
    return day is not None and day != ics.today(at)


def _render(session: Session, out: Path, at: dt.datetime, products: list[Product],
            customers: list[Customer], *, full: bool) -> Refresh:
    data = feeds.Feeds(session, at, products=None if full else [p.id for p in products],
                       customers=None if full else [c.id for c in customers])
    result = Refresh(full=full)
    for product in products:
        path = out / "products" / f"{product.slug}.ics"
        result.rendered += 1
        if write_if_changed(path, data.product(product)):
            result.written.append(path)
    for customer in customers:
        path = out / "customers" / f"{customer.key}.ics"
        result.rendered += 1
        if write_if_changed(path, data.customer(customer)):
            result.written.append(path)
    return result


def export(session: Session, out_dir: Path | None = None, *, at: dt.datetime) -> Refresh:
    """Render every product and customer calendar as of `at` and record the day in `DIR/.as-of`."""
    out = _out(out_dir)
    products = list(session.exec(select(Product).order_by(Product.slug)).all())
    customers = list(session.exec(select(Customer).order_by(Customer.key)).all())
    result = _render(session, out, at, products, customers, full=True)
    out.mkdir(parents=True, exist_ok=True)
    write_if_changed(out / STAMP, f"{ics.today(at).isoformat()}\n".encode())
    return result


def export_all(session: Session, out_dir: Path | None = None, *, at: dt.datetime) -> list[Path]:
    """Write every calendar (default dir: LIFECYCLE_CALENDAR_DIR). Returns the files actually
    (re)written: a file whose bytes would not change is left alone. A handful of queries, whatever the
    number of feeds."""
    return export(session, out_dir, at=at).written


def refresh_exports(session: Session, out_dir: Path | None = None, *, at: dt.datetime,
                    milestone_ids: Iterable[int] | None = None,
                    customer_ids: Iterable[int] = ()) -> Refresh:
    """Bring the exports up to date after a change: re-render the calendars of the products of
    `milestone_ids` and of the customers who deploy them, of `customer_ids`, and the missing files.

    Everything is re-rendered when `milestone_ids` is None (the caller does not know what changed),
    when the folder has never been fully rendered, or on the first refresh of a new UTC day.
    """
    out = _out(out_dir)
    if milestone_ids is None or rendered_on(out) != ics.today(at):
        return export(session, out, at=at)
    product_ids, customer_ids = feeds.affected(session, milestone_ids, customer_ids)
    product_ids |= _missing(session, Product.id, Product.slug, out / "products")
    customer_ids |= _missing(session, Customer.id, Customer.key, out / "customers")
    if not product_ids and not customer_ids:
        return Refresh()
    products = _rows(session, Product, product_ids, Product.slug)
    customers = _rows(session, Customer, customer_ids, Customer.key)
    return _render(session, out, at, products, customers, full=False)


def _missing(session: Session, id_column, name_column, folder: Path) -> set[int]:
    """Ids of the rows whose file is not in `folder` (new products and customers): one listing."""
    try:
        present = {name[:-4] for name in os.listdir(folder) if name.endswith(".ics")}
    except FileNotFoundError:
        present = set()
    return {i for i, name in session.exec(select(id_column, name_column)).all() if name not in present}


def _rows(session: Session, model, ids: set[int], order) -> list:
    rows = []
    for chunk in feeds.chunks(ids):
        rows.extend(session.exec(select(model).where(model.id.in_(chunk))).all())
    return sorted(rows, key=lambda row: getattr(row, order.key))
