"""Bulk import: the registry file (YAML or JSON) and endoflife.date API v1 JSON.

All or nothing. The whole file is read into plain records and checked first — every field, unknown
keys, duplicates within the file, references to releases, and the short-notice guard against the dates
already in the database and `at` — and every problem is collected with its path
(`customers[3].timezone: unknown timezone 'Asia/Shangai'`). Only a file without a single error is
written, in the caller's transaction: set-based by `lifecycle.bulkimport` (the same rows and audit rows
as the registry functions, in batches), or row by row through the registry functions (`writer="rows"`,
the reference it is tested against). Re-importing is an idempotent upsert by natural keys; a changed
milestone date is a move.

Imports are authoritative for what they cover:
- an endoflife.date file is the truth for its product: a release milestone no longer in the file is
  withdrawn ("removed upstream"), a withdrawn one that is back is reinstated, and a phase marked ended
  without a date (`isEol: true` with `eolFrom: null`, or `eolFrom: true`) records the release as
  ended (history, never notified; a planned future date for that phase is moved to the import day);
- a registry file keeps milestones it does not mention, unless a product says
  `missing_milestones: withdraw`; a phase given as `true` records the release as ended.
The summary lists every addition, move, withdrawal, reinstatement and release marked ended.
"""

from __future__ import annotations

import datetime as dt
import difflib
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlmodel import Session, col, select

from lifecycle import loader, policy, registry
from lifecycle import validation as v
from lifecycle.errors import InputError, InputErrors
from lifecycle.models import Milestone, MilestoneKind, MilestoneStatus, Product, RegistryChange, Release, pk

ENTITIES = ("products", "releases", "milestones", "customers", "contacts", "deployments")
Progress = Callable[[int, int], None]  # (done, total)

# ------------------------------------------------------------------------------------------- reading

# Files and request bodies are read by lifecycle.loader: one strict reader for YAML and JSON (limits,
# duplicate keys, encodings, truncation). `load_file` stays importable from here.
load_file = loader.load_file


# ------------------------------------------------------------------------------------- the summary


@dataclass
class ImportSummary:
    """What an import did: counts per entity, the moves, short-notice and history milestones."""

    source: str
    counts: dict[str, dict[str, int]] = field(
        default_factory=lambda: {e: {"created": 0, "updated": 0, "unchanged": 0} for e in ENTITIES}
    )
    added: list[dict] = field(default_factory=list)
    moves: list[dict] = field(default_factory=list)
    withdrawn: list[dict] = field(default_factory=list)
    reinstated: list[dict] = field(default_factory=list)
    ended: list[dict] = field(default_factory=list)  # releases marked ended without a date
    warnings: list[str] = field(default_factory=list)  # recorded, but worth a look (upstream order)
    short_notice: list[dict] = field(default_factory=list)
    history: int = 0  # milestones created with a date already past: recorded, never notified
    notes: list[str] = field(default_factory=list)
    change_id: int | None = None  # the change set of its milestone changes (`lifecycle change undo`)
    hold_until: dt.datetime | None = None

    def count(self, entity: str, change: str) -> None:
        self.counts[entity][change] += 1

    @property
    def changed(self) -> bool:
        return any(c["created"] or c["updated"] for c in self.counts.values())

    def to_dict(self) -> dict:
        return {
            "source": self.source,
            "changed": self.changed,
            "counts": self.counts,
            "added": self.added,
            "moves": self.moves,
            "withdrawn": self.withdrawn,
            "reinstated": self.reinstated,
            "ended": self.ended,
            "warnings": self.warnings,
            "short_notice": self.short_notice,
            "history": self.history,
            "notes": self.notes,
            "change_id": self.change_id,
            "hold_until": self.hold_until.isoformat() if self.hold_until else None,
        }

    def lines(self) -> list[str]:
        """The summary for people, one line each."""

        def part(entity: str, change: str) -> str | None:
            n = self.counts[entity][change]
            return f"{n} {entity if n != 1 else entity[:-1]}" if n else None

        if not self.changed:
            seen = [p for e in ENTITIES if (p := part(e, "unchanged"))]
            return [
                f"{self.source}: no changes" + (f" ({', '.join(seen)} unchanged)" if seen else ""),
                *self.notes,
            ]
        out = [f"{self.source}: imported"]
        for change in ("created", "updated", "unchanged"):
            parts = [p for e in ENTITIES if (p := part(e, change))]
            if parts:
                out.append(f"  {change}: {', '.join(parts)}")
        for m in self.added:
            out.append(
                f"  added {m['milestone']} on {m['date']}"
                + (" (history: never notified)" if m["history"] else "")
            )
        for m in self.moves:
            out.append(
                f"  moved {m['milestone']} from {m['from']} to {m['to']} (revision {m['revision']}): "
                f"{m['reason']}"
            )
        for m in self.withdrawn:
            out.append(f"  withdrew {m['milestone']} (was {m['date']}): {m['reason']}")
        for m in self.reinstated:
            out.append(f"  reinstated {m['milestone']} on {m['date']}: {m['reason']}")
        for r in self.ended:
            out.append(
                f"  marked {r['release']} as ended ({r['phase']}, no date published): history, never notified"
            )
        for m in self.short_notice:
            out.append(
                f"  short notice: {m['milestone']} on {m['date']} ({m['reason']}): affected customers "
                "are notified at once"
            )
        for warning in self.warnings:
            out.append(f"  warning: {warning}")
        if self.change_id is not None:
            assert self.hold_until is not None  # set with change_id
            out.append(
                f"  change #{self.change_id}: notices it makes due at once are held until "
                f"{self.hold_until.isoformat(timespec='minutes')} (undo: lifecycle change undo "
                f"{self.change_id})"
            )
        if self.history:
            out.append(
                f"  {self.history} milestone{'s' if self.history != 1 else ''} already past: recorded as "
                "history, never notified"
            )
        return out + self.notes


# ----------------------------------------------------------------------------- records read from files


@dataclass
class _Milestone:
    path: str
    kind: str
    date: dt.date
    reason: str | None  # short_notice_reason
    reason_only_if_short: bool = False  # endoflife: one reason for the whole file, used where needed
    change_reason: str | None = None  # why it moved or is reinstated (internal)
    customer_reason: dict | str | None = None  # the same, written for customers
    upstream: bool = False  # from endoflife.date: changes carry upstream reason codes
    # decided against the database:
    action: str = ""  # create | move | unchanged | withdrawn | reinstate
    existing: Milestone | None = None
    effective_reason: str | None = None
    code: str | None = None  # reason code of the change, for customers' neutral text
    label: str = ""  # "acp 3.16 end-of-life"


@dataclass
class _Release:
    path: str
    version: str
    released: dt.date | None
    upgrade_to: str | None
    milestones: list[_Milestone]
    ended: str | None = None  # the latest phase marked ended without a date
    ended_known: bool = False  # the file says whether it ended (endoflife always does)


@dataclass
class _Retire:
    """A milestone in the database that an authoritative file no longer carries, or ended upstream."""

    label: str
    existing: Milestone
    action: str  # withdraw | end (moved to the import day)
    reason: str
    code: str


@dataclass
class _Product:
    path: str
    slug: str
    name: str | None
    milestones: list[_Milestone]
    releases: list[_Release]
    missing: str = "keep"  # what to do with the product's milestones the file does not mention
    upstream: bool = False  # an endoflife.date file: release milestones only, upstream reason codes
    retire: list[_Retire] = field(default_factory=list)  # decided against the database
    warnings: list[str] = field(default_factory=list)  # upstream data out of lifecycle order


@dataclass(slots=True)  # one per row of a fleet file: no __dict__ each
class _Contact:
    path: str
    email: str
    name: str | None


@dataclass(slots=True)  # one per row of a fleet file: no __dict__ each
class _Deployment:
    path: str
    product: str
    version: str
    cores: int | None


@dataclass(slots=True)  # one per row of a fleet file: no __dict__ each
class _Customer:
    path: str
    key: str
    values: dict
    contacts: list[_Contact]
    deployments: list[_Deployment]


class _Errors(list):
    def check(self, validator, value, path: str, *args):
        """The validated value, or None after recording the error."""
        try:
            return validator(value, path, *args)
        except InputError as exc:
            self.append(exc)
            return None

    def add(self, path: str | None, message: str) -> None:
        self.append(InputError(path, message))


def _kind(value) -> str:
    names = {
        dict: "a mapping",
        list: "a list",
        str: "a string",
        bool: "true/false",
        int: "a number",
        float: "a number",
        type(None): "nothing",
    }
    return names.get(type(value), type(value).__name__)


def _join(path: str, key) -> str:
    return f"{path}.{key}" if path else str(key)


def _mapping(obj, path: str, keys: dict[str, bool], errs: _Errors) -> dict | None:
    """`obj` as a mapping with only the given keys (True = required); errors for the rest."""
    if not isinstance(obj, dict):
        errs.add(path or None, f"expected a mapping, got {_kind(obj)}")
        return None
    for key in obj:
        if key not in keys:
            close = difflib.get_close_matches(str(key), list(keys), n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"expected {', '.join(keys)}"
            errs.add(_join(path, key), f"unknown key ({hint})")
    for key, required in keys.items():
        if required and obj.get(key) is None:
            errs.add(_join(path, key), "required")
    return obj


def _list(obj, path: str, errs: _Errors) -> list:
    if obj is None:
        return []
    if not isinstance(obj, list):
        errs.add(path, f"expected a list, got {_kind(obj)}")
        return []
    return obj


def _version(value, path: str, errs: _Errors) -> str | None:
    if isinstance(value, bool):  # YAML reads yes/no/on/off as booleans
        errs.add(path, f"version {value!r} must be a quoted string")
        return None
    return errs.check(v.version, value, path)


def _reason(value, path: str, errs: _Errors) -> str | None:
    return None if value is None else errs.check(v.reason, value, path)


def _duplicates(items, key, what: str, errs: _Errors, field_name: str) -> None:
    seen: dict = {}
    for item in items:
        k = key(item)
        if k in seen:
            errs.add(
                f"{item.path}.{field_name}",
                f"duplicate {what} {k if isinstance(k, str) else ' '.join(k)!r} (also at {seen[k]})",
            )
        else:
            seen[k] = item.path


# ---------------------------------------------------------------------------------- registry format

_TOP = {"products": False, "customers": False}
_PRODUCT = {"slug": True, "name": True, "milestones": False, "releases": False, "missing_milestones": False}
MISSING = ("keep", "withdraw")
_RELEASE = {"version": True, "released": False, "upgrade_to": False, "milestones": False}
_MILESTONE = {"date": True, "short_notice_reason": False, "reason": False, "customer_reason": False}
_CUSTOMER = {
    "key": True,
    "name": True,
    "timezone": True,
    "locale": False,
    "account_rep": True,
    "service": False,
    "contacts": False,
    "deployments": False,
}
_SERVICE = {"start": False, "end": False, "cores": False}
_CONTACT = {"email": True, "name": False}
_DEPLOYMENT = {"product": True, "version": True, "cores": False}


def _customer_reason(value, path: str, errs: _Errors) -> dict | str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return _reason(value, path, errs)
    if not isinstance(value, dict):
        errs.add(path, f"expected text, or a mapping of locale to text, got {_kind(value)}")
        return None
    out = {}
    for locale, text in value.items():
        loc = errs.check(v.locale, locale, f"{path}.{locale}")
        if not isinstance(text, str):
            errs.add(f"{path}.{locale}", f"expected text, got {_kind(text)}")
        elif loc:
            out[loc] = _reason(text, f"{path}.{locale}", errs)
    return out


def _milestones(obj, path: str, errs: _Errors) -> tuple[list[_Milestone], list[str]]:
    """The dated milestones of a mapping, and the kinds given as `true` (ended without a date)."""
    if obj is None:
        return [], []
    if not isinstance(obj, dict):
        errs.add(path, f"expected a mapping of milestone kind to date, got {_kind(obj)}")
        return [], []
    out, ended = [], []
    for key, value in obj.items():
        mpath = _join(path, key)
        kind = errs.check(v.milestone_kind, key, mpath)
        reason = change_reason = customer_reason = None
        if value is True:  # the phase has ended, the date is not known
            if kind:
                ended.append(kind)
            continue
        if isinstance(value, dict):
            _mapping(value, mpath, _MILESTONE, errs)  # reports unknown and missing keys
            reason = _reason(value.get("short_notice_reason"), f"{mpath}.short_notice_reason", errs)
            change_reason = _reason(value.get("reason"), f"{mpath}.reason", errs)
            customer_reason = _customer_reason(value.get("customer_reason"), f"{mpath}.customer_reason", errs)
            if value.get("date") is None:
                continue  # reported as required
            date = errs.check(v.date, value.get("date"), f"{mpath}.date")
        elif value is None or value is False:
            errs.add(
                mpath,
                "a date is required (YYYY-MM-DD, true for a phase that ended on an unknown date, "
                "or {date: ..., short_notice_reason: ..., reason: ..., customer_reason: ...})",
            )
            continue
        else:
            date = errs.check(v.date, value, mpath)
        if kind and date:
            out.append(
                _Milestone(
                    mpath, kind, date, reason, change_reason=change_reason, customer_reason=customer_reason
                )
            )
    return out, ended


def _latest(kinds: list[str]) -> str | None:
    order = [k.value for k in MilestoneKind]
    return max(kinds, key=order.index) if kinds else None


def _parse_registry(
    data: dict, errs: _Errors, consume: bool = False
) -> tuple[list[_Product], list[_Customer]]:
    if isinstance(data, dict) and isinstance(data.get("result"), dict) and "releases" in data["result"]:
        errs.add(
            None, "this looks like endoflife.date JSON: import it with --format endoflife --product SLUG"
        )
        return [], []
    data = _mapping(data, "", _TOP, errs) or {}
    if isinstance(data, dict) and not data.get("products") and not data.get("customers"):
        errs.add(None, "nothing to import: expected 'products' and/or 'customers'")
    products: list[_Product] = []
    for i, raw in enumerate(_list(data.get("products"), "products", errs)):
        path = f"products[{i}]"
        raw = _mapping(raw, path, _PRODUCT, errs)
        if raw is None:
            continue
        slug = errs.check(v.slug, raw.get("slug"), f"{path}.slug") if raw.get("slug") is not None else None
        name = errs.check(v.name, raw.get("name"), f"{path}.name") if raw.get("name") is not None else None
        releases = []
        for j, rraw in enumerate(_list(raw.get("releases"), f"{path}.releases", errs)):
            rpath = f"{path}.releases[{j}]"
            rraw = _mapping(rraw, rpath, _RELEASE, errs)
            if rraw is None:
                continue
            version = (
                _version(rraw["version"], f"{rpath}.version", errs)
                if rraw.get("version") is not None
                else None
            )
            released = errs.check(v.optional_date, rraw.get("released"), f"{rpath}.released")
            upgrade_to = rraw.get("upgrade_to")
            if upgrade_to is not None:
                upgrade_to = _version(upgrade_to, f"{rpath}.upgrade_to", errs)
                if upgrade_to is not None and upgrade_to == version:
                    errs.add(f"{rpath}.upgrade_to", f"release {version!r} cannot upgrade to itself")
            milestones, ended = _milestones(rraw.get("milestones"), f"{rpath}.milestones", errs)
            if version is not None:
                releases.append(
                    _Release(
                        rpath,
                        version,
                        released,
                        upgrade_to,
                        milestones,
                        _latest(ended),
                        ended_known=bool(ended),
                    )
                )
        _duplicates(releases, lambda r: r.version, "version", errs, "version")
        milestones, ended = _milestones(raw.get("milestones"), f"{path}.milestones", errs)
        if ended:
            errs.add(
                f"{path}.milestones.{ended[0]}",
                "a product-level milestone needs a date (true marks a release's phase as ended)",
            )
        missing = raw.get("missing_milestones", "keep")
        if missing not in MISSING:
            errs.add(f"{path}.missing_milestones", f"expected keep or withdraw, got {missing!r}")
        if slug is not None:
            products.append(_Product(path, slug, name, milestones, releases, missing=missing))
    _duplicates(products, lambda p: p.slug, "product", errs, "slug")
    return products, _parse_customers(data.get("customers"), errs, consume)


def _parse_customers(obj, errs: _Errors, consume: bool = False) -> list[_Customer]:
    """The customers' records. `consume`: each entry of `obj` is dropped once read (the caller owns the
    data and needs it no more), so that a fleet file is held once, not as data and records at once."""
    customers: list[_Customer] = []
    valid_releases: set[tuple[str, str]] = set()  # (product, version) pairs the validators took as they are
    for i, raw in enumerate(_list(obj, "customers", errs)):
        path = f"customers[{i}]"
        raw = _mapping(raw, path, _CUSTOMER, errs)
        if raw is None:
            continue

        def req(validator, key, raw=raw, path=path):
            return errs.check(validator, raw[key], f"{path}.{key}") if raw.get(key) is not None else None

        key = req(v.customer_key, "key")
        values = {
            "name": req(v.name, "name"),
            "timezone": req(v.timezone, "timezone"),
            "locale": errs.check(v.locale, raw.get("locale", "en"), f"{path}.locale"),
            "account_rep": req(v.email, "account_rep"),
            "service_start": None,
            "service_end": None,
            "cores": None,
        }
        if raw.get("service") is not None:
            spath = f"{path}.service"
            service = _mapping(raw["service"], spath, _SERVICE, errs) or {}
            values["service_start"] = errs.check(v.optional_date, service.get("start"), f"{spath}.start")
            values["service_end"] = errs.check(v.optional_date, service.get("end"), f"{spath}.end")
            values["cores"] = errs.check(v.cores, service.get("cores"), f"{spath}.cores")
            start, end = values["service_start"], values["service_end"]
            if start and end and end < start:
                errs.add(f"{spath}.end", f"{end} is before the service start {start}")
        contacts = []
        for j, craw in enumerate(_list(raw.get("contacts"), f"{path}.contacts", errs)):
            cpath = f"{path}.contacts[{j}]"
            craw = _mapping(craw, cpath, _CONTACT, errs)
            if craw is None or craw.get("email") is None:
                continue
            email = errs.check(v.email, craw["email"], f"{cpath}.email")
            name = errs.check(v.name, craw["name"], f"{cpath}.name") if craw.get("name") is not None else None
            if email:
                contacts.append(_Contact(cpath, email, name))
        _duplicates(contacts, lambda c: c.email.lower(), "contact", errs, "email")
        deployments = []
        for j, draw in enumerate(_list(raw.get("deployments"), f"{path}.deployments", errs)):
            dpath = f"{path}.deployments[{j}]"
            draw = _mapping(draw, dpath, _DEPLOYMENT, errs)
            if draw is None or draw.get("product") is None or draw.get("version") is None:
                continue
            pair = (draw["product"], draw["version"])
            product: str | None
            version: str | None
            if type(pair[0]) is str and type(pair[1]) is str and pair in valid_releases:
                product, version = pair  # a fleet names the same few thousand releases 100,000 times
            else:
                product = errs.check(v.slug, draw["product"], f"{dpath}.product")
                version = _version(draw["version"], f"{dpath}.version", errs)
                if type(product) is str and type(version) is str and (product, version) == pair:
                    valid_releases.add(pair)
            cores = errs.check(v.cores, draw.get("cores"), f"{dpath}.cores")
            if product and version:
                deployments.append(_Deployment(dpath, product, version, cores))
        _duplicates(deployments, lambda d: (d.product, d.version), "deployment", errs, "version")
        if key is not None:
            customers.append(_Customer(path, key, values, contacts, deployments))
        if consume:
            obj[i] = None
    _duplicates(customers, lambda c: c.key, "customer", errs, "key")
    return customers


# --------------------------------------------------------------------------------- endoflife.date format


def _parse_endoflife(
    data: dict, product: str, name: str | None, short_notice_reason: str | None, errs: _Errors
) -> list[_Product]:
    slug = errs.check(v.slug, product, "product")
    reason = _reason(short_notice_reason, "short_notice_reason", errs)
    result = data.get("result") if isinstance(data, dict) else None
    if not isinstance(result, dict):
        errs.add("result", f"expected the endoflife.date API v1 product object, got {_kind(result)}")
        return []
    if name is not None:
        name = errs.check(v.name, name, "name")
    elif result.get("label") is not None:
        name = errs.check(v.name, result["label"], "result.label")
    else:
        errs.add("result.label", "missing: give the product name with --name")
    releases: list[_Release] = []
    rows = result.get("releases")
    if not isinstance(rows, list) or not rows:
        errs.add("result.releases", f"expected a list of releases, got {_kind(rows)}")
        rows = []
    for i, raw in enumerate(rows):
        path = f"result.releases[{i}]"
        if not isinstance(raw, dict):
            errs.add(path, f"expected a release object, got {_kind(raw)}")
            continue
        version = _version(raw.get("name"), f"{path}.name", errs)
        released = errs.check(v.optional_date, raw.get("releaseDate"), f"{path}.releaseDate")
        # eolFrom is the end of life, unless the release also has extended support (eoesFrom): then
        # eolFrom ends maintenance and eoesFrom is the end of life. A null date makes no milestone; a
        # phase marked ended without a date (isEol: true, eolFrom: null; or eolFrom: true) marks the
        # release as ended.
        extended = raw.get("eoesFrom") not in (None, False) or raw.get("isEoes") is True
        mapping = [
            ("discontinuedFrom", "isDiscontinued", MilestoneKind.END_OF_SALE),
            ("eoasFrom", "isEoas", MilestoneKind.END_OF_FULL_SUPPORT),
            ("eolFrom", "isEol", MilestoneKind.END_OF_MAINTENANCE if extended else MilestoneKind.END_OF_LIFE),
            ("eoesFrom", "isEoes", MilestoneKind.END_OF_LIFE),
        ]
        milestones, ended = [], []
        for key, flag, kind in mapping:
            value = raw.get(key)
            if value is True or (value is None and raw.get(flag) is True):
                ended.append(kind.value)
                continue
            if value is False or value is None:
                continue
            date = errs.check(v.optional_date, value, f"{path}.{key}")
            if date is not None:
                milestones.append(
                    _Milestone(
                        f"{path}.{key}", kind.value, date, reason, reason_only_if_short=True, upstream=True
                    )
                )
        if version is not None:
            releases.append(
                _Release(path, version, released, None, milestones, _latest(ended), ended_known=True)
            )
    _duplicates(releases, lambda r: r.version, "release", errs, "name")
    return [_Product("product", slug, name, [], releases, missing="withdraw", upstream=True)] if slug else []


# ------------------------------------------------------------------------------- checks against the DB


def _check(
    session: Session,
    products: list[_Product],
    customers: list[_Customer],
    *,
    at: dt.datetime,
    source: str,
    short_hint: str,
    errs: _Errors,
) -> None:
    """Decide what each milestone becomes (create, move, reinstate, unchanged), which milestones an
    authoritative file retires, and check what needs the database: references to releases, upgrade
    targets and the short-notice guard."""
    slugs = {p.slug for p in products} | {d.product for c in customers for d in c.deployments}
    db_products = (
        {p.id: p for p in session.exec(select(Product).where(col(Product.slug).in_(slugs)))} if slugs else {}
    )
    slug_of = {pid: p.slug for pid, p in db_products.items()}
    versions: dict[str, set[str]] = {s: set() for s in slugs}
    db_releases: dict[int, str] = {}
    if db_products:
        for rel in session.exec(select(Release).where(col(Release.product_id).in_(list(db_products)))):
            versions[slug_of[rel.product_id]].add(rel.version)
            db_releases[pk(rel)] = rel.version
    existing: dict[tuple[str, str | None, str], Milestone] = {}
    file_pids = [pid for pid, p in db_products.items() if p.slug in {fp.slug for fp in products}]
    if file_pids:
        for row in session.exec(select(Milestone).where(col(Milestone.product_id).in_(file_pids))):
            existing[
                (
                    slug_of[row.product_id],
                    db_releases.get(row.release_id) if row.release_id else None,
                    row.kind,
                )
            ] = row
    for p in products:
        versions.setdefault(p.slug, set()).update(r.version for r in p.releases)

    for p in products:
        for r in p.releases:
            if r.upgrade_to is not None and r.upgrade_to not in versions[p.slug]:
                errs.add(
                    f"{r.path}.upgrade_to",
                    f"product {p.slug!r} has no release {r.upgrade_to!r} "
                    "(add it to the file or register it first)",
                )
        scoped = [(None, m) for m in p.milestones] + [
            (r.version, m) for r in p.releases for m in r.milestones
        ]
        for version, m in scoped:
            _decide(
                m,
                existing.get((p.slug, version, m.kind)),
                at=at,
                source=source,
                hint=short_hint,
                errs=errs,
                label=" ".join(x for x in (p.slug, version, m.kind) if x),
            )
        if p.missing == "withdraw":
            _retire(p, existing, at=at, source=source)
        _check_order(p, existing, at=at, errs=errs)
    known = set(slug_of.values()) | {p.slug for p in products}
    for c in customers:
        for d in c.deployments:
            if d.product not in known:
                errs.add(
                    f"{d.path}.product", f"no product {d.product!r} (add it to the file or register it first)"
                )
            elif d.version not in versions.get(d.product, set()):
                errs.add(
                    f"{d.path}.version",
                    f"product {d.product!r} has no release {d.version!r} "
                    "(add it to the file or register it first)",
                )


def _check_order(
    p: _Product, existing: dict[tuple[str, str | None, str], Milestone], *, at: dt.datetime, errs: _Errors
) -> None:
    """The product as it will be after the import, in lifecycle order (policy.order_violations)? Every
    violation that involves a milestone of the file is an error at its path; endoflife.date data,
    whose upstream order is occasionally inconsistent, gets warnings instead."""
    final: dict[str | None, dict[str, dt.date]] = {}
    for (slug, version, kind), row in existing.items():
        if slug == p.slug and row.status == MilestoneStatus.PLANNED:
            final.setdefault(version, {})[kind] = row.date
    paths: dict[tuple[str | None, str], str] = {}
    scoped = [(None, m) for m in p.milestones] + [(r.version, m) for r in p.releases for m in r.milestones]
    for version, m in scoped:
        if m.action in ("create", "move", "reinstate", "unchanged"):
            final.setdefault(version, {})[m.kind] = m.date
            if m.action != "unchanged":
                paths[(version, m.kind)] = m.path
    for r in p.retire:
        version = next((v_ for (s_, v_, k_), m_ in existing.items() if m_ is r.existing), None)
        if r.action == "withdraw":
            final.get(version, {}).pop(r.existing.kind, None)
        else:
            final.setdefault(version, {})[r.existing.kind] = at.date()
            paths[(version, r.existing.kind)] = p.path
    product_level = final.get(None, {})
    for version, dates in final.items():
        if version is None:
            continue
        found: list[tuple[policy.OrderViolation, tuple[str | None, str], tuple[str | None, str]]] = [
            (viol, (version, viol.earlier), (version, viol.later)) for viol in policy.order_violations(dates)
        ]
        found += [
            (viol, (version, viol.earlier), (None, viol.later))
            for viol in policy.product_violations(product_level, dates)
        ]
        for viol, a, b in found:
            path = paths.get(b) or paths.get(a)
            if path is None:
                continue  # already so in the registry: not this file's doing
            message = f"{p.slug} {version}: {viol.message()}"
            if p.upstream:
                p.warnings.append(f"{path}: {message} (recorded as published upstream)")
            else:
                errs.add(path, message)


def _retire(
    p: _Product, existing: dict[tuple[str, str | None, str], Milestone], *, at: dt.datetime, source: str
) -> None:
    """An authoritative file's product: its planned milestones the file no longer carries are withdrawn;
    a phase the file marks ended without a date moves a future date to the import day."""
    listed = {(None, m.kind) for m in p.milestones} | {
        (r.version, m.kind) for r in p.releases for m in r.milestones
    }
    ended: dict[str | None, str] = {r.version: r.ended for r in p.releases if r.ended}
    order = [k.value for k in MilestoneKind]
    for (slug, version, kind), m in sorted(existing.items(), key=lambda kv: (kv[0][1] or "", kv[0][2])):
        if slug != p.slug or (version, kind) in listed or m.status != MilestoneStatus.PLANNED:
            continue
        if p.upstream and version is None:
            continue  # endoflife.date has no product-level milestones: the file does not cover them
        label = " ".join(x for x in (slug, version, kind) if x)
        phase = ended.get(version)
        if phase is not None and order.index(kind) <= order.index(phase):
            if m.date > at.date():  # ended already, although the date we had is still ahead
                p.retire.append(
                    _Retire(
                        label,
                        m,
                        "end",
                        "ended upstream without a published date"
                        if p.upstream
                        else f"marked ended in {source}",
                        "upstream-ended" if p.upstream else "moved",
                    )
                )
            continue  # a past date is more precise than "ended": keep it as history
        p.retire.append(
            _Retire(
                label,
                m,
                "withdraw",
                "removed upstream" if p.upstream else f"not in {source}",
                "upstream-removed" if p.upstream else "import-removed",
            )
        )


def _decide(
    m: _Milestone,
    current: Milestone | None,
    *,
    at: dt.datetime,
    source: str,
    hint: str,
    errs: _Errors,
    label: str,
) -> None:
    m.existing, m.label = current, label
    short = policy.is_short_notice(m.date, at)
    given = m.reason if (short or not m.reason_only_if_short) else None
    if current is not None and current.status == MilestoneStatus.WITHDRAWN:
        if not m.upstream and not m.change_reason:
            m.action = "withdrawn"  # a registry file reinstates only with a reason
            return
        m.action = "reinstate"
        m.effective_reason = m.change_reason or "published again upstream"
        m.code = "upstream-restored" if m.upstream and not m.change_reason else None
        if short and not given and not m.upstream:
            errs.add(
                m.path,
                f"{m.date.isoformat()} is less than 3 months after {at.date().isoformat()}: "
                f"customers are promised at least 3 months' notice. {hint.format(kind=m.kind, date=m.date)}",
            )
        elif short and not given:
            errs.add(
                m.path,
                f"{m.date.isoformat()} is less than 3 months after {at.date().isoformat()}. "
                f"{hint.format(kind=m.kind, date=m.date)}",
            )
        return
    if current is not None and current.date == m.date:
        m.action = "unchanged"
        return
    if short and not given:
        errs.add(
            m.path,
            f"{m.date.isoformat()} is less than 3 months after {at.date().isoformat()}: customers "
            f"are promised at least 3 months' notice (the first notice had to go out by "
            f"{policy.contract_deadline(m.date).isoformat()}). {hint.format(kind=m.kind, date=m.date)}",
        )
        return
    if current is None:
        m.action, m.effective_reason = "create", given
        m.code = "upstream-short" if m.upstream and short else None
    else:
        m.action = "move"
        m.effective_reason = (
            m.change_reason
            or given
            or ("changed upstream" if m.upstream else f"changed by import of {source}")
        )
        m.code = "upstream-moved" if m.upstream and not m.change_reason else None


# ------------------------------------------------------------------------------------------- applying


def retire_milestone(
    session: Session, r: _Retire, *, at: dt.datetime, change: RegistryChange, summary: ImportSummary
) -> None:
    """Withdraw a milestone its source no longer lists, or move a phase declared ended to the import
    day, through the registry functions; say so in the summary. Both writers use it."""
    old = r.existing.date
    if r.action == "withdraw":
        registry.withdraw_milestone(
            session, r.existing, reason=r.reason, at=at, reason_code=r.code, change=change
        )
        summary.withdrawn.append(
            {
                "milestone": r.label,
                "date": old.isoformat(),
                "revision": r.existing.revision,
                "reason": r.reason,
            }
        )
    else:
        registry.move_milestone(
            session,
            r.existing,
            date=at.date(),
            reason=r.reason,
            at=at,
            allow_short_notice=True,
            reason_code=r.code,
            check_lifecycle_order=False,
            change=change,
        )
        summary.moves.append(
            {
                "milestone": r.label,
                "from": old.isoformat(),
                "to": at.date().isoformat(),
                "revision": r.existing.revision,
                "reason": r.reason,
            }
        )
    summary.count("milestones", "updated")


def reinstate_or_move(
    session: Session,
    m: _Milestone,
    product: Product,
    release: Release | None,
    *,
    at: dt.datetime,
    change: RegistryChange,
    summary: ImportSummary,
) -> str:
    """Reinstate or move an existing milestone of an import through the registry functions (where the
    churn rules live: change history, changes in flight, re-planning), and say so in the summary. Both
    writers use it: such changes are few per file."""
    assert m.existing is not None
    if m.action == "reinstate":
        row, result = registry.add_milestone(
            session,
            product=product,
            version=release,
            kind=m.kind,
            date=m.date,
            at=at,
            allow_short_notice=True,
            reason=m.effective_reason,
            reason_code=m.code,
            customer_reason=m.customer_reason,
            check_lifecycle_order=False,
            change=change,
        )
        summary.reinstated.append(
            {
                "milestone": m.label,
                "date": m.date.isoformat(),
                "revision": row.revision,
                "reason": m.effective_reason,
            }
        )
        return result
    old = m.existing.date
    row, result = registry.move_milestone(
        session,
        m.existing,
        date=m.date,
        reason=m.effective_reason or "",  # none: the registry refuses the move (a reason is required)
        at=at,
        allow_short_notice=True,
        reason_code=m.code,
        customer_reason=m.customer_reason,
        check_lifecycle_order=False,
        change=change,
    )
    summary.moves.append(
        {
            "milestone": m.label,
            "from": old.isoformat(),
            "to": m.date.isoformat(),
            "revision": row.revision,
            "reason": m.effective_reason,
        }
    )
    return result


def _apply_rows(
    session: Session,
    products: list[_Product],
    customers: list[_Customer],
    *,
    at: dt.datetime,
    source: str,
    on_progress: Progress | None,
) -> ImportSummary:
    """The row-by-row writer: every row through the registry functions. The reference the set-based
    writer (`lifecycle.bulkimport`) is tested against; too slow for a fleet (one statement per row)."""
    summary = ImportSummary(source=source)
    change_set = None

    def change_of_file():
        """One change set for every milestone change of the file: held and undone together."""
        nonlocal change_set
        if change_set is None:
            change_set = registry.begin_change(session, action="import", summary=f"import {source}", at=at)
        return change_set

    total = sum(
        1 + len(p.milestones) + len(p.retire) + sum(1 + len(r.milestones) for r in p.releases)
        for p in products
    ) + sum(1 + len(c.contacts) + len(c.deployments) for c in customers)
    done = 0

    def step(path: str, fn, *args, **kwargs):
        nonlocal done
        try:
            result = fn(*args, **kwargs)
        except InputErrors:
            raise
        except InputError as exc:  # the checks above should have caught it; still name the path
            raise InputErrors(
                [InputError(_join(path, exc.field) if exc.field else path, exc.message)]
            ) from None
        done += 1
        if on_progress:
            on_progress(done, total)
        return result

    def milestone(m: _Milestone, product: Product, release: Release | None) -> None:
        if m.action in ("unchanged", "withdrawn"):
            if m.action == "withdrawn":
                summary.notes.append(
                    f"{m.path}: left alone: the milestone is withdrawn in the registry (give "
                    "it a reason in the file, or add it again with `lifecycle milestone add "
                    "... --reason`, to reinstate it)"
                )
            summary.count("milestones", "unchanged")
            step(m.path, lambda: None)
            return
        if m.action == "create":
            row, change = step(
                m.path,
                registry.add_milestone,
                session,
                product=product,
                version=release,
                kind=m.kind,
                date=m.date,
                at=at,
                allow_short_notice=bool(m.effective_reason),
                reason=m.effective_reason,
                reason_code=m.code,
                customer_reason=m.customer_reason,
                check_lifecycle_order=False,
                change=change_of_file(),
            )
            history = policy.is_history(m.date, at)
            summary.history += history
            summary.added.append({"milestone": m.label, "date": m.date.isoformat(), "history": history})
        else:
            change = step(
                m.path,
                reinstate_or_move,
                session,
                m,
                product,
                release,
                at=at,
                change=change_of_file(),
                summary=summary,
            )
        summary.count("milestones", change)
        if policy.is_short_notice(m.date, at):
            summary.short_notice.append(
                {"milestone": m.label, "date": m.date.isoformat(), "reason": m.effective_reason}
            )

    def retire(p: _Product, r: _Retire) -> None:
        step(p.path, retire_milestone, session, r, at=at, change=change_of_file(), summary=summary)

    for p in products:
        product, change = step(p.path, registry.upsert_product, session, slug=p.slug, name=p.name, at=at)
        summary.count("products", change)
        for m in p.milestones:
            milestone(m, product, None)
        for r in p.releases:
            ended = {"ended": r.ended} if r.ended_known else {}
            before = registry.find_release(session, product, r.version)
            was_ended = before.ended if before is not None else None
            release, change = step(
                r.path,
                registry.upsert_release,
                session,
                product=product,
                version=r.version,
                released=r.released,
                upgrade_to=r.upgrade_to,
                at=at,
                **ended,
            )
            summary.count("releases", change)
            if release.ended and release.ended != was_ended:
                summary.ended.append({"release": f"{p.slug} {r.version}", "phase": release.ended})
            for m in r.milestones:
                milestone(m, product, release)
        for ret in p.retire:
            retire(p, ret)
        summary.warnings.extend(p.warnings)
    for c in customers:
        customer, change = step(c.path, registry.upsert_customer, session, key=c.key, at=at, **c.values)
        summary.count("customers", change)
        for ct in c.contacts:
            _, change = step(
                ct.path,
                registry.upsert_contact,
                session,
                customer=customer,
                email=ct.email,
                name=ct.name,
                at=at,
                force=None,
            )  # a bounced address stays flagged
            summary.count("contacts", change)
        for d in c.deployments:
            dep, change = step(
                d.path,
                registry.add_deployment,
                session,
                customer=customer,
                product=d.product,
                version=d.version,
                cores=d.cores,
                at=at,
            )
            summary.count("deployments", change)
            if change != "unchanged":
                warning = registry.ended_warning(session, session.get_one(Release, dep.release_id), at)
                if warning:
                    summary.notes.append(f"{d.path}: warning: {warning}")
    summary.change_id = change_set.id if change_set is not None else None
    summary.hold_until = change_set.hold_until if change_set is not None else None
    return summary


def _apply_bulk(
    session: Session,
    products: list[_Product],
    customers: list[_Customer],
    *,
    at: dt.datetime,
    source: str,
    on_progress: Progress | None,
) -> ImportSummary:
    from lifecycle import bulkimport

    return bulkimport.apply(session, products, customers, at=at, source=source, on_progress=on_progress)


# How a checked file is written: set-based (the default), or row by row through the registry functions.
WRITERS = {"bulk": _apply_bulk, "rows": _apply_rows}


def _run(
    session: Session,
    products,
    customers,
    errs: _Errors,
    *,
    at: dt.datetime,
    source: str,
    short_hint: str,
    on_progress: Progress | None,
    writer: str = "bulk",
) -> ImportSummary:
    if at.tzinfo is None:
        raise ValueError("`at` must be timezone-aware")
    _check(session, products, customers, at=at, source=source, short_hint=short_hint, errs=errs)
    if errs:
        raise InputErrors(list(errs))
    return WRITERS[writer](session, products, customers, at=at, source=source, on_progress=on_progress)


# ----------------------------------------------------------------------------------------- public API


def import_registry(
    session: Session,
    data: dict,
    *,
    at: dt.datetime,
    source: str,
    on_progress: Progress | None = None,
    writer: str = "bulk",
    consume: bool = False,
) -> ImportSummary:
    """Import products, releases, milestones, customers, contacts and deployments (the brief's shape).

    Raises `InputErrors` listing every problem, before anything is written. `consume=True` (the CLI,
    which read the file and needs the data no more) frees the customers of `data` as they are read."""
    errs = _Errors()
    products, customers = _parse_registry(data, errs, consume)
    return _run(
        session,
        products,
        customers,
        errs,
        at=at,
        source=source,
        on_progress=on_progress,
        writer=writer,
        short_hint="Give it a short_notice_reason to import it anyway: "
        '{kind}: {{date: {date}, short_notice_reason: "..."}}.',
    )


# endoflife.date publishes the upstream project's dates: the vendor cannot give more notice than the
# upstream does, so a near date is recorded as short notice with this reason (the CLI's --strict refuses).
UPSTREAM_REASON = "upstream lifecycle date published by endoflife.date"


def import_endoflife(
    session: Session,
    data: dict,
    *,
    product: str,
    name: str | None,
    at: dt.datetime,
    source: str,
    short_notice_reason: str | None = None,
    on_progress: Progress | None = None,
    writer: str = "bulk",
) -> ImportSummary:
    """Import one product from endoflife.date API v1 JSON (`/api/v1/products/<name>`).

    Each `result.releases` entry is a release; eoasFrom -> end-of-full-support; eolFrom -> end-of-life
    (end-of-maintenance when eoesFrom is given, which is then end-of-life); discontinuedFrom ->
    end-of-sale. `short_notice_reason` is recorded on every date less than 3 months after `at`."""
    errs = _Errors()
    products = _parse_endoflife(data, product, name, short_notice_reason, errs)
    return _run(
        session,
        products,
        [],
        errs,
        at=at,
        source=source,
        on_progress=on_progress,
        writer=writer,
        short_hint='Import without --strict, or give --short-notice-reason "...", to record it as short '
        "notice.",
    )
