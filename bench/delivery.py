"""The delivery benchmark (issue 11, items 2, 3 and 7): extra steps of `python -m bench.run`, or on
their own: `python -m bench.delivery [--scale 0.1,0.5,1.0] [--only file,sendgrid,worker,celery]`.

1. **Catch-up to the file backend**: on the reference fleet (`bench.fleet`) at a scale, `ticks.prepare`
   releases everything overdue at `fleet.AT` (untimed), then `delivery.deliver_all` sends it (timed:
   portal inbox rows and `.eml` files with their `.ics`). **Floor**: the same emails (the subject,
   text, HTML and attachment each one carried, read back from the outbox) built into a MIME message
   with the stdlib and written to a file, in a plain loop. Ratio = floor time / delivery time.
2. **Catch-up to SendGrid** (the loopback stub, `tests/sendgrid_stub.py`, in a process of its own as
   the real API is: its work and the bodies it keeps are not the measured process's): the same, with
   `LIFECYCLE_EMAIL_BACKEND=sendgrid`; floor: the same request bodies POSTed with the `sendgrid`
   library (`SendGridAPIClient.send`) from a pool of as many threads as the mailer uses. Once with
   the stub answering at once, and once more with `--sendgrid-latency` seconds before each answer (a
   provider across a network, not on the loopback).
3. **Embedded worker**: `lifecycle worker` (no Redis, the file-system broker) started on a database
   with N customers due now (`due_fleet`), timed from its start until every customer's email is
   recorded sent; N = 1,000 and 20,000.
4. **Scale-out on PostgreSQL + Redis**: the same N customers due, `celery -A tasks worker` with 1, 2 and
   4 processes (prefork, one process each), one tick queued; deliveries/s from the first to the last
   `sent_at`, and duplicates = 0 checked by a query (an email recipient with two sent deliveries of
   one notice, or an inbox row twice).

Peak RSS is the child process's (`ru_maxrss`), or the worker's (sampled from /proc).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
SCALES = (0.1, 0.5, 1.0)
WORKER_CUSTOMERS = (1_000, 20_000)
CELERY_CUSTOMERS = 5_000
CELERY_PROCESSES = (1, 2, 4)
SENDGRID_LATENCY = 0.05  # seconds: the second SendGrid run's answer time (0: no second run)
REDIS_SERVER = os.environ.get("LIFECYCLE_BENCH_REDIS_URL", "redis://127.0.0.1:6379")


# --------------------------------------------------------------------------------------- due fleets


def due_fleet(url: str, customers: int, at: dt.datetime) -> dict:
    """Write (bulk inserts) one product, one release and its end of life 100 days after `at`, and
    `customers` customers running it, each with one contact: at `at` the 6-month stage is overdue, so
    the first tick releases one notice per customer (its email and portal message), due at once."""
    from lifecycle import db
    from lifecycle.models import Contact, Customer, Deployment, Milestone, Product, Release

    db.upgrade(url) if url.startswith("sqlite") else None
    engine = db.get_engine(url)
    zones = ("Europe/Berlin", "Asia/Shanghai", "America/New_York", "Asia/Kolkata", "UTC")
    with engine.begin() as conn:
        pid = conn.execute(
            Product.__table__.insert()
            .values(slug="bench", name="Bench Product", created_at=at)
            .returning(Product.__table__.c.id)
        ).scalar_one()
        rid = conn.execute(
            Release.__table__.insert()
            .values(
                product_id=pid,
                version="1.0",
                released=(at - dt.timedelta(days=700)).date(),
                upgrade_to=None,
                created_at=at,
            )
            .returning(Release.__table__.c.id)
        ).scalar_one()
        conn.execute(
            Milestone.__table__.insert().values(
                product_id=pid,
                release_id=rid,
                scope=rid,
                kind="end-of-life",
                date=(at + dt.timedelta(days=100)).date(),
                status="planned",
                revision=1,
                short_notice_reason=None,
                registered_at=at - dt.timedelta(days=200),
                changed_at=at - dt.timedelta(days=200),
                needs_plan=True,
            )
        )
        C = Customer.__table__
        first = (conn.execute(sa.select(sa.func.max(C.c.id))).scalar() or 0) + 1
        for start in range(0, customers, 5000):
            ids = range(first + start, first + min(start + 5000, customers))
            conn.execute(
                C.insert(),
                [
                    {
                        "id": i,
                        "key": f"due-{i:06d}",
                        "name": f"Due customer {i}",
                        "timezone": zones[i % len(zones)],
                        "locale": "zh-CN" if i % 3 == 0 else "en",
                        "account_rep": f"rep-{i % 50:02d}@vendor.example",
                        "service_start": (at - dt.timedelta(days=400)).date(),
                        "service_end": None,
                        "cores": None,
                        "calendar_token": secrets.token_urlsafe(24),
                        "created_at": at - dt.timedelta(days=400),
                    }
                    for i in ids
                ],
            )
            conn.execute(
                Contact.__table__.insert(),
                [
                    {
                        "customer_id": i,
                        "email": f"ops@due-{i:06d}.example",
                        "name": "Ops",
                        "undeliverable": False,
                        "undeliverable_reason": None,
                        "created_at": at,
                    }
                    for i in ids
                ],
            )
            conn.execute(
                Deployment.__table__.insert(),
                [
                    {
                        "customer_id": i,
                        "release_id": rid,
                        "cores": None,
                        "added_at": at - dt.timedelta(days=300),
                        "removed_at": None,
                    }
                    for i in ids
                ],
            )
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql(
                "SELECT setval(pg_get_serial_sequence('customer', 'id'), (SELECT max(id) FROM customer))"
            )
    return {"customers": customers}


SENT_EMAILS = (
    "SELECT count(*) FROM delivery d JOIN notice n ON n.id = d.notice_id WHERE d.channel = 'email' "
    "AND n.audience = 'customer' AND d.status = 'sent'"
)


def emails_sent(url: str) -> int:
    """Customer emails recorded sent (one per due customer when all went out). On SQLite a plain read
    (WAL: never waits for the worker's write transactions, unlike the application's BEGIN IMMEDIATE)."""
    if url.startswith("sqlite"):
        import sqlite3

        raw = sqlite3.connect(sa.engine.make_url(url).database, timeout=60)
        try:
            return raw.execute(SENT_EMAILS).fetchone()[0]
        except sqlite3.OperationalError:  # the schema is being created: nothing sent yet
            return 0
        finally:
            raw.close()
    from lifecycle.db import get_engine

    with get_engine(url).connect() as conn:
        return conn.exec_driver_sql(SENT_EMAILS).scalar_one()


def duplicates(url: str) -> int:
    """Recipients told the same notice twice on one channel (must be 0): deliveries are unique on
    (notice, channel, recipient), so look at what reached them: sent email rows per recipient and
    notice, inbox rows per notice, and `.eml` files per delivery set are counted by the callers."""
    from lifecycle.db import get_engine

    with get_engine(url).connect() as conn:
        twice = conn.exec_driver_sql(
            "SELECT count(*) FROM (SELECT notice_id, channel, lower(recipient) FROM delivery "
            "WHERE status IN ('sent', 'delivered') GROUP BY 1, 2, 3 HAVING count(*) > 1) x"
        ).scalar_one()
        inbox = conn.exec_driver_sql(
            "SELECT count(*) FROM (SELECT notice_id FROM inboxmessage GROUP BY 1 HAVING count(*) > 1) x"
        ).scalar_one()
        flagged = conn.exec_driver_sql("SELECT count(*) FROM delivery WHERE possible_duplicate").scalar_one()
    return twice + inbox + flagged


# ------------------------------------------------------------------------------------------ helpers


def _env(url: str, workdir: Path, **extra: str) -> dict[str, str]:
    return {
        "LIFECYCLE_DATABASE_URL": url,
        "LIFECYCLE_EMAIL_BACKEND": "file",
        "LIFECYCLE_OUTBOX_DIR": str(workdir / "outbox"),
        "LIFECYCLE_CALENDAR_DIR": str(workdir / "calendar_exports"),
        "LIFECYCLE_STATE_DIR": str(workdir / "state"),
        "LIFECYCLE_SECRET_KEY": "bench-secret-key-not-for-production",
        "LIFECYCLE_CHANGE_HOLD": "0",
        **extra,
    }


@contextmanager
def _environment(env: dict[str, str]):
    """These variables set in this process for a while (then put back as they were)."""
    from lifecycle.config import reset_settings

    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    reset_settings()
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        reset_settings()


def _rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _proc_rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _child(step: str, args: dict, env: dict[str, str]) -> dict:
    """Run `step` in a child process of its own (its peak RSS is the step's)."""
    proc = subprocess.run(
        [sys.executable, "-m", "bench.delivery", "--step", step, "--args", json.dumps(args)],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"delivery step {step} failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# -------------------------------------------------------------------------------------- catch-up steps


def step_catch_up(args: dict) -> dict:
    """In a child: the fleet at `scale`, released at fleet.AT (untimed), delivered (timed)."""
    from bench import fleet
    from lifecycle import db, delivery, ticks

    url, scale = args["url"], args["scale"]
    db.upgrade(url)
    fleet.generate(url, scale=scale)
    prepared = ticks.prepare(fleet.AT)
    rss_before = _rss_mb()
    t0, c0 = time.perf_counter(), time.process_time()
    result = delivery.deliver_all(fleet.AT, prepared.customers)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    emails = result.by_channel.get("email", 0)
    return {
        "scale": scale,
        "customers": len(prepared.customers),
        "deliveries": result.sent,
        "claimed": result.claimed,
        "messages": result.messages,
        "emails": _email_messages(args),
        "email_deliveries": emails,
        "seconds": seconds,
        "cpu_s": cpu,
        "load": os.getloadavg()[0],
        "deliveries_per_s": result.sent / seconds,
        "failed": result.failed + result.retried + result.unknown,
        "rss_before_mb": rss_before,
        "duplicates": duplicates(url),
    }


def _email_messages(args: dict) -> int:
    if args.get("backend", "file") == "file":
        return len(list(Path(os.environ["LIFECYCLE_OUTBOX_DIR"]).glob("*.eml")))
    return 0  # counted by the SendGrid stub, in its own process


def step_file_floor(args: dict) -> dict:
    """In a child: the emails of the outbox rebuilt with the stdlib from what they carried (subject,
    text, HTML, attachment) and written again, in a plain loop."""
    import email
    from email import policy
    from email.message import EmailMessage

    outbox = Path(args["outbox"])
    parsed = []
    for path in sorted(outbox.glob("*.eml")):
        msg = email.message_from_bytes(path.read_bytes(), policy=policy.default)
        text = msg.get_body(("plain",)).get_content()
        html = msg.get_body(("html",)).get_content()
        atts = [(a.get_content(), a.get_filename()) for a in msg.iter_attachments()]
        parsed.append(
            {
                k: str(msg[k])
                for k in ("Subject", "From", "To", "Reply-To", "Date", "Message-ID", "X-Lifecycle-Args")
                if msg[k]
            }
            | {"text": text, "html": html, "atts": atts, "name": path.name}
        )
    out = Path(args["floor_dir"])
    out.mkdir(parents=True, exist_ok=True)
    t0, c0 = time.perf_counter(), time.process_time()
    for p in parsed:
        m = EmailMessage()
        for k in ("Subject", "From", "To", "Reply-To", "Date", "Message-ID", "X-Lifecycle-Args"):
            if k in p:
                m[k] = p[k]
        m.set_content(p["text"], subtype="plain", charset="utf-8")
        m.add_alternative(p["html"], subtype="html", charset="utf-8")
        for content, filename in p["atts"]:
            data = content if isinstance(content, bytes) else content.encode()
            m.add_attachment(
                data, maintype="text", subtype="calendar", filename=filename, params={"method": "PUBLISH"}
            )
        tmp = out / f".{p['name']}.tmp"
        tmp.write_bytes(m.as_bytes())
        os.replace(tmp, out / p["name"])
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {
        "emails": len(parsed),
        "seconds": seconds,
        "cpu_s": cpu,
        "emails_per_s": len(parsed) / seconds if seconds else 0,
    }


def bench_file(scale: float, pg: bool = False, log=print) -> dict:
    workdir = Path(tempfile.mkdtemp(prefix="lifecycle-bench-delivery-"))
    try:
        url = f"sqlite:///{workdir / 'bench.db'}"
        env = _env(url, workdir)
        log(f"  file backend, scale {scale}: catch-up ...")
        run = _child("catch_up", {"url": url, "scale": scale}, env)
        log(f"  file backend, scale {scale}: floor ...")
        floor = _child(
            "file_floor", {"outbox": str(workdir / "outbox"), "floor_dir": str(workdir / "floor")}, env
        )
        emails_per_s = run["emails"] / run["seconds"]
        return {
            "run": run,
            "floor": floor,
            "emails_per_s": emails_per_s,
            "ratio": emails_per_s / floor["emails_per_s"] if floor["emails_per_s"] else None,
        }
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def step_stub(args: dict) -> dict:
    """A child that is the loopback SendGrid: prints its address, answers until its stdin closes, then
    writes the bodies of the requests it accepted to `args["bodies"]` (when given)."""
    sys.path.insert(0, str(ROOT))
    from tests.sendgrid_stub import SendGridStub

    stub = SendGridStub(latency=args.get("latency", 0.0)).start()
    print(json.dumps({"url": stub.url, "api_key": stub.api_key}), flush=True)
    sys.stdin.read()
    stub.stop()
    accepted = stub.accepted
    if args.get("bodies"):
        Path(args["bodies"]).write_text(json.dumps([r.body for r in accepted]))
    return {
        "accepted": len(accepted),
        "requests": len(stub.requests),
        "connections": stub.connections_accepted,
    }


@contextmanager
def external_stub(latency: float = 0.0, bodies: str | None = None):
    """The loopback SendGrid in a process of its own: yields {"url", "api_key"}, then (once it stopped)
    also what it accepted."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bench.delivery",
            "--step",
            "stub",
            "--args",
            json.dumps({"latency": latency, "bodies": bodies}),
        ],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdin is not None and proc.stdout is not None
    info = json.loads(proc.stdout.readline())
    try:
        yield info
    finally:
        proc.stdin.close()
        out = proc.stdout.read()
        if proc.wait(120) != 0:
            raise RuntimeError(f"the SendGrid stub failed (exit {proc.returncode})")
        info.update(json.loads(out.strip().splitlines()[-1]))


def step_sendgrid_floor(args: dict) -> dict:
    """In a child: the request bodies the stub received, POSTed again with the `sendgrid` library from
    a pool of as many threads as the mailer uses."""
    from concurrent.futures import ThreadPoolExecutor

    from sendgrid import SendGridAPIClient

    bodies = json.loads(Path(args["bodies"]).read_text())

    def post(body: dict) -> int:
        client = SendGridAPIClient(api_key=args["api_key"], host=args["stub_url"])
        return client.client.mail.send.post(request_body=body).status_code

    t0, c0 = time.perf_counter(), time.process_time()
    with ThreadPoolExecutor(max_workers=args["concurrency"]) as pool:
        codes = list(pool.map(post, bodies))
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {
        "emails": len(bodies),
        "seconds": seconds,
        "cpu_s": cpu,
        "emails_per_s": len(bodies) / seconds,
        "accepted": sum(1 for c in codes if c == 202),
    }


def step_catch_up_sendgrid(args: dict) -> dict:
    os.environ["LIFECYCLE_SENDGRID_HOST"] = args["stub_url"]
    os.environ["SENDGRID_API_KEY"] = args["api_key"]
    os.environ["LIFECYCLE_EMAIL_BACKEND"] = "sendgrid"
    from lifecycle.config import reset_settings

    reset_settings()
    return step_catch_up({**args, "backend": "sendgrid"})


def bench_sendgrid(scale: float, log=print, latency: float = 0.0) -> dict:
    from lifecycle.config import Settings

    concurrency = Settings().sendgrid_concurrency
    workdir = Path(tempfile.mkdtemp(prefix="lifecycle-bench-sendgrid-"))
    try:
        url = f"sqlite:///{workdir / 'bench.db'}"
        env = _env(url, workdir)
        bodies = str(workdir / "bodies.json")
        log(f"  sendgrid stub ({latency * 1000:g} ms), scale {scale}: catch-up ...")
        with external_stub(latency, bodies) as stub:
            args = {"url": url, "scale": scale, "stub_url": stub["url"], "api_key": stub["api_key"]}
            run = _child("catch_up_sendgrid", args, env)
        run["emails"] = stub["accepted"]
        log(f"  sendgrid stub ({latency * 1000:g} ms), scale {scale}: floor ...")
        with external_stub(latency) as floor_stub:
            args = {"bodies": bodies, "concurrency": concurrency}
            floor = _child(
                "sendgrid_floor",
                args | {"stub_url": floor_stub["url"], "api_key": floor_stub["api_key"]},
                env,
            )
        emails_per_s = run["emails"] / run["seconds"]
        return {
            "run": run,
            "floor": floor,
            "concurrency": concurrency,
            "latency": latency,
            "emails_per_s": emails_per_s,
            "ratio": emails_per_s / floor["emails_per_s"] if floor["emails_per_s"] else None,
        }
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


# ---------------------------------------------------------------------------------- embedded worker


def _wait(predicate, timeout: float, proc: subprocess.Popen | None = None, every: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"the worker exited with {proc.returncode}")
        time.sleep(every)
    return False


def _proc_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process (and its waited-for children) so far."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def _watch_rss(pid: int, peak: list[float], stop: threading.Event) -> None:
    while not stop.is_set():
        peak[0] = max(peak[0], _proc_rss_mb(pid))
        stop.wait(0.5)


def bench_worker(customers: int, log=print, timeout: float = 1800) -> dict:
    """`lifecycle worker` with `customers` due now: seconds from its start until all are sent."""
    workdir = Path(tempfile.mkdtemp(prefix="lifecycle-bench-worker-"))
    try:
        url = f"sqlite:///{workdir / 'bench.db'}"
        env = {**os.environ, **_env(url, workdir)}
        with _environment(_env(url, workdir)):
            from lifecycle.db import dispose_engines

            due_fleet(url, customers, dt.datetime.now(dt.UTC))
            dispose_engines()
        log(f"  embedded worker, {customers:,} customers due ...")
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-m", "lifecycle", "worker"],
            cwd=workdir,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=open(workdir / "worker.log", "w"),  # noqa: SIM115
            start_new_session=True,
        )
        peak, stop = [0.0], threading.Event()
        watcher = threading.Thread(target=_watch_rss, args=(proc.pid, peak, stop), daemon=True)
        watcher.start()
        try:
            done = _wait(lambda: emails_sent(url) >= customers, timeout, proc, every=0.25)
            seconds = time.perf_counter() - t0
            cpu = _proc_cpu_s(proc.pid)
        finally:
            stop.set()
            _terminate(proc)
        if not done:
            raise RuntimeError(
                f"the worker did not deliver {customers} customers within {timeout} s:\n"
                + (workdir / "worker.log").read_text()[-3000:]
            )
        files = len(list((workdir / "outbox").glob("*.eml")))
        result = {
            "customers": customers,
            "seconds": seconds,
            "customers_per_s": customers / seconds,
            "cpu_s": cpu,
            "load": os.getloadavg()[0],
            "eml_files": files,
            "duplicates": duplicates(url),
            "peak_rss_mb": peak[0],
        }
        from lifecycle.db import dispose_engines

        dispose_engines()
        return result
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


# ---------------------------------------------------------------------------- PostgreSQL + Redis


@contextmanager
def leased_redis(server: str = REDIS_SERVER, wait: float = 300):
    """A Redis database number (1-15) leased as the test suite leases them (SET NX on a key in database
    0, with an expiry), so the bench never flushes a database a test run is using. Yields its URL."""
    import redis

    admin = redis.Redis.from_url(f"{server}/0", socket_connect_timeout=2)
    token = f"bench:{os.getpid()}:{secrets.token_hex(4)}"
    deadline = time.monotonic() + wait
    leased = None
    while leased is None:
        leased = next(
            (
                n
                for n in range(15, 0, -1)
                if admin.set(f"lifecycle-test:redis-db:{n}", token, nx=True, ex=7200)
            ),
            None,
        )
        if leased is None:
            if time.monotonic() > deadline:
                raise RuntimeError("no free Redis database number (1-15)")
            time.sleep(0.5)
    try:
        yield f"{server}/{leased}"
    finally:
        admin.eval(
            "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0",
            1,
            f"lifecycle-test:redis-db:{leased}",
            token,
        )


def bench_celery(
    customers: int, processes: int, log=print, timeout: float = 1800, redis_url: str | None = None
) -> dict:
    if redis_url is None:
        with leased_redis() as url:
            return bench_celery(customers, processes, log, timeout, url)
    """`celery -A tasks worker -c N` (prefork) on Redis, PostgreSQL: one tick queued (batches of
    customers); deliveries/s from the first to the last sent_at; duplicates by a query."""
    import redis

    from bench.run import postgres_database
    from lifecycle.db import dispose_engines, get_engine, upgrade

    workdir = Path(tempfile.mkdtemp(prefix="lifecycle-bench-celery-"))
    r = redis.Redis.from_url(redis_url)
    r.flushdb()
    try:
        with (
            postgres_database(workdir) as url,
            _environment(_env(url, workdir, LIFECYCLE_BROKER_URL=redis_url, LIFECYCLE_TICK_SECONDS="60")),
        ):
            upgrade(url)
            env = {**os.environ}
            due_fleet(url, customers, dt.datetime.now(dt.UTC))
            log(
                f"  celery on Redis + PostgreSQL, {customers:,} customers, {processes} worker process(es) ..."
            )
            # With beat (a tick a minute), as in production: what a run defers (a change holding a
            # milestone's lock) or retries is picked up by a later tick.
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "celery",
                    "-A",
                    "tasks",
                    "worker",
                    "-B",
                    "--pool=prefork",
                    f"--concurrency={processes}",
                    "-Q",
                    "lifecycle",
                    "--loglevel=warning",
                    "--without-gossip",
                    "--without-mingle",
                    "--without-heartbeat",
                    "-s",
                    str(workdir / "beat-schedule"),
                ],
                cwd=ROOT,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=open(workdir / "celery.log", "w"),  # noqa: SIM115
                start_new_session=True,
            )
            t0 = time.perf_counter()
            try:
                # The worker's own start-up tick (worker_ready) plans, releases and queues the batches.
                _wait(lambda: emails_sent(url) > 0, timeout, proc, every=0.1)
                first = time.perf_counter()
                done = _wait(lambda: emails_sent(url) >= customers, timeout, proc, every=0.1)
                last = time.perf_counter()
            finally:
                _terminate(proc)
            if not done:
                raise RuntimeError(
                    "celery did not deliver in time:\n" + (workdir / "celery.log").read_text()[-3000:]
                )
            with get_engine(url).connect() as conn:
                n = conn.exec_driver_sql(
                    "SELECT count(*) FROM delivery WHERE status IN ('sent', 'delivered')"
                ).scalar()
            # From the first email recorded to the last (polled every 0.1 s): the delivery, without the
            # worker's start-up and the tick that released the notices.
            span = max(last - first, 0.1)
            result = {
                "customers": customers,
                "processes": processes,
                "deliveries": n,
                "seconds": span,
                "start_to_end_s": last - t0,
                "deliveries_per_s": n / span,
                "duplicates": duplicates(url),
            }
            dispose_engines()
            return result
    finally:
        r.flushdb()
        shutil.rmtree(workdir, ignore_errors=True)


def _terminate(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


# ---------------------------------------------------------------------------------------- the run


STEP_FUNCS = {
    "catch_up": step_catch_up,
    "file_floor": step_file_floor,
    "catch_up_sendgrid": step_catch_up_sendgrid,
    "sendgrid_floor": step_sendgrid_floor,
    "stub": step_stub,
}


def run(
    scales=SCALES,
    only=("file", "sendgrid", "worker", "celery"),
    *,
    worker_customers=WORKER_CUSTOMERS,
    celery_customers=CELERY_CUSTOMERS,
    celery_processes=CELERY_PROCESSES,
    redis_url: str | None = None,
    sendgrid_latency: float = SENDGRID_LATENCY,
    log=print,
) -> dict:
    report: dict = {"cpus": os.cpu_count(), "file": {}, "sendgrid": {}, "worker": {}, "celery": {}}
    for scale in scales:
        if "file" in only:
            report["file"][str(scale)] = bench_file(scale, log=log)
        if "sendgrid" in only:
            report["sendgrid"][str(scale)] = bench_sendgrid(scale, log=log)
            if sendgrid_latency:
                report["sendgrid"][f"{scale}@{sendgrid_latency}"] = bench_sendgrid(
                    scale, log=log, latency=sendgrid_latency
                )
    if "worker" in only:
        for n in worker_customers:
            report["worker"][str(n)] = bench_worker(n, log=log)
    if "celery" in only:
        from bench.run import postgres_available

        why = postgres_available() or _redis_unavailable(redis_url or REDIS_SERVER + "/0")
        if why:
            report["celery"] = {"skipped": why}
        else:
            for p in celery_processes:
                report["celery"][str(p)] = bench_celery(celery_customers, p, log=log, redis_url=redis_url)
            base = report["celery"][str(celery_processes[0])]["deliveries_per_s"]
            for p in celery_processes:
                report["celery"][str(p)]["speedup"] = report["celery"][str(p)]["deliveries_per_s"] / base
    return report


def _redis_unavailable(redis_url: str) -> str | None:
    try:
        import redis

        redis.Redis.from_url(redis_url, socket_connect_timeout=2).ping()
    except Exception as exc:  # noqa: BLE001 - any failure means "not available"
        return f"Redis: {exc}"
    return None


def _num(value, fmt: str) -> str:
    return "–" if value is None else format(value, fmt)


def _cpu_ratio(d: dict) -> str:
    run_, floor = d["run"], d["floor"]
    if not run_.get("cpu_s") or not floor.get("cpu_s"):
        return "-"
    return f"{(floor['cpu_s'] / floor['emails']) / (run_['cpu_s'] / run_['emails']):.2f}"


def table(report: dict) -> str:
    lines = [
        f"Machine: {report['cpus']} cores, shared with other work while this ran (load average in the "
        "`load` column: wall-clock rates are depressed accordingly; CPU seconds are not).",
        "",
    ]
    if report["file"] or report["sendgrid"]:
        lines += [
            "| catch-up delivery | scale | customers | deliveries | emails | s | CPU s | load | emails/s "
            "| floor emails/s | ratio (target >= 0.5) | ratio by CPU | peak RSS MB | duplicates |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for name in ("file", "sendgrid"):
            for scale, d in report[name].items():
                run_ = d["run"]
                label = name
                if name == "sendgrid":
                    label = (
                        f"sendgrid ({d['concurrency']} threads, answers in {d.get('latency', 0) * 1000:g} ms)"
                    )
                lines.append(
                    f"| {label} | {scale.split('@')[0]} | {run_['customers']:,} | {run_['deliveries']:,} | {run_['emails']:,} "
                    f"| {run_['seconds']:.1f} | {_num(run_.get('cpu_s'), '.1f')} | {_num(run_.get('load'), '.0f')} "
                    f"| {d['emails_per_s']:,.0f} | {d['floor']['emails_per_s']:,.0f} | **{d['ratio']:.2f}** "
                    f"| {_cpu_ratio(d)} | {run_['peak_rss_mb']:.0f} | {run_['duplicates']} |"
                )
        lines.append("")
    if report["worker"]:
        lines += [
            "| embedded worker (`lifecycle worker`) | customers due | s, start to last sent (target < 30 "
            "for 1,000) | CPU s | load | customers/s | peak RSS MB | duplicates |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for n, d in report["worker"].items():
            lines.append(
                f"| SQLite, file backend | {int(n):,} | **{d['seconds']:.1f}** | {_num(d.get('cpu_s'), '.1f')} "
                f"| {_num(d.get('load'), '.0f')} | {d['customers_per_s']:,.0f} | {d['peak_rss_mb']:.0f} "
                f"| {d['duplicates']} |"
            )
        lines.append("")
    if report["celery"]:
        if "skipped" in report["celery"]:
            lines.append(f"celery: skipped ({report['celery']['skipped']})")
        else:
            lines += [
                "| PostgreSQL + Redis | worker processes | customers | deliveries | s, first to last email "
                "| deliveries/s | speed-up | duplicates |",
                "|---|---:|---:|---:|---:|---:|---:|---:|",
            ]
            for p, d in report["celery"].items():
                lines.append(
                    f"| `celery -A tasks worker` | {p} | {d['customers']:,} | {d['deliveries']:,} "
                    f"| {d['seconds']:.1f} | {d['deliveries_per_s']:,.0f} | {d.get('speedup', 1):.2f} "
                    f"| {d['duplicates']} |"
                )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.delivery", description=__doc__.splitlines()[0])
    parser.add_argument("--scale", default=",".join(map(str, SCALES)))
    parser.add_argument("--only", default="file,sendgrid,worker,celery")
    parser.add_argument("--worker", default=",".join(map(str, WORKER_CUSTOMERS)), help="customers due")
    parser.add_argument("--celery-customers", type=int, default=CELERY_CUSTOMERS)
    parser.add_argument(
        "--sendgrid-latency",
        type=float,
        default=SENDGRID_LATENCY,
        help="seconds the stub waits before each answer in a second SendGrid run (0: none)",
    )
    parser.add_argument("--step", help=argparse.SUPPRESS)
    parser.add_argument("--args", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.step:
        result = STEP_FUNCS[args.step](json.loads(args.args))
        result["peak_rss_mb"] = _rss_mb()
        print(json.dumps(result, default=str))
        return 0
    report = run(
        tuple(float(s) for s in args.scale.split(",") if s),
        tuple(s.strip() for s in args.only.split(",")),
        worker_customers=tuple(int(n) for n in args.worker.split(",") if n),
        celery_customers=args.celery_customers,
        sendgrid_latency=args.sendgrid_latency,
    )
    print(json.dumps(report, default=str))
    print()
    print(table(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
