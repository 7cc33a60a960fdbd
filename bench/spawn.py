"""A child's own peak memory. On Linux a process keeps, across exec, the peak resident memory of the
process it was forked from, so `ru_maxrss` of a command started by a large bench process reports at
least the bench's own size. `measured(argv)` starts the command from a small launcher process (a fresh
interpreter that imports nothing), which forks and execs it and writes the command's own `wait4`
figures to a file; `result(path)` reads them."""

from __future__ import annotations

import json
import sys
from pathlib import Path

_LAUNCHER = """
import json, os, sys
pid = os.fork()
if pid == 0:
    try:
        os.execvp(sys.argv[2], sys.argv[2:])
    finally:
        os._exit(127)
_, status, ru = os.wait4(pid, 0)
with open(sys.argv[1], "w") as f:
    json.dump({"peak_rss_mb": ru.ru_maxrss / 1024, "cpu_seconds": ru.ru_utime + ru.ru_stime}, f)
sys.exit(os.waitstatus_to_exitcode(status) % 256)
"""


def measured(argv: list[str], report: Path) -> list[str]:
    """`argv` wrapped in the launcher, which writes the command's peak RSS and CPU time to `report`."""
    return [sys.executable, "-S", "-c", _LAUNCHER, str(report), *argv]


def result(report: Path) -> dict:
    try:
        return json.loads(report.read_text())
    except (OSError, ValueError):
        return {"peak_rss_mb": float("nan"), "cpu_seconds": float("nan")}
