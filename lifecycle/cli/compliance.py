"""`lifecycle report compliance`: per customer and milestone, first notice against the 3-month deadline."""

from __future__ import annotations

from typing import Annotated

import typer

from lifecycle import reports
from lifecycle.cli.common import AtOption, JsonOption, emit_json, parse_at, say, table
from lifecycle.cli.reports import report_app
from lifecycle.db import session_scope


@report_app.command("compliance")
def report_compliance(at: AtOption = None, json_: JsonOption = False,
                      summary: Annotated[bool, typer.Option(
                          "--summary", help="Per product, release and milestone: how many customers were told "
                          "on time, late, not at all (with the causes) or are pending.")] = False) -> None:
    """When each customer was first told about each milestone, against the 3-month deadline: on-time,
    late (with the cause), pending, not-notified (with the cause), withdrawn; and totals."""
    when = parse_at(at)
    with session_scope() as s:
        data = reports.compliance(s, when)
    if summary:
        groups = reports.compliance_summary(data)
        if json_:
            emit_json({"at": data["at"], "totals": data["totals"], "summary": groups})
            return
        table(f"Compliance per milestone at {when.date().isoformat()}",
              ["release", "milestone", "date", "customers", *reports.STATUSES, "causes"],
              [[f"{g['product']} {g['version'] or '(all versions)'}", g["milestone"], g["milestone_date"],
                g["customers"], *[g[st] for st in reports.STATUSES],
                "; ".join(f"{c['cause']} ×{c['customers']}" for st in ("late", "not-notified")
                          for c in g["causes"][st])] for g in groups])
        return
    if json_:
        emit_json(data)
        return
    table(f"Compliance at {when.date().isoformat()}",
          ["customer", "release", "milestone", "date", "deadline", "first told", "status", "cause / notes"],
          [[r["customer"], f"{r['product']} {r['version'] or ''}".strip(), r["milestone"], r["milestone_date"],
            r["deadline"], (r["first_notified_at"] or "")[:16].replace("T", " "), r["status"],
            "; ".join(x for x in (r["cause"], r["notes"]) if x)] for r in data["rows"]])
    say("totals: " + (", ".join(f"{k} {v}" for k, v in data["totals"].items()) or "nothing to report"))
