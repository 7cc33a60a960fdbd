"""The planning benchmark at a tiny scale, so that it cannot rot: numbers are sane, no timing asserted."""

from __future__ import annotations

import json
import os

import pytest
import sqlalchemy as sa

from bench import fleet
from bench import run as bench
from tests.conftest import need_service

SCALE = 0.005


def _check(result: dict) -> None:
    plan, floor, ticks = result["plan"], result["floor"], result["ticks"]
    assert plan["rows"] > 0
    assert plan["rows"] == floor["rows"] == plan["plan"]["created"]
    assert plan["rows_per_s"] > 0 and floor["rows_per_s"] > 0
    assert result["ratio"] > 0
    assert plan["peak_rss_mb"] > 0
    assert ticks["steady"]["released"] == ticks["steady_before_vacuum"]["released"] == 0, "nothing is due"
    assert ticks["due"]["released"] > 0
    assert ticks["due"]["deliveries"] >= ticks["due"]["released"]  # the portal, at least, for each
    due = ticks["due"]
    assert due["released"] + sum(due["skipped"].values()) >= due["due"]
    _check_import(result["import"])


def _check_import(imp: dict) -> None:
    """bench/importing.py: the fleet as a file, imported by the CLI, then its rows inserted raw."""
    size = fleet.size_for(SCALE)
    rows = imp["rows"]
    assert rows["customer"] == imp["file"]["customers"] == size.customers
    assert rows["milestone"] == imp["file"]["milestones"] == size.milestones
    assert rows["deployment"] == imp["file"]["deployments"] > 0
    assert rows["contact"] == imp["file"]["contacts"] and rows["auditevent"] > rows["deployment"]
    assert imp["total_rows"] == sum(rows.values())
    assert imp["import"]["seconds"] > 0 and imp["floor"]["seconds"] > 0 and imp["ratio"] > 0
    assert imp["import"]["peak_rss_mb"] > 0 and imp["reimport"]["peak_rss_mb"] > 0
    assert imp["import"]["summary"][0].endswith(": imported")
    assert "no changes" in imp["reimport"]["summary"][0]
    assert imp["parse"]["strict_s"] > 0 and imp["parse"]["csafeloader_s"] > 0


def test_the_fleet_has_the_size_asked_for_and_is_the_same_every_time(sqlite_db):
    size = fleet.size_for(SCALE)
    counts = fleet.generate(sqlite_db, scale=SCALE)
    assert counts["customers"] == size.customers and counts["milestones"] == size.milestones
    assert counts["deployments"] == size.deployments
    assert size.customers <= counts["contacts"] <= 2 * size.customers
    engine = sa.create_engine(sqlite_db)
    with engine.connect() as conn:
        dates = conn.exec_driver_sql("SELECT date FROM milestone ORDER BY id").scalars().all()
        zones = conn.exec_driver_sql("SELECT count(DISTINCT timezone) FROM customer").scalar_one()
        pending = conn.exec_driver_sql("SELECT count(*) FROM milestone WHERE needs_plan").scalar_one()
    engine.dispose()
    assert min(dates) < str(fleet.AT.date()) < max(dates), "some milestones are past, most to come"
    assert zones > 10 and pending == size.milestones
    assert fleet.size_for(1.0) == fleet.FleetSize(
        customers=20_000, products=100, releases=2_000, milestones=8_000, deployments=100_000
    )


def test_the_bench_measures_sqlite_in_child_processes_and_writes_its_results(tmp_path):
    report = bench.run(SCALE, ("sqlite",), results_dir=tmp_path, log=lambda _: None)
    _check(report["databases"]["sqlite"])
    assert json.loads((tmp_path / report["path"].split("/")[-1]).read_text())["scale"] == SCALE
    assert "| ratio plan / floor" in bench.table(report)
    assert "ratio import / floor" in bench.table(report)


def test_the_import_bench_file_is_a_registry_file_the_strict_reader_takes(tmp_path):
    from bench import importing as import_bench
    from lifecycle import loader

    path = tmp_path / "fleet.yaml"
    counts = import_bench.write_file(path, SCALE)
    data = loader.load_file(path)
    assert len(data["customers"]) == counts["customers"] == fleet.size_for(SCALE).customers
    assert sum(len(r["milestones"]) for p in data["products"] for r in p["releases"]) == counts["milestones"]
    assert import_bench.table([{"db": "sqlite", **_fake_result()}]).count("|") > 20


def _fake_result() -> dict:
    rows = dict.fromkeys(import_bench_tables(), 1)
    timing = {"seconds": 1.0, "rows_per_s": 9.0, "peak_rss_mb": 1.0, "cpu_seconds": 1.0}
    return {
        "scale": SCALE,
        "file_mb": 1.0,
        "total_rows": 9,
        "rows": rows,
        "import": timing,
        "floor": timing,
        "reimport": timing,
        "ratio": 1.0,
        "cpu_ratio": 1.0,
        "parse": {"strict_s": 1.0, "csafeloader_s": 1.0},
    }


def import_bench_tables() -> tuple[str, ...]:
    from bench import importing as import_bench

    return import_bench.TABLES


@pytest.mark.postgres
def test_the_bench_measures_postgresql_in_a_schema_of_its_own(tmp_path):
    if why := bench.postgres_available():
        need_service("PostgreSQL", why)
    before = _bench_schemas()
    report = bench.run(SCALE, ("postgres",), isolate=False, results_dir=None, log=lambda _: None)
    _check(report["databases"]["postgres"])
    assert _bench_schemas() == before, "the bench drops its schema"


def _bench_schemas() -> set[str]:
    admin = sa.create_engine(bench.PG_ADMIN_URL)
    with admin.connect() as conn:
        # This process's schemas only: other benches on the same server come and go meanwhile.
        names = conn.exec_driver_sql(
            "SELECT nspname FROM pg_namespace WHERE nspname LIKE %(p)s", {"p": f"lc_bench_{os.getpid()}_%"}
        ).scalars()
        result = set(names)
    admin.dispose()
    return result


# ------------------------------------------------------------------------------ delivery (issue 11)


def test_the_delivery_bench_measures_file_and_sendgrid_against_their_floors_and_the_embedded_worker():
    from bench import delivery as bench_delivery

    report = bench_delivery.run(
        (0.002,),
        ("file", "sendgrid", "worker"),
        worker_customers=(30,),
        sendgrid_latency=0.02,
        log=lambda _: None,
    )
    for name, scale in (("file", "0.002"), ("sendgrid", "0.002"), ("sendgrid", "0.002@0.02")):
        d = report[name][scale]
        assert d["run"]["deliveries"] > 0 and d["run"]["emails"] > 0 and d["run"]["failed"] == 0
        assert d["floor"]["emails"] == d["run"]["emails"], "the floor sends the very same emails"
        assert name == "file" or d["floor"]["accepted"] == d["floor"]["emails"]
        assert d["ratio"] > 0 and d["run"]["duplicates"] == 0
    assert report["sendgrid"]["0.002@0.02"]["latency"] == 0.02
    worker = report["worker"]["30"]
    assert worker["eml_files"] == 30 and worker["duplicates"] == 0 and worker["peak_rss_mb"] > 0
    text = bench_delivery.table(report)
    assert "| file | 0.002 |" in text and "| SQLite, file backend | 30 |" in text
    assert "| sendgrid (8 threads, answers in 20 ms) | 0.002 |" in text
    assert f"{report['cpus']} cores" in text


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.slow
def test_the_delivery_bench_scales_out_celery_workers_on_postgresql_and_redis(redis_db):
    from bench import delivery as bench_delivery

    if why := bench.postgres_available():
        need_service("PostgreSQL", why)
    before = _bench_schemas()
    url = redis_db.connection_pool.connection_kwargs
    redis_url = f"redis://{url.get('host', '127.0.0.1')}:{url.get('port', 6379)}/{url.get('db', 0)}"
    report = bench_delivery.run(
        (), ("celery",), celery_customers=40, celery_processes=(1, 2), redis_url=redis_url, log=lambda _: None
    )
    for p in ("1", "2"):
        d = report["celery"][p]
        assert d["deliveries"] >= 80 and d["duplicates"] == 0 and d["speedup"] > 0  # email + portal each
    assert _bench_schemas() == before, "the bench drops its schema"


def test_every_cli_command_of_the_commands_bench_runs_and_reports_its_own_memory():
    """bench/commands.py at a tiny fleet: every command exits cleanly (or quietly on a closed pipe), and
    its peak RSS is its own (a fresh interpreter), not the bench process's."""
    from bench import commands

    only = (
        "lifecycle --help",
        "lifecycle tick (after the catch-up: full)",
        "lifecycle tick (nothing due: idle note)",
        "lifecycle plan --json | head",
        "lifecycle report compliance --json | head",
    )
    report = commands.run(0.002, log=lambda *a: None, only=only)
    assert list(report["commands"]) == list(only)
    assert report["notices"] > 0
    bad = {label: r for label, r in report["commands"].items() if not r["ok"]}
    assert not bad, bad
    ticks = [r for label, r in report["commands"].items() if label.startswith("lifecycle tick")]
    assert ticks[1]["peak_rss_mb"] < ticks[0]["peak_rss_mb"]  # the idle note imports no database layer
    assert 5 < report["commands"]["lifecycle --help"]["peak_rss_mb"] < 80
    assert "peak RSS MB" in commands.table(report)
