"""`lifecycle demo`: a year of the product on the shipped examples, in a folder of its own.

It imports `examples/registry.yaml`, then fast-forwards time from 1 December 2026: the clock jumps
to each instant something is due (09:00 in some customer's timezone), with a PM moving a milestone,
a withdrawal, agreements, a late customer and a bounced email along the way. The result is a real
SQLite database, real `.eml` files and calendars that `lifecycle serve` can then show.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from sqlmodel import col, select

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "registry.yaml"
START = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
DAYS = 365


@dataclass
class Event:
    at: dt.datetime
    what: str
    action: Callable  # (session, at) -> str | None


def use_folder(folder: Path) -> None:
    """Point every setting at the demo folder (its own SQLite file, outbox, calendars, state), named as
    the defaults name them, so that `lifecycle serve` run in the folder finds them all (and the demo's
    signing key, which its links and tokens need)."""
    from lifecycle.config import reset_settings
    from lifecycle.db import dispose_engines

    folder = folder.resolve()
    for name in ("lifecycle.db", "lifecycle.db-wal", "lifecycle.db-shm"):
        (folder / name).unlink(missing_ok=True)
    for name in ("outbox", "calendar_exports", ".lifecycle", "state"):
        shutil.rmtree(folder / name, ignore_errors=True)
    folder.mkdir(parents=True, exist_ok=True)
    os.environ.update(
        {
            "LIFECYCLE_DATABASE_URL": f"sqlite:///{folder / 'lifecycle.db'}",
            "LIFECYCLE_OUTBOX_DIR": str(folder / "outbox"),
            "LIFECYCLE_CALENDAR_DIR": str(folder / "calendar_exports"),
            "LIFECYCLE_STATE_DIR": str(folder / ".lifecycle"),
            "LIFECYCLE_EMAIL_BACKEND": "file",
        }
    )
    os.environ.pop("LIFECYCLE_BROKER_URL", None)
    reset_settings()
    dispose_engines()


def _events() -> list[Event]:
    from lifecycle import agreements, registry

    def at(y, m, d, h=10):
        return dt.datetime(y, m, d, h, tzinfo=dt.UTC)

    def move(s, when):
        m = registry.get_milestone(s, "acp", "3.16", "end-of-full-support")
        registry.move_milestone(
            s,
            m,
            date=dt.date(2027, 6, 30),
            at=when,
            by="pm@vendor.example",
            reason="Customers asked for time to finish the 3.18 migration",
        )

    def withdraw(s, when):
        m = registry.get_milestone(s, "asm", "1.4", "end-of-full-support")
        registry.withdraw_milestone(
            s,
            m,
            at=when,
            by="pm@vendor.example",
            reason="Full support for 1.4 is extended until 1.6 is certified",
        )

    def ack_acme(s, when):
        agreements.record_cli(
            s,
            customer_key="acme",
            product="amp",
            version="2.6",
            status="planned",
            target_version="2.8",
            planned_date=dt.date(2027, 2, 20),
            by="cto@acme.example",
            feedback="请提前半年通知后续版本的生命周期。",
            channel="email-link",
            at=when,
        )

    def ack_globex(s, when):
        agreements.record_cli(
            s,
            customer_key="globex",
            product="acp",
            version="3.16",
            status="planned",
            target_version="3.18",
            planned_date=dt.date(2027, 5, 15),
            by="anna.schmidt@vendor.example",
            channel="phone",
            at=when,
            feedback="Agreed on the phone: upgrade in the May maintenance window.",
        )

    def late_customer(s, when):
        registry.upsert_customer(
            s,
            key="newco",
            name="NewCo Retail",
            timezone="Europe/London",
            locale="en",
            account_rep="anna.schmidt@vendor.example",
            at=when,
            service_start=when.date(),
            service_end=dt.date(2029, 5, 31),
            cores=96,
        )
        registry.upsert_contact(s, customer="newco", email="it@newco.example", at=when)
        registry.add_deployment(s, customer="newco", product="acp", version="3.16", cores=96, at=when)

    def bounce(s, when):
        from lifecycle.models import Customer, Delivery
        from lifecycle.webhooks import apply_events

        delivery = s.exec(
            select(Delivery)
            .join(Customer, Customer.id == Delivery.customer_id)
            .where(Customer.key == "initech", Delivery.channel == "email")
            .order_by(Delivery.id.desc())
        ).first()
        if delivery is None:
            return "no email to initech to bounce"
        apply_events(
            s,
            [
                {
                    "event": "bounce",
                    "email": delivery.recipient,
                    "sg_event_id": "demo-bounce-1",
                    "timestamp": int(when.timestamp()),
                    "reason": "550 5.1.1 mailbox unavailable",
                    "delivery_ids": str(delivery.id),
                }
            ],
            when,
        )
        return f"SendGrid reported a bounce for {delivery.recipient}: contact flagged, rep alerted"

    return [
        Event(at(2027, 1, 15), "PM moves ACP 3.16 end of full support from 2027-03-31 to 2027-06-30", move),
        Event(
            at(2027, 2, 10), "ACME plans its AMP 2.6 → 2.8 upgrade through the link in its email", ack_acme
        ),
        Event(
            at(2027, 3, 5), "Globex's rep records an upgrade agreed by phone (ACP 3.16 → 3.18)", ack_globex
        ),
        Event(at(2027, 3, 20), "initech's mailbox bounces", bounce),
        Event(at(2027, 4, 1), "PM withdraws ASM 1.4 end of full support", withdraw),
        Event(
            at(2027, 5, 10),
            "NewCo signs up, running ACP 3.16 (late: its milestones are close)",
            late_customer,
        ),
    ]


def _next_due(after: dt.datetime) -> dt.datetime | None:
    from lifecycle.db import session_scope
    from lifecycle.models import Delivery, Notice

    with session_scope() as s:
        n = s.scalar(
            sa.select(sa.func.min(Notice.due_at)).where(
                col(Notice.status) == "planned", col(Notice.due_at) > after
            )
        )
        d = s.scalar(
            sa.select(sa.func.min(Delivery.next_attempt_at)).where(
                col(Delivery.status).in_(("pending", "unknown")), col(Delivery.next_attempt_at) > after
            )
        )
    from lifecycle.models import UTCDateTime

    vals = [UTCDateTime().process_result_value(x, None) for x in (n, d) if x is not None]
    return min(vals) if vals else None


def run(folder: Path, say: Callable[[str], None] = print) -> dict:
    use_folder(folder)
    from lifecycle import importing, reports, tokens
    from lifecycle.calendar import exports
    from lifecycle.db import session_scope
    from lifecycle.models import Delivery, Notice
    from lifecycle.ticks import tick

    say(f"Importing {EXAMPLES.name} as of {START.date().isoformat()} …")
    with session_scope() as s:
        summary = importing.import_registry(
            s, importing.load_file(EXAMPLES), at=START, source=str(EXAMPLES.name)
        )
    for line in summary.lines():
        say("  " + line)

    end = START + dt.timedelta(days=DAYS)
    events = _events()
    ticks = 0

    def step(now: dt.datetime) -> None:
        nonlocal ticks
        result = tick(now)
        ticks += 1
        if result.deliver.messages:
            kinds: Counter[str] = Counter()
            with session_scope() as s:
                for kind, slot in s.exec(select(Notice.kind, Notice.slot).where(Notice.sent_at == now)).all():
                    kinds[f"{kind} {slot}" if kind in ("stage", "escalation") else kind] += 1
            say(
                f"  {now.strftime('%Y-%m-%d %H:%M')}Z  sent: "
                + ", ".join(f"{k} ×{v}" for k, v in sorted(kinds.items()))
            )

    say(f"\nFast-forwarding a year of ticks, {START.date()} → {end.date()}:")
    now = START
    step(now)
    while True:
        nxt = _next_due(now)
        pending = [e for e in events if e.at > now]
        candidates = [t for t in (nxt, pending[0].at if pending else None) if t is not None and t <= end]
        if not candidates:
            break
        now = min(candidates)
        for event in [e for e in events if e.at == now]:
            with session_scope() as s:
                note = event.action(s, now)
            say(f"  {now.date()}  {event.what}" + (f" — {note}" if note else ""))
        step(now)

    with session_scope() as s:
        exports.export_all(s, at=end)
        per: Counter[tuple[str, str, str]] = Counter()
        for kind, slot, channel, status in s.exec(
            select(Notice.kind, Notice.slot, Delivery.channel, Delivery.status).join(
                Notice, col(Notice.id) == Delivery.notice_id
            )
        ).all():
            label = f"{kind} {slot}" if kind in ("stage", "escalation") else kind
            per[(label, channel, status)] += 1
        report = reports.compliance(s, end)
        made = {}
        for role, kw in (
            ("pm", {}),
            ("rep", {"rep": "li.wei@vendor.example"}),
            ("customer", {"customer": "acme"}),
        ):
            _, made[role] = tokens.create_token(s, role=role, at=end, label=f"demo {role}", **kw)

    say(f"\nA year in {ticks} ticks. Deliveries by notice, channel and outcome:")
    for (label, channel, status), n in sorted(per.items()):
        say(f"  {label:<16} {channel:<7} {status:<10} {n}")
    say(
        "\nCompliance (first notice against the 3-month deadline): "
        + ", ".join(f"{k} {v}" for k, v in report["totals"].items())
    )
    for row in report["rows"]:
        if row["status"] not in ("on-time", "pending", "withdrawn"):
            say(
                f"  {row['customer']:<10} {row['product']} {row['version'] or '':<5} {row['milestone']:<20} "
                f"{row['status']}: {row['cause']}"
            )
    folder = folder.resolve()
    emls = len(list((folder / "outbox").glob("*.eml")))
    say(f"\nEmails: {emls} .eml files in {folder / 'outbox'}")
    calendars = len(list((folder / "calendar_exports").rglob("*.ics")))
    say(f"Calendars: {calendars} .ics files in {folder / 'calendar_exports'} (products/ and customers/)")
    say("\nSee it in the browser:")
    venv_command = Path(sys.executable).parent / "lifecycle"
    command = venv_command if venv_command.exists() else "lifecycle"
    say(f"  cd {folder} && {command} serve --at {end.date().isoformat()}")
    say(
        f"  (--at: the pages, feeds and worker run on the demo's clock, from {end.date().isoformat()} on, not on "
        "today's date; a banner says so)"
    )
    say("  then open http://127.0.0.1:8000/ and log in with one of these tokens:")
    for role, secret in made.items():
        say(f"    {role:<9} {secret}")
    return {
        "ticks": ticks,
        "serve_at": end.isoformat(),
        "deliveries": {f"{k[0]}|{k[1]}|{k[2]}": v for k, v in per.items()},
        "compliance": report["totals"],
        "emails": emls,
        "calendars": calendars,
        "tokens": made,
    }
