"""Web hardening: failed-attempt limits with audit events (login, bearer tokens, calendar tokens, ack
signatures), security headers on every response, idempotent acknowledgement posts, and acknowledgement
links closed by the same rule as the portal once a deployment is removed or its milestones withdrawn."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import re

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlmodel import select

from lifecycle import agreements, registry
from lifecycle.config import reset_settings
from lifecycle.db import session_scope
from lifecycle.links import ack_token
from lifecycle.models import Agreement, AgreementChange, AuditEvent, Customer, Milestone, Notice
from lifecycle.web import ratelimit
from lifecycle.web.app import create_app
from tests import webworld
from tests.test_ack import FORM, expired_link
from tests.test_web_pages import csrf_of, logged_in


@pytest.fixture
def world(sqlite_db):
    return webworld.build()


@pytest.fixture
def client():
    return TestClient(create_app())


def audit(action: str) -> list[AuditEvent]:
    with session_scope() as s:
        return list(
            s.exec(select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)).all()
        )


def limit(monkeypatch, kind: str, value: int) -> None:
    monkeypatch.setenv(f"LIFECYCLE_RATE_LIMIT_{kind.upper()}", str(value))
    reset_settings()


def link(world, release: str = "r316") -> str:
    with session_scope() as s:
        return f"/ack/{ack_token(s, world.ids['acme'], world.ids[release])}"


# ---------------------------------------------------------------------------------------- rate limits


def test_ten_wrong_logins_lock_the_address_out_with_429_and_each_is_audited_without_the_token(world, client):
    form = csrf_of(client.get("/login").text)
    for n in range(10):
        wrong = client.post("/login", data={"token": f"lc_guess_number_{n}", "csrf": form})
        assert wrong.status_code == 401
        form = csrf_of(wrong.text)
    locked = client.post("/login", data={"token": world.secrets["pm"], "csrf": form})  # even the right one
    assert locked.status_code == 429 and 0 < int(locked.headers["Retry-After"]) <= 60
    assert "Too many failed logins" in locked.text
    events = audit("auth.login.failed")
    assert len(events) == 10 and {e.subject for e in events} == {"testclient"}
    assert not any("lc_guess" in (e.detail or "") for e in events)
    assert json.loads(events[0].detail)["presented"] == hashlib.sha256(b"lc_guess_number_0").hexdigest()[:8]
    other_address = TestClient(create_app(), client=("10.1.2.3", 5000))
    assert other_address.get("/login").status_code == 200


def test_logging_in_correctly_is_never_counted(world, client):
    for _ in range(15):
        client.cookies.clear()
        form = csrf_of(client.get("/login").text)
        assert client.post("/login", data={"token": world.secrets["rep"], "csrf": form}).status_code == 200
    assert audit("auth.login.failed") == []


def test_unknown_bearer_tokens_are_limited_and_audited_but_good_tokens_from_elsewhere_are_not(
    world, client, monkeypatch
):
    limit(monkeypatch, "bearer", 3)
    for n in range(3):
        assert client.get("/api/me", headers={"Authorization": f"Bearer lc_wrong{n}"}).status_code == 401
    blocked = client.get("/api/me", headers=world.auth("pm"))
    assert blocked.status_code == 429 and "Retry-After" in blocked.headers
    assert len(audit("auth.bearer.failed")) == 3
    assert not any("lc_wrong" in (e.detail or "") for e in audit("auth.bearer.failed"))
    elsewhere = TestClient(create_app(), client=("10.9.9.9", 1234))
    assert elsewhere.get("/api/me", headers=world.auth("pm")).status_code == 200
    assert client.get("/api/me").status_code == 401  # no token at all is not a guess: still a plain 401


def test_polling_a_calendar_feed_is_never_limited_but_guessing_feed_tokens_is(world, client, monkeypatch):
    limit(monkeypatch, "calendar", 5)
    with session_scope() as s:
        token = s.get(Customer, world.ids["acme"]).calendar_token
    for _ in range(30):
        assert client.get(f"/calendars/customers/{token}.ics").status_code == 200
    for n in range(5):
        assert client.get(f"/calendars/customers/guess{n}.ics").status_code == 404
    assert client.get(f"/calendars/customers/{token}.ics").status_code == 429
    events = audit("calendar.token.failed")
    assert len(events) == 5 and not any("guess" in (e.detail or "") for e in events)


def test_forged_ack_links_are_limited_and_audited_but_expired_ones_are_not_counted(
    world, client, monkeypatch
):
    limit(monkeypatch, "ack", 3)
    old = expired_link(world)
    for _ in range(5):
        assert client.get(old).status_code == 410
    good = link(world)
    forged = good[:-4] + ("AAAA" if not good.endswith("AAAA") else "BBBB")
    for _ in range(3):
        assert client.post(forged, data=FORM).status_code == 400
    refused = client.get(good)
    assert (
        refused.status_code == 429
        and "Too many attempts" in refused.text
        and "Retry-After" in refused.headers
    )
    events = audit("ack.signature.failed")
    assert len(events) == 3 and not any(forged.rsplit("/", 1)[1] in (e.detail or "") for e in events)


def test_a_blocked_address_may_try_again_once_its_oldest_failure_leaves_the_window(sqlite_db):
    limits, at = ratelimit.Limits(), dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
    second = dt.timedelta(seconds=1)
    for n in range(10):
        limits.failed(ratelimit.LOGIN, "192.0.2.1", at + n * second)
    assert limits.retry_after(ratelimit.LOGIN, "192.0.2.1", at + 10 * second) == 50
    assert limits.retry_after(ratelimit.LOGIN, "192.0.2.2", at + 10 * second) is None  # another address
    assert limits.retry_after(ratelimit.BEARER, "192.0.2.1", at + 10 * second) is None  # another kind
    assert limits.retry_after(ratelimit.LOGIN, "192.0.2.1", at + 60 * second) is None


# ------------------------------------------------------------------------------------ security headers


def assert_hardened(response) -> str:
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    policy = response.headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in policy and "unsafe-eval" not in policy
    return policy


def test_every_kind_of_response_carries_a_content_security_policy_and_refuses_framing(world, client):
    with session_scope() as s:
        feed = s.get(Customer, world.ids["acme"]).calendar_token
    for path in (
        "/login",
        "/api/products",
        "/api/me",
        "/calendars/products/acp.ics",
        f"/calendars/customers/{feed}.ics",
        "/",
        "/no-such-page",
        "/healthz",
        "/openapi.json",
        link(world),
    ):
        response = client.get(path, headers=world.auth("pm"), follow_redirects=False)
        policy = assert_hardened(response)
        assert "script-src 'none'" in policy or "default-src 'none'" in policy, (path, policy)


def test_a_page_allows_only_its_own_style_block_by_nonce_and_no_script(world, client):
    page = client.get("/login")
    policy = assert_hardened(page)
    nonce = re.search(r'<style nonce="([^"]+)">', page.text).group(1)
    assert f"style-src 'self' 'nonce-{nonce}'" in policy and "script-src 'none'" in policy
    assert "<script" not in page.text
    assert nonce != re.search(r'<style nonce="([^"]+)">', client.get("/login").text).group(1)  # per response


def test_the_api_docs_keep_working_with_their_inline_script_allowed_by_hash(world, client):
    docs = client.get("/docs")
    assert docs.status_code == 200
    policy = assert_hardened(docs)
    inline = re.findall(r"<script(?![^>]*\bsrc=)[^>]*>(.*?)</script>", docs.text, re.S)
    assert inline  # Swagger UI starts from an inline script
    for body in inline:
        digest = base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()
        assert f"'sha256-{digest}'" in policy
    script_src = re.search(r"script-src ([^;]*)", policy).group(1)
    assert "unsafe-inline" not in script_src


def test_the_api_docs_load_nothing_from_another_site(world, client):
    docs = client.get("/docs")
    assert "https://" not in docs.text and "http://" not in docs.text
    assert "https:" not in docs.headers["content-security-policy"]
    for url in re.findall(r'(?:src|href)="([^"]+)"', docs.text):
        asset = client.get(url)
        assert asset.status_code == 200 and len(asset.content) > 500, url
    assert client.get("/docs/assets/swagger-ui.js.map").status_code == 404  # only what the page loads
    assert client.get("/redoc").status_code == 404  # ReDoc would need a CDN


# --------------------------------------------------------------------------- acknowledgements


def history_rows() -> int:
    with session_scope() as s:
        return s.exec(select(sa.func.count()).select_from(AgreementChange)).one()


def test_replaying_an_ack_post_changes_nothing_and_the_page_says_it_was_already_recorded(world, client):
    url = link(world)
    assert client.post(url, data=FORM, follow_redirects=False).headers["location"] == f"{url}?saved=1"
    with session_scope() as s:
        at_first = s.exec(select(Agreement)).one().at
    for _ in range(3):  # a replay, a double click, a reload that re-posts
        replay = client.post(url, data=dict(FORM, name="Someone Else"), follow_redirects=False)
        assert replay.headers["location"] == f"{url}?unchanged=1"
    assert history_rows() == 1 and len(audit("agreement.record")) == 1
    with session_scope() as s:
        assert s.exec(select(Agreement)).one().at == at_first
        assert len(s.exec(select(Notice).where(Notice.kind == "agreement")).all()) == 1
    page = client.get(f"{url}?unchanged=1")
    assert "already recorded" in page.text and "your plan is recorded" not in page.text
    changed = client.post(url, data=dict(FORM, feedback="Six months, please."), follow_redirects=False)
    assert changed.headers["location"] == f"{url}?saved=1" and history_rows() == 2


def withdraw_all_of_316(world) -> None:
    with session_scope() as s:
        for key in ("m_amber", "m_eol"):
            registry.withdraw_milestone(
                s, s.get(Milestone, world.ids[key]), reason="replaced", at=world_now()
            )


def world_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def test_an_ack_link_is_closed_once_every_milestone_of_its_release_is_withdrawn_as_in_the_portal(
    world, client
):
    url = link(world)
    with session_scope() as s:  # one withdrawn milestone of two: still open
        registry.withdraw_milestone(
            s, s.get(Milestone, world.ids["m_amber"]), reason="replaced", at=world_now()
        )
    assert client.get(url).status_code == 200
    withdraw_all_of_316(world)
    page = client.get(url)
    assert page.status_code == 410 and agreements.ALL_WITHDRAWN in page.text.replace("&#39;", "'")
    assert 'name="status"' not in page.text  # no form
    posted = client.post(url, data=FORM)
    assert posted.status_code == 410 and history_rows() == 0

    portal, csrf = logged_in(world, "customer")
    release = re.search(
        rf'<section class="card" id="release-{world.ids["r316"]}">(.*?)</section>',
        portal.get("/portal").text,
        re.S,
    ).group(1)
    assert agreements.ALL_WITHDRAWN in release and "agreement-form" not in release
    refused = portal.post("/portal/agreements", data=dict(FORM, csrf=csrf, release_id=world.ids["r316"]))
    assert refused.status_code == 409 and agreements.ALL_WITHDRAWN in refused.text and history_rows() == 0


def test_an_ack_link_is_closed_once_the_deployment_is_removed_with_the_portals_words(world, client):
    url = link(world)
    with session_scope() as s:
        registry.remove_deployment(s, customer="acme", product="acp", version="3.16", at=world_now())
    page = client.get(url)
    assert page.status_code == 410 and "You do not run this release." in page.text
    assert client.post(url, data=FORM).status_code == 410 and history_rows() == 0
    portal, csrf = logged_in(world, "customer")
    refused = portal.post("/portal/agreements", data=dict(FORM, csrf=csrf, release_id=world.ids["r316"]))
    assert refused.status_code == 404 and "You do not run this release." in refused.text


def test_the_api_and_the_cli_follow_the_same_rule(world, client, cli):
    with session_scope() as s:
        registry.remove_deployment(s, customer="acme", product="acp", version="3.16", at=world_now())
    api = client.post(
        "/api/customers/acme/agreements",
        headers=world.auth("rep"),
        json={"product": "acp", "version": "3.16", "status": "acknowledged"},
    )
    assert api.status_code == 422 and "does not run release" in api.text
    withdraw_all_of_316(world)
    result = cli("ack", "globex", "acp", "3.16", "--status", "acknowledged")
    assert result.code == 2 and "every milestone of release '3.16' is withdrawn" in result.err
    assert history_rows() == 0
