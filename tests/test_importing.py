"""Bulk import: the registry file and endoflife.date JSON — all or nothing, on SQLite and PostgreSQL."""

import copy
import datetime as dt
import json
from functools import cache

import pytest
import yaml

from lifecycle import importing, registry
from lifecycle.db import session_scope
from lifecycle.errors import InputError, InputErrors
from tests.conftest import DATA, ROOT, utc

AT = utc(2026, 12, 1)
EXAMPLE = ROOT / "examples" / "registry.yaml"
ENDOFLIFE = DATA / "endoflife"
FIXTURES = DATA / "import"


@cache
def _example_data() -> dict:
    return importing.load_file(EXAMPLE)


def example() -> dict:
    return copy.deepcopy(_example_data())


def run(data: dict, at=AT, source="registry.yaml", **kw) -> importing.ImportSummary:
    with session_scope() as s:
        return importing.import_registry(s, data, at=at, source=source, **kw)


def endoflife(file: str, product: str, at=AT, name=None, **kw) -> importing.ImportSummary:
    path = ENDOFLIFE / f"{file}.json" if (ENDOFLIFE / f"{file}.json").exists() else FIXTURES / f"{file}.json"
    with session_scope() as s:
        return importing.import_endoflife(
            s, importing.load_file(path), product=product, name=name, at=at, source=path.name, **kw
        )


def rows(at=AT) -> list[dict]:
    with session_scope() as s:
        return registry.milestone_rows(s, at)


def row(product: str, version: str | None, kind: str) -> dict:
    found = [r for r in rows() if (r["product"], r["version"], r["kind"]) == (product, version, kind)]
    assert len(found) == 1, f"{product} {version} {kind}: {len(found)} rows"
    return found[0]


def errors_of(exc: pytest.ExceptionInfo) -> list[str]:
    return [str(e) for e in exc.value.errors]


def milestone_of(data: dict, slug: str, version: str) -> dict:
    product = next(p for p in data["products"] if p["slug"] == slug)
    return next(r for r in product["releases"] if r["version"] == version)["milestones"]


# ------------------------------------------------------------------------------------- registry files


def test_the_example_imports_and_a_second_import_reports_no_changes(db):
    first = run(example())
    assert first.changed
    assert {e: c["created"] for e, c in first.counts.items()} == {
        "products": 3,
        "releases": 8,
        "milestones": 17,
        "customers": 6,
        "contacts": 7,
        "deployments": 11,
    }
    assert first.history == 3 and [m["milestone"] for m in first.short_notice] == ["amp 2.6 end-of-life"]

    second = run(example())
    assert not second.changed
    assert second.lines()[0].startswith("registry.yaml: no changes")
    assert all(c["created"] == c["updated"] == 0 for c in second.counts.values())
    assert all(r["revision"] == 1 for r in rows())


def test_a_json_file_imports_like_a_yaml_file(db):
    data = importing.load_file(FIXTURES / "registry.json")
    summary = run(data, source="registry.json")
    assert summary.counts["milestones"]["created"] == 4 and summary.counts["deployments"]["created"] == 1
    assert row("adp", "3.10", "end-of-life")["short_notice_reason"] == "storage engine CVE"
    assert row("adp", None, "end-of-sale")["date"] == "2028-03-31"
    assert not run(importing.load_file(FIXTURES / "registry.json"), source="registry.json").changed


def test_a_changed_date_becomes_a_move_with_revision_2_and_the_import_as_reason(db):
    run(example())
    data = example()
    milestone_of(data, "acp", "3.16")["end-of-life"] = dt.date(2027, 12, 31)
    summary = run(data)
    assert summary.counts["milestones"] == {"created": 0, "updated": 1, "unchanged": 16}
    assert summary.moves == [
        {
            "milestone": "acp 3.16 end-of-life",
            "from": "2027-09-30",
            "to": "2027-12-31",
            "revision": 2,
            "reason": "changed by import of registry.yaml",
        }
    ]
    moved = row("acp", "3.16", "end-of-life")
    assert moved["revision"] == 2 and moved["date"] == "2027-12-31"
    assert moved["history"][-1]["action"] == "moved" and moved["history"][-1]["old_date"] == "2027-09-30"
    assert moved["history"][-1]["reason"] == "changed by import of registry.yaml"


def test_a_date_changed_to_less_than_three_months_away_without_a_reason_is_refused(db):
    run(example())
    data = example()
    # End of sale moved from 2026-03-31 to 2027-01-31: still before full support, but short notice.
    milestone_of(data, "acp", "3.16")["end-of-sale"] = dt.date(2027, 1, 31)
    with pytest.raises(InputErrors) as err:
        run(data)
    assert len(err.value.errors) == 1
    assert errors_of(err)[0].startswith(
        "products[0].releases[1].milestones.end-of-sale: 2027-01-31 is less than 3 months after 2026-12-01"
    )
    assert "short_notice_reason" in errors_of(err)[0]
    assert row("acp", "3.16", "end-of-sale")["revision"] == 1

    milestone_of(data, "acp", "3.16")["end-of-sale"] = {
        "date": dt.date(2027, 1, 31),
        "short_notice_reason": "critical CVE",
    }
    run(data)
    moved = row("acp", "3.16", "end-of-sale")
    assert moved["revision"] == 2 and moved["short_notice_reason"] == "critical CVE"
    assert moved["history"][-1]["reason"] == "critical CVE" and moved["history"][-1]["short_notice"]


def test_a_new_milestone_less_than_three_months_away_needs_a_short_notice_reason(db):
    data = example()
    del milestone_of(data, "amp", "2.6")["end-of-life"]["short_notice_reason"]
    with pytest.raises(InputErrors) as err:
        run(data)
    assert [e.field for e in err.value.errors] == ["products[1].releases[0].milestones.end-of-life"]
    assert rows() == []


def test_a_milestone_in_the_database_but_absent_from_the_file_is_left_alone(db):
    run(example())
    data = example()
    del milestone_of(data, "acp", "3.16")["end-of-maintenance"]
    assert not run(data).changed
    assert row("acp", "3.16", "end-of-maintenance")["status"] == "planned"


def test_a_withdrawn_milestone_is_left_alone_by_a_reimport(db):
    run(example())
    with session_scope() as s:
        m = registry.get_milestone(s, "acp", "3.16", "end-of-life")
        registry.withdraw_milestone(s, m, reason="extended", at=AT)
    summary = run(example())
    assert not summary.changed and "withdrawn" in summary.notes[0]
    assert row("acp", "3.16", "end-of-life")["status"] == "withdrawn"


def test_an_unknown_timezone_is_named_by_its_path(db):
    data = example()
    data["customers"][3]["timezone"] = "Asia/Shangai"
    with pytest.raises(InputErrors) as err:
        run(data)
    assert errors_of(err)[0].startswith("customers[3].timezone: unknown timezone 'Asia/Shangai'")
    assert "customers[3].timezone: unknown timezone 'Asia/Shangai'" in str(err.value)


def test_every_error_in_the_file_is_listed_and_nothing_is_written(db):
    data = example()
    data["products"][0]["releases"][1]["milestones"]["end-of-lfe"] = dt.date(2028, 1, 1)
    data["products"][2]["releases"][0]["released"] = "2024-02-30"
    data["customers"][0]["locale"] = "fr"
    data["customers"][1]["servce"] = data["customers"][1].pop("service")
    data["customers"][2]["contacts"][0]["email"] = "not-an-email"
    data["customers"][4]["deployments"].append({"product": "acp", "version": "3.17"})
    data["customers"][5]["deployments"][0]["cores"] = -1
    with pytest.raises(InputErrors) as err:
        run(data)
    assert [e.field for e in err.value.errors] == [
        "products[0].releases[1].milestones.end-of-lfe",
        "products[2].releases[0].released",
        "customers[0].locale",
        "customers[1].servce",
        "customers[2].contacts[0].email",
        "customers[5].deployments[0].cores",
        "customers[4].deployments[2].version",
    ]
    assert "did you mean 'service'?" in str(err.value)
    assert "product 'acp' has no release '3.17'" in str(err.value)
    assert rows() == []
    with session_scope() as s:
        assert registry.upsert_product(s, slug="acp", name="x", at=AT)[1] == "created"


def test_duplicates_within_the_file_are_errors(db):
    data = example()
    data["products"].append(copy.deepcopy(data["products"][0]))
    data["products"][1]["releases"].append({"version": "2.8"})
    data["customers"][0]["contacts"].append({"email": "OPS@acme.example"})
    data["customers"][0]["deployments"].append({"product": "acp", "version": "3.16"})
    data["customers"].append({**data["customers"][1]})
    with pytest.raises(InputErrors) as err:
        run(data)
    assert errors_of(err) == [
        "products[1].releases[2].version: duplicate version '2.8' (also at products[1].releases[1])",
        "products[3].slug: duplicate product 'acp' (also at products[0])",
        "customers[0].contacts[2].email: duplicate contact 'ops@acme.example' (also at customers[0].contacts[0])",
        "customers[0].deployments[2].version: duplicate deployment 'acp 3.16' (also at customers[0].deployments[0])",
        "customers[6].key: duplicate customer 'globex' (also at customers[1])",
    ]


def test_a_yaml_float_version_is_refused(db):
    with pytest.raises(InputErrors) as err:
        run(importing.load_file(FIXTURES / "float_version.yaml"))
    assert errors_of(err) == [
        'products[0].releases[0].version: version 3.1 must be a quoted string (e.g. "3.1")'
    ]


def test_a_deployment_may_name_a_release_already_in_the_database_but_not_an_unknown_one(db):
    data = example()
    run({"products": data["products"]})
    summary = run({"customers": data["customers"]})
    assert summary.counts["deployments"]["created"] == 11
    with pytest.raises(InputErrors) as err:
        run({"customers": [{**data["customers"][0], "deployments": [{"product": "nope", "version": "1"}]}]})
    assert errors_of(err) == [
        "customers[0].deployments[0].product: no product 'nope' (add it to the file or register it first)"
    ]


def test_an_upgrade_target_must_be_a_release_of_the_product(db):
    data = example()
    data["products"][0]["releases"][0]["upgrade_to"] = "3.19"
    with pytest.raises(InputErrors) as err:
        run(data)
    assert [e.field for e in err.value.errors] == ["products[0].releases[0].upgrade_to"]


def test_progress_is_reported_for_every_row(db):
    seen = []
    run(example(), on_progress=lambda done, total: seen.append((done, total)))
    assert seen[-1] == (len(seen), len(seen)) and len(seen) == 3 + 8 + 17 + 6 + 7 + 11


# ---------------------------------------------------------------------------------------- reading files


def test_a_yaml_syntax_error_names_the_line(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("products:\n  - slug: acp\n    name: [ACP\n  - slug: amp\n")
    with pytest.raises(InputError) as err:
        importing.load_file(path)
    assert err.value.field == f"{path}, line 4" and "not valid YAML" in err.value.message


def test_duplicate_keys_in_a_yaml_or_json_file_name_the_line(tmp_path):
    (tmp_path / "dup.yaml").write_text("products:\n  - slug: acp\n    name: A\n    name: B\n")
    (tmp_path / "dup.json").write_text('{"products": [\n  {"slug": "acp",\n   "slug": "amp"}]}')
    with pytest.raises(InputErrors) as err:
        importing.load_file(tmp_path / "dup.yaml")
    assert errors_of(err) == [
        f"{tmp_path / 'dup.yaml'}, line 4: duplicate key 'name' (first given at line 3)"
    ]
    with pytest.raises(InputErrors) as err:
        importing.load_file(tmp_path / "dup.json")
    assert errors_of(err) == [
        f"{tmp_path / 'dup.json'}, line 3: duplicate key 'slug' (first given at line 2)"
    ]


def test_a_json_syntax_error_names_the_line(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('{"products": [\n  {"slug": "acp",,}\n]}')
    with pytest.raises(InputError) as err:
        importing.load_file(path)
    assert err.value.field == f"{path}, line 2" and "not valid JSON" in err.value.message


def test_unknown_keys_are_errors_at_every_level(sqlite_db):
    data = {
        "products": [
            {
                "slug": "acp",
                "name": "ACP",
                "relases": [],
                "milestones": {"end-of-life": {"date": "2029-01-31", "reson": "x"}},
            }
        ],
        "customer": [],
    }
    with pytest.raises(InputErrors) as err:
        run(data)
    assert [e.field for e in err.value.errors] == [
        "customer",
        "products[0].relases",
        "products[0].milestones.end-of-life.reson",
    ]


# ------------------------------------------------------------------------------------- endoflife.date


def test_endoflife_kubernetes_creates_releases_and_milestones_with_past_ones_as_history(db):
    summary = endoflife("kubernetes", "kubernetes", short_notice_reason="upstream release calendar")
    assert summary.counts["products"]["created"] == 1 and summary.counts["releases"]["created"] == 21
    assert summary.counts["milestones"]["created"] == 40  # 21 eolFrom + 19 eoasFrom (two are null)
    with session_scope() as s:
        product = registry.get_product(s, "kubernetes")
        assert product.name == "Kubernetes"
        assert registry.get_release(s, product, "1.36").released == dt.date(2026, 4, 22)
    old = row("kubernetes", "1.16", "end-of-life")
    assert old["date"] == "2020-08-04" and old["past"] is True
    new = row("kubernetes", "1.36", "end-of-life")
    assert new["date"] == "2027-06-28" and new["past"] is False and new["short_notice_reason"] is None
    assert row("kubernetes", "1.36", "end-of-full-support")["date"] == "2027-04-28"
    # Only the dates less than 3 months away carry the reason.
    assert row("kubernetes", "1.35", "end-of-life")["short_notice_reason"] == "upstream release calendar"
    assert summary.history == sum(r["past"] for r in rows()) == 36
    assert not endoflife("kubernetes", "kubernetes", short_notice_reason="upstream release calendar").changed


def test_endoflife_dates_less_than_three_months_away_need_a_reason(db):
    with pytest.raises(InputErrors) as err:
        endoflife("kubernetes", "kubernetes")
    assert [e.field for e in err.value.errors] == [
        "result.releases[1].eoasFrom",
        "result.releases[1].eolFrom",
    ]
    assert "--short-notice-reason" in str(err.value)
    assert rows() == []


def test_endoflife_extended_support_makes_eol_the_end_of_maintenance(db):
    endoflife("ubuntu", "ubuntu")
    assert row("ubuntu", "24.04", "end-of-full-support")["date"] == "2029-05-31"
    assert row("ubuntu", "24.04", "end-of-maintenance")["date"] == "2029-05-31"
    assert row("ubuntu", "24.04", "end-of-life")["date"] == "2036-05-31"
    assert row("ubuntu", "25.10", "end-of-life")["date"] == "2026-07-01"  # no eoesFrom: eolFrom is the end
    assert not [r for r in rows() if (r["version"], r["kind"]) == ("25.10", "end-of-maintenance")]


def test_endoflife_null_dates_create_no_milestone_and_discontinued_is_end_of_sale(db):
    summary = endoflife("endoflife_nulls", "example-db", name="Example Database")
    assert summary.counts["releases"]["created"] == 2
    assert [(r["version"], r["kind"], r["date"]) for r in rows()] == [  # in lifecycle order
        ("4", "end-of-sale", "2026-01-31"),
        ("4", "end-of-life", "2028-05-31"),
    ]
    with session_scope() as s:
        assert registry.get_product(s, "example-db").name == "Example Database"


def test_an_endoflife_date_change_is_a_move(db):
    data = importing.load_file(FIXTURES / "endoflife_nulls.json")
    with session_scope() as s:
        importing.import_endoflife(s, data, product="example-db", name=None, at=AT, source="v1.json")
    data["result"]["releases"][1]["eolFrom"] = "2028-11-30"
    with session_scope() as s:
        summary = importing.import_endoflife(
            s, data, product="example-db", name=None, at=AT, source="v2.json"
        )
    assert summary.moves[0]["reason"] == "changed upstream"
    assert row("example-db", "4", "end-of-life")["revision"] == 2


# ---------------------------------------------------------------------------------------------- the CLI


def test_the_cli_refuses_a_file_with_one_bad_value_among_many_rows_and_writes_nothing(db, cli, tmp_path):
    r = cli("import", EXAMPLE, "--at", "2026-12-01", "--json")
    assert r.code == 0, r
    assert json.loads(r.out)["counts"]["milestones"]["created"] == 17
    before = cli("milestone", "list", "--json", "--at", "2026-12-01")
    assert before.code == 0, before

    data = example()
    milestone_of(data, "acp", "3.16")["end-of-life"] = dt.date(2028, 3, 31)  # a good change, never applied
    data["products"].append(
        {
            "slug": "bulk",
            "name": "Bulk",
            "releases": [
                {
                    "version": f"1.{i}",
                    "milestones": {"end-of-life": dt.date(2028, 1, 1) + dt.timedelta(days=i)},
                }
                for i in range(150)
            ],
        }
    )
    data["products"][3]["releases"][117]["released"] = "2027-02-30"
    bad = tmp_path / "bulk.yaml"
    bad.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    r = cli("import", bad, "--at", "2026-12-01")
    assert r.code == 2, r
    assert (
        "products[3].releases[117].released: invalid date '2027-02-30'" in r.err and "Traceback" not in r.err
    )

    after = cli("milestone", "list", "--json", "--at", "2026-12-01")
    assert after.out == before.out

    r = cli("import", EXAMPLE, "--at", "2026-12-01")
    assert r.code == 0 and "no changes" in r.out, r


def test_endoflife_dates_under_three_months_are_upstream_short_notice_unless_strict(db, cli):
    path = DATA / "endoflife" / "kubernetes.json"
    r = cli(
        "import", path, "--format", "endoflife", "--product", "kubernetes", "--at", "2026-11-26", "--strict"
    )
    assert r.code == 2 and "result.releases[1].eoasFrom" in r.err
    r = cli("import", path, "--format", "endoflife", "--product", "kubernetes", "--at", "2026-11-26")
    assert r.code == 0, r
    assert "short notice: kubernetes 1.35 end-of-full-support" in r.out
    rows = {(m["version"], m["kind"]): m for m in json.loads(cli("milestone", "list", "--json").out)}
    assert (
        rows[("1.35", "end-of-full-support")]["short_notice_reason"]
        == "upstream lifecycle date published by endoflife.date"
    )
