"""What every CLI module shares: the `--at` clock, JSON output, tables, a session."""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

# Piped output (files, `| less`, CI logs) gets a wide page rather than rich's 80 columns.
console = Console(width=None if sys.stdout.isatty() else int(os.environ.get("COLUMNS") or 160))
err_console = Console(stderr=True)

AtOption = Annotated[
    str | None,
    typer.Option("--at", help="Pretend it is this instant: ISO date or datetime (UTC unless an offset is given)."),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def parse_at(at: str | None) -> dt.datetime:
    """The clock of a command: `--at` if given, else now (lifecycle.clock: the real time unless
    LIFECYCLE_CLOCK_OFFSET simulates another). Read once, passed down everywhere."""
    if at is None:
        from lifecycle import clock

        return clock.now()
    from lifecycle import validation

    return validation.instant(at, "--at")


def emit_json(data) -> None:
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False, default=_json_default) + "\n")


def _json_default(obj):
    if isinstance(obj, dt.datetime | dt.date):
        return obj.isoformat()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def table(title: str | None, columns: list[str], rows: list[list]) -> None:
    t = Table(title=title, show_lines=False, header_style="bold")
    for col in columns:
        t.add_column(col, overflow="fold")
    for row in rows:
        t.add_row(*["" if c is None else str(c) for c in row])
    console.print(t)


def say(message: str) -> None:
    console.print(message, highlight=False, soft_wrap=True)
