"""Scheduler commands: plan, tick, inbox, ack, worker."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

import sqlalchemy as sa
import typer
from sqlmodel import col, select

from lifecycle import agreements, policy, registry, scheduler
from lifecycle import validation as v
from lifecycle.cli import app
from lifecycle.cli.common import AtOption, JsonOption, emit_json, err_console, parse_at, say, table
from lifecycle.db import session_scope
from lifecycle.errors import InputError
from lifecycle.models import (
    Customer,
    InboxMessage,
    Milestone,
    Notice,
    NoticeStatus,
    Product,
    Release,
)


def planned_rows(session, at: dt.datetime, until: dt.datetime | None, limit: int | None) -> list[dict]:
    """Planned notices, soonest first, with their channels and recipients."""
    q = (
        sa.select(Notice, Customer, Milestone, Release, Product)
        .join(Customer, col(Customer.id) == Notice.customer_id)
        .join(Milestone, col(Milestone.id) == Notice.milestone_id, isouter=True)
        .join(Release, col(Release.id) == Notice.release_id, isouter=True)
        .join(Product, col(Product.id) == Milestone.product_id, isouter=True)
        .where(col(Notice.status) == NoticeStatus.PLANNED)
        .order_by(col(Notice.due_at), col(Customer.key), col(Notice.id))
    )
    if until is not None:
        q = q.where(col(Notice.due_at) <= until)
    if limit:
        q = q.limit(limit)
    rows = session.exec(q).all()
    from lifecycle.channels.fanout import planned

    recipients = planned(session, [n.id for n, *_ in rows])  # the channels' own recipient sources
    out = []
    for n, c, m, r, p in rows:
        channels = recipients.get(n.id, [])
        out.append({
            "notice_id": n.id, "due_at": n.due_at.isoformat(), "overdue": n.due_at <= at, "kind": n.kind,
            "stage": n.slot if n.kind == "stage" else None, "customer": c.key, "timezone": c.timezone,
            "audience": n.audience, "product": p.slug if p else None, "version": r.version if r else None,
            "milestone": m.kind if m else None, "milestone_date": n.milestone_date.isoformat() if n.milestone_date else None,
            "channels": channels,
        })
    return out


@app.command("plan")
def plan_cmd(
    at: AtOption = None, json_: JsonOption = False,
    until: Annotated[str | None, typer.Option("--until", help="Only notices due by this date.")] = None,
    limit: Annotated[int, typer.Option("--limit", min=0, help="At most this many rows (0: all).")] = 0,
) -> None:
    """Plan notices for every affected customer and show what will be sent, when, to whom, on which channel."""
    when = parse_at(at)
    end = v.instant(until, "--until") if until else None
    with session_scope() as s:
        result = scheduler.plan(s, when)
    with session_scope() as s:
        rows = planned_rows(s, when, end, limit or None)
    if json_:
        emit_json({"at": when.isoformat(), "planned": result.as_dict(), "notices": rows})
        return
    table(f"Planned notices (as of {when.isoformat()})", ["due (UTC)", "customer", "notice", "milestone", "to"], [
        [r["due_at"][:16].replace("T", " ") + (" (due)" if r["overdue"] else ""), r["customer"],
         f"{r['kind']} {r['stage'] or ''}".strip(),
         f"{r['product'] or ''} {r['version'] or ''} {r['milestone'] or ''} {r['milestone_date'] or ''}".strip(),
         ", ".join(f"{c['channel']}:{c['recipient']}" for c in r["channels"])]
        for r in rows
    ])
    say(f"{len(rows)} planned notice(s); re-planned {result.milestones} milestone(s): "
        f"{result.created} new, {result.updated} updated, {result.cancelled} cancelled")


@app.command("tick")
def tick_cmd(at: AtOption = None, json_: JsonOption = False) -> None:
    """Plan and send everything due by --at, synchronously. Running it again sends nothing twice."""
    from lifecycle.ticks import tick

    when = parse_at(at)
    result = tick(when)
    if json_:
        emit_json(result.as_dict())
        return
    p, r, d = result.plan, result.release, result.deliver
    say(f"tick at {when.isoformat()}")
    say(f"  planned: {p.created} new, {p.updated} updated, {p.cancelled} cancelled notices "
        f"over {p.milestones} milestone(s); {p.changes} date-change and {p.withdrawals} withdrawal notices")
    skipped = ", ".join(f"{k} {n}" for k, n in sorted(r.skipped.items())) or "none"
    say(f"  released: {r.released} notices ({r.escalations} escalations); skipped: {skipped}")
    channels = ", ".join(f"{k} {n}" for k, n in sorted(d.by_channel.items())) or "nothing"
    say(f"  delivered: {channels}; {d.messages} message(s), {d.retried} to retry, {d.failed} failed"
        + (f", {d.unknown} outcome unknown" if d.unknown else "") + (f", {d.cancelled} cancelled" if d.cancelled else ""))


@app.command("inbox")
def inbox_cmd(customer: Annotated[str, typer.Argument(help="Customer key.")], json_: JsonOption = False) -> None:
    """The customer's portal inbox, newest first."""
    with session_scope() as s:
        cust = registry.get_customer(s, customer)
        msgs = s.exec(select(InboxMessage).where(InboxMessage.customer_id == cust.id)
                      .order_by(col(InboxMessage.created_at).desc(), col(InboxMessage.id).desc())).all()
        rows: list[dict[str, Any]] = [{"id": m.id, "notice_id": m.notice_id, "subject": m.subject, "created_at": m.created_at.isoformat(),
                 "read": m.read_at is not None, "body": m.body_text} for m in msgs]
    if json_:
        emit_json(rows)
        return
    unread = sum(1 for r in rows if not r["read"])
    table(f"Inbox of {customer} ({unread} unread)", ["", "date", "subject"],
          [["•" if not r["read"] else "", r["created_at"][:10], r["subject"]] for r in rows])


@app.command("ack")
def ack_cmd(
    customer: Annotated[str, typer.Argument(help="Customer key.")],
    product: Annotated[str, typer.Argument(help="Product slug.")],
    version: Annotated[str, typer.Argument(help="Release version the agreement is about.")],
    status: Annotated[str, typer.Option("--status", help="acknowledged | planned | completed | declined")],
    target: Annotated[str | None, typer.Option("--target", help="Target version of the upgrade.")] = None,
    planned_date: Annotated[str | None, typer.Option("--planned-date", help="Planned upgrade date.")] = None,
    by: Annotated[str | None, typer.Option("--by", help="Who agreed (email or name).")] = None,
    feedback: Annotated[str | None, typer.Option("--feedback", help="Feedback on lifecycle expectations.")] = None,
    channel: Annotated[str, typer.Option("--channel", help="How it was agreed: cli, phone, ...")] = "cli",
    move_deployment: Annotated[bool, typer.Option(
        "--move-deployment", help="With --status completed: the customer now runs --target instead.")] = False,
    at: AtOption = None,
) -> None:
    """Record a customer's upgrade agreement for a release (stops routine reminders for it).

    `planned` needs --target (a later release not ended on the planned date) and --planned-date; a
    date after the milestone is recorded but at risk: reminders and escalation go on."""
    when = parse_at(at)
    if move_deployment and (status != "completed" or not target):
        raise InputError("--move-deployment", "needs --status completed and --target")
    with session_scope() as s:
        ag = agreements.record_cli(
            s, customer_key=customer, product=product, version=version, status=status, at=when,
            target_version=target, planned_date=v.optional_date(planned_date, "--planned-date"), by=by,
            feedback=feedback, channel=channel)
        say(f"agreement {customer} {product} {version}: {ag.status}"
            + (f" → {ag.target_version}" if ag.target_version else "")
            + (f" on {ag.planned_date}" if ag.planned_date else ""))
        release = s.get_one(Release, ag.release_id)
        nxt = agreements.next_milestone(s, release, when.date())
        if nxt is not None and policy.plan_at_risk(ag.status, ag.target_version, ag.planned_date, nxt.date):
            err_console.print(f"warning: at risk: the planned date is after {nxt.kind} on {nxt.date.isoformat()}; "
                              "reminders and escalation go on", highlight=False, markup=False, soft_wrap=True)
        if move_deployment:
            assert target is not None  # checked above
            agreements.move_deployment(s, customer=s.get_one(Customer, ag.customer_id), release=release,
                                       target_version=target, at=when, by=by)
            say(f"deployment {customer} {product}: {version} → {target}")
        elif ag.status == "completed" and ag.target_version:
            say(f"the upgrade is done: record the new deployment with --move-deployment (or `lifecycle deployment "
                f"add {customer} {product} {ag.target_version}` and `deployment remove ... {version}`)")


@app.command("worker")
def worker_cmd(
    loglevel: Annotated[str, typer.Option("--loglevel", help="Celery log level.")] = "info",
) -> None:
    """Run a Celery worker with embedded beat on the no-server broker (or LIFECYCLE_BROKER_URL)."""
    import os

    from lifecycle.runner import worker_argv

    argv = worker_argv(loglevel=loglevel)
    os.execvp(argv[0], argv)


@app.command("demo")
def demo_cmd(
    folder: Annotated[str, typer.Option("--dir", help="Folder for the demo's database, outbox and calendars.")] = "demo",
    json_: JsonOption = False,
) -> None:
    """Build a demo from the shipped examples and fast-forward a year of ticks, then show what happened."""
    from pathlib import Path

    from lifecycle import demo

    if json_:
        emit_json(demo.run(Path(folder), say=lambda _line: None))
    else:
        demo.run(Path(folder), say=say)
