"""Reports: `lifecycle report agreements` (and `report compliance`, registered by its own module)."""

from __future__ import annotations

import csv
import sys
from typing import Annotated

import typer

from lifecycle import dashboard
from lifecycle.cli import app
from lifecycle.cli.common import AtOption, JsonOption, emit_json_array, parse_at, pipe_closed_is_quiet, table
from lifecycle.db import session_scope
from lifecycle.errors import InputError

report_app = typer.Typer(help="Reports: agreements (and compliance).", no_args_is_help=True)
app.add_typer(report_app, name="report")


@report_app.command("agreements")
def report_agreements(
    rep: Annotated[str | None, typer.Option("--rep", help="Only this account rep's customers.")] = None,
    at: AtOption = None,
    json_: JsonOption = False,
    csv_: Annotated[bool, typer.Option("--csv", help="Print CSV instead of a table.")] = False,
    customer: Annotated[str | None, typer.Option("--customer", help="Only this customer.")] = None,
    product: Annotated[str | None, typer.Option("--product", help="Only this product.")] = None,
    limit: Annotated[
        int, typer.Option("--limit", min=0, help="At most this many rows, fewest days left first (0: all).")
    ] = 0,
) -> None:
    """Per customer and release with an upcoming milestone: agreement status, target, planned date,
    who and when, days left, cores, risk and why (red: every contact bounced, the plan is at risk, or no
    agreement within a month; amber: no agreement within 3 months), and the escalation's state."""
    if json_ and csv_:
        raise InputError("--csv", "give either --json or --csv, not both")
    when = parse_at(at)
    with session_scope() as s:
        customer_id = None
        if customer is not None:
            from lifecycle import registry

            customer_id = registry.get_customer(s, customer).id
        rows = dashboard.agreement_rows(s, at=when, rep=rep, customer_id=customer_id, product=product)
    if limit:
        del rows[limit:]
    if json_:
        emit_json_array(dashboard.jsonable([r])[0] for r in rows)
    elif csv_:
        with pipe_closed_is_quiet():
            writer = csv.writer(sys.stdout, lineterminator="\n")
            writer.writerow(dashboard.CSV_COLUMNS)
            for r in rows:
                writer.writerow([dashboard._cell(r[c]) for c in dashboard.CSV_COLUMNS])
    else:
        table(
            f"Agreements at {when.date().isoformat()}" + (f" for {rep}" if rep else ""),
            [
                "customer",
                "release",
                "next milestone",
                "days",
                "agreement",
                "target",
                "planned",
                "by",
                "cores",
                "risk",
                "why",
                "escalation",
            ],
            [
                [
                    r["customer"],
                    f"{r['product']} {r['version']}",
                    f"{r['milestone']} {r['milestone_date']}",
                    r["days_left"],
                    r["agreement"] + (" (at risk)" if r["at_risk"] else ""),
                    r["target"],
                    r["planned_date"],
                    f"{r['by'] or ''} {r['agreed_at'].date() if r['agreed_at'] else ''}".strip(),
                    r["cores"],
                    r["risk"],
                    r["risk_reason"],
                    r["escalation_state"],
                ]
                for r in rows
            ],
        )
