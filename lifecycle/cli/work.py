"""Account reps' commands: their settings (`rep set`, `rep list`) and escalation work items
(`escalation list`, `escalation update`)."""

from __future__ import annotations

from typing import Annotated

import typer

from lifecycle import escalations, reps
from lifecycle.cli import app
from lifecycle.cli.common import AtOption, JsonOption, emit_json, parse_at, say, table
from lifecycle.db import session_scope

rep_app = typer.Typer(
    help="Account reps: name, language and timezone of their daily digest.", no_args_is_help=True
)
escalation_app = typer.Typer(
    help="Escalations: work items of customers without an agreement at 1 month.", no_args_is_help=True
)
app.add_typer(rep_app, name="rep")
app.add_typer(escalation_app, name="escalation")


@rep_app.command("set")
def rep_set(
    email: Annotated[str, typer.Argument(help="The rep's email (as on their customers).")],
    name: Annotated[str | None, typer.Option("--name", help="Shown to customers in email footers.")] = None,
    locale: Annotated[
        str | None, typer.Option("--locale", help="en or zh-CN: the digest's language.")
    ] = None,
    timezone: Annotated[
        str | None, typer.Option("--timezone", help="IANA timezone of the 09:00 digest.")
    ] = None,
    at: AtOption = None,
) -> None:
    """Set a rep's name, language or timezone (only what is given)."""
    when = parse_at(at)
    with session_scope() as s:
        rep, change = reps.upsert(s, email=email, name=name, locale=locale, timezone=timezone, at=when)
    say(f"rep {rep.email}: {change}")


@rep_app.command("list")
def rep_list(json_: JsonOption = False) -> None:
    """Every rep (named on a customer or with settings)."""
    with session_scope() as s:
        rows = [r.as_dict() for r in reps.listing(s)]
    if json_:
        emit_json(rows)
    else:
        table(
            "Reps",
            ["email", "name", "locale", "timezone"],
            [[r["email"], r["name"], r["locale"], r["timezone"]] for r in rows],
        )


@escalation_app.command("list")
def escalation_list(
    rep: Annotated[str | None, typer.Option("--rep", help="Only this rep's customers.")] = None,
    state: Annotated[str | None, typer.Option("--state", help="open | in-progress | resolved")] = None,
    at: AtOption = None,
    json_: JsonOption = False,
) -> None:
    """Escalation work items: open first, then in progress, then resolved; with the current due date."""
    when = parse_at(at)
    with session_scope() as s:
        rows = escalations.rows(s, at=when, rep=rep, state=state)
    if json_:
        emit_json(escalations.jsonable(rows))
        return
    table(
        "Escalations",
        ["id", "state", "owner", "customer", "release", "milestone", "due", "days", "notes"],
        [
            [
                r["id"],
                r["state"] + (f" ({r['resolution']})" if r["resolution"] else ""),
                r["owner"],
                r["customer"],
                f"{r['product']} {r['version']}",
                r["milestone"] + (" (withdrawn)" if r["milestone_withdrawn"] else ""),
                r["due_date"],
                r["days_left"],
                len(r["notes"]),
            ]
            for r in rows
        ],
    )


@escalation_app.command("update")
def escalation_update(
    escalation_id: Annotated[int, typer.Argument(help="The item's number.")],
    state: Annotated[str | None, typer.Option("--state", help="open | in-progress | resolved")] = None,
    note: Annotated[str | None, typer.Option("--note", help="A note on the work done.")] = None,
    by: Annotated[str | None, typer.Option("--by", help="Who (recorded with the note).")] = None,
    at: AtOption = None,
) -> None:
    """Move an escalation to another state and/or add a note."""
    when = parse_at(at)
    with session_scope() as s:
        item = escalations.update(
            s, escalations.get(s, escalation_id), at=when, by=by, state=state, note=note
        )
        say(f"escalation {item.id}: {item.state}")
