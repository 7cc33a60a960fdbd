"""The signing secret lives outside the data: LIFECYCLE_SECRET_KEY, or a key file made once, mode 600, in
the mode-700 state folder. First use is race-free (processes starting at once agree on one key, on a
fresh PostgreSQL schema too), and the database file, state folder and outbox are private to their owner."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import os
import re
import secrets
import stat
import subprocess
import sys
import threading

import pytest
import sqlalchemy as sa
from sqlmodel import select

from lifecycle import db as dbmod
from lifecycle import keys, links
from lifecycle.config import get_settings, reset_settings
from lifecycle.db import session_scope
from lifecycle.errors import LifecycleError
from lifecycle.mailers import Email
from lifecycle.mailers.file import FileMailer
from lifecycle.models import AppSetting
from tasks.application import filesystem_transport_options
from tests import world
from tests.conftest import PG_ADMIN_URL, RUN_ID, need_service


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def no_env_key(monkeypatch):
    """No LIFECYCLE_SECRET_KEY (conftest sets one for every other test): the key file is used."""
    monkeypatch.delenv("LIFECYCLE_SECRET_KEY", raising=False)
    monkeypatch.delenv("LIFECYCLE_SECRET_KEY_PREVIOUS", raising=False)
    reset_settings()
    return get_settings().secret_key_path


def test_without_a_configured_key_a_key_file_is_made_mode_600_in_a_mode_700_state_folder(db, no_env_key):
    with session_scope() as s:
        key = links.secret_key(s)
    assert no_env_key == get_settings().state_dir / "secret.key"
    assert mode(no_env_key) == 0o600 and mode(no_env_key.parent) == 0o700
    assert no_env_key.read_text().strip() == key and len(key) >= 64
    with session_scope() as s:
        assert links.secret_key(s) == key  # made once, then read
        assert s.exec(select(AppSetting)).all() == []  # nothing in the database


def test_processes_that_start_at_once_agree_on_one_key(no_env_key, tmp_path):
    code = "from lifecycle import keys; print(keys.fingerprint(keys.current()))"
    env = {k: v for k, v in os.environ.items() if k != "LIFECYCLE_SECRET_KEY"}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code],
            env=env,
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(8)
    ]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0] * 8, outputs
    assert {out.strip() for out, _ in outputs} == {keys.fingerprint(no_env_key.read_text().strip())}
    assert [p.name for p in no_env_key.parent.iterdir()] == ["secret.key"]  # no temporary files left


def test_threads_racing_to_make_the_key_file_all_read_the_winners_whole_key(no_env_key):
    barrier, found = threading.Barrier(16), []

    def first_use():
        barrier.wait()
        found.append(keys.current())

    threads = [threading.Thread(target=first_use) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(found) == 16 and set(found) == {no_env_key.read_text().strip()}


def test_a_key_an_older_version_kept_in_the_database_moves_into_the_key_file(db, no_env_key):
    old = "an-old-key-from-the-appsetting-table-" + secrets.token_hex(8)
    with session_scope() as s:
        s.add(AppSetting(key="secret_key", value=old))
    with session_scope() as s:
        assert links.secret_key(s) == old  # links already sent stay valid
    assert no_env_key.read_text().strip() == old
    with session_scope() as s:
        assert s.get(AppSetting, "secret_key") is None


def test_a_damaged_key_file_is_an_error_that_names_the_file_and_line_but_not_the_key(no_env_key):
    no_env_key.parent.mkdir(mode=0o700)
    no_env_key.write_text("the-current-key\nan-old-key not-a-date\n")
    with pytest.raises(LifecycleError) as raised:
        keys.current()
    assert f"{no_env_key} line 2" in str(raised.value) and "an-old-key" not in str(raised.value)
    no_env_key.write_text("\n\n")
    with pytest.raises(LifecycleError, match="is empty"):
        keys.current()


def test_the_configured_key_wins_and_no_key_file_is_made(db):
    with session_scope() as s:
        assert links.secret_key(s) == "test-secret-key-not-for-production"
    assert not get_settings().secret_key_path.exists()


def test_a_new_sqlite_database_and_its_wal_files_are_readable_by_the_owner_only(tmp_path, monkeypatch):
    path = tmp_path / "new" / "lifecycle.db"
    path.parent.mkdir()
    monkeypatch.setenv("LIFECYCLE_DATABASE_URL", f"sqlite:///{path}")
    reset_settings()
    try:
        with session_scope() as s:  # created and migrated on first use
            s.add(AppSetting(key="probe", value="x"))
        files = {p.name: mode(p) for p in path.parent.iterdir()}
    finally:
        dbmod.dispose_engines()
    assert files == {"lifecycle.db": 0o600, "lifecycle.db-wal": 0o600, "lifecycle.db-shm": 0o600}


def test_the_outbox_and_the_brokers_state_folder_are_made_mode_700(tmp_path):
    FileMailer(tmp_path / "outbox").send(
        Email(
            to="ops@acme.example",
            to_name=None,
            subject="s",
            text="t",
            html="<p>t</p>",
            from_email="lifecycle@vendor.example",
        )
    )
    filesystem_transport_options(tmp_path / "state")
    assert mode(tmp_path / "outbox") == 0o700
    assert mode(tmp_path / "state") == 0o700


# ------------------------------------------------------------------------ first run on PostgreSQL


@pytest.fixture
def fresh_pg(monkeypatch):
    """A brand-new PostgreSQL schema, migrated (`lifecycle db upgrade`) and otherwise empty."""
    schema = f"lc_fresh_{RUN_ID}_{secrets.token_hex(2)}"
    try:
        admin = sa.create_engine(PG_ADMIN_URL, connect_args={"connect_timeout": 3})
        with admin.begin() as conn:
            conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    except Exception as exc:  # noqa: BLE001
        need_service("PostgreSQL", str(exc).splitlines()[0])
    url = f"{PG_ADMIN_URL}?options=-csearch_path%3D{schema}"
    dbmod.upgrade(url)
    monkeypatch.setenv("LIFECYCLE_DATABASE_URL", url)
    reset_settings()
    yield url
    dbmod.dispose_engines()
    with admin.begin() as conn:
        conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    admin.dispose()


@pytest.mark.postgres
def test_four_ticks_at_once_on_a_fresh_postgresql_schema_all_succeed_with_one_key(
    fresh_pg, no_env_key, tmp_path
):
    world.product()
    world.milestone(dt.date(2026, 9, 30))
    for key in ("acme", "globex", "initech"):
        world.customer(key)
    env = {k: v for k, v in os.environ.items() if k != "LIFECYCLE_SECRET_KEY"}
    ticks = [
        subprocess.Popen(
            [sys.executable, "-m", "lifecycle", "tick", "--at", "2026-04-01T12:00:00Z"],
            env=env,
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    outputs = [p.communicate(timeout=300) for p in ticks]
    assert [p.returncode for p in ticks] == [0] * 4, outputs

    assert sorted(p.name for p in no_env_key.parent.iterdir() if "secret" in p.name) == ["secret.key"]
    with session_scope() as s:
        assert s.exec(select(AppSetting)).all() == []
    mails = sorted(get_settings().outbox_dir.glob("*.eml"))
    assert len(mails) == 3  # one email per customer: exactly once, whatever ran at once
    for path in mails:
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        body = message.get_body(("plain",)).get_content()
        token = re.search(r"/ack/([A-Za-z0-9_.\-]+)", body).group(1)
        with session_scope() as s:
            links.read_ack_token(s, token)  # signed with the one key every tick used
