"""What every CLI module shares: the `--at` clock, JSON output, tables, a session."""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table


class PipeClosed(Exception):
    """The reader of stdout went away (`lifecycle plan --json | head`). Not an OSError: click would turn
    that into a quiet exit 1; `lifecycle.cli.main` exits 141, as a shell reports SIGPIPE."""


@contextmanager
def pipe_closed_is_quiet() -> Iterator[None]:
    try:
        yield
    except BrokenPipeError:
        raise PipeClosed() from None


class _Console(Console):
    def on_broken_pipe(self) -> None:  # rich's own says SystemExit(1)
        self.quiet = True
        raise PipeClosed()


# Piped output (files, `| less`, CI logs) gets a wide page rather than rich's 80 columns.
console = _Console(width=None if sys.stdout.isatty() else int(os.environ.get("COLUMNS") or 160))
err_console = Console(stderr=True)

AtOption = Annotated[
    str | None,
    typer.Option(
        "--at", help="Pretend it is this instant: ISO date or datetime (UTC unless an offset is given)."
    ),
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
    with pipe_closed_is_quiet():
        sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False, default=_json_default) + "\n")
        sys.stdout.flush()


def _dumps(value) -> str:
    return json.dumps(value, ensure_ascii=False, default=_json_default)


def emit_json_stream(head: dict, key: str, rows: Iterable, tail: Callable[[], dict] | None = None) -> int:
    """One JSON document written as it is produced: `head`'s members, then `key` as an array with one row
    per line, written as each row comes (memory stays flat, `| head` answers at once), then `tail()`'s
    members (totals known only at the end). Returns the number of rows."""
    with pipe_closed_is_quiet():
        return _stream(head, key, rows, tail)


def _stream(head: dict, key: str, rows: Iterable, tail: Callable[[], dict] | None) -> int:
    write = sys.stdout.write
    write("{" + "".join(f"{_dumps(k)}: {_dumps(v)}, " for k, v in head.items()) + f"{_dumps(key)}: [")
    n = 0
    for row in rows:
        write(("\n" if n == 0 else ",\n") + _dumps(row))
        n += 1
    write("\n]" if n else "]")
    for k, v in (tail() if tail else {}).items():
        write(f", {_dumps(k)}: {_dumps(v)}")
    write("}\n")
    sys.stdout.flush()
    return n


def emit_json_array(rows: Iterable) -> int:
    """A JSON array written as it is produced, one row per line. Returns the number of rows."""
    with pipe_closed_is_quiet():
        return _array(rows)


def _array(rows: Iterable) -> int:
    write = sys.stdout.write
    n = 0
    for row in rows:
        write(("[\n" if n == 0 else ",\n") + _dumps(row))
        n += 1
    write("\n]\n" if n else "[]\n")
    sys.stdout.flush()
    return n


def _json_default(obj):
    if isinstance(obj, dt.datetime | dt.date):
        return obj.isoformat()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


PLAIN_TABLE_ROWS = 200  # above this many rows a table is laid out plainly (rich takes ~2 ms a row)


def table(title: str | None, columns: list[str], rows: list[list]) -> None:
    if len(rows) > PLAIN_TABLE_ROWS:
        say_lines(plain_table(title, columns, rows))
        return
    t = Table(title=title, show_lines=False, header_style="bold")
    for col in columns:
        t.add_column(col, overflow="fold")
    for row in rows:
        t.add_row(*["" if c is None else str(c) for c in row])
    with pipe_closed_is_quiet():
        console.print(t)


def plain_table(title: str | None, columns: list[str], rows: list[list]) -> list[str]:
    """A long table as aligned text: the title, the header, a rule, a line per row (numbers right-aligned)."""
    cells = [["" if c is None else str(c) for c in row] for row in rows]
    widths = [max([len(col), *(len(r[i]) for r in cells)]) for i, col in enumerate(columns)]
    numeric = [all(isinstance(row[i], int | float) for row in rows) for i in range(len(columns))]

    def line(values: list[str]) -> str:
        return "  ".join(
            v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric, strict=True)
        ).rstrip()

    out = [title] if title else []
    out += [line(columns), "  ".join("-" * w for w in widths)]
    out += [line(r) for r in cells]
    return out


def say_lines(lines: Iterable[str]) -> None:
    """Plain lines (no markup, no highlighting), written as they are: an import's summary can list
    thousands of warnings, which rich would lay out one by one."""
    with pipe_closed_is_quiet():
        write = sys.stdout.write
        for line in lines:
            write(line + "\n")
        sys.stdout.flush()


TABLE_ROWS = 500  # a table per this many rows: the terminal shows the first ones at once


def tables(title: str | None, columns: list[str], rows: Iterable[list], per: int = TABLE_ROWS) -> int:
    """`table` for rows that stream: a table per `per` rows (one table, empty or not, for fewer), printed
    as the rows come. Returns the number of rows."""
    batch: list[list] = []
    n = 0
    for row in rows:
        batch.append(row)
        n += 1
        if len(batch) == per:
            table(title, columns, batch)
            batch = []
    if batch or not n:
        table(title, columns, batch)
    return n


def say(message: str) -> None:
    with pipe_closed_is_quiet():
        console.print(message, highlight=False, soft_wrap=True)
