"""`lifecycle import`: a registry file (YAML/JSON) or endoflife.date API v1 JSON, all or nothing."""

from __future__ import annotations

import gc
import sys
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from lifecycle import importing
from lifecycle.cli import app
from lifecycle.cli.common import (
    AtOption,
    JsonOption,
    console,
    emit_json,
    err_console,
    parse_at,
    say_lines,
)
from lifecycle.db import session_scope
from lifecycle.errors import InputError, InputErrors

PROGRESS_THRESHOLD = 200  # rows; smaller files finish before a bar would be worth drawing


@contextmanager
def _cycle_collection_paused():
    """The cyclic garbage collector off for a block (reference counting still frees everything else)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


class ImportFormat(StrEnum):
    REGISTRY = "registry"
    ENDOFLIFE = "endoflife"


@contextmanager
def progress_bar(description: str):
    """A callback (done, total) drawing a progress bar on stderr for large imports at a terminal."""
    bar = task = None
    at_terminal = sys.stderr.isatty()  # asked once: the callback runs for every row

    def update(done: int, total: int) -> None:
        nonlocal bar, task
        if total <= PROGRESS_THRESHOLD or not at_terminal:
            return
        if bar is None:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
                console=err_console,
                transient=True,
            )
            bar.start()
            task = bar.add_task(description, total=total)
        bar.update(task, completed=done)

    try:
        yield update
    finally:
        if bar is not None:
            bar.stop()


@app.command("import")
def import_file(
    file: Annotated[Path, typer.Argument(help="The file: YAML or JSON (registry), or endoflife.date JSON.")],
    format_: Annotated[
        str,
        typer.Option(
            "--format",
            metavar="registry|endoflife",
            help="registry: products and customers (see "
            "examples/registry.yaml); endoflife: one product from the endoflife.date API v1.",
        ),
    ] = ImportFormat.REGISTRY,
    product: Annotated[
        str | None, typer.Option("--product", help="endoflife: the product slug to import into.")
    ] = None,
    name: Annotated[
        str | None, typer.Option("--name", help="endoflife: the product name (default: the file's label).")
    ] = None,
    short_notice_reason: Annotated[
        str | None,
        typer.Option(
            "--short-notice-reason",
            help="endoflife: the reason recorded on dates less than 3 months away "
            f"(default: {importing.UPSTREAM_REASON!r}; registry files give short_notice_reason per milestone).",
        ),
    ] = None,
    strict: Annotated[
        bool,
        typer.Option(
            "--strict",
            help="endoflife: refuse dates less than 3 months away instead of recording them as short notice.",
        ),
    ] = False,
    at: AtOption = None,
    json_: JsonOption = False,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run", help="Show what the import would change and who would be told what; write nothing."
        ),
    ] = False,
) -> None:
    """Import a file, all or nothing: every error is listed with its path and nothing is written.

    Re-importing is an idempotent upsert; a changed milestone date is a move (a date less than 3 months
    after --at needs a short_notice_reason); dates already past are recorded as history."""
    when = parse_at(at)
    if format_ not in tuple(ImportFormat):
        raise InputError("--format", f"unknown format {format_!r} (use registry or endoflife)")
    if format_ == ImportFormat.ENDOFLIFE and not product:
        raise InputError("--product", "required with --format endoflife (the product slug, e.g. kubernetes)")
    if format_ == ImportFormat.REGISTRY:
        for option, value in (
            ("--product", product),
            ("--name", name),
            ("--short-notice-reason", short_notice_reason),
            ("--strict", strict or None),
        ):
            if value is not None:
                raise InputError(option, "only with --format endoflife")
    elif strict and short_notice_reason:
        raise InputError("--strict", "give either --strict or --short-notice-reason, not both")
    # Reading, checking and writing a fleet's file keep millions of small objects alive, none of them
    # in a reference cycle: the cyclic collector's full passes over them took a sixth of the time.
    with _cycle_collection_paused():
        data = importing.load_file(file, parallel=True)  # errors name the file and the line

        def run(s, on_progress=None):
            if format_ == ImportFormat.ENDOFLIFE:
                return importing.import_endoflife(
                    s,
                    data,
                    product=product,
                    name=name,
                    at=when,
                    source=file.name,
                    short_notice_reason=None
                    if strict
                    else (short_notice_reason or importing.UPSTREAM_REASON),
                    on_progress=on_progress,
                )
            # The data is read once here: let the import drop it as it builds its records (bounded memory).
            return importing.import_registry(
                s, data, at=when, source=file.name, on_progress=on_progress, consume=True
            )

        if dry_run:
            from lifecycle import changes

            found: list = []

            def apply(s):
                found.append(run(s))
                return found[0].to_dict()

            try:
                preview = changes.preview(when, apply)
            except InputErrors as exc:  # errors name the path in the file (customers[3].name): say which file
                raise InputErrors(exc.errors, source=str(file)) from None
            if json_:
                emit_json(preview)
                return
            for line in found[0].lines() + changes.preview_lines(preview):
                console.print(line, highlight=False, markup=False, soft_wrap=True)
            return
        try:
            with progress_bar(f"importing {file.name}") as on_progress, session_scope() as s:
                summary = run(s, on_progress)
        except InputErrors as exc:  # errors name the path in the file (customers[3].name): say which file
            raise InputErrors(exc.errors, source=str(file)) from None
        if json_:
            emit_json(summary.to_dict())
        else:
            say_lines(summary.lines())  # reasons and file names are text, not markup
