"""What reaches the account rep, and what the rep can do: one digest email a day in the rep's language
with every agreement change (planned date, target, feedback, who); Reply-To and footer naming the rep
on customer emails; escalations as work items that resolve themselves; honest risk; contacts."""

from __future__ import annotations

import csv
import datetime as dt
import email
import io
import json
from email import policy as email_policy
from pathlib import Path

from fastapi.testclient import TestClient
from sqlmodel import select

from lifecycle import escalations, reps
from lifecycle.db import session_scope
from lifecycle.models import AuditEvent, Contact, Escalation, Notice
from lifecycle.web.app import create_app
from tests import webworld
from tests import world as w
from tests.conftest import utc

D = dt.date
REP = "rep@vendor.example"


def messages(tmp_path: Path, to: str | None = None) -> list[email.message.EmailMessage]:
    found = [
        email.message_from_bytes(p.read_bytes(), policy=email_policy.default)
        for p in sorted((tmp_path / "outbox").glob("*.eml"), key=lambda p: p.stat().st_mtime_ns)
    ]
    return [m for m in found if to is None or m["To"].addresses[0].addr_spec == to]


def text_of(msg) -> str:
    return msg.get_body(preferencelist=("plain",)).get_content()


# ----------------------------------------------------------------------------------------- the digest


def test_a_rep_gets_one_digest_a_day_with_every_agreement_change_of_every_customer(db, tmp_path):
    w.product()
    w.milestone(D(2027, 9, 30))
    w.customer("acme", "Asia/Shanghai")
    w.customer("globex", "Europe/Berlin")
    w.run(utc(2027, 1, 2))
    w.ack("acme", "planned", at=utc(2027, 1, 2, 10), target="3.18", planned_date=D(2027, 6, 1))
    w.ack("acme", "planned", at=utc(2027, 1, 2, 11), target="3.18", planned_date=D(2027, 7, 1))  # date only
    with session_scope() as s:  # feedback only, no other change
        from lifecycle import agreements

        agreements.record_cli(
            s,
            customer_key="acme",
            product="acp",
            version="3.16",
            status="planned",
            target_version="3.18",
            planned_date=D(2027, 7, 1),
            at=utc(2027, 1, 2, 12),
            feedback="Six months' notice would suit a bank better.",
            by="Ann",
        )
    w.ack("globex", "acknowledged", at=utc(2027, 1, 2, 15))
    w.run(utc(2027, 1, 2, 20), utc(2027, 1, 3, 8, 59))
    assert messages(tmp_path, REP) == []  # nothing before the digest hour
    w.run(utc(2027, 1, 3, 9), utc(2027, 1, 3, 12))
    [digest] = messages(tmp_path, REP)
    assert digest["Subject"] == "Lifecycle digest: 4 updates for 2 customers"
    body = text_of(digest)
    assert body.count("* AGREEMENT:") == 4
    assert "planned for 1 June 2027" in body and "planned for 1 July 2027 (was 1 June 2027)" in body
    assert "Feedback: Six months' notice would suit a bank better." in body and "Recorded by Ann" in body
    assert "Globex (globex) — ACP 3.16: acknowledged" in body
    assert body.count("acknowledged") == 1  # said once


def test_the_digest_is_in_the_reps_language_and_at_nine_in_the_reps_timezone(db, tmp_path):
    w.product()
    w.milestone(D(2027, 9, 30))
    w.customer("acme", "Asia/Shanghai")
    with session_scope() as s:
        reps.upsert(s, email=REP, name="李伟", locale="zh-CN", timezone="Asia/Shanghai", at=utc(2027, 1, 1))
    w.ack("acme", "planned", at=utc(2027, 1, 2, 3), target="3.18", planned_date=D(2027, 10, 15))
    [notice] = w.notices(audience="rep", kind="agreement")
    assert notice.due_at == utc(2027, 1, 3, 1)  # 09:00 the next morning in Shanghai
    w.run(utc(2027, 1, 3, 1))
    [digest] = messages(tmp_path, REP)
    body = text_of(digest)
    assert digest["Subject"].startswith("【升级计划】Acme：ACP 3.16已计划升级（有风险）")
    assert body.startswith("李伟，您好：") and "计划日期2027年10月15日" in body
    assert "有风险：计划升级日期2027-10-15晚于节点日期2027-09-30" in body


def test_customer_emails_reply_to_the_account_rep_and_name_them(db, tmp_path):
    w.product()
    w.milestone(D(2027, 9, 30))
    w.customer("acme")
    with session_scope() as s:
        reps.upsert(s, email=REP, name="Rita Rep", at=utc(2027, 1, 1))
    w.run(utc(2027, 3, 31))
    [msg] = messages(tmp_path, "ops@acme.example")
    assert (
        msg["Reply-To"].addresses[0].addr_spec == REP
        and msg["Reply-To"].addresses[0].display_name == "Rita Rep"
    )
    body = text_of(msg)
    assert "Your account rep: Rita Rep <rep@vendor.example>" in body
    assert "through the link above" in body and "/ack/" in body


def test_the_plain_text_speaks_of_a_link_only_when_there_is_one(db, tmp_path):
    w.product()
    w.milestone(D(2027, 9, 30))
    w.customer("acme")
    w.run(utc(2027, 3, 31))
    w.withdraw(at=utc(2027, 4, 1))
    w.run(utc(2027, 4, 1, 0, 30))
    cancellation = [m for m in messages(tmp_path, "ops@acme.example") if "withdrawn" in m["Subject"]]
    [msg] = cancellation
    body = text_of(msg)
    assert "/ack/" not in body and "link above" not in body
    assert "Your account rep: rep@vendor.example" in body


# ------------------------------------------------------------------------------------ escalation work


def items() -> list[Escalation]:
    with session_scope() as s:
        return list(s.exec(select(Escalation).order_by(Escalation.id)).all())


def test_an_escalation_is_a_work_item_that_an_agreement_resolves(db):
    w.product()
    w.milestone(D(2027, 9, 30))
    w.customer("acme", "Asia/Shanghai")
    w.run(utc(2027, 8, 30, 2))
    [item] = items()
    assert (item.state, item.owner) == ("open", REP)
    with session_scope() as s:
        escalations.update(
            s,
            s.get(Escalation, item.id),
            at=utc(2027, 8, 31),
            by=REP,
            state="in-progress",
            note="Called their CTO; they want a date next week.",
        )
    with session_scope() as s:
        [row] = escalations.rows(s, at=utc(2027, 9, 1))
        assert row["state"] == "in-progress" and row["due_date"] == D(2027, 9, 30)
        assert [n["text"] for n in row["notes"]] == ["Called their CTO; they want a date next week."]
    w.ack("acme", "planned", at=utc(2027, 9, 2), target="3.18", planned_date=D(2027, 9, 20))
    [item] = items()
    assert (item.state, item.resolution) == ("resolved", "agreement")


def test_an_escalation_resolves_itself_when_the_milestone_moves_beyond_a_month_or_is_withdrawn(db):
    w.product()
    w.milestone(D(2027, 9, 30))
    w.milestone(D(2027, 9, 15), kind="end-of-sale")
    w.customer("acme", "Asia/Shanghai")
    w.run(utc(2027, 8, 30, 2))
    assert [i.state for i in items()] == ["open", "open"]
    w.move(D(2027, 9, 20), at=utc(2027, 9, 1), reason="sooner", short=True)  # still within a month: open
    w.run(utc(2027, 9, 1, 1))
    with session_scope() as s:
        due = {
            r["milestone"]: (r["state"], r["due_date"]) for r in escalations.rows(s, at=utc(2027, 9, 1, 1))
        }
    assert due["end-of-life"] == ("open", D(2027, 9, 20))  # the current date, not the one escalated
    w.move(D(2028, 3, 31), at=utc(2027, 9, 2), reason="later")
    w.withdraw(at=utc(2027, 9, 2), kind="end-of-sale")
    w.run(utc(2027, 9, 2, 1))
    assert {(i.state, i.resolution) for i in items()} == {("resolved", "moved"), ("resolved", "withdrawn")}


def test_escalations_go_through_the_api_and_the_csv(sqlite_db):
    world = webworld.build()
    now = dt.datetime.now(dt.UTC)
    with session_scope() as s:
        s.add(
            Notice(
                key="escalation:x",
                customer_id=world.ids["acme"],
                milestone_id=world.ids["m_red"],
                release_id=world.ids["r314"],
                kind="escalation",
                audience="rep",
                slot="1m",
                due_at=now,
                status="sent",
                created_at=now,
            )
        )
        escalations.sync(s, now)
    client = TestClient(create_app())
    [item] = client.get("/api/escalations", headers=world.auth("rep")).json()["escalations"]
    assert (item["state"], item["customer"], item["due_date"]) == (
        "open",
        "acme",
        (world.today + dt.timedelta(days=20)).isoformat(),
    )
    assert client.get("/api/escalations", headers=world.auth("other_rep")).json() == {
        "escalations": [],
        "next_cursor": None,
    }
    done = client.patch(
        f"/api/escalations/{item['id']}",
        json={"state": "in-progress", "note": "Meeting on Friday"},
        headers=world.auth("rep"),
    ).json()
    assert done["state"] == "in-progress" and done["notes"][0]["text"] == "Meeting on Friday"
    bad = client.patch(f"/api/escalations/{item['id']}", json={}, headers=world.auth("rep"))
    assert bad.status_code == 422
    rows = {
        r["version"]: r
        for r in client.get("/api/reports/agreements", headers=world.auth("rep")).json()["rows"]
    }
    assert (rows["3.14"]["escalation"], rows["3.14"]["escalation_state"]) == (item["id"], "in-progress")


# ----------------------------------------------------------------------------------------------- risk


def test_a_customer_whose_every_contact_bounced_is_red_with_that_reason(sqlite_db):
    world = webworld.build()
    client = TestClient(create_app())
    before = {
        r["version"]: r["risk"]
        for r in client.get("/api/reports/agreements?customer=acme", headers=world.auth("pm")).json()["rows"]
    }
    assert before == {"3.14": "red", "3.16": "amber"}
    with session_scope() as s:
        s.add(
            Contact(
                customer_id=world.ids["acme"], email="cto@acme.example", created_at=dt.datetime.now(dt.UTC)
            )
        )
        for c in s.exec(select(Contact)).all():
            c.undeliverable, c.undeliverable_reason = True, "550 no such user"
            s.add(c)
    rows = client.get("/api/reports/agreements?customer=acme", headers=world.auth("pm")).json()["rows"]
    assert {r["version"]: (r["risk"], r["risk_reason"]) for r in rows}["3.16"] == (
        "red",
        "every contact bounced: no email reaches them",
    )
    exported = client.get("/api/reports/agreements?customer=acme", headers=world.auth("pm")).json()["rows"]
    assert all(r["risk"] == "red" and r["bounced"] == r["contacts"] == 2 for r in exported)
    from lifecycle import dashboard
    from lifecycle.models import Customer

    with session_scope() as s:
        acme = s.get(Customer, world.ids["acme"])
        csv_rows = list(
            csv.DictReader(
                io.StringIO(
                    dashboard.rows_to_csv(
                        dashboard.agreement_rows(s, at=dt.datetime.now(dt.UTC), customer_id=acme.id)
                    )
                )
            )
        )
    assert {r["version"]: r["risk_reason"] for r in csv_rows}[
        "3.16"
    ] == "every contact bounced: no email reaches them"


# ------------------------------------------------------------------------------------------- contacts


def test_contacts_are_listed_and_removed_and_a_bounced_one_needs_force_on_the_cli(db, cli):
    w.product()
    w.customer("acme", emails=["ops@acme.example", "cto@acme.example"])
    with session_scope() as s:
        c = s.exec(select(Contact).where(Contact.email == "ops@acme.example")).one()
        c.undeliverable, c.undeliverable_reason, c.undeliverable_at = (
            True,
            "550 mailbox unknown",
            utc(2027, 1, 5),
        )
        s.add(c)
    listed = json.loads(cli("contact", "list", "acme", "--json").out)
    assert [(c["email"], c["bounced"], c["bounce_reason"]) for c in listed] == [
        ("cto@acme.example", False, None),
        ("ops@acme.example", True, "550 mailbox unknown"),
    ]
    assert listed[1]["bounced_at"].startswith("2027-01-05")
    again = cli("contact", "add", "acme", "ops@acme.example")
    assert again.code == 2 and "bounced on 2027-01-05" in again.err and "--force" in again.err
    forced = cli("contact", "add", "acme", "ops@acme.example", "--force", "--by", "rita@vendor.example")
    assert forced.code == 0, forced
    with session_scope() as s:
        [event] = s.exec(select(AuditEvent).where(AuditEvent.action == "contact.revalidate")).all()
        assert event.actor == "rita@vendor.example"
    assert cli("contact", "remove", "acme", "cto@acme.example").code == 0
    assert [c["email"] for c in json.loads(cli("contact", "list", "acme", "--json").out)] == [
        "ops@acme.example"
    ]
    assert cli("contact", "remove", "acme", "nobody@acme.example").code == 2


def test_a_rep_manages_contacts_on_the_customer_page(sqlite_db):
    from tests.test_web_pages import logged_in

    world = webworld.build()
    rep, csrf = logged_in(world, "rep")
    added = rep.post("/dashboard/customers/acme/contacts", data={"csrf": csrf, "email": "cto@acme.example"})
    assert added.status_code == 200 and "cto@acme.example: created" in added.text
    with session_scope() as s:
        c = s.exec(select(Contact).where(Contact.email == "ops@acme.example")).one()
        c.undeliverable, c.undeliverable_reason, c.undeliverable_at = (
            True,
            "550 gone",
            dt.datetime.now(dt.UTC),
        )
        s.add(c)
    page = rep.get("/dashboard/customers/acme").text
    assert 'data-email="ops@acme.example" data-bounced="yes"' in page and "550 gone" in page
    refused = rep.post("/dashboard/customers/acme/contacts", data={"csrf": csrf, "email": "ops@acme.example"})
    assert refused.status_code == 422 and "--force" in refused.text
    rep.post(
        "/dashboard/customers/acme/contacts",
        data={"csrf": csrf, "email": "ops@acme.example", "force": "true"},
    )
    removed = rep.post(
        "/dashboard/customers/acme/contacts/remove", data={"csrf": csrf, "email": "cto@acme.example"}
    )
    assert "cto@acme.example: removed" in removed.text
    with session_scope() as s:
        assert [
            (c.email, c.undeliverable)
            for c in s.exec(select(Contact).where(Contact.customer_id == world.ids["acme"]))
        ] == [("ops@acme.example", False)]
    other, _ = logged_in(world, "other_rep")
    assert other.get("/dashboard/customers/acme").status_code == 404


def test_only_dates_that_can_have_passed_or_moved_anywhere_are_read_back_each_tick():
    """`sync` leaves out, in SQL, the unresolved items whose milestone date can be neither history nor
    beyond its 1-month stage in any time zone: never one that `_gone` would resolve."""
    from lifecycle import escalations

    zones = ("Pacific/Kiritimati", "Asia/Shanghai", "UTC", "America/Los_Angeles", "Etc/GMT+12")
    instants = [
        dt.datetime(2027, 3, 31, 0, 30, tzinfo=dt.UTC),
        dt.datetime(2027, 3, 31, 23, 30, tzinfo=dt.UTC),
        dt.datetime(2028, 2, 29, 12, tzinfo=dt.UTC),
        dt.datetime(2027, 12, 31, 11, 59, tzinfo=dt.UTC),
        dt.datetime(2027, 1, 30, 23, 59, tzinfo=dt.UTC),
    ]
    for at in instants:
        last, first = escalations._candidate_window(at)
        assert first - last <= dt.timedelta(days=28)  # the window keeps only the unchanging middle out
        for offset in range(-40, 80):
            day = at.date() + dt.timedelta(days=offset)
            for tz in zones:
                if escalations._gone(day, tz, at) is not None:
                    assert day <= last or day >= first, (at, day, tz)
