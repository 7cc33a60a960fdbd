"""QA regressions for the notice policy found by trying the CLI as a new user (SQLite and PostgreSQL)."""

import datetime as dt

from lifecycle.errors import InputError
from tests import world as w
from tests.conftest import utc

D = dt.date


def test_a_kiritimati_customer_is_told_at_nine_local_on_their_first_day_of_service(db):
    w.product()
    w.milestone(D(2027, 9, 30))
    w.customer("kiri", "Pacific/Kiritimati", start=D(2027, 5, 1))
    w.run(utc(2027, 4, 30, 19))  # 09:00 on 1 May 2027 in Kiritimati (UTC+14): service is active there
    assert [n.slot for n in w.sent("kiri") if n.kind == "stage"] == ["6m"]


def test_the_rep_is_escalated_when_a_move_leaves_less_than_a_month_and_no_agreement(db):
    w.product()
    w.milestone(D(2026, 12, 31))
    w.customer("acme", "Europe/Berlin")
    w.run(utc(2026, 7, 1))  # the 6m stage goes out
    w.move(D(2026, 7, 20), at=utc(2026, 7, 2, 10), short=True, reason="urgent")
    w.run(utc(2026, 7, 2, 10), utc(2026, 7, 14, 10))  # the change notice, then the 1w stage
    assert [n.slot for n in w.notices("acme", audience="rep") if n.kind == "escalation"] == ["1m"]


def test_a_far_future_milestone_is_refused_or_does_not_break_the_tick(db):
    w.product()
    w.customer("acme", "Europe/Berlin")
    try:
        w.milestone(D(9999, 12, 31))  # a common "no end planned" sentinel
    except InputError:
        return
    w.run(utc(2026, 1, 2))  # must not raise


def test_a_milestone_in_year_one_is_refused_or_does_not_break_the_tick(db):
    w.product()
    w.customer("acme", "Europe/Berlin")
    try:
        w.milestone(D(1, 1, 1))
    except InputError:
        return
    w.run(utc(2026, 1, 2))  # must not raise


def test_a_contact_address_is_refused_or_can_be_emailed(db):
    w.product()
    w.milestone(D(2026, 12, 31))
    try:
        w.customer("acme", "Europe/Berlin", emails=["用户@例子.广告"])
    except InputError:
        return
    w.run(utc(2026, 7, 1))
    assert [d.status for d in w.deliveries("email")] == ["sent"]
