"""`lifecycle report compliance`: per customer and milestone, first notice against the 3-month deadline."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from itertools import islice
from typing import Annotated

import typer

from lifecycle import reports
from lifecycle.cli.common import (
    TABLE_ROWS,
    AtOption,
    JsonOption,
    emit_json,
    emit_json_stream,
    parse_at,
    say,
    table,
)
from lifecycle.cli.reports import report_app
from lifecycle.db import session_scope
from lifecycle.errors import InputError


@report_app.command("compliance")
def report_compliance(
    at: AtOption = None,
    json_: JsonOption = False,
    summary: Annotated[
        bool,
        typer.Option(
            "--summary",
            help="Per product, release and milestone: how many customers were told "
            "on time, late, not at all (with the causes) or are pending.",
        ),
    ] = False,
    customer: Annotated[str | None, typer.Option("--customer", help="Only this customer.")] = None,
    product: Annotated[str | None, typer.Option("--product", help="Only this product.")] = None,
    status: Annotated[
        str | None,
        typer.Option("--status", help="Only rows of this status: " + ", ".join(reports.STATUSES) + "."),
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=0, help="At most this many rows (0: all).")] = 0,
) -> None:
    """When each customer was first told about each milestone, against the 3-month deadline: on-time,
    late (with the cause), pending, not-notified (with the cause), withdrawn; and totals.

    Rows are computed a chunk of customers at a time and written as they come (--json: one JSON document
    with a row per line, the totals at the end)."""
    if status is not None and status not in reports.STATUSES:
        raise InputError("--status", f"{status!r} is not one of {', '.join(reports.STATUSES)}")
    when = parse_at(at)
    totals: Counter = Counter()

    def rows(s) -> Iterator[dict]:
        if customer is not None:
            from lifecycle import registry

            registry.get_customer(s, customer)  # an unknown key is bad input, not an empty report
        found = (
            r
            for r in reports.compliance_rows(s, when, customer=customer)
            if (product is None or r["product"] == product) and (status is None or r["status"] == status)
        )
        for r in islice(found, limit or None):
            totals[r["status"]] += 1
            yield r

    with session_scope() as s:
        if summary:
            groups = reports.compliance_summary(rows(s))
            if json_:
                emit_json({"at": when.isoformat(), "totals": dict(sorted(totals.items())), "summary": groups})
                return
            table(
                f"Compliance per milestone at {when.date().isoformat()}",
                ["release", "milestone", "date", "customers", *reports.STATUSES, "causes"],
                [
                    [
                        f"{g['product']} {g['version'] or '(all versions)'}",
                        g["milestone"],
                        g["milestone_date"],
                        g["customers"],
                        *[g[st] for st in reports.STATUSES],
                        "; ".join(
                            f"{c['cause']} ×{c['customers']}"
                            for st in ("late", "not-notified")
                            for c in g["causes"][st]
                        ),
                    ]
                    for g in groups
                ],
            )
            return
        if json_:
            emit_json_stream(
                {"at": when.isoformat()},
                "rows",
                rows(s),
                tail=lambda: {"totals": dict(sorted(totals.items()))},
            )
            return
        batch: list[dict] = []
        for r in rows(s):
            batch.append(r)
            if len(batch) == TABLE_ROWS:
                _table(when, batch)
                batch = []
        if batch or not totals:
            _table(when, batch)
    say("totals: " + (", ".join(f"{k} {v}" for k, v in sorted(totals.items())) or "nothing to report"))


def _table(when, rows: list[dict]) -> None:
    table(
        f"Compliance at {when.date().isoformat()}",
        ["customer", "release", "milestone", "date", "deadline", "first told", "status", "cause / notes"],
        [
            [
                r["customer"],
                f"{r['product']} {r['version'] or ''}".strip(),
                r["milestone"],
                r["milestone_date"],
                r["deadline"],
                (r["first_notified_at"] or "")[:16].replace("T", " "),
                r["status"],
                "; ".join(x for x in (r["cause"], r["notes"]) if x),
            ]
            for r in rows
        ],
    )
