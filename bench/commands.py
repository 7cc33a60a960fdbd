"""Every CLI command a person runs against the reference fleet: time and peak memory (issue 11: "peak
memory <= 300 MB for every CLI command at the reference fleet"; "`lifecycle plan` with no flags prints a
readable summary within seconds, `lifecycle plan --json | head` returns at once").

    python -m bench.commands                 # the reference fleet (scale 1.0), SQLite
    python -m bench.commands --scale 0.1

The fleet of bench/fleet.py is written to a SQLite file, planned, and released and delivered at
`fleet.AT` as workers would have (bench.run's setup: the compliance report then has rows). Then each
command runs as a real `lifecycle` subprocess, its output read and thrown away; its wall time and its
own peak RSS (`wait4` in a small launcher, bench/spawn.py) are reported. `... | head` commands read the first lines and close the pipe:
their time is the time to those lines (the command then ends quietly on the closed pipe).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LIFECYCLE = [sys.executable, "-m", "lifecycle"]


def _commands(at: dt.datetime, customer: str, rep: str) -> list[tuple[str, list[str], int | None]]:
    """(label, arguments, lines to read then close, or None for all)."""
    t = (at + dt.timedelta(minutes=1)).isoformat()
    t2 = (at + dt.timedelta(minutes=2)).isoformat()
    return [
        ("lifecycle --help", ["--help"], None),
        ("lifecycle tick (after the catch-up: full)", ["tick", "--at", t], None),
        ("lifecycle tick (nothing due: idle note)", ["tick", "--at", t2], None),
        ("lifecycle plan (summary per day, stage, channel)", ["plan", "--at", t], None),
        ("lifecycle plan --json | head", ["plan", "--json", "--at", t], 10),
        ("lifecycle plan --detail --json | head", ["plan", "--detail", "--json", "--at", t], 10),
        (
            "lifecycle plan --detail --customer C",
            ["plan", "--detail", "--customer", customer, "--at", t],
            None,
        ),
        ("lifecycle report compliance --summary", ["report", "compliance", "--summary", "--at", t], None),
        (
            "lifecycle report compliance --json (every row)",
            ["report", "compliance", "--json", "--at", t],
            None,
        ),
        ("lifecycle report compliance --json | head", ["report", "compliance", "--json", "--at", t], 10),
        ("lifecycle report agreements --rep R", ["report", "agreements", "--rep", rep, "--at", t], None),
        (
            "lifecycle report agreements --json (every row)",
            ["report", "agreements", "--json", "--at", t],
            None,
        ),
        ("lifecycle report deliveries", ["report", "deliveries"], None),
        ("lifecycle milestone list --json", ["milestone", "list", "--json"], None),
        ("lifecycle customer list --json", ["customer", "list", "--json"], None),
        ("lifecycle escalation list --rep R", ["escalation", "list", "--rep", rep, "--at", t], None),
        ("lifecycle inbox C", ["inbox", customer], None),
    ]


def _run(args: list[str], env: dict, head: int | None, report: Path) -> dict:
    from bench import spawn

    t0 = time.perf_counter()
    proc = subprocess.Popen(
        spawn.measured([*LIFECYCLE, *args], report), stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    )
    assert proc.stdout is not None and proc.stderr is not None
    lines = out_bytes = 0
    first = None
    for line in proc.stdout:
        lines += 1
        out_bytes += len(line)
        if head is not None and lines >= head:
            first = time.perf_counter() - t0
            proc.stdout.close()
            break
    err = proc.stderr.read()
    code = proc.wait()
    seconds = time.perf_counter() - t0
    ok = code == 0 or (head is not None and code == 141)
    return {
        "seconds": first if first is not None else seconds,
        "peak_rss_mb": spawn.result(report)["peak_rss_mb"],
        "exit": code,
        "ok": ok,
        "lines": lines,
        "mb_out": out_bytes / 1e6,
        "stderr": err.decode("utf-8", "replace")[-400:] if not ok else "",
    }


def run(scale: float, log=print, only: tuple[str, ...] | None = None) -> dict:
    """`only`: the labels of the commands to run (default: every one)."""
    from bench import fleet
    from bench.run import _mark_delivered, _step_env
    from lifecycle import db, scheduler
    from lifecycle.config import reset_settings

    workdir = Path(tempfile.mkdtemp(prefix="lifecycle-bench-commands-"))
    try:
        url = f"sqlite:///{workdir / 'bench.db'}"
        env = {**os.environ, **_step_env(url, workdir)}
        os.environ.update(_step_env(url, workdir))
        reset_settings()
        log(f"  commands, scale {scale}: fleet, plan, catch-up (setup) ...")
        db.upgrade(url)
        size = fleet.generate(url, scale=scale)
        # The database part of a tick (ticks.prepare without the calendar exports: 20,000 calendar files
        # would take most of the setup and are not what is measured here).
        with db.session_scope() as session:
            scheduler.plan(session, fleet.AT)
            scheduler.release_due(session, fleet.AT)
            due = scheduler.customers_with_due_deliveries(session, fleet.AT)
        _mark_delivered(url, fleet.AT)
        db.dispose_engines()
        report: dict = {
            "scale": scale,
            "fleet": size,
            "customers_due_at_setup": len(due),
            "commands": {},
        }
        import sqlalchemy as sa

        engine = sa.create_engine(url)
        with engine.connect() as conn:
            customer = conn.exec_driver_sql("SELECT key FROM customer ORDER BY id LIMIT 1").scalar()
            rep = conn.exec_driver_sql("SELECT account_rep FROM customer ORDER BY id LIMIT 1").scalar()
            report["notices"] = conn.exec_driver_sql("SELECT count(*) FROM notice").scalar()
        engine.dispose()
        for label, args, head in _commands(fleet.AT, customer, rep):
            if only is not None and label not in only:
                continue
            log(f"  {label} ...")
            report["commands"][label] = _run(args, env, head, workdir / "rusage.json")
        return report
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def table(report: dict) -> str:
    rows = [
        f"| command (scale {report['scale']:g}, {report['notices']:,} notices) | s | peak RSS MB | lines out | MB out | ok |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for label, r in report["commands"].items():
        rows.append(
            f"| `{label}` | {r['seconds']:.2f} | {r['peak_rss_mb']:.0f} | {r['lines']:,} | {r['mb_out']:.1f} | "
            f"{'yes' if r['ok'] else 'exit ' + str(r['exit'])} |"
        )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0)
    args = parser.parse_args(argv)
    report = run(args.scale)
    print()
    print(table(report))
    bad = {k: v["stderr"] for k, v in report["commands"].items() if not v["ok"]}
    if bad:
        print(json.dumps(bad, indent=2))
    return 0 if not bad else 1


if __name__ == "__main__":
    sys.exit(main())
