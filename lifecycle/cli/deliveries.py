"""`lifecycle report deliveries`: what each channel delivered, and every delivery to look at."""

from __future__ import annotations

from typing import Annotated

import typer

from lifecycle import reports
from lifecycle.cli.common import AtOption, JsonOption, emit_json, parse_at, say, table
from lifecycle.cli.reports import report_app
from lifecycle.db import session_scope


@report_app.command("deliveries")
def report_deliveries(
    at: AtOption = None,
    json_: JsonOption = False,
    all_: Annotated[
        bool, typer.Option("--all", help="List every delivery, not only those to look at.")
    ] = False,
) -> None:
    """Deliveries per channel and status; listed one by one: outcomes unknown (being reconciled),
    possible duplicates (sent again after an unknown outcome), failures and give-ups, retries."""
    when = parse_at(at)
    with session_scope() as s:
        data = reports.deliveries(s, when, everything=all_)
    if json_:
        emit_json(data)
        return
    for channel, counts in data["totals"].items():
        say(f"{channel}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    say(f"possible duplicates: {data['possible_duplicates']}")
    if data["rows"]:
        table(
            f"Deliveries to look at, {when.date().isoformat()}" if not all_ else "Deliveries",
            ["id", "customer", "channel", "recipient", "notice", "status", "attempts", "duplicate?", "error"],
            [
                [
                    r["id"],
                    r["customer"],
                    r["channel"],
                    r["recipient"],
                    r["notice"],
                    r["status"],
                    r["attempts"],
                    "possible" if r["possible_duplicate"] else "",
                    (r["error"] or "")[:80],
                ]
                for r in data["rows"]
            ],
        )
