"""Real lifecycle churn keeps the promise: postponed, pulled-in, removed, reinstated and dateless
milestones, and an outcome that does not depend on how often the tick runs."""

import datetime as dt
import email
import email.policy
import json
import re

import pytest
import sqlalchemy as sa

from lifecycle import importing, registry, scheduler
from lifecycle.db import session_scope
from lifecycle.errors import InputError
from lifecycle.models import Notice, Release
from lifecycle.reports import compliance
from tests import world as w
from tests.conftest import DATA, utc

D = dt.date
SNAPSHOTS = DATA / "endoflife" / "snapshots"


def stages_sent(customer="acme", date=None):
    return [
        n.slot for n in w.sent(customer) if n.kind == "stage" and (date is None or n.milestone_date == date)
    ]


def escalations(date=None):
    return [
        n for n in w.notices(audience="rep", kind="escalation") if date is None or n.milestone_date == date
    ]


def kinds_sent(customer="acme"):
    return [(n.kind, n.milestone_date) for n in w.sent(customer)]


# ---------------------------------------------------------------------------------- reminders follow the date


def test_a_milestone_postponed_after_every_stage_went_out_gets_every_stage_again_for_the_new_date(db):
    w.product()
    w.milestone(D(2027, 3, 15))
    w.customer("acme", "Asia/Shanghai")
    w.run_every_instant(utc(2027, 3, 10))
    assert stages_sent() == ["6m", "3m", "1m", "1w"] and len(escalations()) == 1
    w.move(D(2028, 3, 31), at=utc(2027, 3, 10, 6), reason="support extended")
    w.run_every_instant(utc(2028, 4, 1), start=utc(2027, 3, 10, 6))
    assert kinds_sent()[4] == ("changed", D(2028, 3, 31))
    new = [
        (n.slot, n.sent_at)
        for n in w.sent("acme")
        if n.kind == "stage" and n.milestone_date == D(2028, 3, 31)
    ]
    assert new == [
        ("6m", utc(2027, 9, 30, 1)),
        ("3m", utc(2027, 12, 31, 1)),
        ("1m", utc(2028, 2, 29, 1)),  # 31 March - 1 month in a leap year
        ("1w", utc(2028, 3, 24, 1)),
    ]
    [esc] = escalations(D(2028, 3, 31))
    # The 1-month stage fell due at 01:00 UTC; the rep hears of it in their 09:00 (UTC) daily digest.
    assert esc.status == "sent" and esc.due_at == utc(2028, 2, 29, 9)


def test_a_milestone_postponed_after_its_date_passed_is_corrected_and_reminded_again(db):
    """Firefox 115: end of life moved from 2026-03-15 to 2027-03-31, on 2026-08-22."""
    w.product()
    w.milestone(D(2026, 3, 15), at=utc(2025, 6, 1))
    w.customer("acme", "Europe/Berlin", at=utc(2025, 6, 1))
    w.run_every_instant(utc(2026, 8, 22), start=utc(2025, 6, 1))
    assert stages_sent() == ["6m", "3m", "1m", "1w"]
    w.move(D(2027, 3, 31), at=utc(2026, 8, 22, 10), reason="upstream extended ESR")
    w.run_every_instant(utc(2027, 4, 1), start=utc(2026, 8, 22, 10))
    assert ("changed", D(2027, 3, 31)) in kinds_sent()
    assert stages_sent(date=D(2027, 3, 31)) == ["6m", "3m", "1m", "1w"]
    change = w.inbox("acme")[4]
    assert "15 March 2026" in change.body_text and "31 March 2027" in change.body_text
    row = compliance_row("acme")
    assert row["status"] == "on-time" and row["milestone_date"] == "2027-03-31"


def test_a_milestone_postponed_twice_gives_one_coherent_series(db):
    w.product()
    w.milestone(D(2027, 6, 30))
    w.customer("acme", "Asia/Shanghai")
    w.run_every_instant(utc(2027, 4, 15))  # 6m and 3m of 30 June sent
    w.move(D(2027, 9, 30), at=utc(2027, 4, 15, 2), reason="first postponement")
    w.run_every_instant(utc(2027, 5, 10), start=utc(2027, 4, 15, 2))  # the 6m of 30 September is covered
    w.move(D(2027, 12, 31), at=utc(2027, 5, 10, 2), reason="second postponement")
    w.run_every_instant(utc(2028, 1, 1), start=utc(2027, 5, 10, 2))
    sent = [(n.kind, n.slot if n.kind == "stage" else None, n.milestone_date) for n in w.sent("acme")]
    assert sent == [
        ("stage", "6m", D(2027, 6, 30)),
        ("stage", "3m", D(2027, 6, 30)),
        ("changed", None, D(2027, 9, 30)),  # 6m of 30 September fell due before: covered by the change
        ("changed", None, D(2027, 12, 31)),
        ("stage", "6m", D(2027, 12, 31)),
        ("stage", "3m", D(2027, 12, 31)),
        ("stage", "1m", D(2027, 12, 31)),
        ("stage", "1w", D(2027, 12, 31)),
    ]
    # Never two reminders of one stage of one date.
    keys = [n.key for n in w.sent("acme")]
    assert len(keys) == len(set(keys))
    assert [e.milestone_date for e in escalations() if e.status == "sent"] == [D(2027, 12, 31)]


def test_two_moves_before_the_customer_heard_of_the_first_send_one_change_notice(db):
    w.product()
    w.milestone(D(2027, 9, 30))
    w.customer("acme", "Asia/Shanghai")
    w.run(utc(2027, 3, 30, 2))  # 6m sent
    w.move(D(2027, 10, 31), at=utc(2027, 4, 1, 9), reason="first")
    with session_scope() as s:
        scheduler.plan(s, utc(2027, 4, 1, 9))  # `lifecycle plan`: the change notice is planned, not sent
    w.move(D(2027, 11, 30), at=utc(2027, 4, 1, 10), reason="second")
    w.run(utc(2027, 4, 1, 11))
    changed = [n for n in w.notices("acme") if n.kind == "changed"]
    assert [(n.slot, n.status, n.status_reason) for n in changed] == [
        ("2", "cancelled", "replaced"),
        ("3", "sent", None),
    ]
    body = w.inbox("acme")[-1].body_text
    assert "30 September 2027" in body and "30 November 2027" in body and "31 October" not in body


def test_moving_a_milestone_back_to_a_date_already_reminded_does_not_remind_that_stage_twice(db):
    w.product()
    w.milestone(D(2027, 9, 30))
    w.customer("acme", "Asia/Shanghai")
    w.run(utc(2027, 3, 30, 2))  # 6m of 30 September
    w.move(D(2027, 12, 31), at=utc(2027, 4, 1), reason="later")
    w.run(utc(2027, 4, 1, 1))
    w.move(D(2027, 9, 30), at=utc(2027, 4, 2), reason="back again")
    w.run_every_instant(utc(2027, 10, 1), start=utc(2027, 4, 2))
    assert stages_sent(date=D(2027, 9, 30)) == ["6m", "3m", "1m", "1w"]  # the 6m once
    assert [k for k, _ in kinds_sent()].count("changed") == 2


# ------------------------------------------------------------------------------------------ pulled in


def test_a_date_pulled_into_the_past_is_corrected_for_everyone_told(db):
    """Django 6.0: end of full support moved from 2026-08-31 to 2026-08-04, re-imported on 2026-08-22."""
    w.product()
    w.milestone(D(2026, 8, 31), kind="end-of-full-support", at=utc(2025, 12, 1))
    w.customer("acme", "Asia/Shanghai", at=utc(2025, 12, 1))
    w.customer("hooli", "America/Los_Angeles", locale="zh-CN", at=utc(2025, 12, 1))
    w.run_every_instant(utc(2026, 8, 22), start=utc(2025, 12, 1))
    assert stages_sent("acme") == ["6m", "3m", "1m"]
    w.move(D(2026, 8, 4), at=utc(2026, 8, 22, 3), kind="end-of-full-support", reason="upstream", short=True)
    w.run_every_instant(utc(2026, 9, 30), start=utc(2026, 8, 22, 3))
    for key in ("acme", "hooli"):
        last = w.sent(key)[-1]
        assert last.kind == "changed" and last.milestone_date == D(2026, 8, 4)
    assert "31 August 2026" in w.inbox("acme")[-1].body_text
    assert "4 August 2026, which has already passed" in w.inbox("acme")[-1].body_text
    assert "2026年8月4日（该日期已过）" in w.inbox("hooli")[-1].body_text
    assert stages_sent("acme") == ["6m", "3m", "1m"]  # no reminder of a past date
    row = compliance_row("acme")
    assert row["status"] == "late" and row["cause"].startswith(
        "short notice: moved from 2026-08-31 to 2026-08-04"
    )
    assert "already passed" in row["cause"]


def test_a_date_pulled_in_replans_the_stages_that_are_still_ahead(db):
    w.product()
    w.milestone(D(2027, 10, 31))
    w.customer("acme", "Asia/Shanghai")
    w.run(utc(2027, 4, 30, 2))  # 6m
    w.move(D(2027, 6, 30), at=utc(2027, 5, 1), reason="security", short=True)
    w.run_every_instant(utc(2027, 7, 1), start=utc(2027, 5, 1))
    assert kinds_sent()[1] == ("changed", D(2027, 6, 30))
    assert stages_sent(date=D(2027, 6, 30)) == ["1m", "1w"]
    reasons = {
        n.slot: n.status_reason for n in w.notices("acme", kind="stage", milestone_date=D(2027, 6, 30))
    }
    assert reasons["6m"] == reasons["3m"] == "covered-by-change"


# ------------------------------------------------------------------------------------ withdrawn, reinstated


def test_a_reinstated_milestone_tells_those_who_heard_it_was_cancelled(db):
    w.product()
    w.milestone(D(2027, 9, 30))
    w.customer("acme", "Asia/Shanghai")
    w.customer("hooli", "Asia/Shanghai", locale="zh-CN")
    w.run(utc(2027, 3, 30, 2))
    w.withdraw(at=utc(2027, 4, 1), reason="extended")
    w.run(utc(2027, 4, 1, 1))
    w.reinstate(
        D(2027, 10, 31),
        at=utc(2027, 5, 1),
        reason="extension cancelled",
        customer_reason={"en": "The extension was cancelled.", "zh-CN": "延期已取消。"},
    )
    w.run_every_instant(utc(2027, 11, 1), start=utc(2027, 5, 1))
    assert [k for k, _ in kinds_sent()] == ["stage", "withdrawn", "reinstated", "stage", "stage", "stage"]
    reinstated = w.inbox("acme")[2]
    assert reinstated.subject.startswith("Reinstated:") and "31 October 2027" in reinstated.body_text
    assert "The extension was cancelled." in reinstated.body_text and "not given" not in reinstated.body_text
    assert "延期已取消。" in w.inbox("hooli")[2].body_text
    assert stages_sent(date=D(2027, 10, 31)) == ["3m", "1m", "1w"]  # 6m covered by the reinstatement


def test_reinstating_needs_a_reason(db):
    w.product()
    w.milestone(D(2027, 9, 30))
    w.withdraw(at=utc(2027, 4, 1))
    with pytest.raises(InputError) as err:
        w.milestone(D(2027, 9, 30), at=utc(2027, 4, 2))
    assert err.value.field == "reason"


def test_a_customer_who_never_heard_of_the_cancellation_is_not_told_of_the_reinstatement(db):
    w.product()
    w.milestone(D(2027, 9, 30))
    w.customer("acme", "Asia/Shanghai")
    w.run(utc(2027, 3, 30, 2))
    w.withdraw(at=utc(2027, 4, 1))
    with session_scope() as s:
        scheduler.plan(s, utc(2027, 4, 1))  # the cancellation is planned, not sent
    w.reinstate(D(2027, 9, 30), at=utc(2027, 4, 1, 0, 5))  # undone before any tick
    w.run(utc(2027, 4, 1, 1))
    assert [k for k, _ in kinds_sent()] == ["stage"]
    assert {n.status_reason for n in w.notices("acme", kind="withdrawn")} == {"replaced"}


# -------------------------------------------------------------------------------------------- determinism


def _scenario(runner):
    """The same registry history, with ticks as `runner` decides."""
    w.product(versions=("3.16", "3.18"))
    w.milestone(D(2027, 6, 30))
    w.milestone(D(2027, 3, 31), version="3.18", kind="end-of-full-support")
    w.customer("acme", "Asia/Shanghai")
    w.customer("lapsing", "Europe/Berlin", end=D(2027, 1, 10))  # service ends between two stages
    w.customer("leaving", "America/Los_Angeles")
    w.customer("agreeing", "Pacific/Kiritimati", deploy=(("acp", "3.16"), ("acp", "3.18")))
    w.customer("late", "Pacific/Pago_Pago", deploy=())

    def remove_leaving():
        with session_scope() as s:
            registry.remove_deployment(
                s, customer="leaving", product="acp", version="3.16", at=utc(2027, 4, 2)
            )

    def deploy_late():
        with session_scope() as s:
            registry.add_deployment(
                s, customer="late", product="acp", version="3.16", at=utc(2027, 4, 20, 13)
            )

    events = [
        (utc(2027, 2, 3, 12), lambda: w.move(D(2027, 7, 31), at=utc(2027, 2, 3, 12), reason="later")),
        (
            utc(2027, 2, 20),
            lambda: w.withdraw(at=utc(2027, 2, 20), version="3.18", kind="end-of-full-support"),
        ),
        (utc(2027, 4, 2), remove_leaving),
        (utc(2027, 4, 20, 13), deploy_late),
        # An agreement stops every reminder not yet sent, whenever a tick runs: it is made here after the
        # reminders due before it went out in both runs.
        (utc(2027, 5, 20), lambda: w.ack("agreeing", "acknowledged", at=utc(2027, 5, 20))),
    ]
    runner(utc(2026, 12, 1), utc(2027, 8, 10), events)
    with session_scope() as s:
        told = s.exec(sa.select(Notice.key).where(Notice.status == "sent")).scalars().all()
    return sorted(told)


def test_weekly_ticks_and_ticks_at_every_instant_tell_the_same_notices(db, fresh_db):
    every = _scenario(w.replay_every_instant)
    fresh_db()
    weekly = _scenario(w.replay_weekly)
    assert (sorted(set(every) - set(weekly)), sorted(set(weekly) - set(every))) == ([], [])
    assert weekly == every
    assert any(k.startswith("stage:2:") for k in every)  # the lapsing customer got what fell due in service
    assert any(k.startswith("escalation:") for k in every)


# ------------------------------------------------------------------------------------ labels and reasons


def test_a_catch_up_reminder_says_catch_up_not_a_stage_it_is_not(db):
    w.product()
    w.milestone(D(2027, 9, 30))
    w.customer("acme", "Asia/Shanghai")
    w.customer("hooli", "Asia/Shanghai", locale="zh-CN")
    w.run(utc(2026, 12, 1))
    w.run(utc(2027, 6, 24, 2))  # an outage: the 3m stage (30 June) is... not yet due; 6m is 3 months late
    text = w.inbox("acme")[0].body_text
    assert "catch-up: 98 days left" in text and "6 months" not in text
    assert (
        "补发提醒：剩余98天" in w.inbox("hooli")[0].body_text and "6个月" not in w.inbox("hooli")[0].body_text
    )


def test_a_short_notice_reminder_says_short_notice_with_the_days_left(db):
    w.product()
    w.customer("acme", "Asia/Shanghai")
    w.milestone(D(2027, 5, 21), at=utc(2027, 4, 1), reason="security")
    w.run(utc(2027, 4, 1, 1))
    text = w.inbox("acme")[0].body_text
    assert (
        "short notice: 50 days" in text and "3 months notice" not in text and "3 months' notice)" not in text
    )
    assert "security" not in text  # the product manager's reason is internal


def test_a_reminder_on_its_stage_day_names_its_stage(db):
    w.product()
    w.milestone(D(2027, 9, 30))
    w.customer("acme", "Asia/Shanghai")
    w.run(utc(2027, 6, 30, 2))
    assert "92 days left (3 months' notice)" in w.inbox("acme")[-1].body_text


# ------------------------------------------------------------------------------------------ endoflife.date


def _endoflife(name: str, snapshot: str, at: dt.datetime):
    data = importing.load_file(SNAPSHOTS / snapshot / f"{name}.json")
    with session_scope() as s:
        return importing.import_endoflife(
            s,
            data,
            product=name,
            name=None,
            at=at,
            source=f"{name}.json",
            short_notice_reason=importing.UPSTREAM_REASON,
        )


def test_a_milestone_removed_upstream_is_withdrawn_and_those_told_get_a_cancellation(db):
    _endoflife("kubernetes", "2026-11", utc(2026, 12, 1))
    w.customer("acme", "Asia/Shanghai", deploy=(("kubernetes", "1.36"),), at=utc(2026, 12, 1))
    w.run_every_instant(utc(2027, 3, 1), start=utc(2026, 12, 1))
    assert [n.milestone_date for n in w.sent("acme") if n.kind == "stage"][:1] == [D(2027, 4, 28)]
    summary = _endoflife("kubernetes", "2027-03", utc(2027, 3, 1, 8))
    assert [m["milestone"] for m in summary.withdrawn] == ["kubernetes 1.36 end-of-life"]
    assert summary.withdrawn[0]["reason"] == "removed upstream"
    w.run_every_instant(utc(2027, 7, 1), start=utc(2027, 3, 1, 8))
    eol = [n for n in w.sent("acme") if n.milestone_date == D(2027, 6, 28)]
    assert [n.kind for n in eol] == ["stage", "withdrawn"]  # the 6m, then the cancellation; nothing after
    text = w.inbox("acme")[-1].body_text if w.sent("acme")[-1].kind == "withdrawn" else ""
    assert "no longer publishes this date" in " ".join(m.body_text for m in w.inbox("acme"))
    assert "removed upstream" not in text and "kubernetes.json" not in text


def test_a_phase_ended_upstream_without_a_date_marks_the_release_as_history(db, cli):
    summary = _endoflife("firefox", "2026-11", utc(2026, 12, 1))
    with session_scope() as s:
        assert registry.get_release(s, registry.get_product(s, "firefox"), "102").ended is None
    summary = _endoflife("firefox", "2027-03", utc(2027, 3, 1))
    assert {"release": "firefox 102", "phase": "end-of-life"} in summary.ended
    with session_scope() as s:
        assert registry.get_release(s, registry.get_product(s, "firefox"), "102").ended == "end-of-life"
    r = cli("deployment", "add", "nobody", "firefox", "102", "--at", "2027-03-02")
    assert r.code == 2  # no such customer: checked before anything else
    w.customer("acme", deploy=(), at=utc(2027, 3, 2))
    r = cli("deployment", "add", "acme", "firefox", "102", "--at", "2027-03-02")
    assert r.code == 0 and "warning: firefox 102 has already reached end-of-life on 2023-09-26" in r.err
    r = cli("release", "list", "--product", "firefox", "--json", "--at", "2027-03-02")
    rows = {x["version"]: x for x in json.loads(r.out)}
    assert rows["102"]["ended"] == "end-of-life" and rows["102"]["ended_without_date"] == "end-of-life"
    assert rows["115"]["ended"] is None


def test_a_future_phase_declared_ended_upstream_moves_to_the_import_day(db):
    _endoflife("python", "2026-11", utc(2026, 12, 1))
    w.customer("acme", "Asia/Shanghai", deploy=(("python", "3.14"),), at=utc(2026, 12, 1))
    w.run_every_instant(utc(2027, 3, 1), start=utc(2026, 12, 1))
    summary = _endoflife("python", "2027-03", utc(2027, 3, 1, 8))
    assert {"release": "python 3.14", "phase": "end-of-full-support"} in summary.ended
    [move] = [m for m in summary.moves if m["milestone"] == "python 3.14 end-of-full-support"]
    assert move["to"] == "2027-03-01" and move["reason"] == "ended upstream without a published date"


def test_a_registry_file_can_withdraw_the_milestones_it_no_longer_lists(db, tmp_path):
    doc = {
        "products": [
            {
                "slug": "acp",
                "name": "ACP",
                "missing_milestones": "withdraw",
                "releases": [
                    {
                        "version": "3.16",
                        "milestones": {"end-of-life": "2028-06-30", "end-of-sale": "2027-12-31"},
                    }
                ],
            }
        ]
    }
    with session_scope() as s:
        importing.import_registry(s, doc, at=utc(2026, 12, 1), source="a.yaml")
    del doc["products"][0]["releases"][0]["milestones"]["end-of-sale"]
    with session_scope() as s:
        summary = importing.import_registry(s, doc, at=utc(2026, 12, 2), source="b.yaml")
    assert [(m["milestone"], m["reason"]) for m in summary.withdrawn] == [
        ("acp 3.16 end-of-sale", "not in b.yaml")
    ]
    doc["products"][0]["missing_milestones"] = "keep"
    doc["products"][0]["releases"][0]["milestones"] = {"end-of-life": "2028-06-30"}
    with session_scope() as s:
        summary = importing.import_registry(s, doc, at=utc(2026, 12, 3), source="c.yaml")
    assert not summary.changed and summary.withdrawn == []


def test_the_import_output_lists_every_change(db, cli):
    r = cli(
        "import",
        SNAPSHOTS / "2026-11" / "firefox.json",
        "--format",
        "endoflife",
        "--product",
        "firefox",
        "--at",
        "2026-12-01",
    )
    assert r.code == 0, r
    assert "added firefox 115 end-of-life on 2027-03-05" in r.out
    assert "added firefox 102 end-of-life on 2023-09-26 (history: never notified)" in r.out
    r = cli(
        "import",
        SNAPSHOTS / "2027-03" / "firefox.json",
        "--format",
        "endoflife",
        "--product",
        "firefox",
        "--at",
        "2027-03-01",
    )
    assert r.code == 0, r
    assert "moved firefox 115 end-of-life from 2027-03-05 to 2027-09-30" in r.out
    assert "moved firefox 128 end-of-life from 2027-06-30 to 2027-02-15" in r.out


# ---------------------------------------------------------------------------------------- the replay


def test_replaying_two_real_snapshots_keeps_the_promise_or_names_the_change(sqlite_db):
    """A year of ticks at every instant over two real snapshots (SQLite only: the rules are the same SQL
    on both databases, which every other test here runs on both, and this one is long)."""
    t1, t2, t3 = utc(2026, 12, 1), utc(2027, 3, 1, 6), utc(2027, 12, 31)
    products = ("kubernetes", "postgresql", "python", "ubuntu", "firefox")
    for name in products:
        _endoflife(name, "2026-11", t1)
    w.customer(
        "shanghai",
        "Asia/Shanghai",
        locale="zh-CN",
        at=t1,
        deploy=(("kubernetes", "1.35"), ("kubernetes", "1.36"), ("firefox", "115"), ("python", "3.11")),
    )
    w.customer(
        "berlin",
        "Europe/Berlin",
        at=t1,
        deploy=(("postgresql", "15"), ("postgresql", "16"), ("ubuntu", "24.04"), ("firefox", "128")),
    )
    w.customer(
        "la",
        "America/Los_Angeles",
        at=t1,
        deploy=(("python", "3.14"), ("firefox", "115"), ("kubernetes", "1.36")),
    )
    w.customer("kiritimati", "Pacific/Kiritimati", at=t1, deploy=(("firefox", "128"), ("postgresql", "16")))
    w.customer(
        "pago",
        "Pacific/Pago_Pago",
        locale="zh-CN",
        at=t1,
        deploy=(("python", "3.11"), ("ubuntu", "24.04"), ("kubernetes", "1.35")),
    )
    w.customer(
        "lapsing", "Europe/London", at=t1, end=D(2027, 5, 31), deploy=(("firefox", "115"), ("python", "3.11"))
    )
    w.run_every_instant(t2, start=t1)
    for name in products:
        _endoflife(name, "2027-03", t2)
    w.run_every_instant(t3, start=t2)

    with session_scope() as s:
        report = compliance(s, t3)
        keys = s.exec(sa.select(Notice.key)).scalars().all()
    assert len(keys) == len(set(keys))
    changed_milestones = {
        ("kubernetes", "1.35", "end-of-life"),
        ("kubernetes", "1.36", "end-of-full-support"),
        ("python", "3.11", "end-of-life"),
        ("firefox", "115", "end-of-life"),
        ("firefox", "128", "end-of-life"),
        ("python", "3.14", "end-of-full-support"),
    }
    explained = 0
    for row in report["rows"]:
        pair = (row["customer"], row["product"], row["version"], row["milestone"])
        if row["status"] in ("on-time", "withdrawn"):
            continue
        if row["status"] == "pending":
            assert row["milestone_date"] > "2027-12-31" or row["deadline"] >= t3.date().isoformat(), pair
            continue
        if row["customer"] == "lapsing" and row["cause"] in ("service lapsed", "service not active"):
            continue
        # Late or not told: the cause must name the change that made it so (a date published upstream at
        # short notice, or moved by the second snapshot).
        assert row["cause"] and row["cause"].startswith(
            ("short notice:", "told an earlier date; short notice:")
        ), (pair, row["status"], row["cause"])
        if "moved" in row["cause"]:
            assert (row["product"], row["version"], row["milestone"]) in changed_milestones, (
                pair,
                row["cause"],
            )
            explained += 1
    assert explained >= 4
    # The postponed Firefox 115 was reminded again for its new date, to everyone still in service.
    for key in ("shanghai", "la"):
        assert stages_sent(key, D(2027, 9, 30)) == ["6m", "3m", "1m", "1w"], key
    assert stages_sent("lapsing", D(2027, 9, 30)) == ["6m"]  # 3m (30 June) is after the service ended
    # Firefox 128 pulled into the past: the customers told 30 June heard the correction.
    for key in ("berlin", "kiritimati"):
        corrections = [n for n in w.sent(key) if n.kind == "changed" and n.milestone_date == D(2027, 2, 15)]
        assert len(corrections) == 1, key
    # Kubernetes 1.36 end of life removed upstream: those told got a cancellation.
    for key in ("shanghai", "la"):
        assert [n.kind for n in w.sent(key) if n.milestone_date == D(2027, 6, 28)][-1] == "withdrawn"
    with session_scope() as s:
        ended = {
            (r.version, r.ended)
            for r in s.exec(sa.select(Release).where(Release.ended.is_not(None))).scalars()
        }
    assert {("14", "end-of-life"), ("3.14", "end-of-full-support"), ("102", "end-of-life")} <= ended


def compliance_row(customer_key):
    with session_scope() as s:
        rows = [r for r in compliance(s, utc(2030, 1, 1))["rows"] if r["customer"] == customer_key]
    assert len(rows) == 1, rows
    return rows[0]


# ------------------------------------------------------------------------------------- no English in zh-CN

ENGLISH_SENTENCE = re.compile(r"[A-Za-z][a-z']+(?:[ ,;:]+[A-Za-z][a-z']+)+")


def _english(text: str, *allowed: str) -> list[str]:
    """Runs of two or more English words left after removing links and the names we expect."""
    text = re.sub(r"\S+://\S+|\S+@\S+", " ", text)
    for name in allowed:
        text = text.replace(name, " ")
    return ENGLISH_SENTENCE.findall(re.sub(r"<[^>]+>", " ", text))


def test_zh_cn_messages_of_every_notice_kind_contain_no_english_sentence(db, tmp_path):
    w.product()
    w.milestone(D(2027, 9, 30))  # scheduled stages, a move, a correction into the past
    w.milestone(D(2027, 12, 31), version="3.18")  # withdrawn and reinstated
    w.customer("hooli", "Asia/Shanghai", locale="zh-CN", deploy=(("acp", "3.16"), ("acp", "3.18")))
    w.run(utc(2026, 12, 1))
    w.run(utc(2027, 3, 30, 2))  # scheduled 6m
    w.run(utc(2027, 7, 1, 2))  # 3.18's 6m, on its day
    w.move(D(2027, 10, 31), at=utc(2027, 7, 2), reason="internal only")  # changed
    w.run(utc(2027, 7, 2, 1))
    w.withdraw(at=utc(2027, 7, 3), version="3.18", reason="internal only")  # withdrawn
    w.run(utc(2027, 7, 3, 1))
    w.reinstate(D(2027, 12, 31), at=utc(2027, 7, 4), version="3.18", reason="internal only")
    w.run(utc(2027, 7, 4, 1))
    w.run(utc(2027, 8, 20, 1))  # an outage: the 3m of 31 October is caught up late
    w.move(D(2027, 8, 1), at=utc(2027, 8, 21), reason="internal only", short=True)  # into the past
    w.run(utc(2027, 8, 21, 1))
    with session_scope() as s:
        registry.upsert_product(s, slug="new", name="NEW", at=utc(2027, 8, 22))
        registry.upsert_release(s, product="new", version="1.0", at=utc(2027, 8, 22))
        registry.add_milestone(
            s,
            product="new",
            version="1.0",
            kind="end-of-life",
            date=D(2027, 10, 1),
            at=utc(2027, 8, 22),
            allow_short_notice=True,
            reason="internal only",
        )
        registry.add_deployment(s, customer="hooli", product="new", version="1.0", at=utc(2027, 8, 22))
    w.run(utc(2027, 8, 22, 1))  # short notice
    kinds = {n.kind for n in w.sent("hooli")}
    assert kinds == {"stage", "changed", "withdrawn", "reinstated"}
    messages = w.inbox("hooli")
    labels = " ".join(m.body_text for m in messages)
    assert (
        "提前6个月通知" in labels and "补发提醒" in labels and "短期通知" in labels and "该日期已过" in labels
    )
    assert len(messages) >= 7
    emails = [p.read_text() for p in (tmp_path / "outbox").rglob("*.eml")]
    assert emails
    for m in messages:
        for part in (m.subject, m.body_text, m.body_html):
            assert _english(part, "ACP", "NEW", "Hooli") == [], part
    for raw in emails:
        msg = email.message_from_string(raw, policy=email.policy.default)
        for part in msg.walk():
            if part.get_content_type() in ("text/plain", "text/html"):
                assert _english(part.get_content(), "ACP", "NEW", "Hooli") == [], part.get_content()
        assert _english(str(msg["Subject"]), "ACP", "NEW", "Hooli") == []
