"""The web pages without a browser: login and sessions, CSRF, role guards, the portal, the dashboard
and its CSV, the registry forms. (The full story in a real browser: test_browser.)"""

from __future__ import annotations

import csv
import datetime as dt
import io
import re

import pytest
from fastapi.testclient import TestClient
from sqlmodel import select

from lifecycle import escalations, tokens
from lifecycle.db import session_scope
from lifecycle.models import Agreement, ApiToken, Contact, InboxMessage, Milestone, Notice
from lifecycle.web.app import create_app
from lifecycle.web.pages import timeline
from tests import webworld


@pytest.fixture
def world(sqlite_db):
    return webworld.build()


def csrf_of(html: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', html).group(1)


def logged_in(world, who: str) -> tuple[TestClient, str]:
    """A client with a web session of `who`, and the session's CSRF secret."""
    client = TestClient(create_app())
    form = client.get("/login")
    page = client.post("/login", data={"token": world.secrets[who], "csrf": csrf_of(form.text)})
    assert page.status_code == 200, page.text
    return client, csrf_of(page.text)


def test_logging_in_with_a_token_leads_each_role_to_its_page(world):
    for who, path in (("customer", "/portal"), ("rep", "/dashboard"), ("pm", "/registry")):
        client = TestClient(create_app())
        form = client.get("/login")
        response = client.post(
            "/login", data={"token": world.secrets[who], "csrf": csrf_of(form.text)}, follow_redirects=False
        )
        assert response.status_code == 303 and response.headers["location"] == path
        cookie = response.headers["set-cookie"]
        assert "HttpOnly" in cookie and "samesite=lax" in cookie.lower()
        assert client.get("/", follow_redirects=False).headers["location"] == path


def test_a_wrong_or_revoked_token_or_a_forged_login_form_does_not_log_in(world):
    client = TestClient(create_app())
    form = client.get("/login")
    for secret in ("lc_nonsense", world.secrets["revoked"]):
        bad = client.post("/login", data={"token": secret, "csrf": csrf_of(form.text)})
        assert bad.status_code == 401 and "not known or has been revoked" in bad.text
    fresh = TestClient(create_app())  # no login cookie: a cross-site login attempt
    forged = fresh.post("/login", data={"token": world.secrets["pm"], "csrf": "guess"})
    assert forged.status_code == 401 and "expired" in forged.text
    assert fresh.get("/registry", follow_redirects=False).status_code == 303


def test_pages_send_a_visitor_without_a_session_to_the_login_and_back(world):
    client = TestClient(create_app())
    response = client.get("/dashboard?risk=red", follow_redirects=False)
    assert (
        response.status_code == 303
        and response.headers["location"] == "/login?next=%2Fdashboard%3Frisk%3Dred"
    )
    form = client.get(response.headers["location"])
    back = client.post(
        "/login",
        data={"token": world.secrets["rep"], "csrf": csrf_of(form.text), "next": "/dashboard?risk=red"},
        follow_redirects=False,
    )
    assert back.headers["location"] == "/dashboard?risk=red"
    client.cookies.clear()
    form = client.get("/login")
    away = client.post(
        "/login",
        data={"token": world.secrets["rep"], "csrf": csrf_of(form.text), "next": "//evil.example/"},
        follow_redirects=False,
    )
    assert away.headers["location"] == "/dashboard"


def test_each_role_sees_only_its_own_pages(world):
    customer, _ = logged_in(world, "customer")
    assert customer.get("/dashboard").status_code == 403
    assert customer.get("/registry").status_code == 403
    assert customer.get("/dashboard.csv", follow_redirects=False).status_code == 403
    rep, csrf = logged_in(world, "rep")
    assert rep.get("/portal").status_code == 403
    registry = rep.get("/registry")
    assert registry.status_code == 200 and 'id="move"' not in registry.text  # read-only for reps
    refused = rep.post(
        "/registry/milestones/withdraw", data={"csrf": csrf, "milestone": world.ids["m_eol"], "reason": "x"}
    )
    assert refused.status_code == 403


def test_a_tampered_cookie_or_a_revoked_token_ends_the_session(world):
    client, _ = logged_in(world, "customer")
    assert client.get("/portal").status_code == 200
    value = client.cookies.get("lifecycle_session")
    client.cookies.set("lifecycle_session", value[:-2] + ("AA" if not value.endswith("AA") else "BB"))
    assert client.get("/portal", follow_redirects=False).status_code == 303
    client, _ = logged_in(world, "customer")
    with session_scope() as s:
        token = s.exec(
            select(ApiToken).where(ApiToken.token_hash == tokens.hash_secret(world.secrets["customer"]))
        ).one()
        tokens.revoke_token(s, token.id, dt.datetime.now(dt.UTC))
    assert client.get("/portal", follow_redirects=False).status_code == 303


def test_forms_without_the_sessions_csrf_secret_change_nothing(world):
    pm, _ = logged_in(world, "pm")
    response = pm.post(
        "/registry/milestones/move",
        data={"csrf": "forged", "milestone": world.ids["m_eol"], "date": "2035-01-01", "reason": "x"},
    )
    assert response.status_code == 403 and "expired" in response.text
    customer, _ = logged_in(world, "customer")
    response = customer.post(
        "/portal/agreements", data={"release_id": world.ids["r314"], "status": "planned", "name": "Ann"}
    )
    assert response.status_code == 403
    with session_scope() as s:
        assert s.get(Milestone, world.ids["m_eol"]).revision == 1
        assert s.exec(select(Agreement)).all() == []


def test_logging_out_ends_the_session(world):
    client, csrf = logged_in(world, "pm")
    response = client.post("/logout", data={"csrf": csrf}, follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == "/login"
    assert client.get("/registry", follow_redirects=False).status_code == 303


def test_the_portal_counts_unread_notices_and_opening_one_marks_it_read(world):
    client, _ = logged_in(world, "customer")
    portal = client.get("/portal").text
    assert re.search(r'id="unread-count">2<', portal)
    assert "webcal://" in portal and "Globex" not in portal
    notice = client.get(f"/portal/notices/{world.ids['msg_acme']}")
    assert (
        notice.status_code == 200
        and "Dear customer" in notice.text
        and "<!doctype" not in notice.text.split("<main>")[1]
    )
    assert re.search(r'id="unread-count">1<', client.get("/portal").text)
    assert client.get(f"/portal/notices/{world.ids['msg_globex']}").status_code == 404
    with session_scope() as s:
        assert s.get(InboxMessage, world.ids["msg_globex"]).read_at is None


def test_the_portal_records_an_agreement_for_a_release_the_customer_runs_only(world):
    client, csrf = logged_in(world, "customer")
    form = {
        "csrf": csrf,
        "status": "planned",
        "target": "3.18",
        "planned_date": (world.today + dt.timedelta(days=10)).isoformat(),
        "name": "Ann",
    }
    bad = client.post(
        "/portal/agreements", data=dict(form, release_id=world.ids["r314"], email="not-an-email")
    )
    assert bad.status_code == 422 and "invalid email address" in bad.text
    foreign = client.post("/portal/agreements", data=dict(form, release_id=world.ids["r318"]))
    assert foreign.status_code == 404
    ok = client.post(
        "/portal/agreements", data=dict(form, release_id=world.ids["r314"]), follow_redirects=False
    )
    assert ok.status_code == 303
    with session_scope() as s:
        agreements = s.exec(select(Agreement)).all()
        assert [(a.release_id, a.status, a.channel, a.by) for a in agreements] == [
            (world.ids["r314"], "planned", "web", "Ann")
        ]
    assert "upgrade planned" in client.get(ok.headers["location"]).text


def test_the_dashboard_filters_by_customer_product_and_risk_and_exports_csv(world):
    with session_scope() as s:
        acme_contact = s.exec(select(Contact)).first()
        acme_contact.undeliverable, acme_contact.undeliverable_reason = True, "550 mailbox unknown"
        s.add(acme_contact)
        s.add(
            Notice(
                key="escalation:test",
                customer_id=world.ids["acme"],
                milestone_id=world.ids["m_red"],
                release_id=world.ids["r314"],
                kind="escalation",
                audience="rep",
                slot="1m",
                due_at=dt.datetime.now(dt.UTC),
                status="sent",
                created_at=dt.datetime.now(dt.UTC),
            )
        )
        escalations.sync(s, dt.datetime.now(dt.UTC))
    rep, _ = logged_in(world, "rep")
    page = rep.get("/dashboard").text
    # acme's only contact bounced: every row of theirs is red, whatever the dates say (soonest first).
    assert [m for m in re.findall(r'data-risk="(\w+)"', page)] == ["red", "red"]
    assert page.count("their only contact bounced") >= 2
    assert "550 mailbox unknown" in page and "ops@acme.example" in page
    assert 'id="escalations"' in page and "No escalations" not in page
    assert re.findall(r'data-risk="(\w+)"', rep.get("/dashboard?risk=red&product=acp").text) == ["red", "red"]
    assert re.findall(r'data-risk="(\w+)"', rep.get("/dashboard?product=mesh").text) == []
    exported = rep.get("/dashboard.csv?risk=red")
    assert exported.headers["content-type"].startswith("text/csv")
    assert "attachment" in exported.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(exported.content.decode("utf-8-sig"))))
    assert [
        (r["customer"], r["version"], r["days_left"], r["agreement"], r["cores"], r["risk"]) for r in rows
    ] == [("acme", "3.14", "20", "none", "128", "red"), ("acme", "3.16", "60", "none", "256", "red")]
    assert rows[0]["risk_reason"] == (
        "their only contact bounced: no email reaches them; "
        "no agreement, and the milestone is less than a month away"
    )
    assert rows[1]["risk_reason"] == "their only contact bounced: no email reaches them"
    assert (rows[0]["contacts"], rows[0]["bounced"], rows[0]["escalation_state"]) == ("1", "1", "open")
    pm, _ = logged_in(world, "pm")
    everyone = list(csv.DictReader(io.StringIO(pm.get("/dashboard.csv").content.decode("utf-8-sig"))))
    assert {r["customer"] for r in everyone} == {"acme", "globex"}
    only_bob = list(
        csv.DictReader(io.StringIO(pm.get(f"/dashboard.csv?rep={webworld.BOB}").content.decode("utf-8-sig")))
    )
    assert {r["customer"] for r in only_bob} == {"globex"}


def test_the_registry_forms_keep_the_short_notice_guard(world):
    pm, csrf = logged_in(world, "pm")
    soon = (world.today + dt.timedelta(days=70)).isoformat()  # after end of full support (60 days)
    refused = pm.post(
        "/registry/milestones/move",
        data={"csrf": csrf, "milestone": world.ids["m_eol"], "date": soon, "reason": "security"},
    )
    assert refused.status_code == 422 and "less than 3 months" in refused.text
    moved = pm.post(
        "/registry/milestones/move",
        data={
            "csrf": csrf,
            "milestone": world.ids["m_eol"],
            "date": soon,
            "reason": "security",
            "allow_short_notice": "true",
            "step": "confirm",
        },
    )
    assert moved.status_code == 200 and f"moved to {soon}" in moved.text
    added = pm.post(
        "/registry/milestones",
        data={
            "csrf": csrf,
            "scope": "mesh|1.0",
            "kind": "end-of-life",
            "date": (world.today + dt.timedelta(days=700)).isoformat(),
            "step": "confirm",
        },
    )
    assert "Service Mesh 1.0 · end of life on" in added.text and "added" in added.text
    withdrawn = pm.post(
        "/registry/milestones/withdraw",
        data={"csrf": csrf, "milestone": world.ids["m_mesh"], "reason": "", "step": "confirm"},
    )
    assert withdrawn.status_code == 422 and "Give a reason" in withdrawn.text
    with session_scope() as s:
        m = s.get(Milestone, world.ids["m_eol"])
        assert (m.date.isoformat(), m.revision, m.short_notice_reason) == (soon, 2, "security")
    assert pm.get("/registry?done=forged-message").status_code == 200
    assert "forged-message" not in pm.get("/registry?done=forged-message").text


def test_the_timeline_has_a_row_per_release_a_marker_per_milestone_and_today(world):
    with session_scope() as s:
        chart = timeline(s, dt.datetime.now(dt.UTC))
    assert [r["label"] for r in chart["rows"]] == [
        "Alauda Container Platform 3.14",
        "Alauda Container Platform 3.16",
        "Alauda Container Platform 3.18",
        "Service Mesh (all versions)",
        "Service Mesh 1.0",
    ]
    markers = {m["id"]: m for r in chart["rows"] for m in r["markers"]}
    assert len(markers) == 5
    assert markers[world.ids["m_red"]]["x"] > chart["today_x"] > chart["label_w"]
    assert {r["label"] for r in chart["legend"]} == {
        "end of sale",
        "end of full support",
        "end of maintenance",
        "end of life",
    }


def test_a_zh_cn_customer_reads_the_portal_in_chinese_and_reps_stay_in_english(world):
    with session_scope() as s:
        from lifecycle import registry

        acme = registry.get_customer(s, "acme")
        acme.locale = "zh-CN"
        s.add(acme)
    client, _ = logged_in(world, "customer")
    page = client.get("/portal").text
    assert "收件箱" in page and "您使用的版本" in page and "保存升级计划" in page and "生命周期终止" in page
    message_id = re.search(r'href="/portal/notices/(\d+)"', page).group(1)
    assert "← 收件箱" in client.get(f"/portal/notices/{message_id}").text
    rep, _ = logged_in(world, "rep")
    assert "Upgrade agreements" in rep.get("/dashboard").text


def test_logging_out_ends_the_session_on_the_server_too(world):
    client, csrf = logged_in(world, "customer")
    copied = client.cookies.get("lifecycle_session")
    assert copied
    assert client.post("/logout", data={"csrf": csrf}, follow_redirects=False).status_code == 303
    replay = TestClient(create_app())
    replay.cookies.set("lifecycle_session", copied)
    assert replay.get("/portal", follow_redirects=False).status_code == 303  # back to the login
    again, _ = logged_in(world, "customer")  # a new login right after works
    assert again.get("/portal").status_code == 200


def test_a_rep_records_an_agreement_reached_by_phone_on_the_dashboard(world):
    rep, csrf = logged_in(world, "rep")
    page = rep.get("/dashboard").text
    option = re.search(r'<option value="(acme\|\d+)">', page).group(1)
    done = rep.post(
        "/dashboard/agreements",
        data={
            "csrf": csrf,
            "deployment": option,
            "status": "planned",
            "target": "3.18",
            "planned_date": (world.today + dt.timedelta(days=10)).isoformat(),
            "feedback": "Agreed on the phone",
        },
    )
    assert done.status_code == 200 and "Recorded for ACME Bank" in done.text
    with session_scope() as s:
        [agreement] = s.exec(select(Agreement).where(Agreement.release_id == int(option.split("|")[1]))).all()
        assert (agreement.status, agreement.channel, agreement.target_version) == ("planned", "phone", "3.18")
        assert agreement.by == webworld.ALICE
    bad = rep.post("/dashboard/agreements", data={"csrf": csrf, "deployment": option, "status": "maybe"})
    assert bad.status_code == 422 and "status" in bad.text
    other, other_csrf = logged_in(world, "other_rep")  # not their customer
    assert (
        other.post(
            "/dashboard/agreements", data={"csrf": other_csrf, "deployment": option, "status": "planned"}
        ).status_code
        == 422
    )
