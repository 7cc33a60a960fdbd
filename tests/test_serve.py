"""`lifecycle serve` as an operator runs it: one command, a free port, the web app, the API docs, the
feeds and the portal; the embedded worker (no Redis) delivers a notice that is due; SIGTERM stops the
whole process tree. With LIFECYCLE_BROKER_URL set it serves the web only."""

from __future__ import annotations

import datetime as dt
import os
import re
import signal
import subprocess
import sys
import time

import httpx
import pytest
from sqlmodel import select

from lifecycle.db import dispose_engines, session_scope
from lifecycle.models import DELIVERED_STATUSES, Delivery, Notice
from tests import webworld
from tests.test_browser import free_port

pytestmark = pytest.mark.slow


def start(tmp_path, port: int, *args: str, **env) -> tuple[subprocess.Popen, object]:
    log = open(tmp_path / f"serve-{port}.log", "w+")  # noqa: SIM115 - closed by the caller
    proc = subprocess.Popen(
        [sys.executable, "-m", "lifecycle", "serve", "--port", str(port), *args],
        cwd=tmp_path,
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "COLUMNS": "200", "LIFECYCLE_TICK_SECONDS": "1", **env},
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                return proc, log
        except httpx.TransportError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            log.seek(0)
            proc.kill()
            pytest.fail(f"lifecycle serve did not come up:\n{log.read()}")
        time.sleep(0.2)


def stop(proc: subprocess.Popen) -> int:
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(45)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise


def test_serve_answers_the_web_and_its_embedded_worker_delivers_a_due_notice(sqlite_db, tmp_path):
    webworld.build()  # acme's 3.14 ends in 20 days: its 1-month notice is overdue, so due at once
    dispose_engines()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc, log = start(tmp_path, port, LIFECYCLE_BASE_URL=base)
    try:
        assert httpx.get(f"{base}/docs").status_code == 200
        feed = httpx.get(f"{base}/calendars/products/acp.ics")
        assert feed.status_code == 200 and feed.text.startswith("BEGIN:VCALENDAR")
        portal = httpx.get(f"{base}/portal", follow_redirects=True)
        assert portal.status_code == 200 and str(portal.url).startswith(f"{base}/login")
        assert 'name="token"' in portal.text
        deadline = time.monotonic() + 60
        channels: set[str] = set()
        while channels < {"email", "portal"} and time.monotonic() < deadline:
            time.sleep(0.5)
            with session_scope() as s:
                channels = set(
                    s.exec(select(Delivery.channel).where(Delivery.status.in_(DELIVERED_STATUSES)))
                )
        log.seek(0)
        output = log.read()
        assert channels >= {"email", "portal"}, output
        assert list((tmp_path / "outbox").rglob("*.eml")), "the file email backend wrote no .eml"
    finally:
        code = stop(proc)
        log.seek(0)
        output = log.read()
        log.close()
    assert code == 0, output
    for path in ("/portal", "/dashboard", "/registry", "/docs"):
        assert f"{base}{path}" in output
    assert "No API tokens existed" not in output  # the world has tokens already
    worker_pid = int(re.search(r"embedded worker and beat started \(pid (\d+)\)", output).group(1))
    with pytest.raises(ProcessLookupError):
        os.kill(worker_pid, 0)  # stopped and reaped with its parent


def test_serve_with_a_broker_url_serves_the_web_only_and_creates_the_first_token(sqlite_db, tmp_path):
    port = free_port()
    proc, log = start(tmp_path, port, LIFECYCLE_BROKER_URL="redis://127.0.0.1:1/0")
    try:
        assert httpx.get(f"http://127.0.0.1:{port}/docs").status_code == 200
    finally:
        code = stop(proc)
        log.seek(0)
        output = log.read()
        log.close()
    assert code == 0, output
    assert "serving the web only" in output and "embedded worker" not in output
    secret = re.search(r"\n\s+(lc_\S+)\n", output).group(1)
    assert "lifecycle token create --role rep" in output
    from fastapi.testclient import TestClient

    from lifecycle.web.app import create_app

    me = TestClient(create_app()).get("/api/me", headers={"Authorization": f"Bearer {secret}"})
    assert me.status_code == 200 and me.json()["role"] == "pm"


def test_serve_at_puts_the_pages_and_the_embedded_worker_on_one_simulated_clock(sqlite_db, tmp_path):
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=400)
    # acme's 3.14 ends 20 days after `later`: its 1-month notice is due there, and not for a year here.
    webworld.build(now=later)
    dispose_engines()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc, log = start(tmp_path, port, "--at", later.isoformat(), LIFECYCLE_BASE_URL=base)
    try:
        page = httpx.get(f"{base}/login").text
        assert (
            f"Simulated clock: it is {later.date().isoformat()}" in page
            or f"Simulated clock: it is {(later + dt.timedelta(days=1)).date().isoformat()}" in page
        )
        deadline = time.monotonic() + 60
        sent: list = []
        while not sent and time.monotonic() < deadline:
            time.sleep(0.5)
            with session_scope() as s:
                sent = s.exec(
                    select(Notice.sent_at).where(
                        Notice.sent_at.is_not(None), Notice.kind == "stage", Notice.slot == "1m"
                    )
                ).all()
    finally:
        code = stop(proc)
        log.seek(0)
        output = log.read()
        log.close()
    assert code == 0, output
    assert "Simulated clock" in output
    assert sent, output  # the worker's tick ran at the simulated time...
    sent_at = sent[0] if sent[0].tzinfo else sent[0].replace(tzinfo=dt.UTC)
    assert abs(sent_at - later) < dt.timedelta(minutes=5)  # ...and recorded it as the send time
