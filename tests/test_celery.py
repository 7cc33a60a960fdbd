"""Celery for real: a worker and beat on Redis with PostgreSQL, and the embedded no-server default.

The notices in these tests are due at the real current time (the worker reads the clock), so the
registry is built relative to now.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import time

import pytest

from tests import world as w

pytestmark = pytest.mark.slow


def _due_now_registry(customers=("acme", "globex")):
    """A milestone 40 days away registered today: the 1-month stage is due at once for everyone."""
    now = dt.datetime.now(dt.UTC)
    w.product(at=now)
    w.milestone((now + dt.timedelta(days=40)).date(), at=now, reason="security fix")
    for i, key in enumerate(customers):
        w.customer(key, ["Asia/Shanghai", "Europe/Berlin", "America/Los_Angeles"][i % 3], at=now)


def _spawn(args: list[str], tmp_path, name: str, tick_seconds: float = 1) -> subprocess.Popen:
    env = {**os.environ, "LIFECYCLE_TICK_SECONDS": str(tick_seconds)}
    log = open(tmp_path / f"{name}.log", "w")  # noqa: SIM115 - closed with the process
    return subprocess.Popen(
        args, env=env, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )


def _stop(*procs: subprocess.Popen) -> None:
    for p in procs:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()


def _wait_for(predicate, timeout=60.0, what="condition", logs=()):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.5)
    text = "\n".join(p.read_text()[-3000:] for p in logs if p.exists())
    raise AssertionError(f"timed out waiting for {what}\n{text}")


def _all_delivered(n_customers: int) -> bool:
    notices = w.notices(audience="customer")
    return len(notices) > 0 and len([x for x in notices if x.status == "sent"]) == n_customers


CELERY = [sys.executable, "-m", "celery", "-A", "tasks"]


@pytest.mark.redis
def test_a_celery_worker_and_beat_on_redis_deliver_due_notices(pg_db, redis_db, tmp_path):
    _due_now_registry()
    worker = _spawn(
        [*CELERY, "worker", "--pool=threads", "-c", "2", "-Q", "lifecycle", "--loglevel=info"],
        tmp_path,
        "worker",
    )
    beat = _spawn([*CELERY, "beat", "--loglevel=info", "-s", str(tmp_path / "beat")], tmp_path, "beat")
    try:
        _wait_for(
            lambda: _all_delivered(2),
            what="notices delivered by the Redis worker",
            logs=[tmp_path / "worker.log", tmp_path / "beat.log"],
        )
    finally:
        _stop(worker, beat)
    assert {d.channel for d in w.deliveries()} == {"portal", "email"}
    assert all(d.status in ("sent", "delivered") for d in w.deliveries())
    assert len(list((tmp_path / "outbox").glob("*.eml"))) >= 2


@pytest.mark.redis
def test_flushing_redis_loses_nothing_the_next_tick_delivers_it_all(pg_db, redis_db, tmp_path):
    _due_now_registry(customers=("acme", "globex", "initech"))
    # A tick queues one delivery task per batch of customers on Redis, but no worker runs ...
    subprocess.run(
        [sys.executable, "-c", "from tasks.jobs import tick; tick.apply()"],
        check=True,
        env={**os.environ},
        cwd=tmp_path,
        timeout=60,
    )
    queued = redis_db.llen("lifecycle")
    assert queued == 1  # the three customers in one batch, not a message per customer
    # ... and Redis loses its queue (a restart without persistence).
    redis_db.flushdb()
    assert w.sent() == []
    worker = _spawn(
        [
            *CELERY,
            "worker",
            "-B",
            "--pool=threads",
            "-c",
            "2",
            "-Q",
            "lifecycle",
            "--loglevel=info",
            "-s",
            str(tmp_path / "beat"),
        ],
        tmp_path,
        "worker",
    )
    try:
        _wait_for(
            lambda: _all_delivered(3),
            what="notices delivered after the flush",
            logs=[tmp_path / "worker.log"],
        )
    finally:
        _stop(worker)
    assert len(w.sent()) == 3


def test_the_embedded_worker_delivers_without_any_server(sqlite_db, tmp_path, monkeypatch):
    _due_now_registry()
    worker = _spawn([sys.executable, "-m", "lifecycle", "worker"], tmp_path, "embedded")
    try:
        _wait_for(
            lambda: _all_delivered(2),
            what="notices delivered by `lifecycle worker`",
            logs=[tmp_path / "embedded.log"],
        )
    finally:
        _stop(worker)
    assert len(list((tmp_path / "outbox").glob("*.eml"))) >= 2
