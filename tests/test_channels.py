"""Channels beyond email and the portal, end to end over real HTTP to loopback receivers: a customer
subscribes, a stage falls due, and the receiver gets one verified request per delivery; retries,
permanent failures, turning a failing subscription off; the plan preview and the compliance report;
secrets at rest; and a fourth channel added as one folder plus one registry line."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from sqlmodel import select

from lifecycle import reports
from lifecycle.channels import subscriptions
from lifecycle.channels.registry import CHANNELS
from lifecycle.config import reset_settings
from lifecycle.db import session_scope
from lifecycle.models import Customer, CustomerChannel, Delivery, Notice
from tests import world as w
from tests.channel_receivers import Receiver
from tests.conftest import utc

T0 = utc(2026, 12, 30, 12)  # the 6-month stage of a 30 June 2027 end of life is due in Berlin
EOL = dt.date(2027, 6, 30)
KINDS = ("webhook", "slack", "teams")


def setup(kind: str, receiver: Receiver, *, locale: str = "en", key: str = "cust0") -> int:
    """A customer running the release, subscribed to `kind` at the receiver. Returns the subscription id."""
    w.product()
    w.milestone(EOL)
    w.customer(key, "Europe/Berlin", locale=locale)
    return subscribe(key, kind, receiver)


def subscribe(key: str, kind: str, receiver: Receiver) -> int:
    with session_scope() as s:
        customer = s.exec(select(Customer).where(Customer.key == key)).one()
        row, once = subscriptions.add(
            s, customer=customer, kind=kind, url=receiver.url, label=f"{kind} of {key}", at=w.START
        )
        receiver.secret = once.get("secret")
        return row.id


def channel_deliveries(kind: str) -> list[Delivery]:
    return w.deliveries(kind)


def subscription(sid: int) -> CustomerChannel:
    with session_scope() as s:
        return s.get(CustomerChannel, sid)


@pytest.mark.parametrize("kind", KINDS)
def test_a_due_stage_reaches_the_subscribed_channel_once_per_delivery(db, kind):
    with Receiver(kind) as receiver:
        sid = setup(kind, receiver)
        w.run(T0, T0 + dt.timedelta(hours=1), T0 + dt.timedelta(days=1))
        [delivery] = channel_deliveries(kind)
        assert delivery.status == "sent" and delivery.subscription_id == sid and delivery.attempts == 1
        assert len(receiver.requests) == 1 and receiver.requests[0].status in (200, 202, 204)
        assert subscription(sid).verified_at is not None and subscription(sid).failures == 0
        [portal] = channel_deliveries("portal")  # email and the portal go on as before
        assert portal.status == "delivered" and len(channel_deliveries("email")) == 1


def test_every_webhook_request_verifies_and_its_id_is_the_delivery_id(db):
    with Receiver("webhook") as receiver:
        setup("webhook", receiver)
        w.run(T0)
        w.move(dt.date(2027, 7, 31), at=T0 + dt.timedelta(days=2))  # a second notice: the date changed
        w.run(T0 + dt.timedelta(days=3))
        deliveries = channel_deliveries("webhook")
        assert len(deliveries) == 2 and all(r.verified for r in receiver.requests), [
            r.problem for r in receiver.requests
        ]
        assert sorted(r.headers["webhook-id"] for r in receiver.requests) == sorted(
            str(d.id) for d in deliveries
        )
        stage, changed = (r.body for r in receiver.requests)
        assert (
            stage["type"] == "lifecycle.notice"
            and stage["version"] == 1
            and stage["id"] == str(deliveries[0].id)
        )
        assert stage["notice"]["kind"] == "stage" and stage["notice"]["stage"] == "6m"
        assert stage["product"] == {"slug": "acp", "name": "ACP"}
        assert stage["release"] == {"version": "3.16", "upgrade_to": "3.18"}
        assert stage["milestone"]["kind"] == "end-of-life" and stage["milestone"]["date"] == "2027-06-30"
        assert (
            stage["days_left"] == 182
            and stage["ack_url"].startswith("http")
            and "/calendars/" in stage["calendar_url"]
        )
        assert "ACP 3.16" in stage["message"]["title"] and stage["message"]["locale"] == "en"
        assert changed["notice"]["kind"] == "changed" and changed["milestone"]["date"] == "2027-07-31"
        assert changed["milestone"]["previous_date"] == "2027-06-30"


def test_a_webhook_signed_with_another_secret_is_refused_by_the_receiver(db):
    """The receiver really checks: with a wrong secret it answers 400, and the send fails for good."""
    with Receiver("webhook") as receiver:
        setup("webhook", receiver)
        receiver.secret = "whsec_" + "QUJD" * 8  # not the subscription's
        w.run(T0)
        assert receiver.requests[0].problem == "WebhookVerificationError: No matching signature found"
        [delivery] = channel_deliveries("webhook")
        assert delivery.status == "failed" and "webhook 400" in delivery.error


@pytest.mark.parametrize("kind", KINDS)
def test_three_server_errors_then_success_give_exactly_one_accepted_delivery(db, kind):
    with Receiver(kind) as receiver:
        setup(kind, receiver)
        receiver.queue(500, "boom", times=3)
        w.run(*(T0 + dt.timedelta(hours=h) for h in range(6)))
        assert [r.status for r in receiver.requests][:3] == [500, 500, 500]
        assert len(receiver.accepted) == 1 and len(receiver.requests) == 4
        [delivery] = channel_deliveries(kind)
        assert delivery.status == "sent" and delivery.attempts == 4 and delivery.error is None
        if kind == "webhook":  # every attempt is the same message: receivers deduplicate on its id
            assert {r.headers["webhook-id"] for r in receiver.requests} == {str(delivery.id)}


@pytest.mark.parametrize("kind", KINDS)
def test_a_400_fails_for_good_and_is_reported(db, kind):
    with Receiver(kind) as receiver:
        sid = setup(kind, receiver)
        receiver.queue(400, "invalid_payload" if kind == "slack" else "bad request")
        w.run(T0, T0 + dt.timedelta(hours=1), T0 + dt.timedelta(days=1))
        assert len(receiver.requests) == 1  # not retried
        [delivery] = channel_deliveries(kind)
        assert delivery.status == "failed" and " 400" in delivery.error
        with session_scope() as s:
            report = reports.deliveries(s, T0 + dt.timedelta(days=1))
        assert report["totals"][kind] == {"failed": 1}
        assert [r["id"] for r in report["rows"] if r["status"] == "failed"] == [delivery.id]
        rep_alerts = w.notices("cust0", kind="undelivered")
        assert len(rep_alerts) == 1 and rep_alerts[0].status == "sent"  # the rep hears of it
        row = subscription(sid)
        assert row.failures == 1 and row.enabled and " 400" in row.last_error


def test_slack_gets_block_kit_in_the_customers_language_with_the_ack_link_as_a_button(db):
    with Receiver("slack") as receiver:
        setup("slack", receiver, locale="zh-CN")
        w.run(T0)
        body = receiver.requests[0].body
        header, section, actions = body["blocks"]
        assert header["type"] == "header" and "生命周期通知" in header["text"]["text"]
        assert "ACP 3.16" in section["text"]["text"] and "建议升级至" in section["text"]["text"]
        ack = actions["elements"][0]
        assert ack["type"] == "button" and ack["text"]["text"] == "告诉我们您的升级计划"
        assert ack["url"].startswith("http") and "/ack/" in ack["url"]
        assert body["text"] == header["text"]["text"]  # the notification's fallback text


@pytest.mark.parametrize(
    ("status", "body", "permanent", "words"),
    [
        (404, "no_service", True, "disabled or removed"),
        (403, "invalid_token", True, "no longer valid"),
        (410, "channel_is_archived", True, "archived"),
        (429, "rate_limited", False, "429"),
        (503, "service_unavailable", False, "503"),
    ],
)
def test_slack_error_bodies_map_to_permanent_or_transient(sqlite_db, status, body, permanent, words):
    with Receiver("slack") as receiver:
        setup("slack", receiver)
        receiver.queue(status, body, {"Retry-After": "600"} if status == 429 else None)
        w.run(T0)
        [delivery] = channel_deliveries("slack")
        assert delivery.status == ("failed" if permanent else "pending") and words in delivery.error
        if status == 429:
            assert delivery.next_attempt_at >= T0 + dt.timedelta(seconds=600)


def test_teams_gets_an_adaptive_card_envelope(db):
    with Receiver("teams") as receiver:
        setup("teams", receiver)
        w.run(T0)
        body = receiver.requests[0].body
        assert body["type"] == "message"
        [attachment] = body["attachments"]
        assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
        card = attachment["content"]
        assert card["type"] == "AdaptiveCard" and "ACP 3.16" in card["body"][0]["text"]
        assert card["actions"][0]["type"] == "Action.OpenUrl" and "/ack/" in card["actions"][0]["url"]
        assert card["actions"][0]["title"] == "Tell us your upgrade plan"


def test_a_subscription_that_keeps_failing_is_turned_off_and_the_customer_and_rep_are_told(db, monkeypatch):
    monkeypatch.setenv("LIFECYCLE_CHANNEL_DISABLE_AFTER", "2")
    reset_settings()
    with Receiver("webhook") as receiver, Receiver("slack") as other:
        sid = setup("webhook", receiver)
        subscribe("cust0", "slack", other)
        receiver.queue(410, "gone", times=5)
        w.run(T0)
        assert subscription(sid).enabled and subscription(sid).failures == 1
        three_months = utc(2027, 3, 30, 8)  # the 3-month stage, 09:00 in Berlin
        w.run(three_months, three_months + dt.timedelta(minutes=1))  # the notices of turning it off go next
        row = subscription(sid)
        assert not row.enabled and row.failures == 2 and row.disabled_at is not None
        told = w.notices("cust0", kind="channel-disabled")
        assert {n.audience for n in told} == {"customer", "rep"} and all(n.status == "sent" for n in told)
        [message] = [m for m in w.inbox("cust0") if m.subject == "A notification channel was turned off"]
        assert "webhook of cust0" in message.body_text
        assert any(
            r.body["blocks"][0]["text"]["text"] == "A notification channel was turned off"
            for r in other.requests
        )  # the customer's other channel carries it too
        rep_mail = [d for d in w.deliveries("email") if d.recipient == "rep@vendor.example"]
        assert rep_mail and all(d.status == "sent" for d in rep_mail)
        w.run(utc(2027, 5, 30, 8))  # the 1-month stage: nothing more to the turned-off webhook
        assert len(receiver.requests) == 2


def test_channel_test_sends_a_test_message_and_records_the_result(db, cli):
    with Receiver("webhook") as receiver:
        w.customer("cust0", "Europe/Berlin", deploy=())
        sid = subscribe("cust0", "webhook", receiver)
        ok = cli("channel", "test", "cust0", str(sid), "--json")
        assert ok.code == 0, ok
        assert json.loads(ok.out)["ok"] and receiver.requests[0].verified
        assert receiver.requests[0].body["type"] == "lifecycle.test"
        assert subscription(sid).verified_at is not None
        receiver.queue(500, "down")
        failed = cli("channel", "test", "cust0", str(sid))
        assert failed.code == 1 and "webhook 500" in failed.err
        assert subscription(sid).last_error.startswith("test: webhook 500")


def test_the_cli_adds_lists_and_removes_subscriptions_and_refuses_bad_input(db, cli):
    w.customer("cust0", "Europe/Berlin", deploy=())
    added = cli("channel", "add", "cust0", "webhook", "--url", "https://hooks.example.com/x/SECRET", "--json")
    assert added.code == 0, added
    info = json.loads(added.out)
    assert info["secret"].startswith("whsec_") and info["endpoint"] == "https://hooks.example.com/…"
    listing = cli("channel", "list", "cust0", "--json")
    assert [r["state"] for r in json.loads(listing.out)] == ["untested"] and "SECRET" not in listing.out
    assert "whsec_" not in listing.out
    bad_kind = cli("channel", "add", "cust0", "fax", "--url", "https://x.example")
    assert bad_kind.code == 2 and "kind" in bad_kind.err and "webhook, slack, teams" in bad_kind.err
    bad_url = cli("channel", "add", "cust0", "slack", "--url", "ftp://x.example/a")
    assert bad_url.code == 2 and "url: not an http(s) URL" in bad_url.err
    removed = cli("channel", "remove", "cust0", str(info["id"]))
    assert removed.code == 0 and json.loads(cli("channel", "list", "--json").out) == []
    missing = cli("channel", "remove", "cust0", "999")
    assert missing.code == 2 and "no channel subscription #999" in missing.err


def test_secrets_are_sealed_at_rest_and_survive_a_key_rotation(db, cli, monkeypatch, tmp_path):
    monkeypatch.delenv("LIFECYCLE_SECRET_KEY")  # a key file, which `secret rotate` rotates
    reset_settings()
    with Receiver("webhook") as receiver:
        w.customer("cust0", "Europe/Berlin", deploy=())
        sid = subscribe("cust0", "webhook", receiver)
        with session_scope() as s:
            stored = s.get(CustomerChannel, sid).config
        assert "secret-token" not in stored and receiver.secret not in stored and "whsec" not in stored
        rotated = cli("secret", "rotate", "--grace", "0")
        assert rotated.code == 0, rotated
        assert cli("channel", "test", "cust0", str(sid)).code == 0
        assert receiver.requests[-1].verified
        with session_scope() as s:
            assert s.get(CustomerChannel, sid).config != stored  # sealed again with the new key


def test_plan_and_compliance_show_the_new_channels(db, cli):
    with Receiver("webhook") as receiver, Receiver("teams") as teams:
        setup("webhook", receiver)
        subscribe("cust0", "teams", teams)
        plan = cli("plan", "--at", "2026-12-01", "--json")
        assert plan.code == 0, plan
        first = json.loads(plan.out)["notices"][0]
        assert [c["channel"] for c in first["channels"]] == ["portal", "email", "webhook", "teams"]
        assert first["channels"][2]["recipient"].startswith("webhook of cust0 #")
        table = cli("plan", "--at", "2026-12-01", "--detail")  # recipients: the detailed listing
        assert "webhook:webhook of cust0" in table.out
        w.run(T0)
        report = cli("report", "compliance", "--at", "2027-01-02", "--json")
        assert report.code == 0, report
        [row] = json.loads(report.out)["rows"]
        assert row["webhook_first_at"] and row["teams_first_at"] and row["status"] == "on-time"
        assert row["counted_channels"] == ["email", "portal"]


def test_only_channels_that_count_make_a_customer_told(db, monkeypatch):
    """LIFECYCLE_PROMISE_CHANNELS=webhook: a failed webhook means not told, whatever else delivered."""
    monkeypatch.setenv("LIFECYCLE_PROMISE_CHANNELS", "webhook")
    reset_settings()
    with Receiver("webhook") as receiver:
        setup("webhook", receiver)
        receiver.queue(400, "no", times=10)
        w.move(dt.date(2027, 3, 1), at=T0 - dt.timedelta(days=1), short=True)  # told at once
        w.run(T0 - dt.timedelta(days=1), T0)
        with session_scope() as s:
            [row] = reports.compliance(s, T0 + dt.timedelta(days=1))["rows"]
        assert row["portal_first_at"] and row["webhook_first_at"] is None and row["first_notified_at"] is None
        assert row["status"] == "not-notified"
        assert "told by portal and email only: webhook failed" in row["notes"]


def test_a_fourth_channel_is_one_folder_and_one_registry_line(db, monkeypatch):
    from tests.fourth_channel import PagerChannel

    monkeypatch.setitem(CHANNELS, "pager", PagerChannel())  # the registry line
    with Receiver("pager") as receiver:
        setup("pager", receiver)
        w.run(T0 - dt.timedelta(days=1))  # planned, nothing due yet
        with session_scope() as s:
            from lifecycle.channels.fanout import planned

            ids = [n.id for n in s.exec(select(Notice)).all()]
            assert any(r["channel"] == "pager" for rs in planned(s, ids).values() for r in rs)
        w.run(T0)
        [delivery] = channel_deliveries("pager")
        assert delivery.status == "sent" and receiver.requests[0].body["title"].startswith("ACP 3.16")
        with session_scope() as s:
            [row] = reports.compliance(s, T0)["rows"]
        assert row["pager_first_at"] is not None


# ------------------------------------------------------------------------------------ the portal page


def test_a_customer_adds_tests_and_removes_a_webhook_on_the_portal_page(db):
    from tests import webworld
    from tests.test_web_pages import logged_in

    world = webworld.build()
    client, csrf = logged_in(world, "customer")
    page = client.get("/portal/channels")
    assert (
        page.status_code == 200 and "No channels yet." in page.text and 'href="/portal/channels"' in page.text
    )
    with Receiver("webhook") as receiver:
        added = client.post(
            "/portal/channels",
            data={"csrf": csrf, "kind": "webhook", "url": receiver.url, "label": "ops hook"},
        )
        assert added.status_code == 200
        receiver.secret = added.text.split('id="secret"')[1].split("<code>")[1].split("</code>")[0]
        assert (
            receiver.secret.startswith("whsec_") and receiver.url not in added.text
        )  # the URL is never shown
        assert "whsec_" not in client.get("/portal/channels").text  # the secret only once
        with session_scope() as s:
            sid = s.exec(select(CustomerChannel)).one().id
        tested = client.post(f"/portal/channels/{sid}/test", data={"csrf": csrf})
        assert "The test message was accepted." in tested.text and receiver.requests[0].verified
        assert client.post(f"/portal/channels/{sid}/test", data={"csrf": "forged"}).status_code == 403
        refused = client.post(
            "/portal/channels", data={"csrf": csrf, "kind": "webhook", "url": "javascript:x"}
        )
        assert refused.status_code == 422 and "not an http(s) URL" in refused.text
        gone = client.post(f"/portal/channels/{sid}/remove", data={"csrf": csrf})
        assert (
            gone.status_code == 200 and "The channel is removed." in gone.text and "ops hook" not in gone.text
        )


def test_another_customers_channel_cannot_be_tested_or_removed(db):
    from tests import webworld
    from tests.test_web_pages import logged_in

    world = webworld.build()
    with session_scope() as s:
        globex = s.exec(select(Customer).where(Customer.key == "globex")).one()
        row, _ = subscriptions.add(
            s, customer=globex, kind="slack", url="https://hooks.slack.example/a", at=w.START
        )
        sid = row.id
    client, csrf = logged_in(world, "customer")  # acme
    assert client.post(f"/portal/channels/{sid}/test", data={"csrf": csrf}).status_code == 404
    assert client.post(f"/portal/channels/{sid}/remove", data={"csrf": csrf}).status_code == 404
    assert subscription(sid) is not None


def test_the_reps_dashboard_shows_customer_channels_with_the_failing_ones_first(db):
    from tests import webworld
    from tests.test_web_pages import logged_in

    world = webworld.build()
    with session_scope() as s:
        acme = s.exec(select(Customer).where(Customer.key == "acme")).one()
        ok, _ = subscriptions.add(
            s, customer=acme, kind="slack", url="https://hooks.slack.example/a", label="#ok", at=w.START
        )
        bad, _ = subscriptions.add(
            s, customer=acme, kind="teams", url="https://teams.example/b", label="ops team", at=w.START
        )
        subscriptions.failed(s, bad.id, "Teams 404: the workflow no longer exists", w.START, for_good=True)
    client, _ = logged_in(world, "rep")
    page = client.get("/dashboard").text
    section = page.split('id="channels"')[1]
    assert section.index("ops team") < section.index("#ok")
    assert "failing: Teams 404: the workflow no longer exists" in section and "untested" in section
