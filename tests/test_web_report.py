"""The agreements report (`lifecycle report agreements`, the API and the dashboard share one function)
and `lifecycle token create`."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json

from sqlmodel import select

from lifecycle import agreements, dashboard, registry
from lifecycle.db import session_scope
from lifecycle.models import ApiToken, Release
from lifecycle.tokens import hash_secret
from tests import webworld
from tests.conftest import utc

AT = utc(2027, 1, 1, 12)


def rows(**kw) -> list[tuple]:
    with session_scope() as s:
        return [
            (
                r["customer"],
                r["product"],
                r["version"],
                r["milestone"],
                r["days_left"],
                r["agreement"],
                r["risk"],
            )
            for r in dashboard.agreement_rows(s, at=AT, **kw)
        ]


def test_risk_is_red_under_a_month_amber_under_three_months_and_green_when_agreed(db):
    webworld.build(AT)
    assert rows() == [
        ("acme", "acp", "3.14", "end-of-life", 20, "none", "red"),
        ("acme", "acp", "3.16", "end-of-full-support", 60, "none", "amber"),
        ("globex", "acp", "3.16", "end-of-full-support", 60, "none", "amber"),
    ]
    with session_scope() as s:
        acme, globex = registry.get_customer(s, "acme"), registry.get_customer(s, "globex")
        r314, r316 = (s.exec(select(Release).where(Release.version == v)).one() for v in ("3.14", "3.16"))
        agreements.record(s, customer=acme, release=r314, status="declined", at=AT)
        agreements.record(s, customer=acme, release=r316, status="acknowledged", at=AT)
        agreements.record(
            s,
            customer=globex,
            release=r316,
            status="planned",
            target_version="3.18",
            at=AT,
            planned_date=dt.date(2027, 1, 20),
            by="Gina",
        )
    assert [(r[0], r[2], r[5], r[6]) for r in rows()] == [
        ("acme", "3.14", "declined", "red"),
        ("acme", "3.16", "acknowledged", "green"),
        ("globex", "3.16", "planned", "green"),
    ]
    with session_scope() as s:
        globex_row = dashboard.agreement_rows(s, at=AT, rep=webworld.BOB)
    assert [(r["target"], r["planned_date"], r["by"], r["cores"], r["channel"]) for r in globex_row] == [
        ("3.18", dt.date(2027, 1, 20), "Gina", 64, "cli")
    ]


def test_the_next_milestone_skips_past_withdrawn_and_removed_ones_and_counts_product_milestones(db):
    webworld.build(AT)
    with session_scope() as s:
        registry.add_deployment(s, customer="globex", product="mesh", version="1.0", cores=4, at=AT)
        registry.remove_deployment(s, customer="acme", product="acp", version="3.14", at=AT)
        amber = registry.get_milestone(s, "acp", "3.16", "end-of-full-support")
        registry.withdraw_milestone(s, amber, reason="dropped", at=AT)
    later = rows()
    assert ("acme", "acp", "3.14") not in [r[:3] for r in later]
    assert [r[:5] for r in later] == [
        ("acme", "acp", "3.16", "end-of-life", 300),
        ("globex", "acp", "3.16", "end-of-life", 300),
        ("globex", "mesh", "1.0", "end-of-sale", 400),
    ]
    with session_scope() as s:
        assert dashboard.agreement_rows(s, at=AT + dt.timedelta(days=1000)) == []
    assert rows(rep="ALICE@vendor.example") == [r for r in later if r[0] == "acme"]


def test_report_agreements_prints_json_csv_and_a_table(sqlite_db, cli):
    webworld.build(AT)
    as_json = cli("report", "agreements", "--at", "2027-01-01T12:00Z", "--json")
    assert as_json.code == 0, as_json
    data = json.loads(as_json.out)
    assert [(r["customer"], r["version"], r["days_left"], r["risk"], r["cores"]) for r in data] == [
        ("acme", "3.14", 20, "red", 128),
        ("acme", "3.16", 60, "amber", 256),
        ("globex", "3.16", 60, "amber", 64),
    ]
    as_csv = cli("report", "agreements", "--at", "2027-01-01T12:00Z", "--csv", "--rep", webworld.BOB)
    assert as_csv.code == 0, as_csv
    assert [(r["customer"], r["agreement"], r["risk"]) for r in csv.DictReader(io.StringIO(as_csv.out))] == [
        ("globex", "none", "amber")
    ]
    both = cli("report", "agreements", "--json", "--csv")
    assert both.code == 2 and "--csv" in both.err


def test_token_create_prints_the_secret_once_and_stores_only_its_hash(sqlite_db, cli):
    webworld.build(AT)
    made = cli("token", "create", "--role", "customer", "--customer", "globex", "--label", "Globex portal")
    assert made.code == 0, made
    secret = made.out.strip()
    assert secret.startswith("lc_") and len(secret) > 40
    with session_scope() as s:
        token = s.exec(select(ApiToken).where(ApiToken.token_hash == hash_secret(secret))).one()
        assert (token.role, token.label, token.rep_email) == ("customer", "Globex portal", None)
    wrong = cli("token", "create", "--role", "customer")
    assert wrong.code == 2 and "customer" in wrong.err
    unknown = cli("token", "create", "--role", "admin")
    assert unknown.code == 2 and "unknown role" in unknown.err


def test_token_list_never_shows_secrets_and_revoke_stops_a_token(sqlite_db, cli):
    world = webworld.build(AT)
    listed = cli("token", "list", "--json")
    assert listed.code == 0, listed
    tokens = json.loads(listed.out)
    assert [(t["role"], t["customer"], t["rep"]) for t in tokens][:3] == [
        ("pm", None, None),
        ("rep", None, webworld.ALICE),
        ("rep", None, webworld.BOB),
    ]
    assert not any(secret in listed.out for secret in world.secrets.values())
    customer = next(t for t in tokens if t["customer"] == "acme" and t["revoked_at"] is None)
    revoked = cli("token", "revoke", str(customer["id"]))
    assert revoked.code == 0, revoked
    from fastapi.testclient import TestClient

    from lifecycle.web.app import create_app

    assert TestClient(create_app()).get("/api/me", headers=world.auth("customer")).status_code == 401
