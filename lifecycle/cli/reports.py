"""Reports: `lifecycle report agreements` (and `report compliance`, registered by its own module)."""

from __future__ import annotations

import csv
import sys
from itertools import islice
from typing import Annotated

import typer

from lifecycle import dashboard
from lifecycle.cli import app
from lifecycle.cli.common import AtOption, JsonOption, emit_json_array, parse_at, pipe_closed_is_quiet, tables
from lifecycle.db import session_scope
from lifecycle.errors import InputError

report_app = typer.Typer(help="Reports: agreements (and compliance).", no_args_is_help=True)
app.add_typer(report_app, name="report")


RISKS = ("red", "amber", "green")
AGREEMENTS = ("none", "acknowledged", "planned", "completed", "declined")


@report_app.command("agreements")
def report_agreements(
    rep: Annotated[str | None, typer.Option("--rep", help="Only this account rep's customers.")] = None,
    at: AtOption = None,
    json_: JsonOption = False,
    csv_: Annotated[bool, typer.Option("--csv", help="Print CSV instead of a table.")] = False,
    customer: Annotated[str | None, typer.Option("--customer", help="Only this customer.")] = None,
    product: Annotated[str | None, typer.Option("--product", help="Only this product.")] = None,
    risk: Annotated[
        str | None, typer.Option("--risk", help="Only rows of this risk: red, amber, green.")
    ] = None,
    status: Annotated[
        str | None,
        typer.Option("--status", help="Only rows of this agreement status: " + ", ".join(AGREEMENTS) + "."),
    ] = None,
    limit: Annotated[
        int, typer.Option("--limit", min=0, help="At most this many rows, fewest days left first (0: all).")
    ] = 0,
) -> None:
    """Per customer and release with an upcoming milestone: agreement status, target, planned date,
    who and when, days left, cores, risk and why (red: every contact bounced, the plan is at risk, or no
    agreement within a month; amber: no agreement within 3 months), and the escalation's state.

    Rows are read a chunk at a time and written as they come (--json: an array with a row per line)."""
    if json_ and csv_:
        raise InputError("--csv", "give either --json or --csv, not both")
    if risk is not None and risk not in RISKS:
        raise InputError("--risk", f"{risk!r} is not one of {', '.join(RISKS)}")
    if status is not None and status not in AGREEMENTS:
        raise InputError("--status", f"{status!r} is not one of {', '.join(AGREEMENTS)}")
    when = parse_at(at)
    with session_scope() as s:
        customer_id = None
        if customer is not None:
            from lifecycle import registry

            customer_id = registry.get_customer(s, customer).id
        found = dashboard.only(
            dashboard.iter_agreement_rows(s, at=when, rep=rep, customer_id=customer_id, product=product),
            risk=risk,
            agreement=status,
        )
        rows = islice(found, limit or None)
        if json_:
            emit_json_array(dashboard.jsonable([r])[0] for r in rows)
        elif csv_:
            with pipe_closed_is_quiet():
                writer = csv.writer(sys.stdout, lineterminator="\n")
                writer.writerow(dashboard.CSV_COLUMNS)
                for r in rows:
                    writer.writerow([dashboard._cell(r[c]) for c in dashboard.CSV_COLUMNS])
        else:
            tables(
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
                (
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
                ),
            )
