"""A consistent registry: a release's phases end in lifecycle order (end of sale <= end of full support
<= end of maintenance <= end of life) and no release outlives its product, checked by one rule
(`policy.order_violations`, `registry.order_problems`) on every path: CLI, API, web form, registry
import (refused, every violation by path) and endoflife.date import (recorded, with warnings)."""

from __future__ import annotations

import datetime as dt
import json
import re

import pytest
from fastapi.testclient import TestClient

from lifecycle import importing, policy, registry
from lifecycle.db import session_scope
from lifecycle.errors import InputError, InputErrors
from lifecycle.web.app import create_app
from tests import webworld
from tests.conftest import utc

D = dt.date
AT = utc(2026, 12, 1)


def _acp():
    with session_scope() as s:
        registry.upsert_product(s, slug="acp", name="ACP", at=AT)
        registry.upsert_release(s, product="acp", version="3.16", at=AT)
        registry.add_milestone(
            s, product="acp", version="3.16", kind="end-of-life", date=D(2028, 11, 30), at=AT
        )


def test_the_rule_lists_every_pair_out_of_order():
    found = policy.order_violations(
        {"end-of-sale": D(2029, 1, 1), "end-of-full-support": D(2028, 1, 1), "end-of-life": D(2028, 6, 30)}
    )
    assert [(v.earlier, v.later) for v in found] == [
        ("end-of-sale", "end-of-full-support"),
        ("end-of-sale", "end-of-life"),
    ]
    assert policy.order_violations({"end-of-sale": D(2028, 1, 1), "end-of-life": D(2028, 1, 1)}) == []
    [v] = policy.product_violations({"end-of-life": D(2028, 1, 1)}, {"end-of-life": D(2028, 6, 30)})
    assert v.scope == "product" and "outlive its product" in v.message()


def test_full_support_after_end_of_life_is_refused_naming_both_dates(db):
    _acp()
    with session_scope() as s, pytest.raises(InputError) as err:
        registry.add_milestone(
            s, product="acp", version="3.16", kind="end-of-full-support", date=D(2029, 3, 31), at=AT
        )
    assert err.value.field == "date"
    assert "end of full support (2029-03-31) is after end of life (2028-11-30)" in err.value.message
    with session_scope() as s:
        registry.add_milestone(
            s, product="acp", version="3.16", kind="end-of-full-support", date=D(2028, 3, 31), at=AT
        )
        m = registry.get_milestone(s, "acp", "3.16", "end-of-life")
        with pytest.raises(InputError):
            registry.move_milestone(s, m, date=D(2028, 1, 31), reason="earlier", at=AT)


def test_a_product_level_milestone_may_not_end_before_a_release_of_the_same_kind(db):
    _acp()
    with session_scope() as s, pytest.raises(InputError) as err:
        registry.add_milestone(s, product="acp", version=None, kind="end-of-life", date=D(2028, 6, 30), at=AT)
    assert (
        "acp 3.16: end of life of the release (2028-11-30) is after the product's end of life"
        in err.value.message
    )


def test_the_cli_refuses_out_of_order_dates_with_exit_2(db, cli):
    _acp()
    r = cli("milestone", "add", "acp", "3.16", "end-of-sale", "2029-01-31", "--at", "2026-12-01")
    assert r.code == 2 and "end of sale (2029-01-31) is after end of life (2028-11-30)" in r.err
    before = cli("milestone", "list", "--json", "--at", "2026-12-01").out
    r = cli(
        "milestone",
        "move",
        "acp",
        "3.16",
        "end-of-life",
        "2026-12-15",
        "--reason",
        "x",
        "--at",
        "2026-12-01",
        "--allow-short-notice",
    )
    assert r.code == 0  # no other phase to contradict
    assert cli("milestone", "list", "--json", "--at", "2026-12-01").out != before


def test_the_api_answers_422_naming_the_date(db):
    world = webworld.build()
    client = TestClient(create_app())
    r = client.post(
        "/api/milestones",
        headers=world.auth("pm"),
        json={
            "product": "acp",
            "version": "3.16",
            "kind": "end-of-sale",
            "date": (world.today + dt.timedelta(days=400)).isoformat(),
        },
    )
    assert r.status_code == 422
    detail = r.json()["detail"][0]
    assert (
        detail["loc"] == ["body", "date"]
        and "end of sale" in detail["msg"]
        and "is after end of" in detail["msg"]
    )


def test_the_web_form_refuses_it_too(sqlite_db):
    world = webworld.build()
    client = TestClient(create_app())
    form = client.get("/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', form.text).group(1)
    page = client.post("/login", data={"token": world.secrets["pm"], "csrf": csrf})
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
    late = (world.today + dt.timedelta(days=400)).isoformat()
    r = client.post(
        "/registry/milestones", data={"csrf": csrf, "scope": "acp|3.16", "kind": "end-of-sale", "date": late}
    )
    assert r.status_code == 422 and "is after end of" in r.text


def test_a_registry_import_lists_every_violation_by_path_and_writes_nothing(db):
    doc = {
        "products": [
            {
                "slug": "acp",
                "name": "ACP",
                "milestones": {"end-of-life": "2028-01-31"},
                "releases": [
                    {
                        "version": "3.16",
                        "milestones": {"end-of-full-support": "2029-03-31", "end-of-life": "2028-11-30"},
                    },
                    {
                        "version": "3.18",
                        "milestones": {"end-of-sale": "2027-06-30", "end-of-life": "2027-12-31"},
                    },
                ],
            }
        ]
    }
    with session_scope() as s, pytest.raises(InputErrors) as err:
        importing.import_registry(s, doc, at=AT, source="r.yaml")
    messages = {(e.field, e.message.split(":")[0]) for e in err.value.errors}
    assert ("products[0].releases[0].milestones.end-of-life", "acp 3.16") in messages
    assert ("products[0].milestones.end-of-life", "acp 3.16") in messages  # product ends before the release
    assert all(not f.startswith("products[0].releases[1]") for f, _ in messages)
    with session_scope() as s:
        assert registry.milestone_rows(s, AT) == []


def test_an_endoflife_import_records_upstream_order_as_published_and_warns(db, cli, tmp_path):
    data = {
        "result": {
            "name": "x",
            "label": "X",
            "releases": [
                {"name": "1", "releaseDate": "2025-01-01", "eoasFrom": "2029-01-31", "eolFrom": "2028-06-30"}
            ],
        }
    }
    path = tmp_path / "x.json"
    path.write_text(json.dumps(data))
    r = cli("import", path, "--format", "endoflife", "--product", "x", "--at", "2026-12-01", "--json")
    assert r.code == 0, r
    out = json.loads(r.out)
    assert out["counts"]["milestones"]["created"] == 2
    assert "end of full support (2029-01-31) is after end of life (2028-06-30)" in out["warnings"][0]
    assert out["warnings"][0].startswith("result.releases[0].")
