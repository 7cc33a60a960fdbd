"""The set-based import writer (lifecycle.bulkimport) writes exactly the rows the registry functions write.

The same story of imports runs twice on one database, emptied in between: once row by row through the
registry functions (`writer="rows"`, the reference), once set-based (`writer="bulk"`, the default). After
every step the summaries are the same, and at the end every row of every table is, audit rows included:
ids are replaced by natural keys, calendar tokens (random) are left out.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import re

import pytest
import sqlalchemy as sa
from sqlmodel import SQLModel

from lifecycle import db as dbmod
from lifecycle import importing, registry, scheduler
from lifecycle.db import session_scope
from lifecycle.errors import InputErrors
from tests.conftest import DATA, ROOT, utc

AT = utc(2026, 12, 1)
LATER = utc(2026, 12, 20)
EXAMPLE = ROOT / "examples" / "registry.yaml"
KUBERNETES = DATA / "endoflife" / "kubernetes.json"


def _second_file(data: dict) -> dict:
    """The example, changed in every way a re-import can change things."""
    data = copy.deepcopy(data)
    acp, amp, asm = data["products"]
    acp["name"] = "Alauda Container Platform (ACP)"  # product renamed
    acp["releases"][2]["upgrade_to"] = "3.16"  # release updated (a silly target, still a release of it)
    acp["releases"][1]["milestones"]["end-of-life"] = {
        "date": dt.date(2027, 10, 31),
        "reason": "extended",
    }  # move
    acp["releases"].append(
        {
            "version": "4.2",
            "released": dt.date(2026, 6, 1),
            "milestones": {"end-of-sale": True, "end-of-life": dt.date(2030, 6, 30)},
        }
    )  # new, ended
    amp["missing_milestones"] = "withdraw"
    del amp["releases"][1]["milestones"]["end-of-full-support"]  # withdrawn: not in the file
    asm["releases"][1]["milestones"]["end-of-sale"] = dt.date(2027, 3, 31)  # new
    acme, globex, initech, umbrella, hooli, cntelecom = data["customers"]
    acme["timezone"] = "Asia/Hong_Kong"  # marks the releases it ran dirty
    acme["contacts"][0]["name"] = "Ops"  # contact renamed
    acme["contacts"].append({"email": "NEW@acme.example"})
    acme["deployments"][0]["cores"] = 300  # cores changed
    globex["name"] = "Globex AG"  # updated, nothing to re-plan
    globex["deployments"].append({"product": "acp", "version": "3.14"})  # a release already ended: a warning
    initech["deployments"].append({"product": "acp", "version": "4.2", "cores": 8})  # ended without a date
    umbrella["contacts"] = [{"email": "INFRA@umbrella.example", "name": "Infra"}]  # same address, other case
    hooli["deployments"] = [
        {"product": "asm", "version": "1.4", "cores": 192},
        {"product": "acp", "version": "4.0"},
    ]
    data["customers"].append(
        {
            "key": "newco",
            "name": "NewCo",
            "timezone": "UTC",
            "account_rep": "rep@vendor.example",
            "contacts": [{"email": "a@newco.example"}, {"email": "b@newco.example", "name": "B"}],
            "deployments": [{"product": "acp", "version": "4.0", "cores": 4}],
        }
    )
    return data


def _third_file(data: dict) -> dict:
    """A withdrawn milestone given back with a reason: reinstated."""
    data = copy.deepcopy(data)
    data["products"][1]["releases"][1]["milestones"]["end-of-full-support"] = {
        "date": dt.date(2027, 8, 31),
        "reason": "back after all",
    }
    return data


def _story(writer: str, url: str) -> list[dict]:
    """Every step of the story; returns the summaries."""
    first = importing.load_file(EXAMPLE)
    summaries = []

    def step(fn):
        with session_scope() as s:
            summaries.append(fn(s).to_dict())

    step(lambda s: importing.import_registry(s, first, at=AT, source="a.yaml", writer=writer))
    with session_scope() as s:  # the planner has seen everything: what the next import marks shows
        scheduler.plan(s, AT)
        registry.remove_deployment(s, customer="hooli", product="acp", version="4.0", at=AT)  # re-added later
        umbrella = registry.get_customer(s, "umbrella")
        contact = registry.contact_rows(s, umbrella)[0]
        s.execute(
            sa.text(
                "UPDATE contact SET undeliverable = :t, undeliverable_reason = 'bounced' WHERE email = :e"
            ),
            {"t": True, "e": contact["email"]},
        )  # stays flagged
        scheduler.plan(s, AT)
    second = _second_file(first)
    step(lambda s: importing.import_registry(s, second, at=LATER, source="b.yaml", writer=writer))
    step(
        lambda s: importing.import_registry(s, second, at=LATER, source="b.yaml", writer=writer)
    )  # no changes
    step(
        lambda s: importing.import_registry(s, _third_file(second), at=LATER, source="c.yaml", writer=writer)
    )
    kubernetes = importing.load_file(KUBERNETES)
    step(
        lambda s: importing.import_endoflife(
            s,
            kubernetes,
            product="kubernetes",
            name=None,
            at=AT,
            source="k.json",
            short_notice_reason="upstream",
            writer=writer,
        )
    )
    kubernetes = copy.deepcopy(kubernetes)
    removed = kubernetes["result"]["releases"].pop(5)  # removed upstream: its milestones are withdrawn
    kubernetes["result"]["releases"][0]["eolFrom"] = "2027-08-31"  # moved upstream
    kubernetes["result"]["releases"][1]["eolFrom"] = True  # ended without a date
    step(
        lambda s: importing.import_endoflife(
            s,
            kubernetes,
            product="kubernetes",
            name=None,
            at=LATER,
            source="k2.json",
            short_notice_reason="upstream",
            writer=writer,
        )
    )
    with pytest.raises(InputErrors), session_scope() as s:  # all or nothing, the same way
        importing.import_registry(
            s,
            {"customers": [{"key": "x", "name": "X", "timezone": "Mars/Base", "account_rep": "r@v.example"}]},
            at=LATER,
            source="d.yaml",
            writer=writer,
        )
    assert removed["name"]
    return summaries


def _snapshot(url: str) -> dict[str, list]:
    """Every row of every table, ids replaced by natural keys, in a stable order."""
    engine = dbmod.get_engine(url)
    tables = {t.name: t for t in SQLModel.metadata.sorted_tables}
    with engine.connect() as conn:

        def rows(name):
            return [dict(r._mapping) for r in conn.execute(sa.select(tables[name]))]

        data = {name: rows(name) for name in tables}
    product = {r["id"]: r["slug"] for r in data["product"]}
    release = {r["id"]: (product[r["product_id"]], r["version"]) for r in data["release"]}
    customer = {r["id"]: r["key"] for r in data["customer"]}
    milestone = {
        r["id"]: (product[r["product_id"]], release.get(r["release_id"]), r["kind"])
        for r in data["milestone"]
    }
    change = {r["id"]: (r["action"], r["summary"], str(r["at"])) for r in data["registrychange"]}
    contact = {r["id"]: (customer[r["customer_id"]], r["email"]) for r in data["contact"]}
    notice = {r["id"]: r["key"] for r in data.get("notice", [])}
    natural = {
        "product_id": product,
        "release_id": release,
        "customer_id": customer,
        "milestone_id": milestone,
        "change_id": change,
        "contact_id": contact,
        "notice_id": notice,
        "scope": {**release, 0: None},
    }
    out = {}
    for name, table_rows in data.items():
        if name == "alembic_version":
            continue
        fixed = []
        for r in table_rows:
            r = {
                k: natural[k].get(val, val) if k in natural and val is not None else val
                for k, val in r.items()
                if k not in ("id", "calendar_token")
            }
            if (
                name == "auditevent"
                and r["subject"]
                and (m := re.fullmatch(r"milestone (\d+)", r["subject"]))
            ):
                r["subject"] = f"milestone {milestone[int(m.group(1))]}"
            if name == "notice":  # keys carry ids: kind:customer:milestone:slot
                r["key"] = re.sub(r"\d+", "#", r["key"])
            fixed.append(r)
        out[name] = sorted(fixed, key=lambda r: json.dumps(r, default=str, sort_keys=True))
    return out


def _empty(url: str) -> None:
    engine = dbmod.get_engine(url)
    with engine.begin() as conn:
        for table in reversed(SQLModel.metadata.sorted_tables):
            conn.execute(table.delete())


def test_the_bulk_writer_writes_exactly_the_rows_of_the_registry_functions(db):
    reference = _story("rows", db)
    expected = _snapshot(db)
    _empty(db)
    bulk = _story("bulk", db)
    got = _snapshot(db)
    for a, b in zip(reference, bulk, strict=True):
        for d in (a, b):
            d.pop("change_id")
        assert a == b
    assert [s["changed"] for s in bulk] == [True, True, False, True, True, True]
    for name in expected:
        assert got[name] == expected[name], name
    assert len(got["auditevent"]) > 40 and len(got["milestonechange"]) > 40 and len(got["deployment"]) >= 14
    second = bulk[1]
    assert second["withdrawn"] and second["moves"] and second["ended"]
    assert any("has already reached" in n for n in second["notes"])
    assert bulk[3]["reinstated"]
    assert any(m["from"] for m in bulk[5]["moves"]) and bulk[5]["withdrawn"]


def test_a_bulk_import_of_many_customers_writes_in_batches_and_counts_every_row(sqlite_db, monkeypatch):
    from lifecycle import bulkimport

    monkeypatch.setattr(bulkimport, "BATCH", 7)
    monkeypatch.setattr(bulkimport, "IN_CHUNK", 5)
    data = importing.load_file(EXAMPLE)
    data["customers"] = [
        {
            "key": f"c{i:03d}",
            "name": f"C {i}",
            "timezone": "UTC",
            "account_rep": "r@v.example",
            "contacts": [{"email": f"ops@c{i}.example"}],
            "deployments": [{"product": "acp", "version": "4.0"}, {"product": "asm", "version": "1.6"}],
        }
        for i in range(53)
    ]
    seen = []
    with session_scope() as s:
        summary = importing.import_registry(
            s, data, at=AT, source="many.yaml", on_progress=lambda d, t: seen.append((d, t))
        )
    assert summary.counts["customers"]["created"] == 53 and summary.counts["deployments"]["created"] == 106
    assert seen[-1][0] == seen[-1][1]
    snap = _snapshot(sqlite_db)
    assert len(snap["customer"]) == 53 and len(snap["contact"]) == 53 and len(snap["deployment"]) == 106
    assert sum(r["action"] == "deployment.add" for r in snap["auditevent"]) == 106
    with session_scope() as s:
        again = importing.import_registry(s, data, at=AT, source="many.yaml")
    assert not again.changed


def test_the_cli_lets_the_import_drop_the_file_data_as_it_reads_it(db, cli, tmp_path):
    data = importing.load_file(EXAMPLE)
    with session_scope() as s:
        summary = importing.import_registry(s, data, at=AT, source="a.yaml", consume=True)
    assert summary.counts["customers"]["created"] == 6
    assert data["customers"] == [None] * 6, "each customer's data is dropped once read"
    r = cli("import", EXAMPLE, "--at", "2026-12-01")
    assert r.code == 0 and "no changes" in r.out, r


def test_audit_details_are_written_as_json_dumps_writes_them():
    """The bulk writer's own JSON for audit details is `json.dumps(..., default=str,
    ensure_ascii=False)` to the byte: flat values written directly, anything else through `json`."""
    import random

    from lifecycle.bulkimport import audit_json

    rng = random.Random(11)
    alphabet = 'aZ09 "\\/\n\t\x01\x7f\u00e9\u2028\u4e2d\U0001f600'
    samples = [
        lambda: "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12))),
        lambda: rng.choice([0, -1, 1, 2**63 - 1, -(2**70), rng.randint(-(10**9), 10**9)]),
        lambda: rng.choice([True, False, None]),
        lambda: dt.date(rng.randint(1, 9999), rng.randint(1, 12), rng.randint(1, 28)),
        # Not flat: json decides (floats, datetimes through str, nested values, keys that are not text).
        lambda: rng.choice(
            [1.5, -0.0, 1e300, dt.datetime(2027, 1, 1, 9, tzinfo=dt.UTC), [1, "a"], {"x": None}]
        ),
    ]
    for _ in range(3000):
        detail = {
            rng.choice(["cores", "name", 'é"k', "date", "short_notice", "x"]): rng.choice(samples[:4])()
            for _ in range(rng.randint(1, 4))
        }
        if rng.random() < 0.2:
            detail[rng.choice(["y", "z"])] = samples[4]()
        if rng.random() < 0.05:
            detail[rng.choice([1, None, True])] = "key not text"
        assert audit_json(detail) == json.dumps(detail, default=str, ensure_ascii=False), detail


def test_the_import_command_pauses_the_cycle_collector_only_while_it_runs():
    import gc

    from lifecycle.cli.importing import _cycle_collection_paused

    assert gc.isenabled()
    with pytest.raises(InputErrors), _cycle_collection_paused():
        assert not gc.isenabled()
        raise InputErrors([])
    assert gc.isenabled()
    gc.disable()
    try:
        with _cycle_collection_paused():
            pass
        assert not gc.isenabled()  # left as it was found
    finally:
        gc.enable()
