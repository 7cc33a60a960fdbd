"""The SendGrid mailer: the real `sendgrid` library posting over HTTP to a loopback SendGrid stub."""

from __future__ import annotations

import base64
import datetime as dt
import email.utils
import socket
import time

import pytest

from lifecycle.config import get_settings, reset_settings
from lifecycle.errors import DeliveryError, LifecycleError
from lifecycle.mailers import MAILERS, Attachment, Email
from lifecycle.mailers.sendgrid import SendGridMailer
from tests import sendgrid_stub as stub_module
from tests.sendgrid_stub import API_KEY, SendGridStub

sendgrid_stub = stub_module.sendgrid_stub  # the fixture

ICS = (
    b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//vendor//lifecycle//EN\r\nMETHOD:PUBLISH\r\n"
    b"BEGIN:VEVENT\r\nUID:milestone-1@lifecycle\r\nSEQUENCE:1\r\nDTSTAMP:20260101T000000Z\r\n"
    b"DTSTART;VALUE=DATE:20270630\r\nSUMMARY:ACP 3.16 end of life\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
)


def notice_email(**overrides) -> Email:
    fields = dict(
        to="ops@acme.example",
        to_name="ACME Ops",
        subject="ACP 3.16: end of life on 2027-06-30 (3 months' notice)",
        text="ACP 3.16 reaches end of life on 2027-06-30. Upgrade to 3.18.\n"
        "Acknowledge: http://127.0.0.1:8000/ack/abc\n",
        html="<p>ACP 3.16 reaches <b>end of life</b> on 2027-06-30.</p><p><a href='http://x/ack/abc'>Ack</a></p>",
        from_email="lifecycle@vendor.example",
        from_name="Product Lifecycle",
        attachments=[Attachment(filename="lifecycle.ics", content=ICS, mimetype="text/calendar")],
        custom_args={"delivery_ids": "12,13"},
        categories=["lifecycle", "lifecycle-stage"],
        message_id="<lifecycle-12-abc@vendor.example>",
    )
    fields.update(overrides)
    return Email(**fields)


def mailer(stub: SendGridStub, **kw) -> SendGridMailer:
    return SendGridMailer(stub.api_key, host=stub.url, **kw)


def test_a_notice_email_passes_sendgrids_schema_and_returns_the_message_id(sendgrid_stub):
    provider_id = mailer(sendgrid_stub).send(notice_email())
    [req] = sendgrid_stub.requests
    assert req.status == 202
    assert provider_id == req.message_id and provider_id
    body = req.body
    assert req.headers["Authorization"] == f"Bearer {API_KEY}"
    assert body["from"] == {"email": "lifecycle@vendor.example", "name": "Product Lifecycle"}
    assert body["personalizations"] == [{"to": [{"email": "ops@acme.example", "name": "ACME Ops"}]}]
    assert [c["type"] for c in body["content"]] == ["text/plain", "text/html"]
    assert body["custom_args"] == {"delivery_ids": "12,13"}
    assert body["categories"] == ["lifecycle", "lifecycle-stage"]
    [att] = body["attachments"]
    assert att["type"] == "text/calendar"
    assert att["filename"] == "lifecycle.ics" and att["disposition"] == "attachment"
    assert base64.b64decode(att["content"]) == ICS
    assert "mail_settings" not in body


def test_unicode_subjects_and_names_go_through_unchanged(sendgrid_stub):
    mailer(sendgrid_stub).send(
        notice_email(subject="ACP 3.16 生命周期终止：2027-06-30", to_name="运维, 团队")
    )
    body = sendgrid_stub.requests[0].body
    assert body["subject"] == "ACP 3.16 生命周期终止：2027-06-30"
    assert body["personalizations"][0]["to"][0]["email"] == "ops@acme.example"


def test_sandbox_mode_is_sent_when_configured(sendgrid_stub):
    mailer(sendgrid_stub, sandbox=True).send(notice_email())
    assert sendgrid_stub.requests[0].body["mail_settings"] == {"sandbox_mode": {"enable": True}}


def test_extra_headers_are_passed_to_sendgrid(sendgrid_stub):
    mailer(sendgrid_stub).send(notice_email(headers={"List-Unsubscribe": "<mailto:u@vendor.example>"}))
    assert sendgrid_stub.requests[0].body["headers"] == {"List-Unsubscribe": "<mailto:u@vendor.example>"}


def test_an_invalid_payload_is_a_permanent_error_with_sendgrids_message(sendgrid_stub):
    with pytest.raises(DeliveryError) as err:
        mailer(sendgrid_stub).send(notice_email(to="not-an-address"))
    assert err.value.permanent and err.value.retry_after is None
    assert "SendGrid 400" in err.value.message
    assert "personalizations.0.to.0.email" in err.value.message
    assert "not-an-address" in err.value.message


def test_an_attachment_type_with_parameters_is_refused_like_sendgrid_does(sendgrid_stub):
    att = Attachment(filename="x.ics", content=ICS, mimetype="text/calendar; method=PUBLISH")
    with pytest.raises(DeliveryError) as err:
        mailer(sendgrid_stub).send(notice_email(attachments=[att]))
    assert err.value.permanent
    assert "attachment type cannot contain" in err.value.message and "attachments.0.type" in err.value.message


def test_many_emails_go_out_through_a_bounded_pool_each_with_its_own_outcome_in_order(sendgrid_stub):
    import threading

    bad = Attachment(filename="x.ics", content=ICS, mimetype="text/calendar; method=PUBLISH")
    emails = [
        notice_email(
            to=f"ops{i}@acme.example",
            custom_args={"delivery_ids": str(i)},
            attachments=[bad] if i == 4 else [],
        )
        for i in range(9)
    ]
    built = []

    def lazily():  # built one by one while the pool sends the first ones
        for e in emails:
            built.append(threading.current_thread().name)
            yield e
        yield DeliveryError("could not be built", permanent=True)

    out = mailer(sendgrid_stub, concurrency=3).send_many(lazily())
    assert len(out) == 10 and set(built) == {threading.current_thread().name}
    by_to = {r.body["personalizations"][0]["to"][0]["email"]: r.message_id for r in sendgrid_stub.accepted}
    for i, outcome in enumerate(out[:9]):
        if i == 4:
            assert isinstance(outcome, DeliveryError) and outcome.permanent
        else:
            assert outcome == by_to[f"ops{i}@acme.example"] and outcome
    assert isinstance(out[9], DeliveryError) and out[9].message == "could not be built"
    assert len(sendgrid_stub.requests) == 9


def test_a_queued_400_carries_every_sendgrid_error_and_field(sendgrid_stub):
    sendgrid_stub.queue(
        400,
        body={
            "errors": [
                {"message": "Does not contain a valid address.", "field": "from.email", "help": None},
                {"message": "The subject is required.", "field": None, "help": None},
            ]
        },
    )
    with pytest.raises(DeliveryError) as err:
        mailer(sendgrid_stub).send(notice_email())
    assert err.value.permanent
    assert err.value.message == (
        "SendGrid 400: Does not contain a valid address. (field: from.email); The subject is required."
    )


def test_a_wrong_api_key_is_a_permanent_error(sendgrid_stub):
    with pytest.raises(DeliveryError) as err:
        SendGridMailer("SG.wrong", host=sendgrid_stub.url).send(notice_email())
    assert err.value.permanent and "SendGrid 401" in err.value.message
    assert "authorization grant is invalid" in err.value.message


def test_429_is_transient_and_honours_retry_after_seconds(sendgrid_stub):
    sendgrid_stub.queue(429, retry_after=7)
    with pytest.raises(DeliveryError) as err:
        mailer(sendgrid_stub).send(notice_email())
    assert not err.value.permanent and err.value.retry_after == 7
    assert "SendGrid 429" in err.value.message


def test_429_honours_a_retry_after_http_date(sendgrid_stub):
    now = 1_900_000_000.0
    when = email.utils.formatdate(now + 90, usegmt=True)
    sendgrid_stub.queue(429, retry_after=when)
    with pytest.raises(DeliveryError) as err:
        mailer(sendgrid_stub, clock=lambda: now).send(notice_email())
    assert not err.value.permanent and err.value.retry_after == 90


def test_429_without_retry_after_uses_the_rate_limit_reset_epoch(sendgrid_stub):
    now = 1_900_000_000.0
    sendgrid_stub.queue(429, headers={"X-RateLimit-Reset": str(int(now) + 42)})
    with pytest.raises(DeliveryError) as err:
        mailer(sendgrid_stub, clock=lambda: now).send(notice_email())
    assert not err.value.permanent and err.value.retry_after == 42


def test_500_is_transient(sendgrid_stub):
    sendgrid_stub.queue(500)
    with pytest.raises(DeliveryError) as err:
        mailer(sendgrid_stub).send(notice_email())
    assert not err.value.permanent and err.value.retry_after is None
    assert "SendGrid 500" in err.value.message


def test_503_with_retry_after_is_transient_with_the_delay(sendgrid_stub):
    sendgrid_stub.queue(503, retry_after=30)
    with pytest.raises(DeliveryError) as err:
        mailer(sendgrid_stub).send(notice_email())
    assert not err.value.permanent and err.value.retry_after == 30


def test_a_sendgrid_answering_after_the_timeout_leaves_the_outcome_unknown_not_failed(sendgrid_stub):
    sendgrid_stub.queue(202, delay=1.5)  # SendGrid accepted it, but answers late
    with pytest.raises(DeliveryError) as err:
        mailer(sendgrid_stub, timeout=0.3).send(notice_email())
    assert not err.value.permanent and err.value.unknown
    assert "outcome unknown: the request was sent" in err.value.message
    assert [r.status for r in sendgrid_stub.requests] == [202]


def test_an_answer_trickled_past_the_send_deadline_is_cut_off_there_not_at_the_socket_timeout(sendgrid_stub):
    # One byte every ~0.1 s for 8 s: each read succeeds long before the 5 s socket timeout, so only a
    # total deadline ends this exchange.
    sendgrid_stub.queue(202, trickle=8.0)
    m = mailer(sendgrid_stub, timeout=5, deadline=1.0)
    with pytest.raises(DeliveryError) as err:
        m.send(notice_email())
    assert err.value.unknown and not err.value.permanent
    assert err.value.message == (
        "SendGrid outcome unknown: the request was sent, then no complete answer within the 1 s send deadline"
    )
    [request] = sendgrid_stub.requests
    assert request.status == 202 and not request.answered  # we hung up before the answer was whole
    # The half-read connection was not kept: the next email goes out whole on a new one.
    assert m.send(notice_email()) == sendgrid_stub.requests[1].message_id
    assert sendgrid_stub.connections_accepted == 2


def test_nothing_is_sent_once_the_deadline_has_passed(sendgrid_stub):
    late = notice_email(deadline=0.0)  # a time.monotonic() instant long past
    with pytest.raises(DeliveryError) as err:
        mailer(sendgrid_stub).send(late)
    assert not err.value.unknown and "deadline had already passed" in err.value.message
    assert sendgrid_stub.requests == []


def test_a_refused_connection_is_a_transient_error():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens once closed
    with pytest.raises(DeliveryError) as err:
        SendGridMailer(API_KEY, host=f"http://127.0.0.1:{port}", timeout=2).send(notice_email())
    assert not err.value.permanent and "unreachable" in err.value.message


def test_a_redirect_is_not_an_acceptance(sendgrid_stub):
    sendgrid_stub.queue(301, headers={"Location": "https://elsewhere.example/v3/mail/send"})
    with pytest.raises(DeliveryError) as err:
        mailer(sendgrid_stub).send(notice_email())
    assert err.value.permanent and err.value.message.startswith("SendGrid 301")


def test_the_mailer_sends_nothing_again_by_itself_after_an_error(sendgrid_stub):
    sendgrid_stub.queue(429, retry_after=1)
    with pytest.raises(DeliveryError):
        mailer(sendgrid_stub).send(notice_email())
    assert len(sendgrid_stub.requests) == 1  # retrying is the scheduler's job


def test_from_settings_reads_the_environment_and_refuses_a_missing_key(monkeypatch, sendgrid_stub):
    monkeypatch.delenv("SENDGRID_API_KEY", raising=False)
    monkeypatch.delenv("LIFECYCLE_SENDGRID_API_KEY", raising=False)
    reset_settings()
    with pytest.raises(LifecycleError, match="SENDGRID_API_KEY"):
        SendGridMailer.from_settings(get_settings())
    monkeypatch.setenv("SENDGRID_API_KEY", API_KEY)
    monkeypatch.setenv("LIFECYCLE_SENDGRID_HOST", sendgrid_stub.url)
    monkeypatch.setenv("LIFECYCLE_SENDGRID_TIMEOUT", "2.5")
    monkeypatch.setenv("LIFECYCLE_EMAIL_BACKEND", "sendgrid")
    reset_settings()
    m = MAILERS["sendgrid"](get_settings())
    assert m.client.client.timeout == 2.5
    assert m.send(notice_email()) == sendgrid_stub.requests[0].message_id


# ------------------------------------------------------------------------- through the scheduler


def _use_sendgrid(monkeypatch, stub: SendGridStub) -> None:
    monkeypatch.setenv("LIFECYCLE_EMAIL_BACKEND", "sendgrid")
    monkeypatch.setenv("SENDGRID_API_KEY", stub.api_key)
    monkeypatch.setenv("LIFECYCLE_SENDGRID_HOST", stub.url)
    monkeypatch.setenv("LIFECYCLE_SENDGRID_TIMEOUT", "5")
    reset_settings()


def test_a_scheduled_notice_survives_two_429s_and_is_sent_once(db, monkeypatch, sendgrid_stub):
    from tests import world as w

    _use_sendgrid(monkeypatch, sendgrid_stub)
    w.product()
    w.milestone(dt.date(2027, 6, 30))
    w.customer("acme", "Europe/Berlin")
    sendgrid_stub.queue(429, retry_after=120)
    sendgrid_stub.queue(429, retry_after=120)
    t0 = dt.datetime(2026, 12, 30, 12, tzinfo=dt.UTC)  # the 6m stage is due
    w.run(t0)
    [email] = w.deliveries("email")
    assert email.status == "pending" and email.attempts == 1
    assert email.next_attempt_at >= t0 + dt.timedelta(seconds=120)
    w.run(t0 + dt.timedelta(seconds=60))  # too early: nothing is posted
    assert len(sendgrid_stub.requests) == 1
    w.run(email.next_attempt_at)
    w.run(t0 + dt.timedelta(hours=1), t0 + dt.timedelta(hours=2))
    [email] = w.deliveries("email")
    assert [r.status for r in sendgrid_stub.requests] == [429, 429, 202]
    assert email.status == "sent" and email.attempts == 3
    assert email.provider_id == sendgrid_stub.accepted[0].message_id
    body = sendgrid_stub.accepted[0].body
    assert body["custom_args"] == {"delivery_ids": str(email.id)}
    assert [a["type"] for a in body.get("attachments", [])] == ["text/calendar"]
    [notice] = w.sent("acme")
    assert notice.slot == "6m"


def test_a_scheduled_notice_refused_with_400_fails_after_one_attempt_and_the_rep_is_told(
    db, monkeypatch, sendgrid_stub
):
    from tests import world as w

    _use_sendgrid(monkeypatch, sendgrid_stub)
    w.product()
    w.milestone(dt.date(2027, 6, 30))
    w.customer("acme", "Europe/Berlin")
    sendgrid_stub.queue(
        400, body={"errors": [{"message": "Invalid from address", "field": "from.email", "help": None}]}
    )
    t0 = dt.datetime(2026, 12, 30, 12, tzinfo=dt.UTC)
    w.run(t0, t0 + dt.timedelta(hours=1), t0 + dt.timedelta(days=1))
    [email, alert] = w.deliveries("email")
    assert email.recipient == "ops@acme.example"
    assert email.status == "failed" and email.attempts == 1
    assert "Invalid from address (field: from.email)" in email.error
    assert [r.to for r in sendgrid_stub.requests] == ["ops@acme.example", "rep@vendor.example"]
    [portal] = w.deliveries("portal")
    assert portal.status == "delivered"  # the notice is still given through the portal inbox
    assert (alert.recipient, alert.status) == ("rep@vendor.example", "sent")  # a give-up is loud
    assert "could not be sent" in sendgrid_stub.requests[1].body["content"][0]["value"]


def test_the_mailer_keeps_its_connections_from_one_batch_of_emails_to_the_next(sendgrid_stub):
    m = mailer(sendgrid_stub, concurrency=3)
    for batch in range(3):
        emails = [notice_email(to=f"ops{batch}-{i}@acme.example") for i in range(12)]
        out = m.send_many(emails)
        assert all(isinstance(o, str) and o for o in out), out
    assert len(sendgrid_stub.accepted) == 36
    assert 1 <= sendgrid_stub.connections_accepted <= 3  # at most one per thread of the pool, kept
    m.close()


def test_a_kept_connection_the_server_closed_is_replaced_before_it_is_used(sendgrid_stub):
    m = mailer(sendgrid_stub)
    m.send(notice_email(to="first@acme.example"))
    sendgrid_stub.close_connections()  # as a server closes an idle keep-alive connection
    time.sleep(0.2)  # the FIN has arrived
    assert m.send(notice_email(to="second@acme.example"))  # no error, nothing unknown
    assert [r.to for r in sendgrid_stub.accepted] == ["first@acme.example", "second@acme.example"]
    assert sendgrid_stub.connections_accepted == 2


def test_a_connection_idle_longer_than_the_keep_limit_is_not_reused(sendgrid_stub, monkeypatch):
    from lifecycle.mailers import sendgrid as sendgrid_mailer

    monkeypatch.setattr(sendgrid_mailer, "KEEP_IDLE_SECONDS", 0.0)
    m = mailer(sendgrid_stub)
    m.send(notice_email())
    time.sleep(0.01)
    m.send(notice_email())
    assert len(sendgrid_stub.accepted) == 2 and sendgrid_stub.connections_accepted == 2


def test_a_forked_process_does_not_use_its_parents_connections(sendgrid_stub):
    m = mailer(sendgrid_stub)
    m.send(notice_email())
    m.connections._pid = -1  # as seen from a child forked after that send (a Celery prefork worker)
    m.send(notice_email())
    assert sendgrid_stub.connections_accepted == 2


def test_the_sendgrid_backend_is_one_mailer_per_settings_so_its_connections_are_kept(
    monkeypatch, sendgrid_stub
):
    monkeypatch.setenv("SENDGRID_API_KEY", API_KEY)
    monkeypatch.setenv("LIFECYCLE_SENDGRID_HOST", sendgrid_stub.url)
    reset_settings()
    first = MAILERS["sendgrid"](get_settings())
    assert MAILERS["sendgrid"](get_settings()) is first
    monkeypatch.setenv("LIFECYCLE_SENDGRID_CONCURRENCY", "2")
    reset_settings()
    assert MAILERS["sendgrid"](get_settings()) is not first


def test_a_kept_connection_with_something_to_read_while_idle_is_taken_as_closed():
    import http.client

    from lifecycle.mailers.sendgrid import _still_open

    ours, theirs = socket.socketpair()
    conn = http.client.HTTPConnection("sendgrid.invalid")
    conn.sock = ours
    try:
        assert _still_open(conn)
        theirs.close()  # the server hung up (a FIN to read)
        assert not _still_open(conn)
        conn.sock = None
        assert not _still_open(conn)  # never connected, or already closed
    finally:
        ours.close()
