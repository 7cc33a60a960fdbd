"""Acknowledgement links: GET never records anything (mail scanners follow links); a forged or expired
token records nothing on GET or POST; POST records the agreement with channel `email-link`, history and
a notice to the rep."""

from __future__ import annotations

import datetime as dt
import time

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from itsdangerous import TimestampSigner, URLSafeTimedSerializer
from sqlmodel import select

from lifecycle.db import session_scope
from lifecycle.links import ACK_SALT, ack_token, secret_key
from lifecycle.models import Agreement, AgreementChange, AuditEvent, InboxMessage, Notice
from lifecycle.web.app import create_app
from tests import webworld

COUNTED = (Agreement, AgreementChange, AuditEvent, Notice, InboxMessage)


def counts() -> dict[str, int]:
    """Rows of everything an acknowledgement could write; forged-link audit events are counted apart."""
    with session_scope() as s:
        out = {m.__name__: s.exec(select(sa.func.count()).select_from(m)).one() for m in COUNTED}
        out["AuditEvent"] -= forgeries(s)
        return out


def forgeries(s) -> int:
    return s.exec(
        select(sa.func.count()).select_from(AuditEvent).where(AuditEvent.action == "ack.signature.failed")
    ).one()


@pytest.fixture
def world(db):
    return webworld.build()


@pytest.fixture
def client():
    return TestClient(create_app())


def link(world, release: str = "r316") -> str:
    with session_scope() as s:
        return f"/ack/{ack_token(s, world.ids['acme'], world.ids[release])}"


def expired_link(world) -> str:
    class LongAgo(TimestampSigner):
        def get_timestamp(self) -> int:
            return int(time.time()) - 500 * 86400  # older than ack_link_days (400)

    with session_scope() as s:
        serializer = URLSafeTimedSerializer(secret_key(s), salt=ACK_SALT, signer=LongAgo)
        return f"/ack/{serializer.dumps({'c': world.ids['acme'], 'r': world.ids['r316']})}"


# A valid plan for 3.16 (webworld: its end of full support in 60 days; 3.18 supported for 900 days).
FORM = {
    "status": "planned",
    "target": "3.18",
    "planned_date": (dt.date.today() + dt.timedelta(days=45)).isoformat(),
    "name": "Ann",
    "email": "ann@acme.example",
    "feedback": "Please give six months.",
}


def test_a_get_of_an_ack_link_shows_the_release_and_records_nothing(world, client):
    before = counts()
    for _ in range(3):  # a scanner, a preview, the person
        page = client.get(link(world))
        assert page.status_code == 200
    assert "Alauda Container Platform 3.16" in page.text
    assert (world.today + dt.timedelta(days=60)).isoformat() in page.text  # end of full support
    assert 'name="target"' in page.text and '<option value="3.18" selected>' in page.text
    assert "end of full support" in page.text.lower()
    assert counts() == before


def test_a_forged_token_records_nothing_on_get_or_post(world, client):
    good = link(world)
    forged = good[:-3] + ("abc" if not good.endswith("abc") else "xyz")
    payload_swapped = (
        "/ack/eyJjIjoyLCJyIjoyfQ." + good.split(".", 1)[1]
    )  # another customer's id, same signature
    before = counts()
    for url in (forged, payload_swapped, "/ack/not-a-token"):
        assert client.get(url).status_code == 400
        response = client.post(url, data=FORM)
        assert response.status_code == 400
        assert "not valid" in response.text
    assert counts() == before
    with session_scope() as s:
        assert forgeries(s) == 6  # each attempt is in the audit log


def test_an_expired_token_gets_a_clear_page_and_records_nothing(world, client):
    url = expired_link(world)
    before = counts()
    page = client.get(url)
    assert page.status_code == 410 and "expired" in page.text
    assert client.post(url, data=FORM).status_code == 410
    assert counts() == before


def test_a_post_records_the_agreement_by_email_link_with_history_and_tells_the_rep(world, client):
    url = link(world)
    response = client.post(url, data=FORM, follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == f"{url}?saved=1"
    again = dict(FORM, status="completed", feedback="")
    assert client.post(url, data=again, follow_redirects=False).status_code == 303
    with session_scope() as s:
        agreement = s.exec(
            select(Agreement).where(
                Agreement.customer_id == world.ids["acme"], Agreement.release_id == world.ids["r316"]
            )
        ).one()
        assert (agreement.status, agreement.target_version, agreement.channel) == (
            "completed",
            "3.18",
            "email-link",
        )
        assert agreement.by == "Ann <ann@acme.example>"
        history = s.exec(
            select(AgreementChange)
            .where(AgreementChange.agreement_id == agreement.id)
            .order_by(AgreementChange.id)
        ).all()
        assert [(h.status, h.channel, h.feedback) for h in history] == [
            ("planned", "email-link", "Please give six months."),
            ("completed", "email-link", None),
        ]
        rep_notices = s.exec(select(Notice).where(Notice.kind == "agreement", Notice.audience == "rep")).all()
        assert len(rep_notices) == 2
    shown = client.get(f"{url}?saved=1")
    assert "your plan is recorded" in shown.text and "upgrade completed" in shown.text


def test_a_post_with_bad_input_shows_the_form_again_and_records_nothing(world, client):
    before = counts()
    response = client.post(link(world), data=dict(FORM, target="9.99"))
    assert response.status_code == 422
    assert "There is no release 9.99 of this product." in response.text
    assert 'value="Ann"' in response.text  # what was typed is kept
    nobody = client.post(link(world), data=dict(FORM, name="", email=""))
    assert nobody.status_code == 422 and "tell us who agrees" in nobody.text
    assert counts() == before
