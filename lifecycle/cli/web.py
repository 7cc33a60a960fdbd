"""Web commands: `lifecycle token create|list|revoke` and `lifecycle serve`."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from typing import Annotated

import typer

from lifecycle import tokens
from lifecycle.cli import app
from lifecycle.cli.common import AtOption, JsonOption, emit_json, err_console, parse_at, say, table
from lifecycle.db import session_scope

token_app = typer.Typer(help="API and web login tokens (pm, rep, customer).", no_args_is_help=True)
app.add_typer(token_app, name="token")

CHILD_STOP_SECONDS = 20


class _Stop(Exception):
    """SIGINT or SIGTERM reached `lifecycle serve`."""


@token_app.command("create")
def token_create(
    role: Annotated[str, typer.Option("--role", help="pm | rep | customer")],
    customer: Annotated[
        str | None, typer.Option("--customer", help="Customer key (customer tokens).")
    ] = None,
    rep: Annotated[str | None, typer.Option("--rep", help="Account rep's email (rep tokens).")] = None,
    label: Annotated[str | None, typer.Option("--label", help="A note to recognise the token by.")] = None,
    at: AtOption = None,
) -> None:
    """Create a token and print its secret: it is shown this once, only a hash is stored."""
    when = parse_at(at)
    with session_scope() as s:
        token, secret = tokens.create_token(s, role=role, customer=customer, rep=rep, label=label, at=when)
    err_console.print(
        f"token {token.id} ({role}{' ' + customer if customer else ''}{' ' + rep if rep else ''}) "
        "created; the secret is shown once:",
        highlight=False,
    )
    print(secret)


@token_app.command("list")
def token_list(json_: JsonOption = False) -> None:
    """List tokens (never their secrets)."""
    with session_scope() as s:
        rows = tokens.token_rows(s)
    if json_:
        emit_json(rows)
        return
    table(
        "Tokens",
        ["id", "role", "customer", "rep", "label", "created", "last used", "revoked"],
        [
            [
                r["id"],
                r["role"],
                r["customer"],
                r["rep"],
                r["label"],
                r["created_at"].date(),
                r["last_used_at"].isoformat(timespec="seconds") if r["last_used_at"] else "",
                r["revoked_at"].date() if r["revoked_at"] else "",
            ]
            for r in rows
        ],
    )


@token_app.command("revoke")
def token_revoke(
    token_id: Annotated[int, typer.Argument(help="Token id (see `lifecycle token list`).")],
    at: AtOption = None,
) -> None:
    """Revoke a token: its API calls and web sessions stop working at once."""
    when = parse_at(at)
    with session_scope() as s:
        tokens.revoke_token(s, token_id, when)
    say(f"token {token_id} revoked")


def _first_token() -> str | None:
    """A pm token when the database has none yet, so that a fresh install can log in."""
    from lifecycle import clock

    with session_scope() as s:
        if tokens.has_tokens(s):
            return None
        _, secret = tokens.create_token(
            s, role="pm", label="first pm token (lifecycle serve)", at=clock.now()
        )
    return secret


def _start_worker() -> subprocess.Popen:
    from lifecycle.runner import worker_argv

    return subprocess.Popen(worker_argv(), env=os.environ.copy())


def _stop_worker(child: subprocess.Popen) -> None:
    if child.poll() is not None:
        return
    child.terminate()  # Celery's warm shutdown: finish the tasks at hand, then exit
    try:
        child.wait(CHILD_STOP_SECONDS)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()


@app.command("serve")
def serve(
    host: Annotated[str, typer.Option("--host", help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port to listen on.")] = 8000,
    no_worker: Annotated[
        bool, typer.Option("--no-worker", help="Serve the web only, start no worker.")
    ] = False,
    at: Annotated[
        str | None,
        typer.Option(
            "--at",
            help="Simulate the clock: it is this instant when the service starts, and time runs on from "
            "there for the pages, feeds and embedded worker (e.g. the end of `lifecycle demo`). A banner says so.",
        ),
    ] = None,
) -> None:
    """Run the web pages, the API and the calendar feeds, plus (on the no-server default broker) the
    embedded Celery worker and beat as a child process. With LIFECYCLE_BROKER_URL set it serves only the
    web: run `celery -A tasks worker` and `celery -A tasks beat` separately. Ctrl-C stops everything."""
    import os

    import uvicorn

    from lifecycle import clock
    from lifecycle.config import get_settings, reset_settings
    from lifecycle.db import get_engine
    from lifecycle.web.app import create_app

    web = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}"
    if not os.environ.get("LIFECYCLE_BASE_URL"):
        # Links in pages, feeds and emails (also the worker's) must point here, not at the default port.
        os.environ["LIFECYCLE_BASE_URL"] = web
        reset_settings()
    if at is not None:
        # One clock for the web process and the worker it starts (the child inherits the environment).
        os.environ["LIFECYCLE_CLOCK_OFFSET"] = str(clock.offset_to(parse_at(at)))
        reset_settings()
    settings = get_settings()
    get_engine()  # creates/upgrades the SQLite file, or reports a stale PostgreSQL schema, before anything runs
    secret = _first_token()
    say(f"lifecycle serving on {web}")
    if clock.simulated():
        say(f"  {clock.banner()}")
    for path, what in (
        ("/portal", "customer portal"),
        ("/dashboard", "rep dashboard"),
        ("/registry", "registry (product managers)"),
        ("/docs", "API documentation"),
    ):
        say(f"  {web}{path:<10}  {what}")
    if secret:
        say(f"\nNo API tokens existed: created a pm token (shown once, log in with it):\n  {secret}")
        say(
            "Create tokens for others with `lifecycle token create --role rep --rep EMAIL` or "
            "`lifecycle token create --role customer --customer KEY`.\n"
        )

    server = uvicorn.Server(
        uvicorn.Config(create_app(), host=host, port=port, log_level="info", lifespan="off")
    )
    child = None
    worker_failed = threading.Event()
    if settings.broker_url:
        say(
            "LIFECYCLE_BROKER_URL is set: serving the web only; run `celery -A tasks worker` and "
            "`celery -A tasks beat` for the work."
        )
    elif no_worker:
        say("--no-worker: serving the web only; notices are not sent until a worker runs.")
    else:
        child = _start_worker()
        say(f"embedded worker and beat started (pid {child.pid})")

        def watch() -> None:  # a worker that dies takes the whole service down, loudly
            code = child.wait()
            if not server.should_exit:
                err_console.print(f"error: the embedded worker exited with code {code}; stopping")
                worker_failed.set()
                server.should_exit = True

        threading.Thread(target=watch, daemon=True, name="worker-watch").start()

    # uvicorn handles SIGINT/SIGTERM itself (stop accepting, drain), then re-raises the signal once it
    # has restored the previous handlers: these turn it into a clean exit that still stops the worker.
    def stop(signum, frame):
        raise _Stop(signum)

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, stop)
    try:
        server.run()
    except _Stop:
        pass
    finally:
        if child is not None:
            _stop_worker(child)
    if worker_failed.is_set():
        raise typer.Exit(1)
