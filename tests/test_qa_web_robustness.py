"""QA regressions for the HTTP side: inputs a person (or a script) can send that must get a clear 4xx,
never a 500, and must not poison pages or feeds for everybody else afterwards."""

from __future__ import annotations

import base64
import csv
import datetime as dt
import io
import re

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi.testclient import TestClient
from sqlmodel import select

from lifecycle import registry
from lifecycle.config import reset_settings
from lifecycle.db import session_scope
from lifecycle.links import ack_token
from lifecycle.models import Agreement
from lifecycle.web.app import create_app
from tests import webworld

HUGE = "99999999999999999999999"  # larger than any SQL integer


@pytest.fixture
def world(db):
    return webworld.build()


@pytest.fixture
def client():
    return TestClient(create_app(), raise_server_exceptions=False)


def csrf_of(html: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', html).group(1)


def logged_in(world, who: str) -> tuple[TestClient, str]:
    client = TestClient(create_app(), raise_server_exceptions=False)
    form = client.get("/login")
    login = client.post(
        "/login", data={"token": world.secrets[who], "csrf": csrf_of(form.text)}, follow_redirects=False
    )
    assert login.status_code == 303, login.text
    page = client.get("/portal" if who == "customer" else "/dashboard")  # not the registry: it is under test
    return client, csrf_of(page.text)


def test_ids_too_large_for_the_database_are_not_found_rather_than_a_crash(world, client):
    pm, customer = world.auth("pm"), world.auth("customer")
    answers = {
        "move": client.post(
            f"/api/milestones/{HUGE}/move", json={"date": "2031-01-01", "reason": "qa"}, headers=pm
        ),
        "withdraw": client.post(f"/api/milestones/{HUGE}/withdraw", json={"reason": "qa"}, headers=pm),
        "inbox message": client.get(f"/api/customers/acme/inbox/{HUGE}", headers=customer),
        "mark read": client.post(f"/api/customers/acme/inbox/{HUGE}/read", headers=customer),
    }
    statuses = {name: r.status_code for name, r in answers.items()}
    assert all(status in (404, 422) for status in statuses.values()), statuses


def test_a_core_count_too_large_for_the_database_is_refused_with_a_422(world, client):
    response = client.post(
        "/api/customers/acme/deployments",
        headers=world.auth("rep"),
        json={"product": "acp", "version": "3.18", "cores": 10**30},
    )
    assert response.status_code == 422, response.text


def test_web_forms_with_ids_too_large_for_the_database_do_not_crash(world):
    customer, csrf = logged_in(world, "customer")
    assert customer.get(f"/portal/notices/{HUGE}").status_code == 404
    posted = customer.post(
        "/portal/agreements", data={"csrf": csrf, "release_id": HUGE, "status": "acknowledged", "name": "QA"}
    )
    assert posted.status_code in (404, 422)
    pm, csrf = logged_in(world, "pm")
    moved = pm.post(
        "/registry/milestones/move",
        data={"csrf": csrf, "milestone": HUGE, "date": "2031-01-01", "reason": "qa"},
    )
    assert moved.status_code == 422


def test_a_lone_surrogate_in_a_json_body_is_a_client_error(world, client):
    response = client.post(
        "/api/products",
        content=b'{"slug": "qa", "name": "\\ud800"}',
        headers=world.auth("pm") | {"content-type": "application/json"},
    )
    assert 400 <= response.status_code < 500


def test_nul_characters_in_names_and_feedback_are_refused_or_stored_on_every_database(world, client):
    product = client.post("/api/products", json={"slug": "nul", "name": "a\u0000b"}, headers=world.auth("pm"))
    assert product.status_code in (201, 422), product.text
    with session_scope() as s:
        token = ack_token(s, world.ids["acme"], world.ids["r316"])
    ack = client.post(
        f"/ack/{token}",
        data={"status": "acknowledged", "name": "QA", "feedback": "a\x00b"},
        follow_redirects=False,
    )
    assert ack.status_code in (303, 422), ack.text


def test_a_milestone_on_the_last_day_of_year_9999_does_not_break_the_feeds_or_the_registry(world, client):
    pm = world.auth("pm")
    added = client.post(
        "/api/milestones",
        headers=pm,
        json={"product": "mesh", "version": "1.0", "kind": "end-of-life", "date": "9999-12-31"},
    )
    assert added.status_code in (201, 422)
    assert client.get("/calendars/products/mesh.ics").status_code == 200
    web, _ = logged_in(world, "pm")
    assert web.get("/registry").status_code == 200


def test_a_release_dated_in_year_9999_does_not_break_the_registry_page(world, client):
    released = client.post(
        "/api/products/mesh/releases",
        headers=world.auth("pm"),
        json={"version": "2.0", "released": "9999-12-31"},
    )
    assert released.status_code in (201, 422)
    web, _ = logged_in(world, "pm")
    assert web.get("/registry").status_code == 200


def test_moving_a_milestone_away_from_year_9999_leaves_the_registry_page_working(world):
    with session_scope() as s:  # a typo stored before dates were range-checked, then corrected
        m, _ = registry.add_milestone(
            s,
            product="mesh",
            version="1.0",
            kind="end-of-life",
            date=dt.date(2030, 1, 30),
            at=dt.datetime.now(dt.UTC),
        )
        m.date = dt.date(9999, 12, 31)
        s.add(m)
        s.flush()
        registry.move_milestone(s, m, date=dt.date(2030, 1, 31), reason="typo", at=dt.datetime.now(dt.UTC))
    web, _ = logged_in(world, "pm")
    assert web.get("/registry").status_code == 200


def test_the_dashboard_csv_does_not_hand_spreadsheet_formulas_to_excel(world):
    with session_scope() as s:
        customer = registry.get_customer(s, "acme")
        customer.name = '=HYPERLINK("http://evil.example","x")'
        s.add(customer)
    rep, _ = logged_in(world, "rep")
    rows = list(csv.DictReader(io.StringIO(rep.get("/dashboard.csv").content.decode("utf-8-sig"))))
    names = {r["customer_name"] for r in rows if r["customer"] == "acme"}
    assert names and not any(n[:1] in "=+-@" for n in names), names


def test_an_ack_link_refuses_an_upgrade_planned_in_the_past(world, client):
    with session_scope() as s:
        token = ack_token(s, world.ids["acme"], world.ids["r316"])
    response = client.post(
        f"/ack/{token}",
        data={"status": "planned", "target": "3.18", "planned_date": "2001-01-01", "name": "QA"},
        follow_redirects=False,
    )
    assert response.status_code == 422
    with session_scope() as s:
        assert s.exec(select(Agreement)).all() == []


def test_an_unsigned_webhook_post_with_an_absurd_timestamp_is_a_401_not_a_crash(sqlite_db, monkeypatch):
    private = ec.generate_private_key(ec.SECP256R1())
    der = private.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    monkeypatch.setenv("LIFECYCLE_SENDGRID_WEBHOOK_PUBLIC_KEY", base64.b64encode(der).decode())
    reset_settings()
    client = TestClient(create_app(), raise_server_exceptions=False)
    response = client.post(
        "/webhooks/sendgrid",
        content=b"[]",
        headers={
            "X-Twilio-Email-Event-Webhook-Signature": "abc",
            "X-Twilio-Email-Event-Webhook-Timestamp": "9" * 400,
        },
    )
    assert response.status_code == 401
