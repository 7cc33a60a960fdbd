"""Every rule of the notice policy, through the real scheduler, on SQLite and PostgreSQL."""

import datetime as dt

import sqlalchemy as sa

from lifecycle import scheduler
from lifecycle.db import get_engine, session_scope
from lifecycle.reports import compliance
from tests import world as w
from tests.conftest import utc

D = dt.date


def stage_sends(customer_key="acme"):
    return [(n.slot, n.sent_at) for n in w.sent(customer_key) if n.kind == "stage"]


def test_the_three_month_stage_of_a_31_may_milestone_goes_out_on_28_february(db):
    w.product()
    w.milestone(D(2027, 5, 31))
    w.customer("acme", "Asia/Shanghai")
    w.run(utc(2026, 11, 30, 1), utc(2027, 2, 28, 0, 59))
    assert [s for s, _ in stage_sends()] == ["6m"]
    w.run(utc(2027, 2, 28, 1))  # 09:00 in Shanghai
    assert stage_sends()[-1] == ("3m", utc(2027, 2, 28, 1))


def test_in_a_leap_year_the_three_month_stage_of_31_may_is_29_february(db):
    w.product()
    w.milestone(D(2028, 5, 31))
    w.customer("acme", "Europe/Berlin")
    w.run(utc(2026, 1, 2))
    [n] = [n for n in w.notices("acme") if n.slot == "3m"]
    assert n.stage_date == D(2028, 2, 29) and n.due_at == utc(2028, 2, 29, 8)  # 09:00 CET


def test_stages_are_due_at_nine_local_time_in_each_customers_timezone_across_dst(db):
    w.product()
    w.milestone(D(2027, 6, 28))  # 3m stage on 28 March 2027, the day Berlin moves to summer time
    w.customer("acme", "Asia/Shanghai")
    w.customer("globex", "Europe/Berlin")
    w.customer("initech", "America/Los_Angeles")
    w.run(utc(2026, 1, 2))
    due = {(n.customer_id, n.slot): n.due_at for n in w.notices(kind="stage")}
    by_key = {n.slot: n for n in w.notices("globex", kind="stage")}
    assert by_key["6m"].due_at == utc(2026, 12, 28, 8)  # CET
    assert by_key["3m"].due_at == utc(2027, 3, 28, 7)  # CEST, same day as the change
    assert {n.slot: n.due_at for n in w.notices("acme", kind="stage")}["3m"] == utc(2027, 3, 28, 1)
    assert {n.slot: n.due_at for n in w.notices("initech", kind="stage")}["3m"] == utc(2027, 3, 28, 16)  # PDT
    assert {n.slot: n.due_at for n in w.notices("initech", kind="stage")}["6m"] == utc(
        2026, 12, 28, 17
    )  # PST
    assert len(due) == 12


def test_catch_up_sends_one_notice_not_three(db):
    w.product()
    w.milestone(D(2027, 6, 30))
    w.run(utc(2026, 1, 2))
    # The customer arrives when the 6m, 3m and 1m stages are all overdue.
    w.customer("acme", "Europe/Berlin", at=utc(2027, 6, 5))
    w.run(utc(2027, 6, 5, 12))
    assert [s for s, _ in stage_sends()] == ["1m"]
    skipped = {n.slot: n.status_reason for n in w.notices("acme", kind="stage") if n.status == "skipped"}
    assert skipped == {"6m": "superseded", "3m": "superseded"}
    assert len(w.deliveries("email")) == 1 + 1  # the 1m notice, and the escalation to the rep
    w.run(utc(2027, 6, 23, 12))
    assert [s for s, _ in stage_sends()] == ["1m", "1w"]


def test_an_outage_is_caught_up_with_the_latest_overdue_stage_only(db):
    w.product()
    w.milestone(D(2027, 6, 30))
    w.customer("acme", "Asia/Shanghai")
    w.run(utc(2026, 1, 2))
    # Nothing ran between December and mid-April: 6m and 3m are both overdue.
    w.run(utc(2027, 4, 15))
    assert [s for s, _ in stage_sends()] == ["3m"]
    row = compliance_row("acme")
    assert row["status"] == "late" and row["cause"].startswith("outage")


def _plans_of(url: str, matches, run) -> list[tuple[tuple, list[str]]]:
    """(parameters, SQLite's query plan steps) of every statement `matches` picks while `run` runs."""
    engine, seen = get_engine(url), []

    def grab(conn, cursor, statement, parameters, context, executemany):
        if matches(statement):
            seen.append((statement, parameters))

    sa.event.listen(engine, "before_cursor_execute", grab)
    try:
        run()
    finally:
        sa.event.remove(engine, "before_cursor_execute", grab)
    with engine.connect() as conn:
        return [
            (
                parameters,
                [row[3] for row in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters)],
            )
            for statement, parameters in seen
        ]


def test_the_outage_check_searches_one_customers_stages_not_every_customers(sqlite_db):
    """Issue 11: the check for a later overdue stage runs per overdue stage. On SQLite it must search
    that customer's notices of the milestone (ix_notice_customer_milestone), not every notice of the
    milestone: a first tick with N customers overdue then cost N² (8,000 customers: 55 s)."""
    # SQLite only: PostgreSQL plans from its own statistics.
    w.product()
    w.milestone(D(2027, 6, 30))
    w.customer("acme", "Asia/Shanghai")
    [(_, plan)] = _plans_of(
        sqlite_db,
        lambda st: st.startswith("UPDATE notice") and "FROM notice AS later" in st,
        lambda: w.run(utc(2027, 4, 15)),
    )
    assert any("SEARCH later USING INDEX ix_notice_customer_milestone" in step for step in plan), plan


def test_settling_notices_finds_them_by_id_not_by_every_notice_of_a_status(sqlite_db):
    """Issue 11: after every chunk of sends, `settle_notices` recomputes the chunk's notices. On SQLite
    (no statistics) it must find them by primary key; searching ix_notice_status_due read every
    released notice of the fleet, so a catch-up grew faster than the fleet (40 ms a call at half the
    reference fleet)."""
    w.product()
    w.milestone(D(2027, 6, 30))
    for i in range(30):  # a chunk settles many notices at once: that is when the plan went wrong
        w.customer(f"c{i:02d}", "Asia/Shanghai")
    seen = _plans_of(
        sqlite_db,
        lambda st: st.startswith("UPDATE notice SET status=CASE WHEN (EXISTS"),
        lambda: w.run(utc(2027, 1, 15)),
    )
    assert max(len(parameters) for parameters, _ in seen) > 50, "many notices were settled at once"
    for _, plan in seen:
        assert plan[0].startswith("SEARCH notice USING INTEGER PRIMARY KEY"), plan
        assert not any("ix_notice_status_due" in step for step in plan), plan


def test_a_delivery_run_claims_its_customers_rows_by_their_index_not_every_pending_one(sqlite_db):
    """Issue 11: a catch-up claims a hundred customers' due deliveries per run. On SQLite (no
    statistics) the claim searched ix_delivery_status_next, every pending delivery of the fleet, once
    per run (88 ms a claim at half the reference fleet): it must find the customers' rows through
    ix_delivery_customer_id and take them by primary key."""
    w.product()
    w.milestone(D(2027, 6, 30))
    for i in range(5):
        w.customer(f"c{i:02d}", "Asia/Shanghai")
    seen = _plans_of(
        sqlite_db,
        lambda st: st.startswith("UPDATE delivery SET") and "first_attempt_at=coalesce" in st,
        lambda: w.run(utc(2027, 1, 15)),
    )
    assert seen, "a tick claimed deliveries"
    for _, plan in seen:
        assert plan[0] == "SEARCH delivery USING INTEGER PRIMARY KEY (rowid=?)", plan
        assert not any("ix_delivery_status_next" in step for step in plan), plan
        assert any("ix_delivery_customer_id" in step for step in plan), plan
    assert len(w.sent("c00")) == 1


def test_new_escalation_notices_are_found_through_their_partial_index_only(sqlite_db):
    """Issue 11: each tick looks for escalation notices without a work item. notice.kind has no index,
    so SQLite read every notice of the fleet (1.4 million at the reference fleet, half a steady tick).
    The lookup must go through the partial index ix_notice_escalation (kind = 'escalation'), and no
    other notice statement may be planned through it."""
    w.product()
    w.milestone(D(2027, 6, 30))
    for i in range(3):
        w.customer(f"c{i:02d}", "Asia/Shanghai")
    statements: list[str] = []

    def about_notices(statement: str) -> bool:
        if "notice" in statement and not statement.startswith(("INSERT", "PRAGMA")):
            statements.append(statement)
            return True
        return False

    seen = _plans_of(sqlite_db, about_notices, lambda: w.run(utc(2027, 5, 31)))
    assert len(w.notices(audience="rep", kind="escalation")) == 3
    lookup = (
        "SELECT notice.id, notice.customer_id, notice.milestone_id, notice.release_id, customer.account_rep"
    )
    plans = [(st.startswith(lookup), plan) for st, (_, plan) in zip(statements, seen, strict=True)]
    assert any(is_lookup for is_lookup, _ in plans), "a tick looked for new escalation notices"
    for is_lookup, plan in plans:
        if is_lookup:
            assert plan[0] == "SCAN notice USING INDEX ix_notice_escalation", plan
        else:
            assert not any("ix_notice_escalation" in step for step in plan), plan


def test_what_customers_were_told_before_is_found_by_their_notices_not_every_sent_one(sqlite_db):
    """Issue 11: each email's words name what its customer was told before (`content._told`). On
    SQLite the lookup must search the customers' notices of the milestones
    (ix_notice_customer_milestone); searching ix_notice_status_due read every sent notice of the fleet,
    so a catch-up grew faster than the fleet."""
    w.product()
    w.milestone(D(2027, 6, 30))
    for i in range(5):
        w.customer(f"c{i:02d}", "Asia/Shanghai")
    w.run(utc(2027, 1, 15))  # the 6-month notices: sent
    seen = _plans_of(
        sqlite_db,
        lambda st: st.startswith("SELECT notice.id, notice.customer_id, notice.milestone_id, notice.kind"),
        lambda: w.run(utc(2027, 4, 15)),  # the 3-month notices name the earlier ones
    )
    assert seen, "the emails looked up what was told before"
    for _, plan in seen:
        assert any("ix_notice_customer_milestone" in step for step in plan), plan
        assert not any("ix_notice_status_due" in step for step in plan), plan


def test_a_short_notice_milestone_notifies_every_affected_customer_at_once(db):
    w.product()
    w.customer("acme", "Asia/Shanghai")
    w.customer("globex", "Europe/Berlin")
    w.run(utc(2027, 1, 1))
    w.milestone(D(2027, 2, 26), at=utc(2027, 1, 10), reason="upstream end of life")
    w.run(utc(2027, 1, 10, 12))
    # 1m (26 Jan) is still ahead, so the 3m stage is the latest overdue one and goes now.
    assert [s for s, _ in stage_sends("acme")] == ["3m"] and [s for s, _ in stage_sends("globex")] == ["3m"]
    row = compliance_row("acme")
    assert (
        row["status"] == "late" and "short notice" in row["cause"] and "upstream end of life" in row["cause"]
    )


def test_a_past_milestone_is_history_and_never_notified(db):
    w.product()
    w.customer("acme")
    w.milestone(D(2026, 5, 31), at=utc(2026, 6, 15))
    w.run(utc(2026, 6, 15), utc(2026, 7, 1))
    assert w.notices("acme") == []


def test_moving_a_milestone_later_sends_a_change_notice_and_replans_unsent_stages(db):
    w.product()
    w.milestone(D(2027, 6, 30))
    w.customer("acme", "Asia/Shanghai")
    w.run(utc(2026, 12, 30, 2))  # 6m sent
    w.move(D(2027, 12, 31), at=utc(2027, 1, 15), reason="customers asked for more time")
    w.run(utc(2027, 1, 15, 1))
    changed = [n for n in w.sent("acme") if n.kind == "changed"]
    assert len(changed) == 1 and changed[0].revision == 2 and changed[0].milestone_date == D(2027, 12, 31)
    # Reminders follow the current date: every stage of 31 December is planned again.
    stages = {n.slot: n for n in w.notices("acme", kind="stage", milestone_date=D(2027, 12, 31))}
    assert {s: n.status for s, n in stages.items()} == {
        "6m": "planned",
        "3m": "planned",
        "1m": "planned",
        "1w": "planned",
    }
    assert stages["6m"].due_at == utc(2027, 6, 30, 1) and stages["3m"].due_at == utc(2027, 9, 30, 1)
    assert stages["1w"].due_at == utc(2027, 12, 24, 1)
    old = {n.slot: n.status for n in w.notices("acme", kind="stage", milestone_date=D(2027, 6, 30))}
    assert old == {"6m": "sent", "3m": "cancelled", "1m": "cancelled", "1w": "cancelled"}
    w.run(utc(2027, 3, 31, 1))  # the old 3m date: nothing goes
    assert [n.slot for n in w.sent("acme") if n.kind == "stage"] == ["6m"]
    last = w.inbox("acme")[-1]  # the change notice, as the customer reads it
    assert last.notice_id == changed[0].id
    assert "30 June 2027" in last.body_text and "31 December 2027" in last.body_text
    # The product manager's reason is internal; the customer reads a neutral reason.
    assert "customers asked for more time" not in last.body_text
    assert "The vendor has revised this date." in last.body_text


def test_moving_a_milestone_earlier_covers_overdue_stages_with_the_change_notice(db):
    w.product()
    w.milestone(D(2027, 9, 30))
    w.customer("acme", "Asia/Shanghai")
    w.run(utc(2027, 3, 30, 2))  # 6m sent
    w.move(D(2027, 6, 30), at=utc(2027, 4, 10), reason="security", short=True)
    w.run(utc(2027, 4, 10, 1))
    kinds = [(n.kind, n.slot) for n in w.sent("acme")]
    assert kinds == [("stage", "6m"), ("changed", "2")]  # not also the overdue 3m stage
    stages = {n.slot: n for n in w.notices("acme", kind="stage", milestone_date=D(2027, 6, 30))}
    assert stages["3m"].status == "skipped" and stages["3m"].status_reason == "covered-by-change"
    assert stages["1m"].status == "planned" and stages["1m"].due_at == utc(2027, 5, 30, 1)


def test_a_customer_not_yet_notified_gets_the_replanned_stages_not_a_change_notice(db):
    w.product()
    w.milestone(D(2027, 9, 30))
    w.customer("acme", "Asia/Shanghai")
    w.run(utc(2026, 12, 1))
    w.move(D(2027, 12, 31), at=utc(2027, 1, 5), reason="later")
    w.run(utc(2027, 1, 5))
    assert w.sent("acme") == []
    assert {n.slot: n.due_at for n in w.notices("acme", kind="stage")}["6m"] == utc(2027, 6, 30, 1)


def test_withdrawing_sends_a_cancellation_to_those_notified_and_cancels_the_rest(db):
    w.product()
    w.milestone(D(2027, 9, 30))
    w.customer("acme", "Asia/Shanghai")
    w.customer("globex", "Europe/Berlin", deploy=())
    w.run(utc(2027, 3, 31))
    w.customer("globex", "Europe/Berlin", deploy=(("acp", "3.16"),), at=utc(2027, 3, 31, 5))
    w.withdraw(at=utc(2027, 4, 1), reason="ticket LC-12", customer_reason="support extended indefinitely")
    w.run(utc(2027, 4, 1, 1), utc(2027, 9, 30))
    assert [(n.kind) for n in w.sent("acme")] == ["stage", "withdrawn"]
    assert w.sent("globex") == []  # never notified: no cancellation either
    assert {n.status for n in w.notices("acme", kind="stage")} == {"sent", "cancelled"}
    assert "support extended indefinitely" in w.inbox("acme")[-1].body_text
    assert "LC-12" not in w.inbox("acme")[-1].body_text  # the internal reason stays internal


def test_no_reminders_go_to_a_customer_whose_service_lapsed(db):
    w.product()
    w.milestone(D(2027, 9, 30))
    w.customer("acme", "Asia/Shanghai", start=D(2025, 1, 1), end=D(2027, 5, 31))
    w.run(utc(2027, 3, 30, 2), utc(2027, 8, 30, 2), utc(2027, 9, 23, 2))
    assert [n.slot for n in w.sent("acme")] == ["6m"]  # 3m is on 30 June, after the service ended
    reasons = {n.slot: n.status_reason for n in w.notices("acme", kind="stage") if n.status == "skipped"}
    assert reasons == {"3m": "service-lapsed", "1m": "service-lapsed", "1w": "service-lapsed"}


def test_a_lapsed_customer_never_notified_is_reported_with_the_reason(db):
    w.product()
    w.milestone(D(2027, 9, 30))
    w.customer("acme", "Asia/Shanghai", start=D(2025, 1, 1), end=D(2027, 1, 31))
    w.run(utc(2026, 1, 1), utc(2027, 10, 1))
    row = compliance_row("acme")
    assert row["status"] == "not-notified" and row["cause"] == "service lapsed"


def test_a_new_customer_is_told_on_the_first_day_of_service(db):
    w.product()
    w.milestone(D(2027, 6, 30))
    w.customer("acme", "Asia/Shanghai", start=D(2027, 5, 10), at=utc(2027, 5, 1))
    w.run(utc(2027, 5, 9), utc(2027, 5, 10, 1))
    assert [(n.slot, n.sent_at) for n in w.sent("acme")] == [("3m", utc(2027, 5, 10, 1))]
    row = compliance_row("acme")
    assert row["status"] == "late" and "service started late" in row["cause"]


def test_a_product_level_milestone_reaches_customers_of_every_release_once(db):
    w.product(versions=("3.16", "3.18"))
    w.milestone(D(2027, 6, 30), version=None, kind="end-of-sale")
    w.customer("acme", deploy=(("acp", "3.16"), ("acp", "3.18")))
    w.customer("globex", "Europe/Berlin", deploy=(("acp", "3.18"),))
    w.run(utc(2027, 1, 1))
    assert [n.slot for n in w.sent("acme")] == ["6m"] and [n.slot for n in w.sent("globex")] == ["6m"]


def test_a_deployment_added_late_is_caught_up_and_reported_late(db):
    w.product()
    w.milestone(D(2027, 6, 30))
    w.customer("acme", deploy=())
    w.run(utc(2027, 1, 1))
    with session_scope() as s:
        from lifecycle import registry

        registry.add_deployment(s, customer="acme", product="acp", version="3.16", at=utc(2027, 4, 20))
    w.run(utc(2027, 4, 20, 12))
    assert [n.slot for n in w.sent("acme")] == ["3m"]
    row = compliance_row("acme")
    assert row["status"] == "late" and "deployment added late" in row["cause"]


def test_removing_a_deployment_cancels_the_customers_pending_notices(db):
    w.product()
    w.milestone(D(2027, 6, 30))
    w.customer("acme")
    w.run(utc(2027, 1, 1))
    with session_scope() as s:
        from lifecycle import registry

        registry.remove_deployment(s, customer="acme", product="acp", version="3.16", at=utc(2027, 1, 2))
    w.run(utc(2027, 1, 2), utc(2027, 7, 1))
    assert [n.slot for n in w.sent("acme")] == ["6m"]
    assert {n.status_reason for n in w.notices("acme", kind="stage", status="cancelled")} == {"not-affected"}


def test_an_acknowledged_upgrade_stops_routine_reminders_but_not_change_notices(db):
    w.product()
    w.milestone(D(2027, 9, 30))
    w.customer("acme", "Asia/Shanghai")
    w.run(utc(2027, 3, 30, 2))
    w.ack("acme", "planned", at=utc(2027, 4, 2), target="3.18", planned_date=D(2027, 8, 1))
    w.run(utc(2027, 6, 30, 2))
    assert [n.slot for n in w.sent("acme") if n.kind == "stage"] == ["6m"]
    assert {n.slot: n.status_reason for n in w.notices("acme", kind="stage")}["3m"] == "agreement"
    w.move(D(2027, 10, 31), at=utc(2027, 7, 1), reason="later")
    w.run(utc(2027, 7, 1, 1), utc(2027, 10, 1, 2))
    assert [n.kind for n in w.sent("acme")] == ["stage", "changed"]
    assert w.notices("acme", kind="escalation") == []


def test_a_declined_upgrade_does_not_stop_reminders(db):
    w.product()
    w.milestone(D(2027, 9, 30))
    w.customer("acme", "Asia/Shanghai")
    w.ack("acme", "declined", at=utc(2027, 1, 2))
    w.run(utc(2027, 3, 30, 2), utc(2027, 6, 30, 2))
    assert [n.slot for n in w.sent("acme") if n.kind == "stage"] == ["6m", "3m"]


def test_without_agreement_the_rep_is_escalated_to_at_the_one_month_stage(db):
    w.product()
    w.milestone(D(2027, 9, 30))
    w.customer("acme", "Asia/Shanghai", rep="li.wei@vendor.example")
    w.customer("globex", "Europe/Berlin", rep="anna@vendor.example")
    w.ack("globex", "acknowledged", at=utc(2027, 1, 2))
    w.run(utc(2027, 8, 29), utc(2027, 8, 30, 12))
    [esc] = w.notices(audience="rep", kind="escalation")
    assert esc.status == "sent" and esc.slot == "1m"
    [d] = [d for d in w.deliveries("email") if d.notice_id == esc.id]
    assert d.recipient == "li.wei@vendor.example"
    w.run(utc(2027, 8, 31), utc(2027, 9, 25))
    assert len(w.notices(audience="rep", kind="escalation")) == 1  # once


def test_a_customer_gets_one_email_for_notices_due_the_same_day(db):
    w.product()
    w.milestone(D(2027, 9, 30), kind="end-of-life")
    w.milestone(D(2027, 9, 30), kind="end-of-maintenance")
    w.customer("acme", "Asia/Shanghai")
    w.run(utc(2027, 3, 30, 2))
    emails = w.deliveries("email")
    assert len(emails) == 2 and len({d.provider_id for d in emails}) == 1  # one message, two records
    assert len(w.inbox("acme")) == 2


def test_ticking_twice_delivers_nothing_twice(db):
    w.product()
    w.milestone(D(2027, 9, 30))
    w.customer("acme")
    w.customer("globex", "Europe/Berlin")
    w.run(utc(2027, 3, 31))
    first = w.delivery_signature()
    w.run(utc(2027, 3, 31), utc(2027, 3, 31, 0, 1))
    assert w.delivery_signature() == first and len(first) == 4


def test_a_delivery_left_sending_by_a_dead_worker_is_recovered(db):
    w.product()
    w.milestone(D(2027, 9, 30))
    w.customer("acme")
    at = utc(2027, 3, 31)
    with session_scope() as s:
        scheduler.plan(s, at)
        scheduler.release_due(s, at)
    with session_scope() as s:
        from lifecycle.delivery import claim

        assert len(claim(s, 1, at, "dead-worker")) == 2  # claimed, then the worker died
    w.run(at + dt.timedelta(minutes=1))
    assert w.sent("acme") == []  # still within the claim timeout
    w.run(at + dt.timedelta(minutes=11))
    assert [n.slot for n in w.sent("acme")] == ["6m"]


def compliance_row(customer_key):
    with session_scope() as s:
        rows = [r for r in compliance(s, utc(2030, 1, 1))["rows"] if r["customer"] == customer_key]
    assert len(rows) == 1, rows
    return rows[0]


def test_a_tick_reports_the_escalations_and_deliveries_it_created(db):
    w.product()
    w.milestone(D(2027, 9, 30))
    w.customer("acme", "Asia/Shanghai")
    [result] = w.run(utc(2027, 8, 30, 2))
    assert result.release.escalations == 1 and result.work_items == {"created": 1}
    assert result.release.deliveries == 2  # portal + email for the 1m stage
    [later] = w.run(utc(2027, 8, 30, 9))  # the rep's daily digest (09:00 in their timezone, UTC by default)
    assert later.release.deliveries == 1
