"""The `lifecycle` command. Thin over the domain modules; each area registers its commands here.

Exit codes: 0 success, 2 bad input (the message names the field, row or line), 1 anything else.
A user never sees a traceback (set LIFECYCLE_DEBUG=1 to get one).
"""

from __future__ import annotations

import os
import sys

import click
import typer

from lifecycle.cli.common import err_console

app = typer.Typer(
    name="lifecycle",
    help="Product-lifecycle notices: register milestones, notify every affected customer at least 3 months "
    "ahead through email, portal and calendar, and prove it.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _register() -> None:
    """Each area's module adds its commands to `app` when imported."""
    import importlib

    for name in ("registry", "importing", "schedule", "calendar", "web", "reports", "compliance", "secret",
                 "deliveries", "work", "channels"):
        importlib.import_module(f"lifecycle.cli.{name}")


def _click_exceptions() -> tuple[tuple, tuple, tuple]:
    """(exit, abort, usage-error) classes: newer Typer bundles its own copy of click."""
    modules = [click.exceptions]
    try:
        from typer._click import exceptions as bundled
    except ImportError:
        pass
    else:
        modules.append(bundled)
    def family(name: str, extra) -> tuple:
        return tuple(getattr(m, name) for m in modules if hasattr(m, name)) + (extra,)

    return family("Exit", typer.Exit), family("Abort", typer.Abort), family("ClickException", click.ClickException)


def main(argv: list[str] | None = None) -> None:
    from lifecycle.db import SchemaOutOfDate
    from lifecycle.errors import InputError, LifecycleError, ShortNotice

    _register()
    exits, aborts, usage = _click_exceptions()
    try:
        # Outside standalone mode click returns the code of a `typer.Exit` instead of raising it.
        code = app(args=argv, standalone_mode=False)
        if isinstance(code, int) and code:
            sys.exit(code)
    except exits as exc:
        sys.exit(exc.exit_code)
    except aborts:
        err_console.print("aborted")
        sys.exit(1)
    except usage as exc:  # usage errors: bad input
        exc.show()
        sys.exit(2)
    except InputError as exc:
        err_console.print(f"error: {exc}", highlight=False, markup=False, soft_wrap=True)
        if isinstance(exc, ShortNotice):
            err_console.print('(on the command line: --allow-short-notice --reason "...")', highlight=False,
                              markup=False)
        sys.exit(2)
    except (LifecycleError, SchemaOutOfDate) as exc:
        err_console.print(f"error: {exc}", highlight=False, markup=False, soft_wrap=True)
        sys.exit(1)
    except Exception as exc:  # noqa: BLE001 - never a traceback to a user
        if os.environ.get("LIFECYCLE_DEBUG"):
            raise
        err_console.print(f"error: {type(exc).__name__}: {exc}", highlight=False, markup=False, soft_wrap=True)
        err_console.print("(set LIFECYCLE_DEBUG=1 for the traceback)")
        sys.exit(1)
    sys.exit(0)
