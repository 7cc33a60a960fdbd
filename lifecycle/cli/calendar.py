"""Calendar commands: static exports, a customer's private feed URL, revoking it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from lifecycle import links, registry
from lifecycle.cli import app
from lifecycle.cli.common import AtOption, JsonOption, emit_json, parse_at, say
from lifecycle.config import get_settings
from lifecycle.db import session_scope
from lifecycle.errors import InputError

calendar_app = typer.Typer(help="iCalendar feeds and static exports.", no_args_is_help=True)
app.add_typer(calendar_app, name="calendar")

CustomerArg = Annotated[str, typer.Argument(help="Customer key.")]


def _urls(token: str) -> dict[str, str]:
    url = links.calendar_url(token)
    return {"url": url, "webcal_url": links.webcal_url(url)}


@calendar_app.command("export")
def calendar_export(
    out: Annotated[
        Path | None, typer.Option("--out", help="Folder to write to (default: LIFECYCLE_CALENDAR_DIR).")
    ] = None,
    json_: JsonOption = False,
    at: AtOption = None,
) -> None:
    """Write DIR/products/<slug>.ics and DIR/customers/<key>.ics as of --at (history: no alarms for past
    milestones); files that would not change are left alone."""
    from lifecycle.calendar.exports import export_all

    when = parse_at(at)
    out_dir = out or get_settings().calendar_dir
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError("--out", f"{out_dir} is a file, not a folder")
    with session_scope() as s:
        try:
            written = export_all(s, out_dir, at=when)
        except OSError as exc:
            raise InputError("--out", f"cannot write calendars to {out_dir}: {exc.strerror or exc}") from None
    if json_:
        emit_json({"dir": str(out_dir), "written": [str(p) for p in written]})
    else:
        say(f"{len(written)} calendar file{'s' if len(written) != 1 else ''} written to {out_dir}")


@calendar_app.command("url")
def calendar_url(customer: CustomerArg, json_: JsonOption = False) -> None:
    """Print the customer's private feed URL (https and webcal://). Treat it as a password."""
    with session_scope() as s:
        cust = registry.get_customer(s, customer)
        urls = _urls(cust.calendar_token)
    if json_:
        emit_json({"customer": customer, **urls})
    else:
        typer.echo(urls["url"])  # plain echo: rich would wrap a long URL
        typer.echo(urls["webcal_url"])


@calendar_app.command("revoke")
def calendar_revoke(customer: CustomerArg, json_: JsonOption = False, at: AtOption = None) -> None:
    """Give the customer a new feed URL: the old one stops working at once (404)."""
    when = parse_at(at)
    with session_scope() as s:
        cust = registry.get_customer(s, customer)
        token = registry.rotate_calendar_token(s, cust, when)
        urls = _urls(token)
    if json_:
        emit_json({"customer": customer, **urls})
    else:
        say("the old feed URL no longer works; the new one is:")
        typer.echo(urls["url"])  # plain echo: rich would wrap a long URL
        typer.echo(urls["webcal_url"])
