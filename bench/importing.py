"""The import benchmark: `python -m bench.importing [--scale 0.1,0.5,1.0] [--db sqlite,postgres]`.

Also a step of `python -m bench.run` (`make bench`). For each database and scale, in one run:

1. **file**: the reference fleet (`bench.fleet`'s distributions and seed) written as a registry YAML
   file: products, releases with their four milestones (dates less than 3 months after `at` carry a
   `short_notice_reason`), customers with service, contacts and deployments (removed deployments
   cannot be said in a file: they are left out). Not timed.
2. **parse**, for information, in a child process: the strict reader (`lifecycle.loader`: libyaml's
   event parser, objects built by the strict rules) against `yaml.load(..., yaml.CSafeLoader)`.
3. **import**: `lifecycle import FILE --at AT` in a child process on a fresh migrated database: start-up,
   reading, checks, writes, commit; wall time and the child's peak RSS (`wait4`, from a small launcher: bench/spawn.py). Then the same file
   again (**re-import**, "no changes").
4. **floor**: every row the import wrote (products, releases, milestones, change sets and history,
   customers, contacts, deployments, audit rows) dumped, the tables emptied, then inserted raw in one
   transaction, commit included: `executemany` through `sqlite3` (the application's pragmas) or
   `COPY ... FROM STDIN` on PostgreSQL. **Ratio = import time / floor time.**
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import pickle
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa

from bench import fleet

ROOT = Path(__file__).resolve().parent.parent
# The tables an import writes, parents first.
TABLES = (
    "product",
    "release",
    "milestone",
    "registrychange",
    "milestonechange",
    "customer",
    "contact",
    "deployment",
    "auditevent",
)
SHORT_REASON = "bench: dates less than 3 months away"


# ------------------------------------------------------------------------------------------- the file


def _q(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)  # a JSON string is a YAML double-quoted scalar


def write_file(path: Path, scale: float, at: dt.datetime = fleet.AT, seed: int = fleet.SEED) -> dict:
    """Write the fleet at `scale` as a registry YAML file; return the row counts it holds."""
    from lifecycle import policy

    size = fleet.size_for(scale)
    rng = random.Random(seed)  # drawn in the order bench.fleet.generate draws
    products = list(fleet._products(size, at))
    releases = list(fleet._releases(size, at))
    counts = {
        "products": len(products),
        "releases": len(releases),
        "milestones": 0,
        "customers": 0,
        "contacts": 0,
        "deployments": 0,
    }
    by_release: dict[int, list[dict]] = {}
    for m in fleet._milestones(size, at, rng):
        by_release.setdefault(m["release_id"], []).append(m)
    customers = list(fleet._customers(size, at, rng))
    contacts: dict[int, list[dict]] = {}
    for c in fleet._contacts(size, at, rng):
        contacts.setdefault(c["customer_id"], []).append(c)
    deployments: dict[int, list[dict]] = {}
    for d in fleet._deployments(size, at, rng):
        if d["removed_at"] is None:
            deployments.setdefault(d["customer_id"], []).append(d)
    release_of = {r["id"]: r for r in releases}
    slug_of = {p["id"]: p["slug"] for p in products}
    with path.open("w", encoding="utf-8") as out:
        out.write(
            f"# The bench fleet at scale {scale:g} (bench/importing.py). Import with --at {at.date()}.\n"
        )
        out.write("products:\n")
        by_product: dict[int, list[dict]] = {}
        for r in releases:
            by_product.setdefault(r["product_id"], []).append(r)
        for p in products:
            out.write(f"  - slug: {p['slug']}\n    name: {_q(p['name'])}\n    releases:\n")
            for r in by_product.get(p["id"], []):
                out.write(f"      - version: {_q(r['version'])}\n        released: {r['released']}\n")
                if r["upgrade_to"]:
                    out.write(f"        upgrade_to: {_q(r['upgrade_to'])}\n")
                out.write("        milestones:\n")
                for m in by_release.get(r["id"], []):
                    counts["milestones"] += 1
                    if policy.is_short_notice(m["date"], at):
                        out.write(
                            f"          {m['kind']}: {{date: {m['date']}, short_notice_reason: "
                            f"{_q(SHORT_REASON)}}}\n"
                        )
                    else:
                        out.write(f"          {m['kind']}: {m['date']}\n")
        out.write("customers:\n")
        for c in customers:
            counts["customers"] += 1
            out.write(
                f"  - key: {c['key']}\n    name: {_q(c['name'])}\n    timezone: {c['timezone']}\n"
                f"    locale: {c['locale']}\n    account_rep: {c['account_rep']}\n"
            )
            service = [f"start: {c['service_start']}"]
            if c["service_end"]:
                service.append(f"end: {c['service_end']}")
            if c["cores"] is not None:
                service.append(f"cores: {c['cores']}")
            out.write(f"    service: {{{', '.join(service)}}}\n    contacts:\n")
            for ct in contacts.get(c["id"], []):
                counts["contacts"] += 1
                out.write(f"      - {{email: {ct['email']}, name: {_q(ct['name'])}}}\n")
            out.write("    deployments:\n")
            for d in deployments.get(c["id"], []):
                counts["deployments"] += 1
                r = release_of[d["release_id"]]
                cores = f", cores: {d['cores']}" if d["cores"] is not None else ""
                out.write(
                    f"      - {{product: {slug_of[r['product_id']]}, version: {_q(r['version'])}{cores}}}\n"
                )
    counts["bytes"] = path.stat().st_size
    return counts


# ----------------------------------------------------------------------------------------- measuring


def _child_env(url: str, workdir: Path) -> dict[str, str]:
    from bench.run import _step_env

    return {**os.environ, **_step_env(url, workdir)}


def _run_measured(args: list[str], env: dict) -> dict:
    """Like `_timed_child`, with the child's own peak RSS and CPU time (bench.spawn: measured from a
    small launcher, not inflated by this process's size); output to temporary files."""
    from bench import spawn

    with (
        tempfile.TemporaryFile() as out,
        tempfile.TemporaryFile() as err,
        tempfile.TemporaryDirectory() as tmp,
    ):
        report = Path(tmp) / "rusage.json"
        t0 = time.perf_counter()
        proc = subprocess.run(spawn.measured(args, report), cwd=ROOT, env=env, stdout=out, stderr=err)
        seconds = time.perf_counter() - t0
        usage = spawn.result(report)
        out.seek(0)
        err.seek(0)
        return {
            "seconds": seconds,
            "code": proc.returncode,
            "peak_rss_mb": usage["peak_rss_mb"],
            "cpu_seconds": usage["cpu_seconds"],
            "stdout": out.read().decode(errors="replace"),
            "stderr": err.read().decode(errors="replace"),
        }


def _count(url: str) -> dict[str, int]:
    from lifecycle.db import get_engine

    with get_engine(url, check=False).connect() as conn:
        return {t: conn.exec_driver_sql(f'SELECT count(*) FROM "{t}"').scalar_one() for t in TABLES}


def _floor_sqlite(url: str, workdir: Path) -> tuple[float, float]:
    import sqlite3

    path = sa.engine.make_url(url).database
    dump = workdir / "import.dump"
    cols: dict[str, list[str]] = {}
    with sqlite3.connect(path) as raw, dump.open("wb") as out:
        for table in TABLES:
            cols[table] = [r[1] for r in raw.execute(f'PRAGMA table_info("{table}")')]
            cur = raw.execute(f'SELECT {", ".join(cols[table])} FROM "{table}" ORDER BY id')
            while batch := cur.fetchmany(10_000):
                pickle.dump((table, batch), out, protocol=pickle.HIGHEST_PROTOCOL)
    raw = sqlite3.connect(path, isolation_level=None)
    try:
        for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "foreign_keys=ON"):
            raw.execute(f"PRAGMA {pragma}")
        raw.execute("BEGIN IMMEDIATE")
        for table in reversed(TABLES):
            raw.execute(f'DELETE FROM "{table}"')
        raw.execute("COMMIT")
        t0, cpu0 = time.perf_counter(), time.process_time()
        raw.execute("BEGIN IMMEDIATE")
        with dump.open("rb") as f:
            while True:
                try:
                    table, batch = pickle.load(f)
                except EOFError:
                    break
                raw.executemany(
                    f'INSERT INTO "{table}" ({", ".join(cols[table])}) '
                    f"VALUES ({', '.join('?' * len(cols[table]))})",
                    batch,
                )
        raw.execute("COMMIT")
        seconds, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    finally:
        raw.close()
        dump.unlink(missing_ok=True)
    return seconds, cpu


def _floor_postgres(url: str, workdir: Path) -> tuple[float, float]:
    from lifecycle.db import get_engine

    engine = get_engine(url, check=False)
    dumps = {t: workdir / f"{t}.copy" for t in TABLES}
    with engine.begin() as conn:
        raw = conn.connection.driver_connection
        for table, path in dumps.items():
            with (
                path.open("wb") as out,
                raw.cursor() as cur,
                cur.copy(f'COPY (SELECT * FROM "{table}" ORDER BY id) TO STDOUT') as copy,
            ):
                for data in copy:
                    out.write(data)
        conn.exec_driver_sql("TRUNCATE " + ", ".join(f'"{t}"' for t in TABLES) + " RESTART IDENTITY CASCADE")
    t0, cpu0 = time.perf_counter(), time.process_time()
    with engine.begin() as conn:
        raw = conn.connection.driver_connection
        for table, path in dumps.items():
            with path.open("rb") as f, raw.cursor() as cur, cur.copy(f'COPY "{table}" FROM STDIN') as copy:
                while data := f.read(1 << 20):
                    copy.write(data)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    for path in dumps.values():
        path.unlink(missing_ok=True)
    return seconds, cpu


def parse_times(path: str) -> dict:
    """In this (child) process: the strict reader, then PyYAML's C SafeLoader, on the same file."""
    import resource

    import yaml

    from lifecycle import loader

    t0 = time.perf_counter()
    data = loader.load_file(Path(path))
    strict = time.perf_counter() - t0
    rss_strict = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    del data
    t0 = time.perf_counter()
    with open(path, encoding="utf-8") as f:
        data = yaml.load(f, Loader=yaml.CSafeLoader)  # noqa: S506 - CSafeLoader is the safe loader
    c_safe = time.perf_counter() - t0
    del data
    return {"strict_s": strict, "csafeloader_s": c_safe, "strict_peak_rss_mb": rss_strict}


def bench_import(name: str, scale: float, *, log=print) -> dict:
    """The import bench on one database (`sqlite` or `postgres`) at one scale."""
    from bench.run import DATABASES
    from lifecycle import db

    workdir = Path(tempfile.mkdtemp(prefix=f"lifecycle-bench-import-{name}-"))
    try:
        path = workdir / "fleet.yaml"
        t0 = time.perf_counter()
        file_counts = write_file(path, scale)
        generated = time.perf_counter() - t0
        with DATABASES[name](workdir) as url:
            db.upgrade(url)
            db.dispose_engines()
            env = _child_env(url, workdir)
            log(f"  {name}: import bench, scale {scale:g}: parse ...")
            parse = _run_measured([sys.executable, "-m", "bench.importing", "--parse", str(path)], env)
            if parse["code"] != 0:
                raise RuntimeError(f"parse failed:\n{parse['stderr'][-4000:]}")
            parse = {
                **json.loads(parse["stdout"].strip().splitlines()[-1]),
                "peak_rss_mb": parse["peak_rss_mb"],
            }
            cli = [sys.executable, "-m", "lifecycle", "import", str(path), "--at", fleet.AT.isoformat()]
            log(f"  {name}: import ...")
            first = _run_measured(cli, env)
            if first["code"] != 0:
                raise RuntimeError(f"import failed (exit {first['code']}):\n{first['stderr'][-4000:]}")
            log(f"  {name}: re-import ...")
            again = _run_measured(cli, env)
            if again["code"] != 0 or "no changes" not in again["stdout"]:
                raise RuntimeError(
                    f"re-import: exit {again['code']}:\n{again['stdout'][-2000:]}{again['stderr'][-2000:]}"
                )
            rows = _count(url)
            log(f"  {name}: floor ...")
            floor, floor_cpu = (_floor_postgres if url.startswith("postgresql") else _floor_sqlite)(
                url, workdir
            )
            after = _count(url)
            db.dispose_engines()
            if after != rows:
                raise RuntimeError(f"floor: {rows} imported, {after} inserted raw")
        total = sum(rows.values())
        return {
            "scale": scale,
            "file": file_counts,
            "file_mb": file_counts["bytes"] / (1 << 20),
            "file_seconds": generated,
            "rows": rows,
            "total_rows": total,
            "parse": parse,
            "import": {
                "seconds": first["seconds"],
                "rows_per_s": total / first["seconds"],
                "peak_rss_mb": first["peak_rss_mb"],
                "cpu_seconds": first["cpu_seconds"],
                "summary": first["stdout"].splitlines()[:4],
            },
            "reimport": {
                "seconds": again["seconds"],
                "peak_rss_mb": again["peak_rss_mb"],
                "summary": again["stdout"].splitlines()[:1],
            },
            "floor": {
                "seconds": floor,
                "rows_per_s": total / floor,
                "cpu_seconds": floor_cpu,
                "method": "COPY FROM STDIN" if name == "postgres" else "sqlite3 executemany",
            },
            "ratio": first["seconds"] / floor,
            # The machine may be shared: the CPU time of the import's process against the floor's (on
            # SQLite the floor's work is all in its process; on PostgreSQL most of it is the server's).
            "cpu_ratio": first["cpu_seconds"] / floor_cpu if floor_cpu > 0 and name == "sqlite" else None,
        }
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def table(results: list[dict]) -> str:
    """One column per (database, scale)."""
    heads = [f"{r['db']} {r['scale']:g}" for r in results]
    rows = [
        ("file, MB", lambda r: f"{r['file_mb']:.1f}"),
        ("rows written (all tables, audit incl.)", lambda r: f"{r['total_rows']:,}"),
        (
            "  customers / contacts / deployments",
            lambda r: f"{r['rows']['customer']:,} / {r['rows']['contact']:,} / {r['rows']['deployment']:,}",
        ),
        ("  milestones / audit rows", lambda r: f"{r['rows']['milestone']:,} / {r['rows']['auditevent']:,}"),
        ("`lifecycle import`, s (child process, start-up incl.)", lambda r: f"{r['import']['seconds']:.1f}"),
        ("  rows/s", lambda r: f"{r['import']['rows_per_s']:,.0f}"),
        ("  peak RSS, MB (target <= 300 at 1.0)", lambda r: f"{r['import']['peak_rss_mb']:.0f}"),
        ("  CPU s of the import process", lambda r: f"{r['import']['cpu_seconds']:.1f}"),
        ("floor (raw bulk insert of the same rows), s", lambda r: f"{r['floor']['seconds']:.2f}"),
        ("  rows/s", lambda r: f"{r['floor']['rows_per_s']:,.0f}"),
        ("**ratio import / floor** (target <= 3)", lambda r: f"**{r['ratio']:.1f}**"),
        (
            "ratio of CPU time import / floor (SQLite: both in-process)",
            lambda r: f"{r['cpu_ratio']:.1f}" if r.get("cpu_ratio") else "n/a",
        ),
        ("re-import, no changes, s", lambda r: f"{r['reimport']['seconds']:.1f}"),
        ("  peak RSS, MB", lambda r: f"{r['reimport']['peak_rss_mb']:.0f}"),
        ("parse only: strict reader (libyaml events), s", lambda r: f"{r['parse']['strict_s']:.1f}"),
        ("parse only: `yaml.CSafeLoader`, s", lambda r: f"{r['parse']['csafeloader_s']:.1f}"),
    ]
    lines = ["| | " + " | ".join(heads) + " |", "|---|" + "---:|" * len(heads)]
    for label, fmt in rows:
        lines.append(f"| {label} | " + " | ".join(fmt(r) for r in results) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.importing", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--scale", default="0.1,0.5,1.0", help="comma-separated scales (1.0 = the reference fleet)"
    )
    parser.add_argument("--db", default="sqlite,postgres", help="comma-separated: sqlite, postgres")
    parser.add_argument("--write-file", type=Path, help="only write the fleet file at the (first) scale")
    parser.add_argument("--parse", help=argparse.SUPPRESS)  # a child process
    args = parser.parse_args(argv)
    if args.parse:
        print(json.dumps(parse_times(args.parse)))
        return 0
    try:
        scales = [float(s) for s in args.scale.split(",") if s.strip()]
    except ValueError:
        parser.error("--scale: numbers, comma-separated")
    if not scales or any(s <= 0 for s in scales):
        parser.error("--scale must be positive")
    if args.write_file:
        print(json.dumps(write_file(args.write_file, scales[0])))
        return 0
    from bench.run import DATABASES, postgres_available

    results = []
    for name in (d.strip() for d in args.db.split(",") if d.strip()):
        if name not in DATABASES:
            parser.error(f"--db: unknown database {name!r} (use sqlite, postgres)")
        if name == "postgres" and (why := postgres_available()):
            print(f"postgres: skipped ({why})")
            continue
        for scale in scales:
            results.append({"db": name, **bench_import(name, scale)})
    print()
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
