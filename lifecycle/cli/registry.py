"""Registry commands: db, product, release, milestone, customer, contact, deployment."""

from __future__ import annotations

from itertools import islice
from typing import Annotated

import typer

from lifecycle import registry
from lifecycle import validation as v
from lifecycle.cli import app
from lifecycle.cli.common import (
    AtOption,
    JsonOption,
    emit_json,
    emit_json_array,
    err_console,
    parse_at,
    say,
    table,
    tables,
)
from lifecycle.db import session_scope
from lifecycle.errors import InputError
from lifecycle.models import Release

db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
product_app = typer.Typer(help="Products.", no_args_is_help=True)
release_app = typer.Typer(help="Releases (version lines) of a product.", no_args_is_help=True)
milestone_app = typer.Typer(
    help="Lifecycle milestones: end of sale, full support, maintenance, life.", no_args_is_help=True
)
change_app = typer.Typer(
    help="Registry changes: the ones on hold, and undo within the hold.", no_args_is_help=True
)
customer_app = typer.Typer(help="Customers.", no_args_is_help=True)
contact_app = typer.Typer(help="Email contacts of a customer.", no_args_is_help=True)
deployment_app = typer.Typer(help="Which releases a customer runs.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(product_app, name="product")
app.add_typer(release_app, name="release")
app.add_typer(milestone_app, name="milestone")
app.add_typer(change_app, name="change")
app.add_typer(customer_app, name="customer")
app.add_typer(contact_app, name="contact")
app.add_typer(deployment_app, name="deployment")

ProductArg = Annotated[str, typer.Argument(help="Product slug, e.g. acp.")]
VersionArg = Annotated[
    str, typer.Argument(help="Release version, e.g. 3.16. Use '-' for a product-level milestone.")
]
KindArg = Annotated[
    str, typer.Argument(help="end-of-sale | end-of-full-support | end-of-maintenance | end-of-life")
]
ByOption = Annotated[str | None, typer.Option("--by", help="Who makes the change (recorded in the history).")]
CustomerReasonOption = Annotated[
    list[str] | None,
    typer.Option(
        "--customer-reason",
        metavar="[LOCALE:]TEXT",
        help="Why, written for customers (repeat per language, e.g. 'zh-CN:...'; without a prefix: English). "
        "--reason is internal; without this customers read a neutral sentence in their language.",
    ),
]


DryRunOption = Annotated[
    bool,
    typer.Option(
        "--dry-run",
        help="Show what the change would do (customers affected, notices at once and planned, per "
        "stage and channel) and write nothing.",
    ),
]


def _dry_run(when, apply, json_: bool) -> None:
    from lifecycle import changes

    preview = changes.preview(when, apply)
    if json_:
        emit_json(preview)
    else:
        for line in changes.preview_lines(preview):
            say(line)


def _apply_held(when, apply, product: str, version: str, kind: str) -> tuple[dict, str]:
    """Make a registry change: its result, and (unless nothing changed) the line about its hold."""
    with session_scope() as s:
        done = apply(s)
        if done["result"] == "unchanged":
            return done, ""
        return done, _held(s, registry.get_milestone(s, product, _version(version), kind), when)


def _held(s, milestone, when) -> str:
    """'; change #12 held until 14:05 UTC (undo: lifecycle change undo 12)' when it makes notices wait."""
    change = registry.current_change(s, milestone)
    if change is None:
        return ""
    hold_until = (
        change.hold_until if change.hold_until.tzinfo else change.hold_until.replace(tzinfo=when.tzinfo)
    )
    if hold_until <= when:
        return f"; change #{change.id}"
    return (
        f"; change #{change.id}: notices it makes due at once are held until "
        f"{hold_until.isoformat(timespec='minutes')} (undo: lifecycle change undo {change.id})"
    )


def _customer_reasons(values: list[str] | None) -> dict[str, str] | None:
    """`--customer-reason` values as {locale: text}: 'zh-CN:文本' or plain English text."""
    if not values:
        return None
    out: dict[str, str] = {}
    for value in values:
        locale, sep, text = value.partition(":")
        if sep and locale.strip() in v.LOCALES:
            out[locale.strip()] = text.strip()
        else:
            out["en"] = value.strip()
    return out


def _version(version: str) -> str | None:
    return None if version == "-" else version


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Upgrade the database schema to the newest revision (PostgreSQL needs this; SQLite does it itself)."""
    from lifecycle.db import get_engine, schema_state, upgrade

    upgrade()
    current, _ = schema_state(get_engine(check=False))
    say(f"database schema at revision {current}")


@product_app.command("add")
def product_add(
    slug: ProductArg, name: Annotated[str, typer.Option("--name", help="Display name.")], at: AtOption = None
) -> None:
    """Register a product (or rename it)."""
    when = parse_at(at)
    with session_scope() as s:
        product, change = registry.upsert_product(s, slug=slug, name=name, at=when)
    say(f"product {product.slug}: {change}")


@product_app.command("list")
def product_list(json_: JsonOption = False) -> None:
    """List products."""
    from sqlmodel import select

    from lifecycle.models import Product

    with session_scope() as s:
        rows = [{"slug": p.slug, "name": p.name} for p in s.exec(select(Product).order_by(Product.slug))]
    if json_:
        emit_json(rows)
    else:
        table("Products", ["slug", "name"], [[r["slug"], r["name"]] for r in rows])


@release_app.command("add")
def release_add(
    product: ProductArg,
    version: Annotated[str, typer.Argument(help="Version, e.g. 3.16.")],
    released: Annotated[str | None, typer.Option("--released", help="Release date YYYY-MM-DD.")] = None,
    upgrade_to: Annotated[
        str | None, typer.Option("--upgrade-to", help="Recommended upgrade target version.")
    ] = None,
    at: AtOption = None,
) -> None:
    """Register a release (version line) of a product."""
    when = parse_at(at)
    with session_scope() as s:
        release, change = registry.upsert_release(
            s,
            product=product,
            version=version,
            released=v.optional_date(released, "--released"),
            upgrade_to=upgrade_to,
            at=when,
        )
    say(f"release {product} {release.version}: {change}")


@milestone_app.command("add")
def milestone_add(
    product: ProductArg,
    version: VersionArg,
    kind: KindArg,
    date: Annotated[str, typer.Argument(help="Last day of the phase, YYYY-MM-DD.")],
    allow_short_notice: Annotated[
        bool,
        typer.Option("--allow-short-notice", help="Accept a date less than 3 months away (needs --reason)."),
    ] = False,
    reason: Annotated[
        str | None,
        typer.Option(
            "--reason", help="Why (required for short notice and to reinstate a withdrawn milestone)."
        ),
    ] = None,
    customer_reason: CustomerReasonOption = None,
    by: ByOption = None,
    at: AtOption = None,
    dry_run: DryRunOption = False,
    json_: JsonOption = False,
) -> None:
    """Register a milestone. A date less than 3 months after --at is refused without
    --allow-short-notice --reason; a date already past is recorded as history and never notified.
    Adding a withdrawn milestone again reinstates it (needs --reason)."""
    when = parse_at(at)
    day = v.date(date, "date")

    def apply(s):
        milestone, change = registry.add_milestone(
            s,
            product=product,
            version=_version(version),
            kind=kind,
            date=day,
            at=when,
            allow_short_notice=allow_short_notice,
            reason=reason,
            by=by,
            customer_reason=_customer_reasons(customer_reason),
        )
        return {
            "action": "add",
            "milestone": registry.describe(s, milestone),
            "date": day.isoformat(),
            "result": change,
        }

    if dry_run:
        return _dry_run(when, apply, json_)
    with session_scope() as s:
        done = apply(s)
        milestone = registry.get_milestone(s, product, _version(version), kind)
        past = " (in the past: recorded as history, never notified)" if day < when.date() else ""
        short = (
            " (short notice: affected customers are told at once)"
            if milestone.short_notice_reason and done["result"] != "unchanged"
            else ""
        )
        held = _held(s, milestone, when) if done["result"] != "unchanged" else ""
    if json_:
        emit_json(done)
        return
    say(f"milestone {product} {version} {kind} {day.isoformat()}: {done['result']}{past}{short}{held}")


@milestone_app.command("move")
def milestone_move(
    product: ProductArg,
    version: VersionArg,
    kind: KindArg,
    date: Annotated[str, typer.Argument(help="The new date, YYYY-MM-DD.")],
    reason: Annotated[
        str, typer.Option("--reason", help="Why the date changes (internal, kept in the history).")
    ],
    allow_short_notice: Annotated[
        bool, typer.Option("--allow-short-notice", help="Accept a new date less than 3 months away.")
    ] = False,
    customer_reason: CustomerReasonOption = None,
    by: ByOption = None,
    at: AtOption = None,
    dry_run: DryRunOption = False,
    json_: JsonOption = False,
) -> None:
    """Move a milestone: bumps its revision, tells every customer already notified (also when the new
    date has passed: a correction), and plans its reminders again for the new date."""
    when = parse_at(at)
    day = v.date(date, "date")

    def apply(s):
        milestone = registry.get_milestone(s, product, _version(version), kind)
        old = milestone.date
        milestone, change = registry.move_milestone(
            s,
            milestone,
            date=day,
            reason=reason,
            at=when,
            allow_short_notice=allow_short_notice,
            by=by,
            customer_reason=_customer_reasons(customer_reason),
        )
        return {
            "action": "move",
            "milestone": registry.describe(s, milestone),
            "from": old.isoformat(),
            "to": day.isoformat(),
            "revision": milestone.revision,
            "result": change,
        }

    if dry_run:
        return _dry_run(when, apply, json_)
    done, held = _apply_held(when, apply, product, version, kind)
    if json_:
        emit_json(done)
        return
    say(
        f"milestone {product} {version} {kind}: {done['result']}, now {done['to']} (revision {done['revision']}){held}"
    )


@milestone_app.command("withdraw")
def milestone_withdraw(
    product: ProductArg,
    version: VersionArg,
    kind: KindArg,
    reason: Annotated[
        str, typer.Option("--reason", help="Why it is withdrawn (internal, kept in the history).")
    ],
    customer_reason: CustomerReasonOption = None,
    by: ByOption = None,
    at: AtOption = None,
    dry_run: DryRunOption = False,
    json_: JsonOption = False,
) -> None:
    """Withdraw a milestone: cancels pending notices and tells every customer already notified."""
    when = parse_at(at)

    def apply(s):
        milestone = registry.get_milestone(s, product, _version(version), kind)
        milestone, change = registry.withdraw_milestone(
            s, milestone, reason=reason, at=when, by=by, customer_reason=_customer_reasons(customer_reason)
        )
        return {
            "action": "withdraw",
            "milestone": registry.describe(s, milestone),
            "revision": milestone.revision,
            "result": change,
        }

    if dry_run:
        return _dry_run(when, apply, json_)
    done, held = _apply_held(when, apply, product, version, kind)
    if json_:
        emit_json(done)
        return
    say(
        f"milestone {product} {version} {kind}: {'withdrawn' if done['result'] == 'updated' else 'already withdrawn'} "
        f"(revision {done['revision']}){held}"
    )


@milestone_app.command("list")
def milestone_list(
    json_: JsonOption = False,
    at: AtOption = None,
    product: Annotated[str | None, typer.Option("--product", help="Only this product.")] = None,
    status: Annotated[
        str | None, typer.Option("--status", help="Only milestones planned or withdrawn.")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=0, help="At most this many milestones (0: all).")] = 0,
) -> None:
    """List milestones with their status, revision and history (dates before --at are history), by
    product, version and lifecycle order; read a chunk at a time and written as they come."""
    if status is not None and status not in ("planned", "withdrawn"):
        raise InputError("--status", f"{status!r} is not one of planned, withdrawn")
    when = parse_at(at)
    with session_scope() as s:
        if product is not None:
            registry.get_product(s, product, "--product")  # an unknown slug is bad input, not an empty list
        rows = islice(registry.iter_milestone_rows(s, when, product=product, status=status), limit or None)
        if json_:
            emit_json_array(rows)
            return
        tables(
            "Milestones",
            ["product", "version", "kind", "date", "status", "rev", "note"],
            (
                [
                    r["product"],
                    r["version"] or "(product)",
                    r["kind"],
                    r["date"],
                    r["status"],
                    r["revision"],
                    "history" if r["past"] else ("short notice" if r["short_notice_reason"] else ""),
                ]
                for r in rows
            ),
        )


@release_app.command("list")
def release_list(
    product: Annotated[str | None, typer.Option("--product", help="Only this product.")] = None,
    json_: JsonOption = False,
    at: AtOption = None,
) -> None:
    """List releases with their release date, upgrade target and whether they have ended."""
    when = parse_at(at)
    with session_scope() as s:
        rows = registry.release_rows(s, when, product=product)
    if json_:
        emit_json(rows)
        return
    table(
        "Releases",
        ["product", "version", "released", "upgrade to", "latest phase ended"],
        [
            [
                r["product"],
                r["version"],
                r["released"],
                r["upgrade_to"],
                (f"{r['ended']} ({r['ended_date'] or 'date not published'})" if r["ended"] else ""),
            ]
            for r in rows
        ],
    )


@customer_app.command("add")
def customer_add(
    key: Annotated[str, typer.Argument(help="Customer key, e.g. acme.")],
    name: Annotated[str, typer.Option("--name")],
    timezone: Annotated[str, typer.Option("--timezone", help="IANA timezone, e.g. Asia/Shanghai.")],
    locale: Annotated[str, typer.Option("--locale", help="en or zh-CN.")],
    rep: Annotated[str, typer.Option("--rep", help="Account rep's email.")],
    service_start: Annotated[str | None, typer.Option("--service-start", help="YYYY-MM-DD.")] = None,
    service_end: Annotated[str | None, typer.Option("--service-end", help="YYYY-MM-DD.")] = None,
    cores: Annotated[int | None, typer.Option("--cores", help="Agreed virtual cores.")] = None,
    at: AtOption = None,
) -> None:
    """Register a customer (or update one with the same key)."""
    when = parse_at(at)
    with session_scope() as s:
        customer, change = registry.upsert_customer(
            s,
            key=key,
            name=name,
            timezone=timezone,
            locale=locale,
            account_rep=rep,
            at=when,
            service_start=v.optional_date(service_start, "--service-start"),
            service_end=v.optional_date(service_end, "--service-end"),
            cores=cores,
        )
    say(f"customer {customer.key}: {change}")


@customer_app.command("list")
def customer_list(json_: JsonOption = False) -> None:
    """List customers."""
    from sqlmodel import select

    from lifecycle.models import Customer

    with session_scope() as s:
        rows = [
            {
                "key": c.key,
                "name": c.name,
                "timezone": c.timezone,
                "locale": c.locale,
                "account_rep": c.account_rep,
                "service_start": c.service_start,
                "service_end": c.service_end,
                "cores": c.cores,
            }
            for c in s.exec(select(Customer).order_by(Customer.key))
        ]
    if json_:
        emit_json(rows)
    else:
        table(
            "Customers",
            ["key", "name", "timezone", "locale", "rep", "service"],
            [
                [
                    r["key"],
                    r["name"],
                    r["timezone"],
                    r["locale"],
                    r["account_rep"],
                    f"{r['service_start'] or '…'} – {r['service_end'] or '…'}",
                ]
                for r in rows
            ],
        )


@contact_app.command("add")
def contact_add(
    customer: Annotated[str, typer.Argument(help="Customer key.")],
    email: Annotated[str, typer.Argument(help="Email address.")],
    name: Annotated[str | None, typer.Option("--name")] = None,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Add an address that bounced again (you know it works now): clears the "
            "bounce, recorded in the audit log.",
        ),
    ] = False,
    by: ByOption = None,
    at: AtOption = None,
) -> None:
    """Add an email contact to a customer."""
    when = parse_at(at)
    with session_scope() as s:
        contact, change = registry.upsert_contact(
            s, customer=customer, email=email, name=name, at=when, force=force, by=by
        )
    say(f"contact {contact.email} of {customer}: {change}")


@contact_app.command("list")
def contact_list(
    customer: Annotated[str, typer.Argument(help="Customer key.")], json_: JsonOption = False
) -> None:
    """A customer's contacts, with the bounced ones flagged (the provider's reason and when)."""
    with session_scope() as s:
        rows = registry.contact_rows(s, registry.get_customer(s, customer))
    if json_:
        emit_json(rows)
        return
    table(
        f"Contacts of {customer}",
        ["email", "name", "state", "since", "reason"],
        [
            [
                r["email"],
                r["name"],
                "bounced" if r["bounced"] else "ok",
                r["bounced_at"].date().isoformat() if r["bounced_at"] else "",
                r["bounce_reason"],
            ]
            for r in rows
        ],
    )


@contact_app.command("remove")
def contact_remove(
    customer: Annotated[str, typer.Argument(help="Customer key.")],
    email: Annotated[str, typer.Argument(help="Email address.")],
    by: ByOption = None,
    at: AtOption = None,
) -> None:
    """Remove a contact: no more email to it (past deliveries keep the address they went to)."""
    when = parse_at(at)
    with session_scope() as s:
        contact = registry.remove_contact(s, customer=customer, email=email, at=when, by=by)
    say(f"contact {contact.email} of {customer}: removed")


@deployment_app.command("add")
def deployment_add(
    customer: Annotated[str, typer.Argument(help="Customer key.")],
    product: ProductArg,
    version: Annotated[str, typer.Argument(help="Release version.")],
    cores: Annotated[int | None, typer.Option("--cores")] = None,
    at: AtOption = None,
) -> None:
    """Record that a customer runs a release (a late one is caught up at the next tick)."""
    when = parse_at(at)
    with session_scope() as s:
        dep, change = registry.add_deployment(
            s, customer=customer, product=product, version=version, cores=cores, at=when
        )
        warning = (
            registry.ended_warning(s, s.get_one(Release, dep.release_id), when)
            if change != "unchanged"
            else None
        )
    say(f"deployment {customer} {product} {version}: {change}")
    if warning:
        err_console.print(f"warning: {warning}", highlight=False, markup=False, soft_wrap=True)


@deployment_app.command("remove")
def deployment_remove(
    customer: Annotated[str, typer.Argument(help="Customer key.")],
    product: ProductArg,
    version: Annotated[str, typer.Argument(help="Release version.")],
    at: AtOption = None,
) -> None:
    """Record that a customer no longer runs a release: their pending notices for it are cancelled."""
    when = parse_at(at)
    with session_scope() as s:
        registry.remove_deployment(s, customer=customer, product=product, version=version, at=when)
    say(f"deployment {customer} {product} {version}: removed")


@change_app.command("list")
def change_list(
    json_: JsonOption = False,
    at: AtOption = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="At most this many.")] = 30,
) -> None:
    """The latest registry changes, newest first: held (can be undone), released or undone."""
    from lifecycle import changes

    when = parse_at(at)
    with session_scope() as s:
        rows = changes.list_changes(s, when, limit=limit)
    if json_:
        emit_json(rows)
        return
    table(
        "Registry changes",
        ["id", "at (UTC)", "what", "by", "state"],
        [
            [
                r["id"],
                r["at"][:16].replace("T", " "),
                r["summary"],
                r["by"] or "",
                f"held until {r['hold_until'][11:16]}" if r["state"] == "held" else r["state"],
            ]
            for r in rows
        ],
    )


@change_app.command("undo")
def change_undo(
    change_id: Annotated[int, typer.Argument(help="The change's number (see `lifecycle change list`).")],
    by: ByOption = None,
    at: AtOption = None,
    json_: JsonOption = False,
) -> None:
    """Undo a registry change within its hold: the milestones go back to how they were, no customer
    is told anything. After the hold it is refused: make a new change instead."""
    from lifecycle import changes

    when = parse_at(at)
    with session_scope() as s:
        result = changes.undo(s, change_id, at=when, by=by)
    if json_:
        emit_json(result)
        return
    say(f"change #{change_id} undone ({result['summary']}):")
    for r in result["reverted"]:
        say(
            f"  {r['milestone']}: {r['action']}"
            + (f", now {r['status']} on {r['date']}" if "date" in r else "")
        )
