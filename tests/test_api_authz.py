"""Every API route, every role: the test lists the app's routes itself and fails on a route without an
expectation, so a new route cannot ship unchecked.

Roles: pm; `rep`, the account rep of the customer in the path (acme); `other_rep`, someone else's rep;
`customer`, acme itself; `foreign`, another customer (globex); no token; a revoked token. Outside a
principal's scope the answer is 404 (never 403) so that customer keys and ids do not leak; a role that
may not use a route at all gets 403 whatever the path names.
"""

from __future__ import annotations

import datetime as dt

import pytest
from fastapi.testclient import TestClient
from sqlmodel import select

from lifecycle import registry
from lifecycle.config import reset_settings
from lifecycle.db import session_scope
from lifecycle.models import Customer, Escalation, Milestone, Notice
from lifecycle.web.app import create_app
from tests import webworld

ROLES = ("pm", "rep", "other_rep", "customer", "foreign", "none", "revoked")


def expect(pm: int, rep: int, other_rep: int, customer: int, foreign: int) -> dict[str, int]:
    return {
        "pm": pm,
        "rep": rep,
        "other_rep": other_rep,
        "customer": customer,
        "foreign": foreign,
        "none": 401,
        "revoked": 401,
    }


EVERYONE = expect(200, 200, 200, 200, 200)
ACME_READ = expect(200, 200, 404, 200, 404)  # acme's data: pm, acme's rep and acme itself


def pm_only(ok: int) -> dict[str, int]:
    return expect(ok, 403, 403, 403, 403)


def _day(w, days: int) -> str:
    return (w.today + dt.timedelta(days=days)).isoformat()


def _remove_deployment(w) -> tuple[str, None]:
    """Each call removes a deployment that exists, so every role meets the same state."""
    with session_scope() as s:
        registry.add_deployment(
            s, customer="acme", product="acp", version="3.18", cores=8, at=dt.datetime.now(dt.UTC)
        )
    return "/api/customers/acme/deployments/acp/3.18", None


def _held_change(w) -> tuple[str, None]:
    """Each call makes a new change on hold, so every role meets one it could undo."""
    now = dt.datetime.now(dt.UTC)
    with session_scope() as s:
        change = registry.begin_change(
            s, action="move", summary="test", at=now, hold=dt.timedelta(minutes=10)
        )
        m = s.get(Milestone, w.ids["m_318"])
        registry.move_milestone(
            s, m, date=m.date + dt.timedelta(days=1), reason="test", at=now, change=change
        )
        change_id = change.id
    return f"/api/changes/{change_id}/undo", None


def _contact_to_remove(w) -> tuple[str, None]:
    """Each call adds the contact it removes."""
    with session_scope() as s:
        registry.upsert_contact(s, customer="acme", email="gone@acme.example", at=dt.datetime.now(dt.UTC))
    return "/api/customers/acme/contacts/gone@acme.example", None


def _escalation(w) -> int:
    """An escalation work item of acme's (made once)."""
    with session_scope() as s:
        found = s.exec(select(Escalation)).first()
        if found is None:
            now = dt.datetime.now(dt.UTC)
            notice = Notice(
                key="escalation:authz",
                customer_id=w.ids["acme"],
                milestone_id=w.ids["m_red"],
                release_id=w.ids["r314"],
                kind="escalation",
                audience="rep",
                slot="1m",
                due_at=now,
                status="sent",
                created_at=now,
            )
            s.add(notice)
            s.flush()
            found = Escalation(
                notice_id=notice.id,
                customer_id=w.ids["acme"],
                milestone_id=w.ids["m_red"],
                release_id=w.ids["r314"],
                owner=webworld.ALICE,
                created_at=now,
                updated_at=now,
            )
            s.add(found)
            s.flush()
        return found.id


def _channel(w) -> int:
    """A channel subscription of acme's (each call a new one: removing it must find one)."""
    from lifecycle.channels import subscriptions

    with session_scope() as s:
        acme = s.exec(select(Customer).where(Customer.key == "acme")).one()
        row, _ = subscriptions.add(
            s, customer=acme, kind="teams", url="http://127.0.0.1:9/refused", at=dt.datetime.now(dt.UTC)
        )
        return row.id


# (method, path template) -> (expected status per role, request builder(world) -> (url, json body))
ROUTES = {
    ("GET", "/api/me"): (EVERYONE, lambda w: ("/api/me", None)),
    ("GET", "/api/products"): (EVERYONE, lambda w: ("/api/products", None)),
    ("POST", "/api/products"): (pm_only(201), lambda w: ("/api/products", {"slug": "new", "name": "New"})),
    ("GET", "/api/products/{slug}"): (EVERYONE, lambda w: ("/api/products/acp", None)),
    ("POST", "/api/products/{slug}/releases"): (
        pm_only(201),
        lambda w: ("/api/products/acp/releases", {"version": "3.20", "upgrade_to": "3.18"}),
    ),
    ("GET", "/api/milestones"): (EVERYONE, lambda w: ("/api/milestones", None)),
    ("POST", "/api/milestones"): (
        pm_only(201),
        lambda w: (
            "/api/milestones",
            {"product": "acp", "version": "3.18", "kind": "end-of-sale", "date": _day(w, 500)},
        ),
    ),
    ("POST", "/api/milestones/{milestone_id}/move"): (
        pm_only(200),
        lambda w: (f"/api/milestones/{w.ids['m_318']}/move", {"date": _day(w, 950), "reason": "later"}),
    ),
    ("POST", "/api/milestones/{milestone_id}/withdraw"): (
        pm_only(200),
        lambda w: (f"/api/milestones/{w.ids['m_mesh']}/withdraw", {"reason": "not happening"}),
    ),
    ("POST", "/api/import"): (
        pm_only(200),
        lambda w: ("/api/import", {"products": [{"slug": "acp", "name": "Alauda Container Platform"}]}),
    ),
    ("GET", "/api/changes"): (pm_only(200), lambda w: ("/api/changes", None)),
    ("POST", "/api/changes/{change_id}/undo"): (pm_only(200), _held_change),
    ("GET", "/api/customers"): (EVERYONE, lambda w: ("/api/customers", None)),
    ("GET", "/api/customers/{key}"): (ACME_READ, lambda w: ("/api/customers/acme", None)),
    ("GET", "/api/customers/{key}/deployments"): (
        ACME_READ,
        lambda w: ("/api/customers/acme/deployments", None),
    ),
    ("POST", "/api/customers/{key}/deployments"): (
        expect(201, 201, 404, 403, 403),
        lambda w: ("/api/customers/acme/deployments", {"product": "acp", "version": "3.18", "cores": 8}),
    ),
    ("DELETE", "/api/customers/{key}/deployments/{product}/{version}"): (
        expect(200, 200, 404, 403, 403),
        _remove_deployment,
    ),
    ("GET", "/api/customers/{key}/agreements"): (
        ACME_READ,
        lambda w: ("/api/customers/acme/agreements", None),
    ),
    ("POST", "/api/customers/{key}/agreements"): (
        expect(201, 201, 404, 201, 404),
        lambda w: (
            "/api/customers/acme/agreements",
            {"product": "acp", "version": "3.16", "status": "acknowledged"},
        ),
    ),
    ("GET", "/api/customers/{key}/inbox"): (ACME_READ, lambda w: ("/api/customers/acme/inbox", None)),
    ("GET", "/api/customers/{key}/inbox/{message_id}"): (
        ACME_READ,
        lambda w: (f"/api/customers/acme/inbox/{w.ids['msg_acme']}", None),
    ),
    ("POST", "/api/customers/{key}/inbox/{message_id}/read"): (
        expect(403, 403, 403, 200, 404),
        lambda w: (f"/api/customers/acme/inbox/{w.ids['msg_acme']}/read", None),
    ),
    ("GET", "/api/customers/{key}/calendar"): (ACME_READ, lambda w: ("/api/customers/acme/calendar", None)),
    ("GET", "/api/reports/agreements"): (
        expect(200, 200, 200, 403, 403),
        lambda w: ("/api/reports/agreements", None),
    ),
    ("GET", "/api/reports/compliance"): (pm_only(200), lambda w: ("/api/reports/compliance", None)),
    ("POST", "/api/customers/{key}/inbox/read-all"): (
        expect(403, 403, 403, 200, 404),
        lambda w: ("/api/customers/acme/inbox/read-all", None),
    ),
    ("POST", "/api/customers/{key}/calendar/rotate"): (
        ACME_READ,
        lambda w: ("/api/customers/acme/calendar/rotate", None),
    ),
    ("GET", "/api/customers/{key}/contacts"): (ACME_READ, lambda w: ("/api/customers/acme/contacts", None)),
    ("POST", "/api/customers/{key}/contacts"): (
        expect(201, 201, 404, 403, 403),
        lambda w: ("/api/customers/acme/contacts", {"email": "new@acme.example"}),
    ),
    ("DELETE", "/api/customers/{key}/contacts/{email}"): (
        expect(200, 200, 404, 403, 403),
        _contact_to_remove,
    ),
    ("GET", "/api/customers/{key}/channels"): (ACME_READ, lambda w: ("/api/customers/acme/channels", None)),
    ("POST", "/api/customers/{key}/channels"): (
        expect(201, 201, 404, 201, 404),
        lambda w: (
            "/api/customers/acme/channels",
            {"kind": "slack", "url": "https://hooks.slack.example/T/B/x"},
        ),
    ),
    ("POST", "/api/customers/{key}/channels/{channel_id}/test"): (
        expect(200, 200, 404, 200, 404),
        lambda w: (f"/api/customers/acme/channels/{_channel(w)}/test", None),
    ),
    ("DELETE", "/api/customers/{key}/channels/{channel_id}"): (
        expect(200, 200, 404, 200, 404),
        lambda w: (f"/api/customers/acme/channels/{_channel(w)}", None),
    ),
    ("GET", "/api/escalations"): (expect(200, 200, 200, 403, 403), lambda w: ("/api/escalations", None)),
    ("GET", "/api/escalations/{escalation_id}"): (
        expect(200, 200, 404, 403, 403),
        lambda w: (f"/api/escalations/{_escalation(w)}", None),
    ),
    ("PATCH", "/api/escalations/{escalation_id}"): (
        expect(200, 200, 404, 403, 403),
        lambda w: (f"/api/escalations/{_escalation(w)}", {"note": "called them"}),
    ),
    ("GET", "/api/reps"): (expect(200, 200, 200, 403, 403), lambda w: ("/api/reps", None)),
    ("PUT", "/api/reps/{email}"): (
        expect(200, 200, 404, 403, 403),
        lambda w: (f"/api/reps/{webworld.ALICE}", {"name": "Alice"}),
    ),
}


def api_routes(app) -> set[tuple[str, str]]:
    """(method, path) of every route under /api/, as the app itself lists them."""
    try:  # FastAPI >= 0.120 keeps included routers as lazy branches
        from fastapi.routing import iter_route_contexts

        contexts = list(iter_route_contexts(app.routes))
    except ImportError:
        contexts = app.routes
    found = set()
    for route in contexts:
        path = getattr(route, "path", "")
        if path.startswith("/api/"):
            found |= {(m, path) for m in (getattr(route, "methods", None) or ()) if m != "HEAD"}
    return found


def test_every_api_route_has_an_expectation_for_every_role():
    routes = api_routes(create_app())
    assert len(routes) >= 20
    assert routes - ROUTES.keys() == set(), "API routes without an authorization expectation"
    assert ROUTES.keys() - routes == set(), "expectations for routes that no longer exist"
    assert all(set(exp) == set(ROLES) for exp, _ in ROUTES.values())


def test_every_api_route_answers_every_role_as_expected(db, monkeypatch):
    monkeypatch.setenv("LIFECYCLE_RATE_LIMIT_BEARER", "1000")  # the revoked token fails on every route
    reset_settings()
    world = webworld.build()
    client = TestClient(create_app())
    wrong = []
    for (method, template), (expected, build) in sorted(ROUTES.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        for role in ROLES:
            url, body = build(world)
            response = client.request(method, url, json=body, headers=world.auth(role))
            if response.status_code != expected[role]:
                wrong.append(
                    f"{method} {template} as {role}: {response.status_code} (expected {expected[role]}) "
                    f"{response.text[:160]}"
                )
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("role", ["foreign", "other_rep"])
def test_ids_of_another_customers_messages_do_not_leak_through_ones_own_scope(sqlite_db, role):
    world = webworld.build()
    client = TestClient(create_app())
    own = "globex"
    response = client.get(f"/api/customers/{own}/inbox/{world.ids['msg_acme']}", headers=world.auth(role))
    assert response.status_code == 404
    missing = client.get(f"/api/customers/{own}/inbox/999999", headers=world.auth(role))
    assert missing.status_code == 404 and missing.json()["detail"].replace("999999", "X") == response.json()[
        "detail"
    ].replace(str(world.ids["msg_acme"]), "X")
    unknown_customer = client.get("/api/customers/no-such-customer", headers=world.auth(role))
    other_customer = client.get("/api/customers/acme", headers=world.auth(role))
    assert unknown_customer.status_code == other_customer.status_code == 404
