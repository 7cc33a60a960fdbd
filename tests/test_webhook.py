"""SendGrid's signed event webhook, posted over HTTP to the real app, on SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import datetime as dt
import json
import time

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi.testclient import TestClient
from sqlmodel import select

from lifecycle import policy
from lifecycle.config import reset_settings
from lifecycle.db import session_scope
from lifecycle.models import Contact, Customer, Delivery, Milestone, Notice, WebhookEvent
from lifecycle.web.app import create_app
from lifecycle.webhooks import verify
from tests import world as w

T = dt.datetime(2026, 3, 1, 9, tzinfo=dt.UTC)  # when the notices below were sent
SIG = "X-Twilio-Email-Event-Webhook-Signature"
TS = "X-Twilio-Email-Event-Webhook-Timestamp"


def new_key() -> tuple[ec.EllipticCurvePrivateKey, str]:
    """A P-256 key pair; the public half as SendGrid shows it (base64 DER, no PEM armour)."""
    private = ec.generate_private_key(ec.SECP256R1())
    der = private.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private, base64.b64encode(der).decode()


def sign(private: ec.EllipticCurvePrivateKey, timestamp: str, body: bytes) -> str:
    """As SendGrid does: ECDSA/SHA-256 over the timestamp followed by the raw body, base64 DER."""
    return base64.b64encode(private.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))).decode()


KEY, PUBLIC = new_key()


@pytest.fixture
def client(monkeypatch):
    monkeypatch.setenv("LIFECYCLE_SENDGRID_WEBHOOK_PUBLIC_KEY", PUBLIC)
    reset_settings()
    with TestClient(create_app()) as c:
        yield c


def post(client, events, *, key=KEY, timestamp=None, body=None, headers=None):
    raw = body if body is not None else json.dumps(events).encode()
    timestamp = timestamp or str(int(time.time()))
    sent_headers = {SIG: sign(key, timestamp, raw), TS: timestamp, "Content-Type": "application/json"}
    if headers is not None:
        sent_headers = headers
    return client.post("/webhooks/sendgrid", content=raw, headers=sent_headers)


# ------------------------------------------------------------------------------------------ the rows


def setup_customer(emails=("ops@acme.example",), milestone=dt.date(2030, 6, 30)):
    w.product()
    w.milestone(milestone)
    w.customer("acme", "Europe/Berlin", emails=list(emails))


def sent_notice(*, emails=("ops@acme.example",), portal=True, slot="3m", audience="customer") -> dict:
    """A notice already sent by email to `emails` (and delivered to the portal inbox): ids by name."""
    with session_scope() as s:
        customer = s.exec(select(Customer).where(Customer.key == "acme")).one()
        m = s.exec(select(Milestone)).first()
        notice = Notice(
            key=f"stage:{customer.id}:{m.id}:{slot}:{audience}",
            customer_id=customer.id,
            milestone_id=m.id,
            release_id=m.release_id,
            kind="stage" if audience == "customer" else "escalation",
            audience=audience,
            slot=slot,
            milestone_date=m.date,
            due_at=T,
            status="sent",
            created_at=T,
            released_at=T,
            sent_at=T,
        )
        s.add(notice)
        s.flush()
        ids = {"notice": notice.id, "customer": customer.id, "milestone": m.id}
        for address in emails:
            contact = s.exec(select(Contact).where(Contact.email == address)).first()
            d = Delivery(
                notice_id=notice.id,
                customer_id=customer.id,
                channel="email",
                recipient=address,
                contact_id=contact.id if contact else None,
                status="sent",
                attempts=1,
                next_attempt_at=T,
                provider_id=f"sg-{address}",
                created_at=T,
                sent_at=T,
                updated_at=T,
            )
            s.add(d)
            s.flush()
            ids[address] = d.id
        if portal:
            d = Delivery(
                notice_id=notice.id,
                customer_id=customer.id,
                channel="portal",
                recipient="acme",
                status="delivered",
                attempts=1,
                next_attempt_at=T,
                created_at=T,
                sent_at=T + dt.timedelta(seconds=1),
                updated_at=T,
            )
            s.add(d)
            s.flush()
            ids["portal"] = d.id
    return ids


def event(kind, delivery_ids, email="ops@acme.example", sg_event_id=None, **extra) -> dict:
    return {
        "email": email,
        "timestamp": int(time.time()),
        "event": kind,
        "sg_event_id": sg_event_id or f"{kind}-{delivery_ids}-{email}",
        "sg_message_id": "abc.filter0001",
        "delivery_ids": str(delivery_ids),
        **extra,
    }


def bounce(delivery_ids, email="ops@acme.example", **extra) -> dict:
    return event(
        "bounce",
        delivery_ids,
        email,
        reason="550 5.1.1 The email account does not exist",
        status="5.1.1",
        type="bounce",
        **extra,
    )


def counts(response) -> dict:
    """The non-zero counts of a webhook answer."""
    assert response.status_code == 200, response.text
    return {k: v for k, v in response.json().items() if v}


def get(model, id_):
    with session_scope() as s:
        return s.get(model, id_)


def all_rows(model):
    with session_scope() as s:
        return list(s.exec(select(model).order_by(model.id)).all())


def bounce_notices():
    return [n for n in all_rows(Notice) if n.kind == "bounce"]


def snapshot():
    return [
        (type(r).__name__, r.model_dump())
        for m in (Notice, Delivery, Contact, WebhookEvent)
        for r in all_rows(m)
    ]


# ------------------------------------------------------------------------------------------ the tests


def test_a_signed_delivered_event_marks_the_email_delivered(db, client):
    setup_customer()
    ids = sent_notice()
    r = post(client, [event("delivered", ids["ops@acme.example"])])
    assert r.status_code == 200, r.text
    assert counts(r) == {"received": 1, "recorded": 1, "delivered": 1}
    assert get(Delivery, ids["ops@acme.example"]).status == "delivered"
    [seen] = all_rows(WebhookEvent)
    assert seen.event == "delivered" and seen.delivery_id == ids["ops@acme.example"]


def test_a_bounce_flags_the_contact_marks_the_delivery_and_alerts_the_rep_once(db, client):
    setup_customer()
    ids = sent_notice()
    r = post(client, [bounce(ids["ops@acme.example"])])
    assert r.status_code == 200, r.text
    assert r.json()["bounced"] == 1 and r.json()["alerts"] == 1
    d = get(Delivery, ids["ops@acme.example"])
    assert d.status == "bounced" and "550 5.1.1 The email account does not exist" in d.error
    [contact] = all_rows(Contact)
    assert contact.undeliverable and "account does not exist" in contact.undeliverable_reason
    [alert] = bounce_notices()
    assert (alert.audience, alert.status, alert.slot) == ("rep", "planned", str(d.id))
    assert alert.key == f"bounce:{ids['customer']}:{ids['milestone']}:{d.id}"
    assert alert.milestone_id == ids["milestone"] and alert.customer_id == ids["customer"]
    assert alert.detail.startswith("ops@acme.example: ")
    assert contact.undeliverable_at is not None
    # The rep hears of it in their next daily digest (09:00 UTC for a rep without settings).
    assert alert.due_at == policy.digest_due(contact.undeliverable_at, "UTC")
    assert dt.timedelta(0) <= alert.due_at - contact.undeliverable_at <= dt.timedelta(days=1)


def test_a_notice_delivered_to_the_portal_stays_given_after_its_email_bounces(db, client):
    setup_customer()
    ids = sent_notice()
    post(client, [bounce(ids["ops@acme.example"])])
    notice = get(Notice, ids["notice"])
    assert notice.status == "sent"
    assert notice.sent_at == T + dt.timedelta(seconds=1)  # now the portal delivery is the first given
    assert get(Delivery, ids["portal"]).status == "delivered"


def test_a_notice_whose_only_delivery_bounced_is_no_longer_given(db, client):
    setup_customer()
    ids = sent_notice(portal=False)
    post(client, [event("dropped", ids["ops@acme.example"], reason="Bounced Address")])
    notice = get(Notice, ids["notice"])
    assert notice.status == "failed" and notice.sent_at is None
    d = get(Delivery, ids["ops@acme.example"])
    assert d.status == "failed" and d.error == "Bounced Address"
    [contact] = all_rows(Contact)
    assert contact.undeliverable and contact.undeliverable_reason == "Bounced Address"
    assert len(bounce_notices()) == 1


def test_a_notice_stays_given_while_another_email_was_accepted(db, client):
    setup_customer(emails=("ops@acme.example", "cto@acme.example"))
    ids = sent_notice(emails=("ops@acme.example", "cto@acme.example"), portal=False)
    post(client, [bounce(ids["ops@acme.example"])])
    assert get(Notice, ids["notice"]).status == "sent"
    contacts = {c.email: c.undeliverable for c in all_rows(Contact)}
    assert contacts == {"ops@acme.example": True, "cto@acme.example": False}


def test_a_digest_bounce_fails_every_delivery_it_carried_and_alerts_for_each(db, client):
    setup_customer()
    a = sent_notice(slot="6m")
    b = sent_notice(slot="3m")
    ids = f"{a['ops@acme.example']},{b['ops@acme.example']}"
    r = post(client, [bounce(ids)])
    assert r.json()["bounced"] == 2 and r.json()["alerts"] == 2
    assert {get(Delivery, x["ops@acme.example"]).status for x in (a, b)} == {"bounced"}
    assert sorted(n.slot for n in bounce_notices()) == sorted(
        [str(a["ops@acme.example"]), str(b["ops@acme.example"])]
    )


def test_a_repeated_event_changes_nothing_the_second_time(db, client):
    setup_customer()
    ids = sent_notice()
    events = [bounce(ids["ops@acme.example"]), event("open", ids["ops@acme.example"])]
    assert post(client, events).status_code == 200
    before = snapshot()
    r = post(client, events)
    assert r.status_code == 200
    assert counts(r) == {"received": 2, "duplicates": 2}
    assert snapshot() == before
    assert len(bounce_notices()) == 1


def test_a_second_failure_event_for_the_same_delivery_does_not_alert_again(db, client):
    setup_customer()
    ids = sent_notice()
    post(client, [bounce(ids["ops@acme.example"])])
    r = post(client, [event("dropped", ids["ops@acme.example"], reason="Bounced Address")])
    assert counts(r) == {"received": 1, "recorded": 1}
    assert get(Delivery, ids["ops@acme.example"]).status == "bounced"
    assert len(bounce_notices()) == 1


def test_a_bounced_alert_to_the_rep_does_not_alert_the_rep_again(db, client):
    setup_customer()
    ids = sent_notice(emails=("rep@vendor.example",), portal=False, audience="rep")
    r = post(client, [bounce(ids["rep@vendor.example"], email="rep@vendor.example")])
    assert counts(r) == {"received": 1, "recorded": 1, "bounced": 1}
    assert bounce_notices() == []


def test_engagement_and_progress_events_are_recorded_and_change_nothing(db, client):
    setup_customer()
    ids = sent_notice()
    d = ids["ops@acme.example"]
    before = snapshot()
    r = post(client, [event(k, d) for k in ("processed", "deferred", "open", "click")])
    assert counts(r) == {"received": 4, "recorded": 4}
    assert [e.event for e in all_rows(WebhookEvent)] == ["processed", "deferred", "open", "click"]
    assert [x for x in snapshot() if x[0] != "WebhookEvent"] == before


def test_events_for_unknown_deliveries_or_other_addresses_are_recorded_but_apply_to_nothing(db, client):
    setup_customer()
    ids = sent_notice()
    r = post(
        client,
        [
            bounce(999999, sg_event_id="x1"),
            bounce(ids["ops@acme.example"], email="x@y.example"),
            {"event": "bounce", "email": "ops@acme.example", "sg_event_id": "no-args"},
            {"event": "bounce", "delivery_ids": str(ids["ops@acme.example"])},
        ],
    )
    assert counts(r) == {"received": 4, "recorded": 3, "unmatched": 3, "invalid": 1}
    assert get(Delivery, ids["ops@acme.example"]).status == "sent"
    assert bounce_notices() == []


def test_an_event_without_an_email_settles_none_of_the_deliveries_it_lists(db, client):
    setup_customer(emails=("ops@acme.example", "cto@acme.example"))
    ids = sent_notice(emails=("ops@acme.example", "cto@acme.example"))
    listed = f"{ids['ops@acme.example']},{ids['cto@acme.example']}"
    r = post(client, [{**event("delivered", listed), "email": None}, {**bounce(listed), "email": ""}])
    assert counts(r) == {"received": 2, "recorded": 2, "unmatched": 2}
    assert {get(Delivery, ids[a]).status for a in ("ops@acme.example", "cto@acme.example")} == {"sent"}
    assert not any(c.undeliverable for c in all_rows(Contact)) and bounce_notices() == []


def unknown_email(ids: dict, address: str = "ops@acme.example", status: str = "unknown") -> None:
    """Make the email delivery one whose outcome was lost (a timeout after the request was written)."""
    with session_scope() as s:
        d = s.get(Delivery, ids[address])
        d.status, d.provider_id, d.sent_at = status, None, None
        d.send_started_at, d.claim_token, d.error = T, "a" * 32, "SendGrid outcome unknown"
        s.add(d)


def test_a_processed_event_settles_an_unknown_email_as_sent_with_sendgrids_message_id(db, client):
    setup_customer()
    ids = sent_notice(portal=False)
    unknown_email(ids)
    with session_scope() as s:
        from lifecycle.delivery import settle_notices

        settle_notices(s, [ids["notice"]])
    assert get(Notice, ids["notice"]).status == "released"  # unknown: not delivered, not failed
    r = post(client, [event("processed", ids["ops@acme.example"], sg_message_id="XyZ123.filter0001.16.0")])
    assert counts(r) == {"received": 1, "recorded": 1, "settled": 1}
    d = get(Delivery, ids["ops@acme.example"])
    assert (d.status, d.provider_id, d.sent_at, d.error, d.claim_token) == ("sent", "XyZ123", T, None, None)
    notice = get(Notice, ids["notice"])
    assert (notice.status, notice.sent_at) == ("sent", T)


def test_a_delivered_event_settles_an_email_whose_worker_died_mid_send_as_delivered(db, client):
    setup_customer()
    ids = sent_notice(portal=False)
    unknown_email(ids, status="sending")
    r = post(client, [event("delivered", ids["ops@acme.example"])])
    assert counts(r) == {"received": 1, "recorded": 1, "settled": 1, "delivered": 1}
    assert get(Delivery, ids["ops@acme.example"]).status == "delivered"


@pytest.mark.parametrize("case", ["unsigned", "forged", "tampered", "stale", "future", "garbage signature"])
def test_an_unsigned_forged_tampered_or_stale_post_is_refused_and_changes_nothing(db, client, case):
    setup_customer()
    ids = sent_notice()
    events = [bounce(ids["ops@acme.example"])]
    raw = json.dumps(events).encode()
    now = int(time.time())
    if case == "unsigned":
        r = post(client, events, headers={"Content-Type": "application/json"})
    elif case == "forged":
        r = post(client, events, key=new_key()[0])
    elif case == "tampered":
        ts = str(now)
        r = post(
            client, events, body=raw.replace(b"bounce", b"open "), headers={SIG: sign(KEY, ts, raw), TS: ts}
        )
    elif case == "stale":
        r = post(client, events, timestamp=str(now - 601))
    elif case == "future":
        r = post(client, events, timestamp=str(now + 900))  # past the 600 s window however slow the server
    else:
        r = post(client, events, headers={SIG: "not base64!!", TS: str(now)})
    assert r.status_code == 401, r.text
    assert all_rows(WebhookEvent) == []
    assert get(Delivery, ids["ops@acme.example"]).status == "sent"
    assert not all_rows(Contact)[0].undeliverable and bounce_notices() == []


def test_a_signed_body_that_is_not_a_list_of_events_is_a_400(db, client):
    for body in (b'{"event": "bounce"}', b"not json", b"[1, 2]"):
        r = post(client, None, body=body)
        assert r.status_code == 400, body


def test_a_signed_body_nested_100000_deep_is_a_400_not_a_500(db, client):
    for body in (b"[" * 100_000 + b"]" * 100_000, b'[{"a": ' * 50_000 + b"1" + b"}]" * 50_000):
        r = post(client, None, body=body)
        assert r.status_code == 400 and "nested deeper than 64" in r.json()["detail"], r.text[:200]
    assert all_rows(WebhookEvent) == []


def test_an_oversized_body_is_refused_before_anything_else(db, client):
    r = post(client, None, body=b"[" + b" " * (6 * 1024 * 1024) + b"]")
    assert r.status_code == 413
    assert all_rows(WebhookEvent) == []


def test_without_a_configured_public_key_the_webhook_answers_503(db, monkeypatch):
    monkeypatch.delenv("LIFECYCLE_SENDGRID_WEBHOOK_PUBLIC_KEY", raising=False)
    reset_settings()
    with TestClient(create_app()) as c:
        r = post(c, [])
    assert r.status_code == 503 and "not configured" in r.json()["detail"]


def test_a_misconfigured_public_key_answers_503_not_500(db, monkeypatch):
    monkeypatch.setenv("LIFECYCLE_SENDGRID_WEBHOOK_PUBLIC_KEY", "bm90IGEga2V5")
    reset_settings()
    with TestClient(create_app()) as c:
        assert post(c, []).status_code == 503


def test_verify_accepts_a_pem_key_and_enforces_the_age_window_both_ways():
    pem = (
        KEY.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    body = b'[{"event":"open"}]'
    now = dt.datetime(2026, 6, 1, 12, tzinfo=dt.UTC)
    for offset, ok in ((0, True), (-300, True), (-301, False), (300, True), (301, False)):
        ts = str(int(now.timestamp()) + offset)
        assert verify(pem, body, sign(KEY, ts, body), ts, now=now, max_age=300) is ok, offset
    ts = str(int(now.timestamp()))
    assert not verify(PUBLIC, body, sign(KEY, ts, body), "abc", now=now, max_age=300)
    assert not verify(PUBLIC, body + b" ", sign(KEY, ts, body), ts, now=now, max_age=300)


def test_the_scheduler_emails_the_bounce_alert_to_the_account_rep(db, client):
    setup_customer()
    ids = sent_notice()
    post(client, [bounce(ids["ops@acme.example"])])
    [alert] = bounce_notices()
    w.run(alert.due_at)  # the rep's next daily digest
    [alert] = bounce_notices()
    assert alert.status == "sent"
    with session_scope() as s:
        [d] = s.exec(select(Delivery).where(Delivery.notice_id == alert.id)).all()
    assert (d.channel, d.recipient, d.status) == ("email", "rep@vendor.example", "sent")
