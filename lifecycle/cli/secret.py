"""Signing-key commands: `lifecycle secret status|rotate`. Keys are never printed, only fingerprints."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

import typer

from lifecycle import keys, registry
from lifecycle.cli import app
from lifecycle.cli.common import AtOption, JsonOption, emit_json, parse_at, say
from lifecycle.config import get_settings
from lifecycle.db import session_scope

secret_app = typer.Typer(
    help="The key that signs acknowledgement links and web sessions.", no_args_is_help=True
)
app.add_typer(secret_app, name="secret")


def _show(info: dict, json_: bool) -> None:
    if json_:
        emit_json(info)
        return
    say(f"signing key {info['current']} (from {info['source']})")
    for old in info["previous"]:
        until = old["accepted_until"]
        state = (
            "expired"
            if old["expired"]
            else f"accepted until {until.isoformat(timespec='seconds')}"
            if until
            else "accepted until removed from LIFECYCLE_SECRET_KEY_PREVIOUS"
        )
        say(f"previous key {old['fingerprint']}: {state}")


@secret_app.command("status")
def secret_status(at: AtOption = None, json_: JsonOption = False) -> None:
    """Where the signing key comes from, its fingerprint and the previous keys still accepted."""
    when = parse_at(at)
    with session_scope() as s:
        ring = keys.load(s)
    _show(keys.describe(ring, when), json_)


@secret_app.command("rotate")
def secret_rotate(
    grace: Annotated[
        int | None,
        typer.Option(
            "--grace",
            min=0,
            help="Days the replaced key stays accepted, so links already sent keep working "
            "(default: LIFECYCLE_ACK_LINK_DAYS, the life of a link; 0 after a leak).",
        ),
    ] = None,
    at: AtOption = None,
    json_: JsonOption = False,
) -> None:
    """Make a new signing key for the key file; the old one verifies (never signs) for the grace period.

    With LIFECYCLE_SECRET_KEY set there is no file to rotate: set a new value and put the old one in
    LIFECYCLE_SECRET_KEY_PREVIOUS until the grace period is over."""
    when = parse_at(at)
    days = get_settings().ack_link_days if grace is None else grace
    with session_scope() as s:
        before = keys.load(s)
        ring = keys.rotate(when, dt.timedelta(days=days), s)
        # Channel secrets are sealed with the key: seal them with the new one now (the old may expire).
        from lifecycle.channels.subscriptions import reseal_all

        reseal_all(s, before)
        registry.audit(
            s,
            when,
            "secret.rotate",
            ring.source,
            {
                "old": keys.fingerprint(before.current),
                "new": keys.fingerprint(ring.current),
                "grace_days": days,
            },
        )
    _show(keys.describe(ring, when), json_)
