"""Rotating the signing key: `lifecycle secret rotate` signs with a new key at once and keeps accepting the
old one (ack links, web sessions) until its grace period ends; with the key in the environment the old
value goes in LIFECYCLE_SECRET_KEY_PREVIOUS. Keys are never printed."""

from __future__ import annotations

import datetime as dt
import os
import stat

import pytest
from fastapi.testclient import TestClient
from sqlmodel import select

from lifecycle import keys, links
from lifecycle.config import get_settings, reset_settings
from lifecycle.db import session_scope
from lifecycle.errors import InputError
from lifecycle.models import AuditEvent
from lifecycle.web.app import create_app
from tests import webworld
from tests.test_web_pages import csrf_of

NOW = dt.datetime.now(dt.UTC)
DAY = dt.timedelta(days=1)


@pytest.fixture
def key_file(monkeypatch):
    monkeypatch.delenv("LIFECYCLE_SECRET_KEY", raising=False)
    reset_settings()
    return get_settings().secret_key_path


@pytest.fixture
def web(sqlite_db, key_file):
    return webworld.build()


def ack_link(w) -> str:
    with session_scope() as s:
        return links.ack_token(s, w.ids["acme"], w.ids["r316"])


def accepted(token: str, at: dt.datetime) -> bool:
    with session_scope() as s:
        try:
            links.read_ack_token(s, token, at)
        except links.BadAckToken:
            return False
        return True


def test_after_a_rotation_old_links_are_accepted_until_the_grace_period_ends(web, key_file):
    old_link = ack_link(web)
    old_key = keys.current()
    keys.rotate(NOW, 10 * DAY)
    assert keys.current() != old_key and old_key not in key_file.read_text().splitlines()[0]
    new_link = ack_link(web)
    assert new_link != old_link  # signed with the new key
    assert accepted(old_link, NOW + 9 * DAY) and not accepted(old_link, NOW + 11 * DAY)
    assert accepted(new_link, NOW + 11 * DAY)
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600


def test_a_rotation_without_grace_refuses_the_old_key_at_once(web):
    old_link = ack_link(web)
    keys.rotate(NOW, dt.timedelta(0))
    assert not accepted(old_link, NOW)


def test_each_previous_key_keeps_its_own_expiry_and_expired_ones_are_dropped(web, key_file):
    first = ack_link(web)
    keys.rotate(NOW, 30 * DAY)
    second = ack_link(web)
    keys.rotate(NOW + DAY, 5 * DAY)
    third = ack_link(web)
    at = NOW + 10 * DAY  # the second key's grace is over, the first key's is not
    assert (accepted(first, at), accepted(second, at), accepted(third, at)) == (True, False, True)
    keys.rotate(NOW + 40 * DAY, 5 * DAY)  # the first key's grace is over too: it leaves the file
    assert len(key_file.read_text().splitlines()) == 2


def logged_in(w) -> TestClient:
    client = TestClient(create_app())
    form = client.get("/login")
    assert (
        client.post("/login", data={"token": w.secrets["pm"], "csrf": csrf_of(form.text)}).status_code == 200
    )
    return client


def test_web_sessions_survive_a_rotation_within_its_grace_period_and_end_after_it(web):
    before = logged_in(web)
    keys.rotate(NOW, 7 * DAY)
    assert before.get("/registry", follow_redirects=False).status_code == 200
    after = logged_in(web)  # signed with the new key
    keys.rotate(NOW - 30 * DAY, 7 * DAY)  # as if rotated a month ago: that key's grace is over
    assert after.get("/registry", follow_redirects=False).headers["location"].startswith("/login")


def test_with_the_key_in_the_environment_previous_values_are_accepted_and_rotate_explains_how(
    web, monkeypatch
):
    old_link = ack_link(web)  # signed with the key file's key
    monkeypatch.setenv("LIFECYCLE_SECRET_KEY", "a-new-key-set-by-the-operator-0123456789")
    reset_settings()
    assert not accepted(old_link, NOW)
    monkeypatch.setenv("LIFECYCLE_SECRET_KEY_PREVIOUS", "something-else")
    reset_settings()
    assert not accepted(old_link, NOW)
    file_key = get_settings().secret_key_path.read_text().strip()
    monkeypatch.setenv("LIFECYCLE_SECRET_KEY_PREVIOUS", f"something-else, {file_key}")
    reset_settings()
    assert accepted(old_link, NOW)
    assert ack_link(web) != old_link  # signed with the environment's key
    with pytest.raises(InputError, match="LIFECYCLE_SECRET_KEY_PREVIOUS"):
        keys.rotate(NOW, DAY)


def test_secret_commands_show_fingerprints_and_never_a_key(cli, sqlite_db, key_file):
    first = cli("secret", "status")
    assert first.code == 0, first
    old_key = key_file.read_text().strip()
    rotated = cli("secret", "rotate", "--grace", "5", "--at", "2030-01-01T00:00:00Z")
    assert rotated.code == 0, rotated
    new_key = key_file.read_text().splitlines()[0]
    status = cli("secret", "status", "--json", "--at", "2030-01-02")
    assert status.code == 0, status
    for result in (first, rotated, status):
        assert old_key not in result.out + result.err and new_key not in result.out + result.err
    assert keys.fingerprint(old_key) in first.out and keys.fingerprint(new_key) in rotated.out
    assert "accepted until 2030-01-06T00:00:00+00:00" in rotated.out
    assert '"expired": false' in status.out
    with session_scope() as s:
        event = s.exec(select(AuditEvent).where(AuditEvent.action == "secret.rotate")).one()
        assert keys.fingerprint(new_key) in event.detail and new_key not in event.detail


def test_rotate_refuses_when_the_key_comes_from_the_environment(cli, sqlite_db):
    result = cli("secret", "rotate")
    assert result.code == 2
    assert "LIFECYCLE_SECRET_KEY_PREVIOUS" in result.err and "test-secret-key" not in result.out + result.err
