"""Customer channel subscriptions: `lifecycle channel add|list|test|remove|reseal` (webhook, Slack,
Teams; email and the portal need none). Thin over lifecycle.channels.subscriptions."""

from __future__ import annotations

from typing import Annotated

import typer

from lifecycle import registry
from lifecycle.cli import app
from lifecycle.cli.common import AtOption, JsonOption, emit_json, parse_at, say, table
from lifecycle.db import session_scope
from lifecycle.errors import LifecycleError
from lifecycle.models import pk

channel_app = typer.Typer(
    help="A customer's notification channels beyond email and the portal: signed webhook, "
    "Slack, Microsoft Teams.",
    no_args_is_help=True,
)
app.add_typer(channel_app, name="channel")

CustomerArg = Annotated[str, typer.Argument(help="Customer key.")]
IdArg = Annotated[int, typer.Argument(help="The subscription's id (`lifecycle channel list`).")]


def _line(r: dict) -> list:
    when = r["verified_at"].isoformat(timespec="minutes") if r["verified_at"] else ""
    return [
        r["id"],
        r["customer"],
        r["kind"],
        r["label"],
        r["endpoint"],
        r["state"],
        when,
        r["last_error"] or "",
    ]


@channel_app.command("add")
def channel_add(
    customer: CustomerArg,
    kind: Annotated[str, typer.Argument(help="webhook | slack | teams")],
    url: Annotated[
        str,
        typer.Option(
            "--url",
            help="The endpoint: your webhook receiver, the Slack incoming "
            "webhook URL or the Teams Workflows URL.",
        ),
    ],
    label: Annotated[
        str | None, typer.Option("--label", help="A name people see (default: kind and host).")
    ] = None,
    at: AtOption = None,
    json_: JsonOption = False,
) -> None:
    """Subscribe a customer to a channel. A webhook's signing secret is shown now, and never again."""
    from lifecycle.channels import subscriptions

    when = parse_at(at)
    with session_scope() as s:
        cust = registry.get_customer(s, customer)
        row, once = subscriptions.add(s, customer=cust, kind=kind, url=url, label=label, at=when, by="cli")
        view = subscriptions.row_view(s, row)
    if json_:
        emit_json(view | once)
        return
    say(f"channel #{view['id']} for {customer}: {view['kind']} {view['label']} ({view['endpoint']})")
    if "secret" in once:
        say(f"signing secret (shown only now; verify the webhook-signature header with it): {once['secret']}")
    say(f"send a test message: lifecycle channel test {customer} {view['id']}")


@channel_app.command("list")
def channel_list(
    customer: Annotated[str | None, typer.Argument(help="Only this customer.")] = None,
    json_: JsonOption = False,
) -> None:
    """Channel subscriptions with their state: working, untested, failing (the last error) or disabled."""
    from lifecycle.channels import subscriptions

    with session_scope() as s:
        ids = [pk(registry.get_customer(s, customer))] if customer else None
        rows = subscriptions.rows(s, customer_ids=ids)
    if json_:
        emit_json(rows)
        return
    table(
        "Channel subscriptions (email and the portal: every customer)",
        ["id", "customer", "kind", "label", "endpoint", "state", "verified", "last error"],
        [_line(r) for r in rows],
    )


@channel_app.command("test")
def channel_test(
    customer: CustomerArg, subscription: IdArg, at: AtOption = None, json_: JsonOption = False
) -> None:
    """Send a test message now and record the result (exit code 1 when it failed)."""
    from lifecycle.channels import subscriptions

    when = parse_at(at)
    with session_scope() as s:
        row = subscriptions.get(s, registry.get_customer(s, customer), subscription)
        result = subscriptions.test(s, row, at=when, by="cli")
    if json_:
        emit_json(result)
    elif result["ok"]:
        say(f"channel #{subscription} works: the test message was accepted")
    if not result["ok"]:  # recorded (committed) above; exit code 1
        raise LifecycleError(f"channel #{subscription} failed: {result['error']}")


@channel_app.command("remove")
def channel_remove(customer: CustomerArg, subscription: IdArg, at: AtOption = None) -> None:
    """Unsubscribe: what is still pending for it is cancelled; what it sent stays in the history."""
    from lifecycle.channels import subscriptions

    when = parse_at(at)
    with session_scope() as s:
        row = subscriptions.get(s, registry.get_customer(s, customer), subscription)
        label = row.label
        subscriptions.remove(s, row, at=when, by="cli")
    say(f"channel #{subscription} ({label}) removed from {customer}")


@channel_app.command("reseal")
def channel_reseal(json_: JsonOption = False) -> None:
    """Seal every subscription's settings with the current secret key (after changing
    LIFECYCLE_SECRET_KEY; `lifecycle secret rotate` does it by itself)."""
    from lifecycle.channels import subscriptions

    with session_scope() as s:
        n = subscriptions.reseal_all(s)
    if json_:
        emit_json({"resealed": n})
    else:
        say(f"{n} subscription(s) sealed with the current key")
