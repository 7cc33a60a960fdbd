"""Valid upgrade plans: one rule on every channel (portal, acknowledgement link, API, CLI, the rep's
form). `planned` needs a target and a date; the target is a later release not ended on the planned
date; a date after the milestone is recorded but at risk: reminders and escalation go on, and the rep
hears of it."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from fastapi.testclient import TestClient
from sqlmodel import select

from lifecycle import agreements, policy, registry
from lifecycle.db import session_scope
from lifecycle.errors import InputError
from lifecycle.links import ack_token
from lifecycle.models import Agreement, Deployment, Notice
from lifecycle.web.app import create_app
from tests import webworld
from tests import world as w
from tests.conftest import utc
from tests.test_web_pages import logged_in

D = dt.date


# ------------------------------------------------------------------------------------- the pure rule


def targets(**ends) -> dict[str, policy.Target]:
    return {
        v: policy.Target(v, end)
        for v, end in {
            "3.14": D(2027, 1, 31),
            "3.16": D(2028, 1, 31),
            "3.17": D(2027, 6, 30),
            "3.18": D(2029, 6, 30),
            **ends,
        }.items()
    }


@pytest.mark.parametrize(
    ("status", "target", "planned", "problem"),
    [
        ("planned", None, D(2027, 3, 1), policy.PlanProblem.TARGET_REQUIRED),
        ("planned", "3.18", None, policy.PlanProblem.DATE_REQUIRED),
        ("planned", "3.18", D(2026, 12, 31), policy.PlanProblem.DATE_PAST),
        ("planned", "3.14", D(2027, 3, 1), policy.PlanProblem.TARGET_NOT_LATER),
        ("planned", "3.16", D(2027, 3, 1), policy.PlanProblem.TARGET_NOT_LATER),
        ("planned", "9.9", D(2027, 3, 1), policy.PlanProblem.TARGET_UNKNOWN),
        ("planned", "3.17", D(2027, 7, 1), policy.PlanProblem.TARGET_ENDED),
        ("acknowledged", "3.14", None, policy.PlanProblem.TARGET_NOT_LATER),
        ("planned", "3.17", D(2027, 6, 30), None),  # still supported on its last day
        ("planned", "3.18", D(2029, 1, 1), None),  # after the milestone: valid, but at risk
        ("acknowledged", None, None, None),
        ("declined", None, None, None),
    ],
)
def test_the_plan_rule(status, target, planned, problem):
    found = policy.plan_problem(status, "3.16", target, planned, D(2027, 1, 1), targets())
    assert (found[0] if found else None) == problem


def test_pickers_offer_later_releases_not_ended_newest_first_with_their_end_dates():
    offered = policy.valid_targets("3.16", targets(**{"3.20": None}), D(2027, 7, 15))
    assert [(t.version, t.end) for t in offered] == [("3.20", None), ("3.18", D(2029, 6, 30))]


def test_a_plan_dated_after_the_milestone_is_at_risk_and_does_not_count_as_agreed():
    milestone = D(2027, 9, 30)
    assert policy.plan_at_risk("planned", "3.18", D(2027, 10, 1), milestone)
    assert not policy.counts_as_agreed("planned", "3.18", D(2027, 10, 1), milestone)
    assert policy.counts_as_agreed("planned", "3.18", D(2027, 9, 30), milestone)
    assert not policy.counts_as_agreed("planned", None, None, milestone)  # from before the rule
    assert policy.counts_as_agreed("acknowledged", None, None, milestone)


# ------------------------------------------------------------------------------------ every channel


@pytest.fixture
def world(sqlite_db):
    world = webworld.build()
    past = dt.datetime.now(dt.UTC) - dt.timedelta(days=400)
    with session_scope() as s:  # 3.17 ends in 30 days: no target for a plan dated after that
        registry.upsert_release(s, product="acp", version="3.17", at=past)
        registry.add_milestone(
            s,
            product="acp",
            version="3.17",
            kind="end-of-life",
            date=world.today + dt.timedelta(days=30),
            at=past,
        )
    return world


def day(world, n: int) -> str:
    return (world.today + dt.timedelta(days=n)).isoformat()


def submit(channel: str, world, cli, plan: dict) -> tuple[bool, str]:
    """Record a plan for acme's 3.16 through `channel`: (recorded, what the person was told)."""
    if channel == "portal":
        client, csrf = logged_in(world, "customer")
        r = client.post(
            "/portal/agreements",
            data={"csrf": csrf, "release_id": world.ids["r316"], "name": "Ann", **plan},
            follow_redirects=False,
        )
        return r.status_code == 303, r.text
    if channel == "link":
        with session_scope() as s:
            url = f"/ack/{ack_token(s, world.ids['acme'], world.ids['r316'])}"
        r = TestClient(create_app()).post(url, data={"name": "Ann", **plan}, follow_redirects=False)
        return r.status_code == 303, r.text
    if channel == "api":
        body = {"product": "acp", "version": "3.16", **{k: v for k, v in plan.items() if v}}
        r = TestClient(create_app()).post(
            "/api/customers/acme/agreements", json=body, headers=world.auth("customer")
        )
        return r.status_code == 201, r.text
    if channel == "cli":
        args = ["ack", "acme", "acp", "3.16", "--status", plan["status"]]
        if plan.get("target"):
            args += ["--target", plan["target"]]
        if plan.get("planned_date"):
            args += ["--planned-date", plan["planned_date"]]
        r = cli(*args)
        assert r.code in (0, 2), r
        return r.code == 0, r.out + r.err
    rep, csrf = logged_in(world, "rep")
    r = rep.post(
        "/dashboard/agreements",
        data={"csrf": csrf, "deployment": f"acme|{world.ids['r316']}", **plan},
        follow_redirects=False,
    )
    return r.status_code == 303, r.text


CHANNELS = ("portal", "link", "api", "cli", "rep-form")
REFUSED = {
    "an older target": (
        lambda wd: {"status": "planned", "target": "3.14", "planned_date": day(wd, 10)},
        "3.14 is not a later release than 3.16",
    ),
    "no target": (
        lambda wd: {"status": "planned", "target": "", "planned_date": day(wd, 10)},
        "needs a target version",
    ),
    "no date": (
        lambda wd: {"status": "planned", "target": "3.18", "planned_date": ""},
        "needs a planned date",
    ),
    "a target ended on the date": (
        lambda wd: {"status": "planned", "target": "3.17", "planned_date": day(wd, 45)},
        "3.17 reaches its end of life on",
    ),
}


@pytest.mark.parametrize("channel", CHANNELS)
@pytest.mark.parametrize("case", list(REFUSED))
def test_a_plan_that_cannot_work_is_refused_on_every_channel_and_nothing_is_recorded(
    world, cli, channel, case
):
    build, message = REFUSED[case]
    recorded, told = submit(channel, world, cli, build(world))
    assert not recorded and message in told.replace("&#39;", "'")
    with session_scope() as s:
        assert s.exec(select(Agreement)).all() == []
        assert s.exec(select(Notice).where(Notice.kind == "agreement")).all() == []


@pytest.mark.parametrize("channel", CHANNELS)
def test_a_plan_dated_after_the_milestone_is_recorded_at_risk_on_every_channel(world, cli, channel):
    # 3.16's next milestone (end of full support) is in 60 days; the upgrade is planned in 100.
    recorded, told = submit(
        channel, world, cli, {"status": "planned", "target": "3.18", "planned_date": day(world, 100)}
    )
    assert recorded, told
    if channel == "cli":
        assert "at risk" in told
    with session_scope() as s:
        [agreement] = s.exec(select(Agreement)).all()
        assert (agreement.status, agreement.target_version) == ("planned", "3.18")
        assert s.exec(select(Notice).where(Notice.kind == "agreement", Notice.audience == "rep")).all()
    rep, _ = logged_in(world, "rep")
    row = re.search(
        r'<tr class="row-(\w+)" data-customer="acme" data-version="3.16".*?</tr>',
        rep.get("/dashboard").text,
        re.S,
    )
    assert row.group(1) == "red" and "at risk" in row.group(0) and "after the milestone" in row.group(0)


def test_the_pickers_offer_only_valid_targets_newest_first_with_their_end_dates(world):
    customer, _ = logged_in(world, "customer")
    portal = customer.get("/portal").text
    form = re.search(rf'id="release-{world.ids["r316"]}".*?</form>', portal, re.S).group(0)
    options = re.findall(r'<option value="(3\.\d+)"[^>]*>([^<]*)</option>', form)
    assert [v for v, _ in options] == ["3.18", "3.17"]  # not 3.14 (older), newest first
    assert (
        f"supported until {day(world, 900)}" in options[0][1]
        and f"supported until {day(world, 30)}" in options[1][1]
    )
    rep, _ = logged_in(world, "rep")
    dashboard = rep.get("/dashboard").text
    group = re.search(
        r'<optgroup label="ACME Bank — Alauda Container Platform 3.16">(.*?)</optgroup>', dashboard, re.S
    ).group(1)
    assert re.findall(r'<option value="([^"]+)"', group) == ["3.18", "3.17"]
    assert f"end of life {day(world, 900)}" in group


def test_a_completed_upgrade_can_move_the_deployment(world):
    customer, csrf = logged_in(world, "customer")
    r = customer.post(
        "/portal/agreements",
        data={
            "csrf": csrf,
            "release_id": world.ids["r316"],
            "name": "Ann",
            "status": "completed",
            "target": "3.18",
            "move_deployment": "true",
        },
        follow_redirects=False,
    )
    assert r.status_code == 303
    assert "you now run Alauda Container Platform 3.18" in customer.get(r.headers["location"]).text
    with session_scope() as s:
        running = {
            (d.release_id, d.cores)
            for d in s.exec(
                select(Deployment).where(
                    Deployment.customer_id == world.ids["acme"], Deployment.removed_at.is_(None)
                )
            )
        }
    assert running == {(world.ids["r314"], 128), (world.ids["r318"], 256)}


# ------------------------------------------------------------------- at risk: reminders and escalation


def test_a_plan_dated_after_the_milestone_does_not_stop_reminders_or_escalation(db):
    w.product()
    w.milestone(D(2027, 9, 30))
    w.customer("acme", "Asia/Shanghai")
    w.ack("acme", "planned", at=utc(2027, 1, 2), target="3.18", planned_date=D(2027, 12, 1))
    w.run(utc(2027, 3, 30, 2), utc(2027, 6, 30, 2), utc(2027, 8, 30, 9))
    assert [n.slot for n in w.sent("acme") if n.kind == "stage"] == ["6m", "3m", "1m"]
    [esc] = w.notices(audience="rep", kind="escalation")
    assert esc.status == "sent"
    # Moving the plan before the milestone is an agreement: the rest stops, the work item resolves.
    w.ack("acme", "planned", at=utc(2027, 9, 1), target="3.18", planned_date=D(2027, 9, 15))
    w.run(utc(2027, 9, 23, 2))
    assert {n.slot: n.status_reason for n in w.notices("acme", kind="stage")}["1w"] == "agreement"
    from lifecycle.models import Escalation

    with session_scope() as s:
        [item] = s.exec(select(Escalation)).all()
        assert (item.state, item.resolution) == ("resolved", "agreement")


def test_a_refused_plan_names_its_field_for_the_cli_and_api(db):
    w.product()
    w.milestone(D(2027, 9, 30))
    w.customer("acme")
    with session_scope() as s, pytest.raises(InputError) as err:
        agreements.record_cli(
            s,
            customer_key="acme",
            product="acp",
            version="3.16",
            status="planned",
            target_version="3.18",
            at=utc(2027, 1, 2),
        )
    assert err.value.field == "planned_date"
