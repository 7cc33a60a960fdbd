"""Registry rules: short-notice guard, moves, withdrawals, validation — on SQLite and PostgreSQL."""

import json

import pytest
from sqlmodel import select

from lifecycle import registry
from lifecycle.db import session_scope
from lifecycle.errors import InputError, ShortNotice
from lifecycle.models import AuditEvent
from tests.conftest import utc

AT = utc(2026, 12, 1)


def _setup(s):
    registry.upsert_product(s, slug="acp", name="Alauda Container Platform", at=AT)
    registry.upsert_release(s, product="acp", version="3.16", at=AT)


def test_a_milestone_less_than_three_months_away_is_refused_without_a_reason(db):
    with session_scope() as s:
        _setup(s)
    with pytest.raises(ShortNotice) as err, session_scope() as s:
        registry.add_milestone(
            s, product="acp", version="3.16", kind="end-of-life", date=utc(2027, 2, 1).date(), at=AT
        )
    assert "3 months" in str(err.value) and err.value.field == "date"


def test_a_milestone_exactly_three_months_away_is_not_short_notice(db):
    with session_scope() as s:
        _setup(s)
        m, change = registry.add_milestone(
            s, product="acp", version="3.16", kind="end-of-life", date=utc(2027, 3, 1).date(), at=AT
        )
        assert change == "created" and m.short_notice_reason is None


def test_a_short_notice_milestone_with_a_reason_records_it_in_the_history(db):
    with session_scope() as s:
        _setup(s)
        m, _ = registry.add_milestone(
            s,
            product="acp",
            version="3.16",
            kind="end-of-life",
            date=utc(2027, 1, 15).date(),
            at=AT,
            allow_short_notice=True,
            reason="security",
        )
    with session_scope() as s:
        rows = registry.milestone_rows(s, AT)
    assert rows[0]["short_notice_reason"] == "security"
    assert rows[0]["history"][0]["reason"] == "security" and rows[0]["history"][0]["short_notice"]


def test_a_past_milestone_is_history_and_needs_no_reason(db):
    with session_scope() as s:
        _setup(s)
        registry.add_milestone(
            s, product="acp", version="3.16", kind="end-of-sale", date=utc(2025, 6, 30).date(), at=AT
        )
    with session_scope() as s:
        assert registry.milestone_rows(s, AT)[0]["past"] is True


def test_moving_a_milestone_bumps_its_revision_and_keeps_the_history(db):
    with session_scope() as s:
        _setup(s)
        registry.add_milestone(
            s, product="acp", version="3.16", kind="end-of-life", date=utc(2027, 9, 30).date(), at=AT
        )
    with session_scope() as s:
        m = registry.get_milestone(s, "acp", "3.16", "end-of-life")
        registry.move_milestone(s, m, date=utc(2027, 12, 31).date(), reason="customer demand", at=AT)
    with session_scope() as s:
        row = registry.milestone_rows(s, AT)[0]
    assert row["revision"] == 2 and row["date"] == "2027-12-31"
    assert [h["action"] for h in row["history"]] == ["created", "moved"]
    assert row["history"][1]["old_date"] == "2027-09-30" and row["history"][1]["reason"] == "customer demand"


def test_moving_to_a_short_notice_date_needs_the_flag(db):
    with session_scope() as s:
        _setup(s)
        registry.add_milestone(
            s, product="acp", version="3.16", kind="end-of-life", date=utc(2027, 9, 30).date(), at=AT
        )
    with pytest.raises(ShortNotice), session_scope() as s:
        m = registry.get_milestone(s, "acp", "3.16", "end-of-life")
        registry.move_milestone(s, m, date=utc(2027, 1, 31).date(), reason="earlier", at=AT)
    with session_scope() as s:
        m = registry.get_milestone(s, "acp", "3.16", "end-of-life")
        registry.move_milestone(
            s, m, date=utc(2027, 1, 31).date(), reason="earlier", at=AT, allow_short_notice=True
        )
        assert m.revision == 2 and m.short_notice_reason == "earlier"


def test_withdrawing_a_milestone_marks_it_withdrawn_with_a_new_revision(db):
    with session_scope() as s:
        _setup(s)
        registry.add_milestone(
            s, product="acp", version="3.16", kind="end-of-life", date=utc(2027, 9, 30).date(), at=AT
        )
    with session_scope() as s:
        m = registry.get_milestone(s, "acp", "3.16", "end-of-life")
        registry.withdraw_milestone(s, m, reason="extended indefinitely", at=AT)
    with session_scope() as s:
        row = registry.milestone_rows(s, AT)[0]
    assert row["status"] == "withdrawn" and row["revision"] == 2
    assert row["history"][-1]["reason"] == "extended indefinitely"


@pytest.mark.parametrize(
    "field,kwargs",
    [
        ("timezone", {"timezone": "Asia/Shangai"}),
        ("locale", {"locale": "fr"}),
        ("account_rep", {"account_rep": "not-an-email"}),
    ],
)
def test_a_customer_with_a_bad_field_is_refused_naming_the_field(db, field, kwargs):
    good = dict(
        key="acme", name="ACME", timezone="Asia/Shanghai", locale="zh-CN", account_rep="rep@vendor.example"
    )
    with pytest.raises(InputError) as err, session_scope() as s:
        registry.upsert_customer(s, at=AT, **{**good, **kwargs})
    assert err.value.field == field


def test_the_cli_refuses_a_short_notice_date_with_exit_code_2_and_explains_the_rule(db, cli):
    assert cli("product", "add", "acp", "--name", "ACP").code == 0
    assert cli("release", "add", "acp", "3.16").code == 0
    r = cli("milestone", "add", "acp", "3.16", "end-of-life", "2027-02-01", "--at", "2026-12-01")
    assert r.code == 2 and "3 months" in r.err and "Traceback" not in r.err
    r = cli(
        "milestone",
        "add",
        "acp",
        "3.16",
        "end-of-life",
        "2027-02-01",
        "--at",
        "2026-12-01",
        "--allow-short-notice",
        "--reason",
        "critical CVE",
    )
    assert r.code == 0, r
    r = cli(
        "milestone",
        "move",
        "acp",
        "3.16",
        "end-of-life",
        "2027-03-31",
        "--reason",
        "more time",
        "--at",
        "2026-12-01",
    )
    assert r.code == 0, r
    rows = json.loads(cli("milestone", "list", "--json").out)
    assert rows[0]["revision"] == 2 and rows[0]["history"][0]["reason"] == "critical CVE"


def test_adding_a_bounced_contact_again_needs_force_which_clears_the_flag_and_is_audited(db):
    with session_scope() as s:
        registry.upsert_customer(
            s,
            key="acme",
            name="ACME",
            timezone="Asia/Shanghai",
            locale="en",
            account_rep="rep@vendor.example",
            at=AT,
        )
        contact, _ = registry.upsert_contact(s, customer="acme", email="ops@acme.example", at=AT)
        contact.undeliverable, contact.undeliverable_reason = True, "550 mailbox unavailable"
        contact.undeliverable_at = AT
        s.add(contact)
    with (
        session_scope() as s,
        pytest.raises(InputError, match="bounced on .*550 mailbox unavailable.*--force"),
    ):
        registry.upsert_contact(s, customer="acme", email="OPS@acme.example", at=AT)
    with session_scope() as s:  # an import re-stating the address leaves it flagged
        contact, change = registry.upsert_contact(
            s, customer="acme", email="ops@acme.example", at=AT, force=None
        )
        assert change == "unchanged" and contact.undeliverable
    with session_scope() as s:
        contact, change = registry.upsert_contact(
            s, customer="acme", email="OPS@acme.example", at=AT, force=True, by="rep@vendor.example"
        )
        assert change == "updated" and not contact.undeliverable and contact.undeliverable_reason is None
        [event] = s.exec(select(AuditEvent).where(AuditEvent.action == "contact.revalidate")).all()
        assert event.actor == "rep@vendor.example" and '"forced": true' in event.detail
        assert "550 mailbox unavailable" in event.detail
