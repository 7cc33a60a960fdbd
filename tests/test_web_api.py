"""The JSON API's behaviour: scoped lists, the short-notice guard as 409, clear 422s naming the field,
agreements by phone, the inbox, imports, tokens. (Which role may call which route: test_api_authz.)"""

from __future__ import annotations

import datetime as dt

import pytest
from fastapi.testclient import TestClient
from sqlmodel import select

from lifecycle.config import reset_settings
from lifecycle.db import session_scope
from lifecycle.models import Agreement, ApiToken, Milestone, Product
from lifecycle.tokens import hash_secret
from lifecycle.web.app import create_app
from tests import webworld


@pytest.fixture
def world(db):
    return webworld.build()


@pytest.fixture
def client():
    return TestClient(create_app())


def day(world, n: int) -> str:
    return (world.today + dt.timedelta(days=n)).isoformat()


def test_lists_and_reports_hold_only_the_callers_customers(world, client):
    keys = {
        who: [c["key"] for c in client.get("/api/customers", headers=world.auth(who)).json()["customers"]]
        for who in ("pm", "rep", "other_rep", "customer", "foreign")
    }
    assert keys == {
        "pm": ["acme", "globex"],
        "rep": ["acme"],
        "other_rep": ["globex"],
        "customer": ["acme"],
        "foreign": ["globex"],
    }
    rep_rows = client.get("/api/reports/agreements", headers=world.auth("rep")).json()["rows"]
    assert {r["customer"] for r in rep_rows} == {"acme"}
    # A rep cannot widen their report by asking for another rep's customers.
    assert (
        client.get(f"/api/reports/agreements?rep={webworld.BOB}", headers=world.auth("rep")).json()["rows"]
        == rep_rows
    )
    bob = client.get(f"/api/reports/agreements?rep={webworld.BOB}", headers=world.auth("pm")).json()["rows"]
    assert [(r["customer"], r["version"], r["risk"], r["cores"]) for r in bob] == [
        ("globex", "3.16", "amber", 64)
    ]
    assert client.get("/api/reports/agreements?customer=globex", headers=world.auth("rep")).status_code == 404


def test_a_short_notice_move_is_refused_with_409_and_the_reason_then_allowed_with_one(world, client):
    url = f"/api/milestones/{world.ids['m_eol']}/move"
    refused = client.post(url, json={"date": day(world, 70), "reason": "security"}, headers=world.auth("pm"))
    assert refused.status_code == 409
    detail = refused.json()["detail"][0]
    assert detail["loc"] == ["body", "date"] and "less than 3 months" in detail["msg"]
    with session_scope() as s:
        assert s.get(Milestone, world.ids["m_eol"]).revision == 1
    moved = client.post(
        url,
        json={"date": day(world, 70), "reason": "security", "allow_short_notice": True},
        headers=world.auth("pm"),
    )
    assert moved.status_code == 200
    body = moved.json()
    assert (body["date"], body["revision"], body["change"]) == (day(world, 70), 2, "updated")
    assert body["history"][-1]["by"] == "PM" and body["history"][-1]["short_notice"] is True


@pytest.mark.parametrize(
    ("url", "body", "loc"),
    [
        (
            "/api/milestones",
            {"product": "acp", "version": "3.18", "kind": "end-of-days", "date": "2030-01-01"},
            ["body", "kind"],
        ),
        (
            "/api/milestones",
            {"product": "acp", "version": "3.18", "kind": "end-of-life", "date": "31/12/2030"},
            ["body", "date"],
        ),
        (
            "/api/milestones",
            {"product": "nope", "version": "3.18", "kind": "end-of-sale", "date": "2030-01-01"},
            ["body", "product"],
        ),
        (
            "/api/milestones",
            {"product": "acp", "version": "3.18", "kind": "end-of-life", "date": 1893369600},
            ["body", "date"],
        ),
        (
            "/api/milestones",
            {"product": "acp", "version": "3.18", "kind": "end-of-life", "date": "2030-01-01T00:00:00"},
            ["body", "date"],
        ),
        (
            "/api/milestones",
            {"product": "acp", "version": "3.18", "kind": "end-of-life", "date": "2030-W26"},
            ["body", "date"],
        ),
        ("/api/products", {"slug": "Bad Slug!", "name": "x"}, ["body", "slug"]),
        ("/api/products", {"slug": "ok", "name": "\u202eevil"}, ["body", "name"]),
        ("/api/products", {"slug": "ok", "name": "x", "colour": "red"}, ["body", "colour"]),
        (
            "/api/customers/acme/agreements",
            {"product": "acp", "version": "3.16", "status": "planned", "target": "9.9"},
            ["body", "target"],
        ),
        (
            "/api/customers/acme/agreements",
            {"product": "acp", "version": "3.16", "status": "maybe"},
            ["body", "status"],
        ),
        (
            "/api/customers/acme/deployments",
            {"product": "acp", "version": "3.16", "cores": -1},
            ["body", "cores"],
        ),
    ],
)
def test_bad_bodies_are_422_naming_the_field_and_change_nothing(sqlite_db, url, body, loc):
    world = webworld.build()
    client = TestClient(create_app())
    response = client.post(url, json=body, headers=world.auth("pm"))
    assert response.status_code == 422, response.text
    assert any(d["loc"][: len(loc)] == loc for d in response.json()["detail"]), response.json()
    with session_scope() as s:
        assert s.exec(select(Agreement)).all() == []
        assert {p.slug for p in s.exec(select(Product))} == {"acp", "mesh"}


def test_a_rep_records_an_agreement_by_phone_with_its_history(world, client):
    url = "/api/customers/acme/agreements"
    first = client.post(
        url, json={"product": "acp", "version": "3.14", "status": "acknowledged"}, headers=world.auth("rep")
    )
    assert first.status_code == 201
    second = client.post(
        url,
        json={
            "product": "acp",
            "version": "3.14",
            "status": "planned",
            "target": "3.18",
            "planned_date": day(world, 10),
            "by": "Ann (phone)",
        },
        headers=world.auth("rep"),
    )
    body = second.json()
    assert (body["status"], body["target"], body["channel"], body["by"]) == (
        "planned",
        "3.18",
        "phone",
        "Ann (phone)",
    )
    assert [(h["status"], h["channel"], h["by"]) for h in body["history"]] == [
        ("acknowledged", "phone", webworld.ALICE),
        ("planned", "phone", "Ann (phone)"),
    ]
    listed = client.get(url, headers=world.auth("customer")).json()
    assert [(a["version"], a["status"]) for a in listed] == [("3.14", "planned")]
    rows = client.get("/api/reports/agreements", headers=world.auth("rep")).json()["rows"]
    assert [(r["version"], r["agreement"], r["risk"]) for r in rows] == [
        ("3.14", "planned", "green"),
        ("3.16", "none", "amber"),
    ]


def test_a_customer_reads_their_inbox_and_marks_a_message_read(world, client):
    inbox = client.get("/api/customers/acme/inbox", headers=world.auth("customer")).json()
    assert (
        inbox["unread"] == 2
        and [m["subject"] for m in inbox["messages"]][-1] == "ACP 3.14 end of life in 20 days"
    )
    message = client.get(
        f"/api/customers/acme/inbox/{world.ids['msg_acme']}", headers=world.auth("customer")
    ).json()
    assert message["unread"] is True and "Dear customer" in message["body_html"]  # reading is not marking
    read = client.post(
        f"/api/customers/acme/inbox/{world.ids['msg_acme']}/read", headers=world.auth("customer")
    )
    assert read.status_code == 200 and read.json()["unread"] is False
    assert client.get("/api/customers/acme/inbox", headers=world.auth("customer")).json()["unread"] == 1
    calendar = client.get("/api/customers/acme/calendar", headers=world.auth("customer")).json()
    assert calendar["webcal"].startswith("webcal://") and calendar["url"].endswith(".ics")
    assert calendar["url"].split("://", 1)[1] == calendar["webcal"].split("://", 1)[1]


def test_an_import_through_the_api_is_all_or_nothing(world, client):
    ok = client.post(
        "/api/import",
        headers=world.auth("pm"),
        json={
            "products": [
                {
                    "slug": "kb",
                    "name": "Kube",
                    "releases": [{"version": "1.30", "milestones": {"end-of-life": day(world, 400)}}],
                }
            ]
        },
    )
    assert ok.status_code == 200, ok.text
    assert ok.json()["counts"]["milestones"]["created"] == 1
    bad = client.post(
        "/api/import",
        headers=world.auth("pm"),
        json={
            "products": [
                {
                    "slug": "kc",
                    "name": "Kube C",
                    "releases": [{"version": "1.0", "milestones": {"end-of-life": "soon"}}],
                },
                {
                    "slug": "kd",
                    "name": "Kube D",
                    "releases": [{"version": "1.0", "milestones": {"end-of-life": day(world, 10)}}],
                },
            ]
        },
    )
    assert bad.status_code == 422
    messages = [d["msg"] for d in bad.json()["detail"]]
    assert len(messages) == 2, messages
    with session_scope() as s:
        assert {p.slug for p in s.exec(select(Product))} == {"acp", "mesh", "kb"}


def test_tokens_are_stored_hashed_and_record_their_last_use(world, client):
    assert client.get("/api/me", headers=world.auth("rep")).json() == {
        "role": "rep",
        "customer": None,
        "rep": webworld.ALICE,
        "label": None,
    }
    with session_scope() as s:
        token = s.exec(select(ApiToken).where(ApiToken.token_hash == hash_secret(world.secrets["rep"]))).one()
        assert token.last_used_at is not None
        assert all(world.secrets["rep"] not in (t.token_hash, t.label) for t in s.exec(select(ApiToken)))
    assert client.get("/api/me", headers={"Authorization": "Basic abc"}).status_code == 401


def test_the_openapi_document_describes_the_api_and_its_bearer_auth(sqlite_db):
    client = TestClient(create_app())
    assert client.get("/docs").status_code == 200
    spec = client.get("/openapi.json").json()
    assert "/api/milestones/{milestone_id}/move" in spec["paths"]
    assert any(s.get("scheme") == "bearer" for s in spec["components"]["securitySchemes"].values())
    assert "MoveIn" in spec["components"]["schemas"]


def test_a_hostile_import_body_is_a_422_naming_where_never_a_500(world, client):
    auth = world.auth("pm")
    deep = b'{"products": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    cases = {
        "nested 100,000 deep": (deep, "application/json", "nested deeper than 64"),
        "duplicate keys": (
            b'{"products": [\n {"slug": "kx", "slug": "ky", "name": "K"}]}',
            "application/json",
            "body, line 2: duplicate key 'slug'",
        ),
        "a lone surrogate": (
            b'{"products": [{"slug": "kx", "name": "\\ud800"}]}',
            "application/json",
            "lone surrogate",
        ),
        "an alias bomb": (b"a: &a [x, x]\nb: [*a, *a]\n", "application/yaml", "are not allowed"),
        "a NUL byte": (b'{"products": [{"slug": "kx", "name": "K\x00"}]}', "application/json", "NUL"),
        "Infinity": (
            b'{"products": [], "customers": [{"key": "k", "name": Infinity}]}',
            "application/json",
            "finite",
        ),
        "a mapping where a name belongs": (
            b'{"products": [{"slug": "kx", "name": {"a": 1}}]}',
            "application/json",
            "expected text, got a mapping",
        ),
    }
    for case, (body, content_type, expect) in cases.items():
        r = client.post("/api/import", headers={**auth, "Content-Type": content_type}, content=body)
        assert r.status_code == 422, (case, r.status_code, r.text[:300])
        assert expect in r.text, (case, r.text[:300])
    ok = client.post(
        "/api/import",
        headers={**auth, "Content-Type": "application/yaml"},
        content=b"products:\n  - slug: ky\n    name: Kube Y\n",
    )
    assert ok.status_code == 200, ok.text
    with session_scope() as s:
        assert {p.slug for p in s.exec(select(Product))} == {"acp", "mesh", "ky"}


def test_an_import_body_over_the_size_limit_is_refused(world, client, monkeypatch):
    monkeypatch.setenv("LIFECYCLE_IMPORT_MAX_BYTES", "1000")
    reset_settings()
    r = client.post(
        "/api/import", headers=world.auth("pm"), json={"products": [{"slug": "kx", "name": "x" * 2000}]}
    )
    assert r.status_code == 413 and "LIFECYCLE_IMPORT_MAX_BYTES" in r.text
