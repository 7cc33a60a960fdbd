"""Static calendar exports: `DIR/products/<slug>.ics` and `DIR/customers/<key>.ics`.

Files are written atomically (temporary file + rename) and only when their bytes change, so a web
server or a sync job serving the folder sees either the old or the new file, and unchanged files keep
their modification time.

Refreshed by what changed (`refresh_exports`, called by the tick), in two steps:

1. Candidates. A registry change concerns the calendar of the product of each re-planned milestone and
   those of the customers who run (or ran) its release (`feeds.affected`), plus the customers the
   caller names and any file that does not exist yet (a new product or customer).
2. Fingerprints. `DIR/.manifest.json` keeps, per file, a fingerprint of everything its bytes are built
   from (`feeds.Feeds.*_fingerprint`: every field of its rows, whether each milestone is history, the
   settings, the renderer's code). A candidate whose fingerprint is unchanged is neither rendered nor
   rewritten: a new deployment re-planned all the milestones of its release, but only the deploying
   customer's calendar changed, so only that one is rendered.

History changes with the date: a milestone that just passed loses its alarms and acknowledgement link.
So the first refresh of a new UTC day (the manifest's `as_of`), or a refresh that is not told what
changed, takes every calendar as a candidate: it loads the rows and compares fingerprints (cheap),
and renders only the calendars whose inputs changed (the products and customers of the milestones that
just passed, and every customer calendar with acknowledgement links on the 1st of a month, when the
links are signed anew). That daily check is also the safety net for changes that re-plan no milestone
(a product renamed, a release's upgrade target or release date, a customer's name or locale): they
reach the exports on the next UTC day at the latest, and at once through `lifecycle calendar export`
and the HTTP feeds, which are always built fresh.

`export` (the CLI's `lifecycle calendar export`) renders everything regardless of the manifest: the way
to repair a folder edited by hand.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlmodel import Session, select

from lifecycle.calendar import feeds, ics
from lifecycle.config import get_settings
from lifecycle.models import Customer, Product, pk

MANIFEST = ".manifest.json"
LOCK = ".lock"


@dataclass
class Refresh:
    """What a refresh did: calendars whose inputs it compared, rendered, and the files it (re)wrote."""

    checked: int = 0
    rendered: int = 0
    written: list[Path] = field(default_factory=list)


@dataclass
class Manifest:
    """`DIR/.manifest.json`: the UTC day of the last full check, and the fingerprint of every file."""

    as_of: dt.date | None = None
    files: dict[str, str] = field(default_factory=dict)

    @classmethod
    def read(cls, out: Path) -> Manifest:
        try:
            data = json.loads((out / MANIFEST).read_text())
            return cls(
                dt.date.fromisoformat(data["as_of"]), {str(k): str(v) for k, v in data["files"].items()}
            )
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return cls()  # never written, or unreadable: everything is checked and rendered again

    def write(self, out: Path) -> None:
        data = {
            "as_of": self.as_of.isoformat() if self.as_of else None,
            "files": dict(sorted(self.files.items())),
        }
        write_if_changed(out / MANIFEST, (json.dumps(data, indent=1) + "\n").encode())


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


@contextlib.contextmanager
def _locked(out: Path) -> Iterator[None]:
    """One refresh of a folder at a time (two overlapping ticks, a tick and the CLI): otherwise the
    manifest of one could record fingerprints for the bytes the other wrote from an older snapshot."""
    out.mkdir(parents=True, exist_ok=True)
    with open(out / LOCK, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def day_changed(at: dt.datetime, out_dir: Path | None = None) -> bool:
    """True when the folder was last fully checked on another UTC day than `at`'s (history has moved)."""
    as_of = Manifest.read(_out(out_dir)).as_of
    return as_of is not None and as_of != ics.today(at)


def _refresh(
    session: Session,
    out: Path,
    at: dt.datetime,
    manifest: Manifest,
    products: list[Product],
    customers: list[Customer],
    *,
    everything: bool,
    force: bool,
) -> Refresh:
    data = feeds.Feeds(
        session,
        at,
        products=None if everything else [pk(p) for p in products],
        customers=None if everything else [pk(c) for c in customers],
    )
    result = Refresh()
    jobs: list[tuple[str, Callable[[Any], str], Callable[[Any], bytes], Product | Customer]] = [
        (f"products/{p.slug}.ics", data.product_fingerprint, data.product, p) for p in products
    ]
    jobs += [(f"customers/{c.key}.ics", data.customer_fingerprint, data.customer, c) for c in customers]
    for name, fingerprint_of, render, row in jobs:
        result.checked += 1
        fingerprint = fingerprint_of(row)
        path = out / name
        if not force and manifest.files.get(name) == fingerprint and path.exists():
            continue
        result.rendered += 1
        if write_if_changed(path, render(row)):
            result.written.append(path)
        manifest.files[name] = fingerprint
    if everything:
        manifest.as_of = ics.today(at)
    manifest.write(out)
    return result


def _all(session: Session) -> tuple[list[Product], list[Customer]]:
    return (
        list(session.exec(select(Product).order_by(Product.slug)).all()),
        list(session.exec(select(Customer).order_by(Customer.key)).all()),
    )


def export(session: Session, out_dir: Path | None = None, *, at: dt.datetime) -> Refresh:
    """Render every product and customer calendar as of `at` (whatever the manifest says)."""
    out = _out(out_dir)
    with _locked(out):
        products, customers = _all(session)
        return _refresh(
            session, out, at, Manifest.read(out), products, customers, everything=True, force=True
        )


def export_all(session: Session, out_dir: Path | None = None, *, at: dt.datetime) -> list[Path]:
    """Write every calendar (default dir: LIFECYCLE_CALENDAR_DIR). Returns the files actually
    (re)written: a file whose bytes would not change is left alone. A handful of queries, whatever the
    number of feeds."""
    return export(session, out_dir, at=at).written


def refresh_exports(
    session: Session,
    out_dir: Path | None = None,
    *,
    at: dt.datetime,
    milestone_ids: Iterable[int] | None = None,
    customer_ids: Iterable[int] = (),
) -> Refresh:
    """Bring the exports up to date after a change: the calendars of the products of `milestone_ids`
    and of the customers who run them, of `customer_ids`, and missing files are candidates, and those
    whose fingerprint changed are rendered. Every calendar is a candidate when `milestone_ids` is None
    (the caller does not know what changed), when the folder has no manifest, or on a new UTC day."""
    out = _out(out_dir)
    with _locked(out):
        manifest = Manifest.read(out)
        if milestone_ids is None or manifest.as_of != ics.today(at):
            products, customers = _all(session)
            return _refresh(session, out, at, manifest, products, customers, everything=True, force=False)
        product_ids, customer_ids = feeds.affected(session, milestone_ids, customer_ids)
        product_ids |= _missing(session, Product.id, Product.slug, out / "products")
        customer_ids |= _missing(session, Customer.id, Customer.key, out / "customers")
        if not product_ids and not customer_ids:
            return Refresh()
        products = _rows(session, Product, product_ids, "slug")
        customers = _rows(session, Customer, customer_ids, "key")
        return _refresh(session, out, at, manifest, products, customers, everything=False, force=False)


def _missing(session: Session, id_column, name_column, folder: Path) -> set[int]:
    """Ids of the rows whose file is not in `folder` (new products and customers): one listing."""
    try:
        present = {name[:-4] for name in os.listdir(folder) if name.endswith(".ics")}
    except FileNotFoundError:
        present = set()
    return {i for i, name in session.exec(select(id_column, name_column)).all() if name not in present}


def _rows(session: Session, model, ids: set[int], order: str) -> list:
    rows: list = []
    for chunk in feeds.chunks(ids):
        rows.extend(session.exec(select(model).where(model.id.in_(chunk))).all())
    return sorted(rows, key=lambda row: getattr(row, order))
