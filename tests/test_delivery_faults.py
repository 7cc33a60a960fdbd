"""Delivery promises under faults: unknown outcomes, deadlines, dead workers, changes in flight, give-ups.

Each test drives the real scheduler against a real backend: the `sendgrid` library over HTTP to the
loopback stub, the file backend, or a loopback SMTP server. SendGrid's `processed` events are applied
in-process here (tests/test_chaos.py posts them to the real webhook).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time

import pytest
from sqlmodel import select

from lifecycle import delivery, liveness, reports, scheduler
from lifecycle.config import reset_settings
from lifecycle.db import session_scope
from lifecycle.models import Delivery, Notice
from lifecycle.webhooks import apply_events
from tests import sendgrid_stub as stub_module
from tests import world as w
from tests.conftest import utc
from tests.test_smtp import SmtpServer

sendgrid_stub = stub_module.sendgrid_stub  # the fixture

T0 = utc(2026, 12, 30, 12)  # the 6-month stage of a 30 June 2027 end of life is due in Berlin
EOL = dt.date(2027, 6, 30)


def fleet(n: int = 1) -> list[str]:
    w.product()
    w.milestone(EOL)
    keys = [f"cust{i}" for i in range(n)]
    for key in keys:
        w.customer(key, "Europe/Berlin")
    return keys


def use_sendgrid(monkeypatch, stub, *, deadline: float = 1.0, timeout: float = 5.0) -> None:
    monkeypatch.setenv("LIFECYCLE_EMAIL_BACKEND", "sendgrid")
    monkeypatch.setenv("SENDGRID_API_KEY", stub.api_key)
    monkeypatch.setenv("LIFECYCLE_SENDGRID_HOST", stub.url)
    monkeypatch.setenv("LIFECYCLE_SENDGRID_TIMEOUT", str(timeout))
    monkeypatch.setenv("LIFECYCLE_SEND_DEADLINE", str(deadline))
    reset_settings()


def emails(recipient_suffix: str = ".example") -> list[Delivery]:
    return [d for d in w.deliveries("email") if d.recipient.endswith(recipient_suffix)]


def customer_emails() -> list[Delivery]:
    return [d for d in w.deliveries("email") if not d.recipient.endswith("@vendor.example")]


def settle_with_events(stub, at: dt.datetime) -> dict:
    with session_scope() as s:
        return apply_events(s, stub.take_events(), at)


def wait_for(predicate, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def notice_kinds(delivery_ids: list[int]) -> set[str]:
    with session_scope() as s:
        return {
            n.kind
            for n in s.exec(
                select(Notice)
                .join(Delivery, Delivery.notice_id == Notice.id)
                .where(Delivery.id.in_(delivery_ids))
            )
        }


# --------------------------------------------------------------------------------- unknown outcomes


def test_emails_accepted_after_the_deadline_are_unknown_then_settled_by_sendgrids_events_never_sent_twice(
    db, monkeypatch, sendgrid_stub
):
    use_sendgrid(monkeypatch, sendgrid_stub, deadline=1.0)
    fleet(5)
    for _ in range(5):
        sendgrid_stub.queue(202, delay=2.5)  # accepted, but the answer comes after our deadline
    w.run(T0)
    assert {d.status for d in customer_emails()} == {"unknown"}
    assert all(d.next_attempt_at == T0 + dt.timedelta(minutes=15) for d in customer_emails())
    assert all("outcome unknown" in d.error and "send deadline" in d.error for d in customer_emails())
    assert {n.status for n in w.notices(audience="customer", slot="6m")} == {
        "sent"
    }  # the portal delivered them

    w.run(T0 + dt.timedelta(minutes=5))  # inside the reconciliation window: nothing is sent again
    assert len(sendgrid_stub.requests) == 5
    with session_scope() as s:
        rows = reports.compliance(s, T0 + dt.timedelta(minutes=5))["rows"]
    assert [r["unknown_emails"] for r in rows] == [1] * 5
    assert all("unknown outcome" in r["notes"] for r in rows)

    counts = settle_with_events(sendgrid_stub, T0 + dt.timedelta(minutes=6))
    assert counts["settled"] == 5
    w.run(T0 + dt.timedelta(hours=1), T0 + dt.timedelta(days=1))
    assert len(sendgrid_stub.requests) == 5
    by_message = {r.message_id for r in sendgrid_stub.requests}
    assert {d.status for d in customer_emails()} == {"sent"}
    assert {d.provider_id for d in customer_emails()} == by_message
    assert not any(d.possible_duplicate for d in customer_emails())


def test_an_unknown_email_without_an_event_is_sent_again_after_the_window_as_a_possible_duplicate(
    db, monkeypatch, sendgrid_stub
):
    use_sendgrid(monkeypatch, sendgrid_stub, deadline=1.0)
    fleet(1)
    sendgrid_stub.queue(202, delay=2.5)
    w.run(T0)
    sendgrid_stub.take_events()  # SendGrid's event never arrives
    w.run(T0 + dt.timedelta(minutes=14))
    assert len(sendgrid_stub.requests) == 1
    w.run(T0 + dt.timedelta(minutes=16))
    assert [r.status for r in sendgrid_stub.requests] == [202, 202]
    [email] = customer_emails()
    assert email.status == "sent" and email.possible_duplicate and email.attempts == 2
    with session_scope() as s:
        listed = reports.deliveries(s, T0 + dt.timedelta(minutes=16))
        [row] = reports.compliance(s, T0 + dt.timedelta(minutes=16))["rows"]
    assert listed["possible_duplicates"] == 1
    assert [(r["id"], r["possible_duplicate"]) for r in listed["rows"]] == [(email.id, True)]
    assert row["possible_duplicates"] == 1 and "1 possible duplicate email(s)" in row["notes"]


def test_the_delivery_report_lists_unknown_outcomes_with_their_reason(db, monkeypatch, sendgrid_stub, cli):
    use_sendgrid(monkeypatch, sendgrid_stub, deadline=1.0)
    fleet(1)
    sendgrid_stub.queue(202, delay=2.5)
    w.run(T0)
    r = cli("report", "deliveries", "--json", "--at", "2026-12-30T12:05:00Z")
    assert r.code == 0, r
    data = json.loads(r.out)
    assert data["totals"] == {"email": {"unknown": 1}, "portal": {"delivered": 1}}
    [row] = data["rows"]
    assert (row["customer"], row["recipient"], row["status"], row["possible_duplicate"]) == (
        "cust0",
        "ops@cust0.example",
        "unknown",
        False,
    )
    assert row["next_attempt_at"] == "2026-12-30T12:15:00+00:00" and "outcome unknown" in row["error"]
    table = cli("report", "deliveries")
    assert table.code == 0 and "email: unknown 1" in table.out and "possible duplicates: 0" in table.out


def test_a_provider_trickling_its_answer_is_cut_off_at_the_deadline_and_no_sweep_takes_the_send_back(
    db, monkeypatch, sendgrid_stub
):
    # One byte every ~50 ms for 8 s: a per-read socket timeout (5 s here) never fires.
    use_sendgrid(monkeypatch, sendgrid_stub, deadline=1.5, timeout=5.0)
    fleet(1)
    sendgrid_stub.queue(202, trickle=8.0)
    sender = threading.Thread(target=w.run, args=(T0,))
    sender.start()
    wait_for(lambda: sendgrid_stub.requests, "the request at the stub")
    # A sweep long after the claim timeout, while the send is in progress, takes nothing back.
    with session_scope() as s:
        scheduler.recover_stale(s, T0 + dt.timedelta(minutes=5))
    [in_flight] = customer_emails()
    assert in_flight.status in ("sending", "unknown")  # not taken back to be sent again
    sender.join(timeout=60)
    [email] = customer_emails()
    assert email.status == "unknown" and "1.5 s send deadline" in email.error
    [request] = sendgrid_stub.requests
    assert not request.answered  # we hung up long before the trickle ended
    w.run(T0 + dt.timedelta(minutes=5))
    assert len(sendgrid_stub.requests) == 1


def test_a_worker_killed_during_a_send_is_taken_over_at_once_and_its_email_is_not_sent_twice(
    db, monkeypatch, sendgrid_stub, tmp_path
):
    use_sendgrid(monkeypatch, sendgrid_stub, deadline=60.0)
    fleet(1)
    sendgrid_stub.queue(202, delay=30)  # accepted; the worker dies waiting for the answer
    code = (
        "import datetime as dt; from lifecycle.ticks import tick; "
        f"tick(dt.datetime.fromisoformat({T0.isoformat()!r}))"
    )
    worker = subprocess.Popen([sys.executable, "-c", code], cwd=tmp_path, env=dict(os.environ))
    try:
        wait_for(lambda: sendgrid_stub.requests, "the request at the stub", timeout=120)
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait()
    # The same instant: no claim timeout has passed, but the claim's process is gone.
    with session_scope() as s:
        taken = scheduler.recover_stale(s, T0)
    assert taken >= 1
    [email] = customer_emails()
    assert email.status == "unknown" and "stopped during the send" in email.error
    settle_with_events(sendgrid_stub, T0 + dt.timedelta(seconds=30))
    w.run(T0 + dt.timedelta(minutes=1), T0 + dt.timedelta(hours=1))
    [email] = customer_emails()
    assert email.status == "sent" and not email.possible_duplicate
    assert len(sendgrid_stub.requests) == 1
    assert {d.status for d in w.deliveries("portal")} == {"delivered"}


class Crash(BaseException):
    """The worker dies (nothing below it runs, nothing is recorded)."""


def test_a_file_email_written_by_a_worker_that_died_before_recording_it_is_settled_by_its_file(
    db, tmp_path, monkeypatch
):
    fleet(1)
    record = delivery._record_success

    def die_after_email(session, done, *args):
        if any(batch.channel == "email" for batch, _ in done):
            raise Crash()
        return record(session, done, *args)

    monkeypatch.setattr(delivery, "_record_success", die_after_email)
    with pytest.raises(Crash):
        w.run(T0)
    monkeypatch.setattr(delivery, "_record_success", record)
    [eml] = (tmp_path / "outbox").glob("*.eml")
    assert customer_emails()[0].status == "sending"

    w.run(T0 + dt.timedelta(minutes=5))  # after the claim timeout
    [email] = customer_emails()
    assert email.status == "sent" and email.provider_id == eml.name.split("-ops@")[0]
    assert not email.possible_duplicate
    assert list((tmp_path / "outbox").glob("*.eml")) == [eml]
    assert [n.status for n in w.notices(audience="customer", slot="6m")] == ["sent"]


def test_a_file_email_never_written_by_a_worker_that_died_is_sent_once_without_a_duplicate_flag(
    db, tmp_path, monkeypatch
):
    from lifecycle.mailers.file import FileMailer

    fleet(1)

    def die(self, email):
        raise Crash()

    send = FileMailer.send
    monkeypatch.setattr(FileMailer, "send", die)
    with pytest.raises(Crash):
        w.run(T0)
    monkeypatch.setattr(FileMailer, "send", send)
    assert not list((tmp_path / "outbox").glob("*.eml"))
    w.run(T0 + dt.timedelta(minutes=5))
    [email] = customer_emails()
    assert email.status == "sent" and not email.possible_duplicate and email.attempts == 2
    assert len(list((tmp_path / "outbox").glob("*.eml"))) == 1


def test_an_smtp_send_whose_reply_was_lost_is_retried_after_the_backoff_as_a_possible_duplicate(
    db, monkeypatch
):
    server = SmtpServer().start()
    try:
        monkeypatch.setenv("LIFECYCLE_EMAIL_BACKEND", "smtp")
        monkeypatch.setenv("LIFECYCLE_SMTP_HOST", "127.0.0.1")
        monkeypatch.setenv("LIFECYCLE_SMTP_PORT", str(server.port))
        reset_settings()
        fleet(1)
        server.replies["DATA_END"] = "DROP"  # the message went out, the reply never comes
        w.run(T0)
        [email] = customer_emails()
        assert email.status == "unknown" and "SMTP outcome unknown" in email.error
        assert email.next_attempt_at == T0 + dt.timedelta(minutes=1)
        del server.replies["DATA_END"]
        w.run(T0 + dt.timedelta(minutes=2))
        [email] = customer_emails()
        assert email.status == "sent" and email.possible_duplicate
        assert len(server.messages) == 1
    finally:
        server.stop()


# ----------------------------------------------------------------------------------------- liveness


def test_a_claim_names_a_dead_process_only_when_that_process_is_certainly_gone(tmp_path):
    code = "from lifecycle import liveness; print(liveness.owner())"
    gone = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=tmp_path
    ).stdout.strip()
    me = liveness.owner()
    host, pid, start, space = me.rsplit("/", 3)
    assert liveness.is_dead(gone)
    assert not liveness.is_dead(me)
    assert liveness.is_dead(f"{host}/{pid}/{int(start) + 1}/{space}")  # the pid was reused
    assert not liveness.is_dead(f"elsewhere/{pid}/1/another-pid-space")  # cannot tell: the timeout applies
    assert not liveness.is_dead(None) and not liveness.is_dead("garbage")


# ----------------------------------------------------------------------------------- changes in flight


def test_a_withdrawal_cancels_the_pending_retry_of_its_reminder_in_its_own_transaction(
    db, monkeypatch, sendgrid_stub
):
    use_sendgrid(monkeypatch, sendgrid_stub)
    fleet(1)
    sendgrid_stub.queue(500)
    w.run(T0)
    [stage_email] = customer_emails()
    assert stage_email.status == "pending"  # to be retried; the portal told the customer
    w.withdraw(at=T0 + dt.timedelta(seconds=30), reason="support extended")
    [stage_email] = [d for d in customer_emails() if d.id == stage_email.id]
    assert stage_email.status == "cancelled" and "withdrawn" in stage_email.error
    w.run(T0 + dt.timedelta(hours=1), T0 + dt.timedelta(hours=2), T0 + dt.timedelta(days=1))
    later = sendgrid_stub.accepted
    assert [notice_kinds(r.delivery_ids) for r in later] == [{"withdrawn"}]  # one email: the cancellation
    [stage] = w.notices("cust0", kind="stage", status="sent")  # still given: the portal holds it


def test_a_move_drops_the_pending_reminder_quoting_the_old_date(db, monkeypatch, sendgrid_stub):
    use_sendgrid(monkeypatch, sendgrid_stub)
    fleet(1)
    sendgrid_stub.queue(500)
    w.run(T0)
    w.move(dt.date(2027, 9, 30), at=T0 + dt.timedelta(seconds=30))
    [old] = [d for d in customer_emails() if d.status != "pending"]
    assert old.status == "cancelled" and "old date" in old.error
    w.run(T0 + dt.timedelta(hours=1), T0 + dt.timedelta(days=1))
    for request in sendgrid_stub.accepted:
        text = request.body["content"][0]["value"]
        assert "30 June 2027" not in text or "moves from 30 June 2027" in text, text


def test_an_agreement_drops_the_pending_routine_reminder_of_its_release(db, monkeypatch, sendgrid_stub):
    use_sendgrid(monkeypatch, sendgrid_stub)
    fleet(1)
    sendgrid_stub.queue(500)
    w.run(T0)
    w.ack("cust0", at=T0 + dt.timedelta(seconds=30))
    [stage_email] = customer_emails()
    assert stage_email.status == "cancelled" and "agreed" in stage_email.error
    w.run(T0 + dt.timedelta(hours=1), T0 + dt.timedelta(days=1))
    assert [r.to for r in sendgrid_stub.accepted] == ["rep@vendor.example"]  # only the rep hears of it


def test_a_withdrawal_committed_between_the_claim_and_the_send_stops_the_send(db, monkeypatch, sendgrid_stub):
    use_sendgrid(monkeypatch, sendgrid_stub)
    fleet(1)
    send = delivery._deliver_batch
    withdrawn = []

    def withdrawal_races_in(*args):
        if not withdrawn:  # another process withdraws while this worker holds its claim
            w.withdraw(at=T0, reason="support extended")
            withdrawn.append(True)
        return send(*args)

    monkeypatch.setattr(delivery, "_deliver_batch", withdrawal_races_in)
    [result] = w.run(T0)
    assert result.deliver.cancelled == 2 and result.deliver.sent == 0
    assert sendgrid_stub.requests == []
    assert {d.status for d in w.deliveries()} == {"cancelled"}
    [stage] = w.notices("cust0", kind="stage", slot="6m")
    assert (stage.status, stage.status_reason) == ("cancelled", "withdrawn")
    monkeypatch.setattr(delivery, "_deliver_batch", send)
    w.run(T0 + dt.timedelta(days=1))
    assert sendgrid_stub.requests == []  # never told, so no cancellation either


def test_a_reminder_cancelled_by_a_withdrawal_goes_out_when_the_milestone_is_reinstated(
    db, monkeypatch, tmp_path
):
    fleet(1)
    send = delivery._deliver_batch

    def withdrawal_races_in(*args):
        monkeypatch.setattr(delivery, "_deliver_batch", send)
        w.withdraw(at=T0, reason="support extended")
        return send(*args)

    monkeypatch.setattr(delivery, "_deliver_batch", withdrawal_races_in)
    w.run(T0)
    assert not list((tmp_path / "outbox").glob("*.eml"))
    w.reinstate(EOL, at=T0 + dt.timedelta(hours=1), reason="withdrawn by mistake")  # reinstated, same date
    w.run(T0 + dt.timedelta(hours=2), T0 + dt.timedelta(hours=3))
    [stage] = w.notices("cust0", kind="stage", slot="6m")
    assert stage.status == "sent"
    assert len(list((tmp_path / "outbox").glob("*.eml"))) == 1
    assert {d.status for d in w.deliveries()} == {"sent", "delivered"}


# ----------------------------------------------------------------------------------------- give-ups


def retry_until_settled(limit: int = 200) -> list[dt.datetime]:
    """Run a tick at each next attempt of the customer's email; the instants of the attempts."""
    instants = [T0]
    w.run(T0)
    for _ in range(limit):
        [email] = customer_emails()
        if email.status != "pending":
            return instants
        instants.append(email.next_attempt_at)
        w.run(email.next_attempt_at)
    raise AssertionError("still pending")


def test_a_two_hour_provider_outage_delays_emails_but_gives_none_up(db, monkeypatch, sendgrid_stub):
    use_sendgrid(monkeypatch, sendgrid_stub)
    fleet(1)
    sendgrid_stub.error_rate = 1.0
    at = T0
    w.run(at)
    while at < T0 + dt.timedelta(hours=2):
        [email] = customer_emails()
        at = email.next_attempt_at
        w.run(at)
    sendgrid_stub.error_rate = 0.0
    [email] = customer_emails()
    w.run(email.next_attempt_at)
    [email] = customer_emails()
    assert email.status == "sent" and email.attempts >= 8
    assert [n.kind for n in w.notices(audience="rep")] == []


def test_an_email_is_given_up_after_48_hours_loudly_and_the_report_says_told_by_portal_only(
    db, monkeypatch, sendgrid_stub, caplog
):
    use_sendgrid(monkeypatch, sendgrid_stub)
    monkeypatch.setenv("LIFECYCLE_OPS_EMAIL", "ops@vendor.example")
    reset_settings()
    fleet(1)
    sendgrid_stub.error_rate = 1.0
    with caplog.at_level(logging.ERROR, logger="lifecycle.delivery"):
        instants = retry_until_settled()
    [email] = customer_emails()
    assert email.status == "failed" and email.error.startswith(
        f"gave up after {email.attempts} attempts over 48.0 h"
    )
    assert instants[-1] - instants[0] == dt.timedelta(hours=48)
    assert max(b - a for a, b in zip(instants, instants[1:], strict=False)) == dt.timedelta(hours=1)
    assert len(instants) == email.attempts > 40
    assert any("given up" in r.getMessage() and "cust0" in r.getMessage() for r in caplog.records)

    [alert] = w.notices(audience="rep")
    assert alert.kind == "undelivered" and alert.slot == str(email.id)
    sendgrid_stub.error_rate = 0.0  # the provider is back: the alerts go out
    w.run(instants[-1] + dt.timedelta(minutes=1))
    told = {r.to: r.body for r in sendgrid_stub.accepted}
    assert set(told) == {"rep@vendor.example", "ops@vendor.example"}
    assert all(
        "could not be sent" in b["content"][0]["value"] and "ops@cust0.example" in b["subject"]
        for b in told.values()
    )
    with session_scope() as s:
        [row] = reports.compliance(s, instants[-1] + dt.timedelta(minutes=2))["rows"]
    assert row["status"] == "on-time" and row["told_by_portal_only"]
    assert row["notes"] == "told by portal only: email failed"


def test_without_an_operator_address_a_give_up_still_alerts_the_rep_and_logs_an_error(
    db, monkeypatch, sendgrid_stub, caplog
):
    use_sendgrid(monkeypatch, sendgrid_stub)
    monkeypatch.setenv("LIFECYCLE_RETRY_FOR_HOURS", "1")
    reset_settings()
    fleet(1)
    sendgrid_stub.error_rate = 1.0
    with caplog.at_level(logging.ERROR, logger="lifecycle.delivery"):
        retry_until_settled()
    [alert] = w.notices(audience="rep")
    with session_scope() as s:
        recipients = [d.recipient for d in s.exec(select(Delivery).where(Delivery.notice_id == alert.id))]
    assert recipients == ["rep@vendor.example"]
    assert [r.levelname for r in caplog.records if "given up" in r.getMessage()] == ["ERROR"]
