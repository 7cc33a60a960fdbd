"""The `lifecycle` command. Thin over the domain modules; each area registers its commands here.

Exit codes: 0 success, 2 bad input (the message names the field, row or line), 1 anything else.
A user never sees a traceback (set LIFECYCLE_DEBUG=1 to get one).
"""

from __future__ import annotations

import os
import sys

import click
import typer

app = typer.Typer(
    name="lifecycle",
    help="Product-lifecycle notices: register milestones, notify every affected customer at least 3 months "
    "ahead through email, portal and calendar, and prove it.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root() -> None:
    # A callback keeps `app` a group when a command's module registers a single command (`import`):
    # without it Typer would run that command as the program itself.
    pass


# The areas' modules, in the order their commands are listed.
MODULES = (
    "registry",
    "importing",
    "schedule",
    "calendar",
    "web",
    "reports",
    "compliance",
    "secret",
    "deliveries",
    "work",
    "channels",
)

# Every top-level command: the modules that register it (a group's subcommands may come from several), and the
# help `lifecycle --help` shows for it. A command imports only its own modules, so that `lifecycle --help` and
# `lifecycle tick` do not pay for the web, Celery or the import machinery; tests/test_cli_startup.py checks this
# table against the modules, and `lifecycle --help` against the eagerly built one.
COMMANDS: dict[str, tuple[tuple[str, ...], str]] = {
    "import": (
        ("importing",),
        "Import a file, all or nothing: every error is listed with its path and nothing is written.",
    ),
    "plan": (
        ("schedule",),
        "Plan notices for every affected customer and show what will be sent, when, to whom, "
        "on which channel.",
    ),
    "tick": (
        ("schedule",),
        "Plan and send everything due by --at, synchronously. Running it again sends nothing twice.",
    ),
    "inbox": (("schedule",), "The customer's portal inbox, newest first."),
    "ack": (
        ("schedule",),
        "Record a customer's upgrade agreement for a release (stops routine reminders for it).",
    ),
    "worker": (
        ("schedule",),
        "Run a Celery worker with embedded beat on the no-server broker (or LIFECYCLE_BROKER_URL).",
    ),
    "demo": (
        ("schedule",),
        "Build a demo from the shipped examples and fast-forward a year of ticks, then show what happened.",
    ),
    "serve": (
        ("web",),
        "Run the web pages, the API and the calendar feeds, plus (on the no-server default broker) "
        "the\nembedded Celery worker and beat as a child process. With LIFECYCLE_BROKER_URL set it "
        "serves only the\nweb: run `celery -A tasks worker` and `celery -A tasks beat` separately. "
        "Ctrl-C stops everything.",
    ),
    "db": (("registry",), "Database schema."),
    "product": (("registry",), "Products."),
    "release": (("registry",), "Releases (version lines) of a product."),
    "milestone": (("registry",), "Lifecycle milestones: end of sale, full support, maintenance, life."),
    "change": (("registry",), "Registry changes: the ones on hold, and undo within the hold."),
    "customer": (("registry",), "Customers."),
    "contact": (("registry",), "Email contacts of a customer."),
    "deployment": (("registry",), "Which releases a customer runs."),
    "calendar": (("calendar",), "iCalendar feeds and static exports."),
    "token": (("web",), "API and web login tokens (pm, rep, customer)."),
    "report": (("reports", "compliance", "deliveries"), "Reports: agreements (and compliance)."),
    "secret": (("secret",), "The key that signs acknowledgement links and web sessions."),
    "rep": (("work",), "Account reps: name, language and timezone of their daily digest."),
    "escalation": (("work",), "Escalations: work items of customers without an agreement at 1 month."),
    "channel": (
        ("channels",),
        "A customer's notification channels beyond email and the portal: signed webhook, "
        "Slack, Microsoft Teams.",
    ),
}


def _register(modules: tuple[str, ...] = MODULES) -> None:
    """Each area's module adds its commands to `app` when imported."""
    import importlib

    for name in modules:
        importlib.import_module(f"lifecycle.cli.{name}")


def _command_of(argv: list[str]) -> str | None:
    """The top-level command named on the command line: its first word (the app has no options of its own
    but --help, which shows every command whatever follows it)."""
    return argv[0] if argv and not argv[0].startswith("-") else None


def _help_app() -> typer.Typer:
    """`lifecycle` and `lifecycle --help`: the command list from COMMANDS, without importing any command."""
    menu = typer.Typer(
        name=app.info.name,
        help=app.info.help,
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
    )

    def stub() -> None:  # never run: naming a command loads the real one
        raise typer.Exit(1)

    for name, (_modules, text) in COMMANDS.items():
        menu.command(name, help=text)(stub)
    return menu


def _prepare(argv: list[str]) -> typer.Typer:
    """The app to run for `argv`, with only the modules of the named command imported."""
    name = _command_of(argv)
    if name is None:
        return _help_app()
    modules = COMMANDS.get(name, (MODULES, ""))[0]  # an unknown command: everything, for click's suggestions
    _register(modules)
    return app


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

    return (
        family("Exit", typer.Exit),
        family("Abort", typer.Abort),
        family("ClickException", click.ClickException),
    )


def main(argv: list[str] | None = None) -> None:
    from lifecycle.cli.common import PipeClosed, err_console
    from lifecycle.errors import InputError, LifecycleError, ShortNotice

    args = sys.argv[1:] if argv is None else list(argv)
    exits, aborts, usage = _click_exceptions()
    try:
        runner = _prepare(args)
        # Outside standalone mode click returns the code of a `typer.Exit` instead of raising it.
        code = runner(args=args, standalone_mode=False)
        sys.stdout.flush()  # a closed pipe shows here, inside the handlers below
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
            err_console.print(
                '(on the command line: --allow-short-notice --reason "...")', highlight=False, markup=False
            )
        sys.exit(2)
    except LifecycleError as exc:
        err_console.print(f"error: {exc}", highlight=False, markup=False, soft_wrap=True)
        sys.exit(1)
    except (BrokenPipeError, PipeClosed):  # `lifecycle plan --json | head`: the reader has all it wanted
        _quiet_stdout()
        sys.exit(141)  # 128 + SIGPIPE, as a shell reports a command a closed pipe stopped
    except Exception as exc:  # noqa: BLE001 - never a traceback to a user
        if _schema_out_of_date(exc):
            err_console.print(f"error: {exc}", highlight=False, markup=False, soft_wrap=True)
            sys.exit(1)
        if os.environ.get("LIFECYCLE_DEBUG"):
            raise
        err_console.print(
            f"error: {type(exc).__name__}: {exc}", highlight=False, markup=False, soft_wrap=True
        )
        err_console.print("(set LIFECYCLE_DEBUG=1 for the traceback)")
        sys.exit(1)
    sys.exit(0)


def _schema_out_of_date(exc: Exception) -> bool:
    db = sys.modules.get("lifecycle.db")  # only a command that opened the database can raise it
    return db is not None and isinstance(exc, db.SchemaOutOfDate)


def _quiet_stdout() -> None:
    """Point stdout at /dev/null so that the interpreter's final flush does not fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
