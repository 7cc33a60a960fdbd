"""Chaos: the delivery promises hold with workers killed, a failing provider and concurrent changes.

1. 500 customers due, on PostgreSQL with real Celery workers and beat on Redis; a worker is killed with
   SIGKILL ten times during delivery (the whole threads-pool worker, or one child of a prefork worker);
   the SendGrid stub refuses 30 % of the requests (500, 503, 429) and sometimes accepts one and then
   hangs past the send deadline; its event webhook posts `processed` events to the real web app.
   Counted from the stub's accepted requests keyed by delivery id: nothing is lost, and every duplicate
   is one the reports list as a possible duplicate.
2. Four tick processes at once while another process moves and withdraws milestones: no email about a
   withdrawn milestone (or quoting a moved milestone's old date) reaches the provider after the change
   committed.

Both print their numbers (run with `-s` to see them).
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections import Counter, defaultdict

import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from lifecycle import registry, reports
from lifecycle.config import reset_settings
from lifecycle.db import session_scope
from lifecycle.models import Contact, Customer, Delivery, Deployment, Milestone, Notice, Release
from tests import world as w
from tests.conftest import utc
from tests.sendgrid_stub import SendGridStub
from tests.test_celery import CELERY, _spawn, _stop, _wait_for

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

D, N = Delivery.__table__, Notice.__table__


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _key_pair() -> tuple[ec.EllipticCurvePrivateKey, str]:
    private = ec.generate_private_key(ec.SECP256R1())
    der = private.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private, base64.b64encode(der).decode()


def _fleet(n: int, now: dt.datetime) -> None:
    """n customers, one contact each, running a release whose end of life is 100 days away: the
    6-month stage is overdue for everyone, so one notice per customer is due now (portal + email).
    Written in bulk (what `lifecycle import` would write), the registry through its functions."""
    w.product(at=now)
    w.milestone((now + dt.timedelta(days=100)).date(), at=now)
    C, K, P = Customer.__table__, Contact.__table__, Deployment.__table__
    with session_scope() as s:
        conn = s.connection()
        release = s.exec(sa.select(Release).where(Release.version == "3.16")).scalars().one()
        ids = (
            conn.execute(
                C.insert().returning(C.c.id),
                [
                    {
                        "key": f"c{i:03d}",
                        "name": f"Customer {i}",
                        "timezone": "Europe/Berlin",
                        "locale": "en",
                        "account_rep": "rep@vendor.example",
                        "calendar_token": registry.new_calendar_token(),
                        "created_at": now,
                    }
                    for i in range(n)
                ],
            )
            .scalars()
            .all()
        )
        conn.execute(
            K.insert(),
            [
                {
                    "customer_id": cid,
                    "email": f"ops@c{i:03d}.example",
                    "undeliverable": False,
                    "created_at": now,
                }
                for i, cid in enumerate(ids)
            ],
        )
        conn.execute(
            P.insert(), [{"customer_id": cid, "release_id": release.id, "added_at": now} for cid in ids]
        )
        registry.mark_dirty(s, release_ids=[release.id])


def _state() -> dict:
    with session_scope() as s:
        rows = (
            s.connection()
            .execute(sa.select(D.c.channel, D.c.status, sa.func.count()).group_by(D.c.channel, D.c.status))
            .all()
        )
        notices = (
            s.connection()
            .execute(
                sa.select(N.c.status, sa.func.count()).where(N.c.audience == "customer").group_by(N.c.status)
            )
            .all()
        )
    return {"deliveries": {f"{c}:{st}": n for c, st, n in rows}, "notices": dict(notices)}


def _done(n: int) -> bool:
    state = _state()
    settled = state["deliveries"].get("email:sent", 0) + state["deliveries"].get("email:delivered", 0)
    return (
        settled == n
        and state["deliveries"].get("portal:delivered", 0) == n
        and state["notices"].get("sent", 0) == n
    )


def _pool_children(pid: int) -> list[int]:
    children = []
    for task in os.listdir(f"/proc/{pid}/task") if os.path.exists(f"/proc/{pid}/task") else []:
        try:
            with open(f"/proc/{pid}/task/{task}/children") as f:
                children += [int(x) for x in f.read().split()]
        except OSError:
            pass
    return children


@pytest.mark.redis
def test_ten_worker_kills_and_a_flaky_provider_lose_nothing_and_every_duplicate_is_flagged(
    pg_db, redis_db, tmp_path, monkeypatch
):
    customers = 500
    deadline = 2.0
    private, public = _key_pair()
    port = _free_port()
    monkeypatch.setenv("LIFECYCLE_SENDGRID_WEBHOOK_PUBLIC_KEY", public)
    monkeypatch.setenv("LIFECYCLE_BASE_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("LIFECYCLE_EMAIL_BACKEND", "sendgrid")
    monkeypatch.setenv("LIFECYCLE_SEND_DEADLINE", str(deadline))
    monkeypatch.setenv("LIFECYCLE_SENDGRID_TIMEOUT", str(deadline))
    monkeypatch.setenv("LIFECYCLE_RECONCILE_SECONDS", "20")
    monkeypatch.setenv("LIFECYCLE_RETRY_BASE_SECONDS", "1")
    monkeypatch.setenv("LIFECYCLE_RETRY_MAX_BACKOFF_SECONDS", "4")
    now = dt.datetime.now(dt.UTC)
    _fleet(customers, now)

    stub = SendGridStub(error_rate=0.3, hang_rate=0.03, hang_seconds=deadline + 1.5, seed=11).start()
    monkeypatch.setenv("SENDGRID_API_KEY", stub.api_key)
    monkeypatch.setenv("LIFECYCLE_SENDGRID_HOST", stub.url)
    reset_settings()
    logs = [tmp_path / f"{name}.log" for name in ("web", "threads", "prefork", "beat")]
    web = _spawn(
        [sys.executable, "-m", "lifecycle", "serve", "--port", str(port)], tmp_path, "web", tick_seconds=2
    )
    procs: dict[str, subprocess.Popen] = {}
    threads_cmd = [
        *CELERY,
        "worker",
        "--pool=threads",
        "-c",
        "4",
        "-Q",
        "lifecycle",
        "--loglevel=warning",
        "-n",
        "threads@%h",
        "--without-gossip",
        "--without-mingle",
    ]
    try:
        _wait_for(lambda: _http_ok(f"http://127.0.0.1:{port}/healthz"), what="the web app", logs=logs)
        stub.post_events(f"http://127.0.0.1:{port}/webhooks/sendgrid", private, interval=0.5)
        procs["threads"] = _spawn(threads_cmd, tmp_path, "threads", tick_seconds=2)
        procs["prefork"] = _spawn(
            [
                *CELERY,
                "worker",
                "--pool=prefork",
                "-c",
                "2",
                "-Q",
                "lifecycle",
                "--loglevel=warning",
                "-n",
                "prefork@%h",
                "--without-gossip",
                "--without-mingle",
            ],
            tmp_path,
            "prefork",
            tick_seconds=2,
        )
        procs["beat"] = _spawn(
            [*CELERY, "beat", "--loglevel=warning", "-s", str(tmp_path / "beat")],
            tmp_path,
            "beat",
            tick_seconds=2,
        )
        _wait_for(lambda: len(stub.accepted) >= 20, what="the first accepted emails", logs=logs)
        rng = random.Random(5)
        kills: list[str] = []
        while len(kills) < 10:
            time.sleep(rng.uniform(0.8, 1.6))
            children = _pool_children(procs["prefork"].pid)
            if len(kills) % 2 and children:
                os.kill(rng.choice(children), signal.SIGKILL)  # one pool process dies mid-task
                kills.append("prefork child")
            else:
                os.killpg(procs["threads"].pid, signal.SIGKILL)  # the whole worker dies mid-send
                procs["threads"].wait()
                procs["threads"] = _spawn(threads_cmd, tmp_path, f"threads{len(kills)}", tick_seconds=2)
                kills.append("threads worker")
        last_kill = time.monotonic()
        progress_at_last_kill = _state()
        _wait_for(
            lambda: _done(customers),
            timeout=240,
            what="every notice delivered after the last kill",
            logs=logs,
        )
        finished = time.monotonic() - last_kill
        _wait_for(lambda: stub.events_pending == 0, timeout=60, what="the stub's events posted")
    finally:
        _stop(*procs.values(), web)
        stub.stop()

    # Counted at the provider: accepted requests per delivery id.
    accepted = Counter(i for r in stub.accepted for i in r.delivery_ids)
    with session_scope() as s:
        emails = {d.id: d for d in s.exec(sa.select(Delivery).where(Delivery.channel == "email")).scalars()}
        listed = {
            r["id"] for r in reports.deliveries(s, dt.datetime.now(dt.UTC))["rows"] if r["possible_duplicate"]
        }
        compliance = reports.compliance(s, dt.datetime.now(dt.UTC))
    duplicates = sorted(i for i, n in accepted.items() if n > 1)
    lost = sorted(i for i, d in emails.items() if d.status not in ("sent", "delivered") or i not in accepted)
    unknown_now = sum(d.status == "unknown" for d in emails.values())
    flagged = sorted(i for i, d in emails.items() if d.possible_duplicate)
    settled = sum(
        a.get("settled", 0) for status, a in stub.webhook_posts if status == 200 and isinstance(a, dict)
    )
    print(
        f"\nchaos: {customers} customers, {len(kills)} kills ({Counter(kills)}), "
        f"{len(stub.requests)} requests at the stub ({Counter(r.status for r in stub.requests)}, "
        f"{sum(1 for r in stub.accepted if not r.answered)} accepted but not answered in time); "
        f"state at the last kill: {progress_at_last_kill}; "
        f"lost {len(lost)}, duplicates {len(duplicates)} (flagged possible duplicates {len(flagged)}, "
        f"listed by the delivery report {len(listed)}), unknown at the end {unknown_now}, "
        f"settled by SendGrid events {settled}; everything delivered {finished:.1f} s after the last kill"
    )
    assert len(kills) == 10
    assert lost == [] and unknown_now == 0
    assert set(duplicates) <= set(flagged) <= listed
    assert compliance["totals"].get("on-time", 0) + compliance["totals"].get("late", 0) == customers
    dup_rows = [r for r in compliance["rows"] if r["possible_duplicates"]]
    assert len(dup_rows) == len({emails[i].notice_id for i in flagged})


def _http_ok(url: str) -> bool:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status == 200
    except (urllib.error.URLError, OSError):
        return False


# ------------------------------------------------------------------------- withdrawals under concurrency

T0 = utc(2026, 12, 30, 12)  # every 6-month stage below is due
VERSIONS = ("1.0", "1.1", "1.2", "1.3", "1.4", "1.5")
TICKS = """
import datetime as dt, pathlib, sys
from lifecycle.ticks import tick
t0, stop = dt.datetime.fromisoformat(sys.argv[1]), pathlib.Path(sys.argv[2])
k = 0
while not stop.exists():
    tick(t0 + dt.timedelta(seconds=20 * k))
    k += 1
"""
MOVER = """
import datetime as dt, json, sys, time
from lifecycle import registry
from lifecycle.db import session_scope
at = dt.datetime.fromisoformat(sys.argv[1])
done = []
for version, action in json.loads(sys.argv[2]):
    with session_scope() as s:
        m = registry.get_milestone(s, "acp", version, "end-of-life")
        old, mid = m.date.isoformat(), m.id
        if action == "withdraw":
            registry.withdraw_milestone(s, m, reason="support extended", at=at)
        else:
            registry.move_milestone(s, m, date=dt.date(2027, 9, 30), reason="customers asked", at=at)
    done.append({"milestone": mid, "action": action, "old_date": old, "committed": time.time()})
    time.sleep(0.6)
json.dump(done, open(sys.argv[3], "w"))
"""


def test_four_ticks_and_a_process_withdrawing_milestones_send_nothing_about_them_after_the_commit(
    pg_db, tmp_path, monkeypatch
):
    stub = SendGridStub(error_rate=0.4, seed=3).start()
    monkeypatch.setenv("LIFECYCLE_EMAIL_BACKEND", "sendgrid")
    monkeypatch.setenv("SENDGRID_API_KEY", stub.api_key)
    monkeypatch.setenv("LIFECYCLE_SENDGRID_HOST", stub.url)
    monkeypatch.setenv("LIFECYCLE_RETRY_BASE_SECONDS", "100")
    monkeypatch.setenv("LIFECYCLE_RETRY_MAX_BACKOFF_SECONDS", "200")
    reset_settings()
    w.product(versions=VERSIONS, upgrade_to="1.5")
    for i, version in enumerate(VERSIONS):
        w.milestone(dt.date(2027, 6, 30) - dt.timedelta(days=i), version=version)
    with session_scope() as s:
        for i in range(40):
            key = f"c{i:02d}"
            registry.upsert_customer(
                s,
                key=key,
                name=key,
                timezone="Europe/Berlin",
                locale="en",
                account_rep="rep@vendor.example",
                at=w.START,
            )
            for mail in ("a", "b"):
                registry.upsert_contact(s, customer=key, email=f"{mail}@{key}.example", at=w.START)
            for j in (0, 2, 4):
                registry.add_deployment(
                    s, customer=key, product="acp", version=VERSIONS[(i + j) % 6], at=w.START
                )
    changes = [
        ("1.0", "withdraw"),
        ("1.1", "move"),
        ("1.2", "withdraw"),
        ("1.3", "move"),
        ("1.4", "withdraw"),
    ]
    stop, record = tmp_path / "stop", tmp_path / "changes.json"
    env = dict(os.environ)
    ticks = [
        subprocess.Popen(
            [sys.executable, "-c", TICKS, T0.isoformat(), str(stop)],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=open(tmp_path / f"tick{i}.log", "w"),  # noqa: SIM115
        )
        for i in range(4)
    ]
    try:
        # The race is only exercised if emails about both kinds of change are going out when the changes
        # come: wait for an accepted stage email about a milestone to be withdrawn and one to be moved.
        _wait_for(
            lambda: {"withdraw", "move"} <= _actions_in_flight(stub, dict(changes)),
            what="emails about a withdrawn and a moved milestone",
            logs=[tmp_path / "tick0.log"],
        )
        mover = subprocess.run(
            [
                sys.executable,
                "-c",
                MOVER,
                (T0 + dt.timedelta(minutes=1)).isoformat(),
                json.dumps(changes),
                str(record),
            ],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert mover.returncode == 0, mover.stderr
        _wait_for(lambda: _quiet(), timeout=180, what="every delivery settled", logs=[tmp_path / "tick0.log"])
    finally:
        stop.touch()
        for p in ticks:
            p.wait(timeout=120)
        stub.stop()
    assert [p.returncode for p in ticks] == [0, 0, 0, 0], [
        (tmp_path / f"tick{i}.log").read_text()[-2000:] for i in range(4)
    ]

    done = json.loads(record.read_text())
    with session_scope() as s:
        about = {
            d_id: (kind, mid, mdate.isoformat() if mdate else None)
            for d_id, kind, mid, mdate in s.connection()
            .execute(
                sa.select(D.c.id, N.c.kind, N.c.milestone_id, N.c.milestone_date).join(
                    N, N.c.id == D.c.notice_id
                )
            )
            .all()
        }
        cancelled = (
            s.connection().execute(sa.select(sa.func.count()).where(D.c.status == "cancelled")).scalar()
        )
    late, before = [], defaultdict(int)
    for change in done:
        for r in stub.accepted:
            for d_id in r.delivery_ids:
                kind, mid, mdate = about[d_id]
                if mid != change["milestone"]:
                    continue
                wrong = (
                    kind in ("stage", "changed", "reinstated", "escalation")
                    if change["action"] == "withdraw"
                    else kind == "stage" and mdate == change["old_date"]
                )
                if not wrong:
                    continue
                if r.received_at > change["committed"]:
                    late.append((change["action"], mid, kind, d_id, r.received_at - change["committed"]))
                else:
                    before[change["action"]] += 1
    print(
        f"\nconcurrent ticks: {len(stub.requests)} requests ({Counter(r.status for r in stub.requests)}); "
        f"changes {[(c['action'], c['milestone']) for c in done]}; sends about them before the commit "
        f"{dict(before)}; pending deliveries cancelled {cancelled}; sends after the commit: {len(late)} {late[:5]}"
    )
    assert late == []
    assert before["withdraw"] > 0 and before["move"] > 0  # the changes came while those emails were going out
    assert cancelled > 0  # in-flight retries were cancelled


def _actions_in_flight(stub: SendGridStub, action_by_version: dict[str, str]) -> set[str]:
    """The changes (withdraw, move) whose milestones an accepted stage email was about so far."""
    ids = [d_id for r in list(stub.accepted) for d_id in r.delivery_ids]
    if not ids:
        return set()
    with session_scope() as s:
        versions = (
            s.connection()
            .execute(
                sa.select(Release.version)
                .join(Milestone, Milestone.release_id == Release.id)
                .join(N, N.c.milestone_id == Milestone.id)
                .join(D, D.c.notice_id == N.c.id)
                .where(D.c.id.in_(ids), N.c.kind == "stage")
                .distinct()
            )
            .scalars()
            .all()
        )
    return {action_by_version[v] for v in versions if v in action_by_version}


def _quiet() -> bool:
    """Nothing left to send before the next planned stage."""
    with session_scope() as s:
        return (
            not s.connection()
            .execute(sa.select(sa.func.count()).where(D.c.status.in_(["pending", "sending", "unknown"])))
            .scalar()
        )
