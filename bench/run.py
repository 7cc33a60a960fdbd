"""The planning benchmark: `python -m bench.run [--scale 1.0] [--db sqlite,postgres]` (or `make bench`).

For each database, on a fresh reference fleet (`bench.fleet`), in one run:

1. **cold plan**: `scheduler.plan(session, at)` of the whole horizon in one transaction (commit
   included); rows/s of the notice rows it wrote;
2. **floor**: the same notice rows, read back to a temporary file, the notice table emptied, then
   inserted raw in one transaction (commit included): COPY of the dumped text on PostgreSQL,
   `executemany` of a plain INSERT through `sqlite3` on SQLite. Ratio = plan time / floor time;
3. **steady tick**: after a first `prepare(at)` released everything overdue at `at` (and the bench
   marked those deliveries delivered, as workers would have), `ticks.tick()` a minute apart with
   nothing due; the median of several, before and after a `VACUUM ANALYZE` on PostgreSQL;
4. **1,000 due**: `ticks.tick()` at the instant the 1,000th next notice falls due: plan, release,
   deliver through the portal and the file email backend (a temporary outbox).

Each step runs in a child process of its own, which reports its peak resident memory (ru_maxrss), so
the peak of the plan is the plan's. The table is printed and written as JSON to bench/results/.
PostgreSQL gets a schema of its own for the run (dropped at the end); SQLite a file in a temporary
folder.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import pickle
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa

from bench import fleet

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = Path(__file__).resolve().parent / "results"
PG_ADMIN_URL = os.environ.get(
    "LIFECYCLE_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
STEPS = ("generate", "plan", "floor", "ticks")
STEADY_RUNS = 7
DUE_TARGET = 1000
DUMP_BATCH = 10_000


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _notice_columns() -> list[str]:
    from lifecycle.models import Notice

    return [c.name for c in Notice.__table__.columns if c.name != "id"]


def _count_notices(url: str) -> int:
    from lifecycle.db import get_engine

    with get_engine(url).connect() as conn:
        return conn.exec_driver_sql("SELECT count(*) FROM notice").scalar_one()


# ------------------------------------------------------------------------------------------ the steps


def step_generate(url: str, scale: float, workdir: Path) -> dict:
    from lifecycle import db

    db.upgrade(url)
    t0 = time.perf_counter()
    counts = fleet.generate(url, scale=scale)
    return {"seconds": time.perf_counter() - t0, "counts": counts}


def step_plan(url: str, scale: float, workdir: Path) -> dict:
    from lifecycle import db, scheduler

    db.get_engine(url)  # connect and check the schema before the clock starts
    rss_before = _rss_mb()
    t0 = time.perf_counter()
    with db.session_scope(url) as session:
        result = scheduler.plan(session, fleet.AT)
    seconds = time.perf_counter() - t0
    rows = _count_notices(url)
    return {
        "seconds": seconds,
        "rows": rows,
        "rows_per_s": rows / seconds,
        "plan": result.as_dict(),
        "rss_before_mb": rss_before,
    }


def _dump_sqlite(path: str, cols: list[str], dump: Path) -> int:
    import sqlite3

    n = 0
    with sqlite3.connect(path) as raw, dump.open("wb") as out:
        cur = raw.execute(f"SELECT {', '.join(cols)} FROM notice ORDER BY id")
        while batch := cur.fetchmany(DUMP_BATCH):
            pickle.dump(batch, out, protocol=pickle.HIGHEST_PROTOCOL)
            n += len(batch)
    return n


def _load_batches(dump: Path):
    with dump.open("rb") as f:
        while True:
            try:
                yield from pickle.load(f)
            except EOFError:
                return


def _floor_sqlite(url: str, cols: list[str], dump: Path) -> tuple[int, float]:
    import sqlite3

    path = sa.engine.make_url(url).database
    n = _dump_sqlite(path, cols, dump)
    raw = sqlite3.connect(path, isolation_level=None)
    try:
        # The same connection settings as the application's engine (lifecycle.db).
        for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "foreign_keys=ON"):
            raw.execute(f"PRAGMA {pragma}")
        raw.execute("BEGIN IMMEDIATE")
        raw.execute("DELETE FROM notice")
        raw.execute("COMMIT")
        insert = f"INSERT INTO notice ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})"
        t0 = time.perf_counter()
        raw.execute("BEGIN IMMEDIATE")
        raw.executemany(insert, _load_batches(dump))
        raw.execute("COMMIT")
        seconds = time.perf_counter() - t0
    finally:
        raw.close()
    return n, seconds


def _floor_postgres(url: str, cols: list[str], dump: Path) -> tuple[int, float]:
    from lifecycle.db import get_engine

    engine = get_engine(url)
    col_list = ", ".join(cols)
    with engine.begin() as conn, dump.open("wb") as out:
        raw = conn.connection.driver_connection
        with (
            raw.cursor() as cur,
            cur.copy(f"COPY (SELECT {col_list} FROM notice ORDER BY id) TO STDOUT") as copy,
        ):
            for data in copy:
                out.write(data)
        conn.exec_driver_sql("TRUNCATE notice RESTART IDENTITY CASCADE")
    t0 = time.perf_counter()
    with engine.begin() as conn, dump.open("rb") as f:
        raw = conn.connection.driver_connection
        with raw.cursor() as cur, cur.copy(f"COPY notice ({col_list}) FROM STDIN") as copy:
            while data := f.read(1 << 20):
                copy.write(data)
    seconds = time.perf_counter() - t0
    return _count_notices(url), seconds


def step_floor(url: str, scale: float, workdir: Path) -> dict:
    """Read the planned rows out, empty the table, time the raw bulk insert of exactly those rows."""
    cols = _notice_columns()
    dump = workdir / "notices.dump"
    before = _count_notices(url)
    floor = _floor_postgres if url.startswith("postgresql") else _floor_sqlite
    rows, seconds = floor(url, cols, dump)
    after = _count_notices(url)
    dump.unlink()
    if not before == rows == after:
        raise RuntimeError(f"floor: {before} rows planned, {rows} dumped, {after} inserted")
    return {
        "seconds": seconds,
        "rows": rows,
        "rows_per_s": rows / seconds,
        "method": "COPY FROM STDIN (text)" if url.startswith("postgresql") else "sqlite3 executemany",
    }


def _mark_delivered(url: str, at: dt.datetime) -> int:
    """Bench setup, not measured: what workers would have done with everything released at `at`."""
    from lifecycle.db import session_scope
    from lifecycle.models import Delivery, DeliveryStatus, Notice, NoticeStatus

    D, N = Delivery.__table__, Notice.__table__
    with session_scope(url) as session:
        conn = session.connection()
        n = conn.execute(
            D.update()
            .where(D.c.status == DeliveryStatus.PENDING)
            .values(status=DeliveryStatus.DELIVERED, sent_at=at, updated_at=at, attempts=1)
        ).rowcount
        conn.execute(
            N.update().where(N.c.status == NoticeStatus.RELEASED).values(status=NoticeStatus.SENT, sent_at=at)
        )
    return n


def _vacuum(url: str) -> None:
    """VACUUM ANALYZE on PostgreSQL (what autovacuum does in a running system); nothing on SQLite."""
    if not url.startswith("postgresql"):
        return
    from lifecycle.db import get_engine

    with get_engine(url).connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("VACUUM ANALYZE")


def _due_instant(url: str, after: dt.datetime, target: int) -> tuple[dt.datetime, int]:
    """The instant the `target`-th next planned notice falls due, and how many are due by then."""
    from lifecycle.db import session_scope
    from lifecycle.models import Notice, NoticeStatus

    N = Notice.__table__
    planned_after = sa.and_(N.c.status == NoticeStatus.PLANNED, N.c.due_at > after)
    with session_scope(url) as session:
        conn = session.connection()
        total = conn.execute(sa.select(sa.func.count()).where(planned_after)).scalar_one()
        if total == 0:
            raise RuntimeError("nothing planned after the steady instant: the fleet is too small")
        at = conn.execute(
            sa.select(N.c.due_at)
            .where(planned_after)
            .order_by(N.c.due_at)
            .offset(min(target, total) - 1)
            .limit(1)
        ).scalar_one()
        due = conn.execute(sa.select(sa.func.count()).where(planned_after, N.c.due_at <= at)).scalar_one()
    return at, due


def step_ticks(url: str, scale: float, workdir: Path) -> dict:
    from lifecycle import ticks

    at = fleet.AT
    t0 = time.perf_counter()
    catch_up = ticks.prepare(at)  # everything overdue at `at`: catch-up, escalations, deliveries
    catch_up_s = time.perf_counter() - t0
    marked = _mark_delivered(url, at)

    def steady_ticks(first: int) -> dict:
        times, released = [], 0
        for k in range(first, first + STEADY_RUNS):
            t0 = time.perf_counter()
            r = ticks.tick(at + dt.timedelta(minutes=k))
            times.append(time.perf_counter() - t0)
            released += r.release.released
        return {
            "runs": len(times),
            "median_s": statistics.median(times),
            "min_s": min(times),
            "max_s": max(times),
            "released": released,
        }

    # Right after the catch-up, PostgreSQL's indexes still hold the dead versions of every row it
    # changed; autovacuum removes them in a system that has been running, so measure both.
    steady_fresh = steady_ticks(1)
    _vacuum(url)
    steady = steady_ticks(1 + STEADY_RUNS)
    last_steady = at + dt.timedelta(minutes=2 * STEADY_RUNS)

    due_at, due = _due_instant(url, last_steady, DUE_TARGET)
    t0 = time.perf_counter()
    r = ticks.tick(due_at)
    due_s = time.perf_counter() - t0
    return {
        "catch_up": {
            "at": at.isoformat(),
            "seconds": catch_up_s,
            "release": catch_up.release.as_dict(),
            "customers": len(catch_up.customers),
            "marked_delivered": marked,
        },
        "steady_before_vacuum": steady_fresh,
        "steady": steady,
        "due": {
            "at": due_at.isoformat(),
            "due": due,
            "seconds": due_s,
            "released": r.release.released,
            "skipped": dict(r.release.skipped),
            "escalations": r.release.escalations,
            "deliveries": r.deliver.sent,
            "messages": r.deliver.messages,
            "customers": len(r.customers),
            "notices_per_s": r.release.released / due_s,
            "deliveries_per_s": r.deliver.sent / due_s,
        },
    }


STEP_FUNCS = {"generate": step_generate, "plan": step_plan, "floor": step_floor, "ticks": step_ticks}


def _step_env(url: str, workdir: Path) -> dict[str, str]:
    return {
        "LIFECYCLE_DATABASE_URL": url,
        "LIFECYCLE_EMAIL_BACKEND": "file",
        "LIFECYCLE_OUTBOX_DIR": str(workdir / "outbox"),
        "LIFECYCLE_CALENDAR_DIR": str(workdir / "calendar_exports"),
        "LIFECYCLE_STATE_DIR": str(workdir / "state"),
        "LIFECYCLE_SECRET_KEY": "bench-secret-key-not-for-production",
    }


def run_step(step: str, url: str, scale: float, workdir: Path, *, isolate: bool = True) -> dict:
    """Run one step, in a child process of its own (`isolate`) or in this one; add its peak memory."""
    env = _step_env(url, workdir)
    if isolate:
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "bench.run",
                "--step",
                step,
                "--url",
                url,
                "--scale",
                str(scale),
                "--workdir",
                str(workdir),
            ],
            cwd=ROOT,
            env={**os.environ, **env},
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"step {step} failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
        return json.loads(proc.stdout.strip().splitlines()[-1])
    from lifecycle.config import reset_settings
    from lifecycle.db import dispose_engines

    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    reset_settings()
    try:
        result = STEP_FUNCS[step](url, scale, workdir)
        result["peak_rss_mb"] = _rss_mb()
        return result
    finally:
        dispose_engines()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        reset_settings()


def _child(step: str, url: str, scale: float, workdir: Path) -> None:
    result = STEP_FUNCS[step](url, scale, workdir)
    result["peak_rss_mb"] = _rss_mb()
    print(json.dumps(result, default=str))


# ------------------------------------------------------------------------------------------ databases


@contextmanager
def sqlite_database(workdir: Path):
    yield f"sqlite:///{workdir / 'bench.db'}"


@contextmanager
def postgres_database(workdir: Path):
    """A schema of its own for this run, dropped at the end."""
    schema = f"lc_bench_{os.getpid()}_{time.time_ns()}"  # two in one second: distinct names
    admin = sa.create_engine(PG_ADMIN_URL, connect_args={"connect_timeout": 3})
    try:
        with admin.begin() as conn:
            conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
        yield f"{PG_ADMIN_URL}?options=-csearch_path%3D{schema}"
    finally:
        from lifecycle.db import dispose_engines

        dispose_engines()
        with admin.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        admin.dispose()


DATABASES = {"sqlite": sqlite_database, "postgres": postgres_database}


def postgres_available() -> str | None:
    """None when the PostgreSQL server answers, else why not."""
    try:
        engine = sa.create_engine(PG_ADMIN_URL, connect_args={"connect_timeout": 3})
        with engine.connect():
            pass
        engine.dispose()
    except Exception as exc:  # noqa: BLE001 - any failure means "not available"
        return str(exc).splitlines()[0]
    return None


def bench_database(
    name: str, scale: float, *, isolate: bool = True, with_import: bool = True, log=print
) -> dict:
    workdir = Path(tempfile.mkdtemp(prefix=f"lifecycle-bench-{name}-"))
    try:
        with DATABASES[name](workdir) as url:
            steps = {}
            for step in STEPS:
                log(f"  {name}: {step} ...")
                steps[step] = run_step(step, url, scale, workdir, isolate=isolate)
            plan, floor = steps["plan"], steps["floor"]
            steps["ratio"] = plan["seconds"] / floor["seconds"]
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if with_import:  # a database of its own: the import starts from an empty one
        from bench import importing

        log(f"  {name}: import ...")
        steps["import"] = importing.bench_import(name, scale, log=log)
    return steps


def run(
    scale: float = 1.0,
    dbs: tuple[str, ...] = ("sqlite", "postgres"),
    *,
    isolate: bool = True,
    results_dir: Path | None = RESULTS_DIR,
    with_import: bool = True,
    log=print,
    delivery_scales: tuple[float, ...] = (),
    with_commands: bool = False,
) -> dict:
    """Run the benchmark; return (and write to `results_dir`) the results. With `delivery_scales`, the
    delivery benchmark (bench/delivery.py) runs after the planning steps, as extra steps."""
    started = dt.datetime.now(dt.UTC)
    report = {
        "started": started.isoformat(),
        "scale": scale,
        "size": fleet.size_for(scale).as_dict(),
        "at": fleet.AT.isoformat(),
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
        "isolated": isolate,
        "databases": {},
    }
    for name in dbs:
        if name not in DATABASES:
            raise ValueError(f"unknown database {name!r}: use sqlite, postgres")
        if name == "postgres" and (why := postgres_available()):
            log(f"  postgres: skipped ({why})")
            report["databases"][name] = {"skipped": why}
            continue
        log(f"{name}, scale {scale}:")
        report["databases"][name] = bench_database(
            name, scale, isolate=isolate, with_import=with_import, log=log
        )
    if with_commands:
        from bench import commands

        log("commands:")
        report["commands"] = commands.run(scale, log=log)
    if delivery_scales:
        from bench import delivery

        log("delivery:")
        report["delivery"] = delivery.run(delivery_scales, log=log)
    report["seconds"] = (dt.datetime.now(dt.UTC) - started).total_seconds()
    if results_dir is not None:
        results_dir.mkdir(parents=True, exist_ok=True)
        path = results_dir / f"{started.strftime('%Y%m%dT%H%M%SZ')}-scale{scale:g}.json"
        path.write_text(json.dumps(report, indent=2, default=str) + "\n")
        report["path"] = str(path)
    return report


def table(report: dict) -> str:
    """The results as a Markdown table, one column per database."""
    dbs = {k: v for k, v in report["databases"].items() if "skipped" not in v}
    rows = [
        ("notice rows planned", lambda d: f"{d['plan']['rows']:,}"),
        ("cold plan, s", lambda d: f"{d['plan']['seconds']:.1f}"),
        ("cold plan, rows/s", lambda d: f"{d['plan']['rows_per_s']:,.0f}"),
        ("floor (raw bulk insert), s", lambda d: f"{d['floor']['seconds']:.1f}"),
        ("floor, rows/s", lambda d: f"{d['floor']['rows_per_s']:,.0f}"),
        ("ratio plan / floor (target <= 2)", lambda d: f"{d['ratio']:.2f}"),
        ("peak RSS of the plan process, MB", lambda d: f"{d['plan']['peak_rss_mb']:.0f}"),
        ("  of which before planning, MB", lambda d: f"{d['plan']['rss_before_mb']:.0f}"),
        ("catch-up prepare at `at`, s", lambda d: f"{d['ticks']['catch_up']['seconds']:.2f}"),
        (
            "  notices released / deliveries",
            lambda d: (
                f"{d['ticks']['catch_up']['release']['released']:,} / "
                f"{d['ticks']['catch_up']['release']['deliveries']:,}"
            ),
        ),
        (
            "steady tick, nothing due, median s (target < 0.2)",
            lambda d: f"{d['ticks']['steady']['median_s']:.3f}",
        ),
        (
            "  min / max s",
            lambda d: f"{d['ticks']['steady']['min_s']:.3f} / {d['ticks']['steady']['max_s']:.3f}",
        ),
        (
            "  median s right after the catch-up, before VACUUM",
            lambda d: f"{d['ticks']['steady_before_vacuum']['median_s']:.3f}",
        ),
        ("tick with ~1,000 due: notices released", lambda d: f"{d['ticks']['due']['released']:,}"),
        ("  s", lambda d: f"{d['ticks']['due']['seconds']:.1f}"),
        ("  notices/s", lambda d: f"{d['ticks']['due']['notices_per_s']:,.0f}"),
        (
            "  deliveries (messages)",
            lambda d: f"{d['ticks']['due']['deliveries']:,} ({d['ticks']['due']['messages']:,})",
        ),
        ("  deliveries/s", lambda d: f"{d['ticks']['due']['deliveries_per_s']:,.0f}"),
        ("peak RSS of the tick process, MB", lambda d: f"{d['ticks']['peak_rss_mb']:.0f}"),
        ("fleet generation, s", lambda d: f"{d['generate']['seconds']:.1f}"),
    ]
    if all("import" in d for d in dbs.values()):  # bench/importing.py
        rows += [
            ("`lifecycle import` of the fleet file, s", lambda d: f"{d['import']['import']['seconds']:.1f}"),
            (
                "  MB / rows written",
                lambda d: f"{d['import']['file_mb']:.1f} / {d['import']['total_rows']:,}",
            ),
            ("  rows/s", lambda d: f"{d['import']['import']['rows_per_s']:,.0f}"),
            (
                "  floor (raw bulk insert of the same rows), s",
                lambda d: f"{d['import']['floor']['seconds']:.2f}",
            ),
            ("  ratio import / floor (target <= 3)", lambda d: f"{d['import']['ratio']:.1f}"),
            (
                "  peak RSS of the import process, MB (target <= 300)",
                lambda d: f"{d['import']['import']['peak_rss_mb']:.0f}",
            ),
            ("  re-import, no changes, s", lambda d: f"{d['import']['reimport']['seconds']:.1f}"),
        ]
    names = list(dbs)
    lines = [f"| scale {report['scale']:g} | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    for label, fmt in rows:
        lines.append(f"| {label} | " + " | ".join(fmt(dbs[n]) for n in names) + " |")
    for name, d in report["databases"].items():
        if "skipped" in d:
            lines.append(f"\n{name}: skipped ({d['skipped']})")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="1.0 = the reference fleet (default)")
    parser.add_argument("--db", default="sqlite,postgres", help="comma-separated: sqlite, postgres")
    parser.add_argument("--inline", action="store_true", help="run every step in this process")
    parser.add_argument("--no-write", action="store_true", help="do not write bench/results/*.json")
    parser.add_argument("--no-import", action="store_true", help="skip the import bench (bench/importing.py)")
    parser.add_argument(
        "--delivery",
        default="0.1,0.5,1.0",
        metavar="SCALES",
        help="the delivery benchmark's scales (bench/delivery.py); 'none' to skip it",
    )
    parser.add_argument(
        "--no-commands", action="store_true", help="skip timing every CLI command (bench/commands.py)"
    )
    parser.add_argument("--step", choices=STEPS, help=argparse.SUPPRESS)  # a child process
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.scale <= 0:
        parser.error("--scale must be positive")
    if args.step:
        _child(args.step, args.url, args.scale, args.workdir)
        return 0
    dbs = tuple(d.strip() for d in args.db.split(",") if d.strip())
    unknown = [d for d in dbs if d not in DATABASES]
    if unknown:
        parser.error(f"--db: unknown database {', '.join(unknown)} (use sqlite, postgres)")
    results_dir = None if args.no_write else RESULTS_DIR
    delivery_scales = (
        () if args.delivery == "none" else tuple(float(x) for x in args.delivery.split(",") if x)
    )
    report = run(
        args.scale,
        dbs,
        isolate=not args.inline,
        results_dir=results_dir,
        with_import=not args.no_import,
        delivery_scales=delivery_scales,
        with_commands=not args.no_commands,
    )
    print()
    print(table(report))
    if report.get("commands"):
        from bench import commands

        print("\nCommands\n")
        print(commands.table(report["commands"]))
    if report.get("delivery"):
        from bench import delivery

        print("\nDelivery\n")
        print(delivery.table(report["delivery"]))
    if "path" in report:
        print(f"\nwritten to {report['path']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
