"""How the embedded worker is started: one Celery worker with embedded beat (`-B`).

On the no-server default (file-system broker) it uses a threads pool, so one process does the
ticks and the deliveries; with LIFECYCLE_BROKER_URL it is a plain worker for that broker.
"""

from __future__ import annotations

import sys

from lifecycle.config import get_settings
from lifecycle.files import private_dir


def worker_argv(loglevel: str = "info", concurrency: int = 2) -> list[str]:
    settings = get_settings()
    argv = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "tasks",
        "worker",
        "-B",
        f"--loglevel={loglevel}",
        "--pool=threads",
        f"--concurrency={concurrency}",
        "-Q",
        "lifecycle",
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
    ]
    private_dir(settings.state_dir)
    argv += ["--schedule", str(settings.state_dir / "beat-schedule")]
    return argv
