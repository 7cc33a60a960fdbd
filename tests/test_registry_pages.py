"""The registry page for product managers, without a browser: every change is previewed first (and the
preview writes nothing), confirmed, held and can be undone within the hold; refused forms keep what was
typed and say what to do in the page's words; the timeline speaks names, in lifecycle order, and each
marker opens its edit form; a simulated clock moves the pages and says so. (In Chromium: test_browser.)"""

from __future__ import annotations

import datetime as dt
import html
import re

import pytest
from sqlmodel import select

from lifecycle import registry
from lifecycle.config import reset_settings
from lifecycle.db import session_scope
from lifecycle.models import Milestone, RegistryChange
from tests import webworld
from tests.test_changes import dump
from tests.test_web_pages import logged_in

DAY = dt.timedelta(days=1)


@pytest.fixture
def world(sqlite_db):
    return webworld.build()


@pytest.fixture
def hold(monkeypatch):
    monkeypatch.setenv("LIFECYCLE_CHANGE_HOLD", "10m")
    reset_settings()


def text_of(page: str) -> str:
    """The visible text of a page, roughly: tags dropped, entities decoded, spaces collapsed."""
    body = re.sub(r"<style.*?</style>|<title>.*?</title>", " ", page, flags=re.S)
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", body)))


def hidden_fields(page: str) -> dict[str, str]:
    return {
        html.unescape(n): html.unescape(v)
        for n, v in re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', page)
    }


def short_notice_add(world, csrf: str, **extra) -> dict:
    """Add an end of maintenance to acp 3.16 (run by acme and globex) 80 days away: short notice."""
    return {
        "csrf": csrf,
        "scope": "acp|3.16",
        "kind": "end-of-maintenance",
        "date": (world.today + 80 * DAY).isoformat(),
        "reason": "security fix cannot be backported",
        "allow_short_notice": "true",
        **extra,
    }


def test_a_form_shows_a_preview_that_writes_nothing_then_confirm_makes_the_change(world, hold):
    pm, csrf = logged_in(world, "pm")
    before = dump()
    preview = pm.post("/registry/milestones", data=short_notice_add(world, csrf))
    assert preview.status_code == 200
    page = text_of(preview.text)
    assert "Add a milestone: check before you confirm" in page and "nothing has been written yet" in page
    assert re.search(r'id="affected-count">2<', preview.text) and "ACME Bank, Globex" in page
    assert "Short notice: the date is less than 3 months away" in page
    assert re.search(r"held until \d\d:\d\d UTC", page) and "deliveries: email 1, portal 2" in page
    assert dump() == before  # the preview wrote nothing

    fields = hidden_fields(preview.text)
    assert fields["scope"] == "acp|3.16" and fields["allow_short_notice"] == "true"
    done = pm.post("/registry/milestones", data=fields | {"step": "confirm"})
    assert done.status_code == 200 and done.url.path == "/registry"
    page = text_of(done.text)
    assert "Alauda Container Platform 3.16 · end of maintenance on" in page and ": added." in page
    assert re.search(r"Notices it makes due at once are held until \d\d:\d\d UTC", page)
    assert "Changes on hold" in page and "Undo" in page
    with session_scope() as s:
        m = registry.get_milestone(s, "acp", "3.16", "end-of-maintenance")
        assert m.short_notice_reason == "security fix cannot be backported"
        marker = re.search(rf'<a class="marker[^"]*" href="/registry\?milestone={m.id}#move"', done.text)
    assert marker and "held" in marker.group(0)


def test_undo_on_the_page_takes_a_change_back_within_the_hold_and_only_once(world, hold):
    pm, csrf = logged_in(world, "pm")
    pm.post("/registry/milestones", data=short_notice_add(world, csrf, step="confirm"))
    with session_scope() as s:
        change = s.exec(select(RegistryChange).order_by(RegistryChange.id.desc())).first().id
    undone = pm.post(f"/registry/changes/{change}/undo", data={"csrf": csrf})
    assert undone.status_code == 200
    page = text_of(undone.text)
    assert "Undone: add acp 3.16 end-of-maintenance" in page and "No customer was told about it" in page
    assert "Changes on hold" not in page
    with session_scope() as s:
        assert (
            registry.find_milestone(
                s,
                registry.get_product(s, "acp"),
                registry.get_release(s, registry.get_product(s, "acp"), "3.16"),
                "end-of-maintenance",
            )
            is None
        )
    again = pm.post(f"/registry/changes/{change}/undo", data={"csrf": csrf})
    assert again.status_code == 422 and "already undone" in text_of(again.text)
    forged = pm.post(f"/registry/changes/{change}/undo", data={"csrf": "forged"})
    assert forged.status_code == 403


def test_undo_after_the_hold_is_refused_with_the_reason(world, hold, monkeypatch):
    pm, csrf = logged_in(world, "pm")
    pm.post(
        "/registry/milestones/withdraw",
        data={
            "csrf": csrf,
            "milestone": world.ids["m_mesh"],
            "reason": "sold on after all",
            "step": "confirm",
        },
    )
    with session_scope() as s:
        change = s.exec(select(RegistryChange).order_by(RegistryChange.id.desc())).first()
        hold_until = change.hold_until
    monkeypatch.setenv("LIFECYCLE_CLOCK_OFFSET", str(11 * 60))  # eleven minutes later
    reset_settings()
    late = pm.post(f"/registry/changes/{change.id}/undo", data={"csrf": csrf})
    page = text_of(late.text)
    assert late.status_code == 422 and f"The hold of change #{change.id} ended at" in page
    assert "its notices may have reached customers" in page and hold_until.strftime("%H:%M") in page
    with session_scope() as s:
        assert s.get(Milestone, world.ids["m_mesh"]).status == "withdrawn"


def test_a_refused_form_keeps_what_was_typed_and_says_what_to_do_without_cli_flags(world):
    pm, csrf = logged_in(world, "pm")
    no_reason = pm.post("/registry/milestones", data=short_notice_add(world, csrf, reason=""))
    page = text_of(no_reason.text)
    assert no_reason.status_code == 422
    assert (
        "Give a reason: this date is less than 3 months away (customers are promised 3 months' notice)"
        in page
    )
    assert '<option value="acp|3.16" selected>' in no_reason.text
    assert '<option value="end-of-maintenance" selected>' in no_reason.text
    assert f'value="{(world.today + 80 * DAY).isoformat()}"' in no_reason.text
    assert re.search(r'name="allow_short_notice" value="true" checked', no_reason.text)

    unticked = pm.post("/registry/milestones", data=short_notice_add(world, csrf, allow_short_notice=""))
    assert "Tick “Allow short notice” to confirm: this date is less than 3 months away" in text_of(
        unticked.text
    )
    assert 'value="security fix cannot be backported"' in unticked.text

    no_release = pm.post("/registry/milestones", data=short_notice_add(world, csrf, scope=""))
    assert no_release.status_code == 422 and "Choose a release" in text_of(no_release.text)

    taken = pm.post(
        "/registry/milestones",
        data={
            "csrf": csrf,
            "scope": "acp|3.16",
            "kind": "end-of-life",
            "date": (world.today + 500 * DAY).isoformat(),
        },
    )
    assert (
        "Alauda Container Platform 3.16 already has its end of life on "
        f"{(world.today + 300 * DAY).isoformat()}: use “Move a milestone” to change its date"
        in text_of(taken.text)
    )

    withdraw = pm.post(
        "/registry/milestones/withdraw", data={"csrf": csrf, "milestone": world.ids["m_mesh"], "reason": " "}
    )
    assert withdraw.status_code == 422 and "Give a reason: it is kept in the milestone's history" in text_of(
        withdraw.text
    )
    assert re.search(rf'<option value="{world.ids["m_mesh"]}" selected>', withdraw.text)

    out_of_order = pm.post(
        "/registry/milestones/move",
        data={
            "csrf": csrf,
            "milestone": world.ids["m_amber"],
            "date": (world.today + 400 * DAY).isoformat(),
            "reason": "later",
        },
    )
    assert out_of_order.status_code == 422 and "phases end in the order" in text_of(out_of_order.text)
    for response in (no_reason, unticked, no_release, taken, withdraw, out_of_order):
        errors = " ".join(re.findall(r'role="alert"[^>]*>([^<]*)<', response.text))
        assert errors and "--" not in errors and "lifecycle " not in errors, errors
    with session_scope() as s:  # nothing was written by any of them
        assert s.get(Milestone, world.ids["m_mesh"]).status == "planned"
        assert s.get(Milestone, world.ids["m_amber"]).revision == 1


def test_the_add_form_makes_the_release_an_explicit_choice(world):
    pm, _ = logged_in(world, "pm")
    page = pm.get("/registry").text
    picker = re.search(r'<select name="scope" required>(.*?)</select>', page, re.S).group(1)
    assert re.match(r'\s*<option value="" selected disabled>Choose a release…</option>', picker)
    assert picker.count(" selected") == 1  # nothing else is preselected
    assert '<option value="acp|">Alauda Container Platform: all versions (product-wide)</option>' in picker


def test_a_past_date_is_accepted_only_as_history_and_the_page_says_so(world):
    pm, csrf = logged_in(world, "pm")
    past = (world.today - 30 * DAY).isoformat()
    form = {"csrf": csrf, "scope": "acp|3.18", "kind": "end-of-sale", "date": past}
    preview = text_of(pm.post("/registry/milestones", data=form).text)
    assert "This date is in the past: the milestone is recorded as history" in preview
    assert "no customer is notified" in preview
    done = text_of(pm.post("/registry/milestones", data=form | {"step": "confirm"}).text)
    assert "It is in the past: recorded as history, shown in calendars, and no customer is notified." in done


def test_back_to_the_form_shows_it_again_as_typed(world):
    pm, csrf = logged_in(world, "pm")
    moved_to = (world.today + 420 * DAY).isoformat()
    form = {
        "csrf": csrf,
        "milestone": world.ids["m_eol"],
        "date": moved_to,
        "reason": "customers asked",
        "customer_reason_en": "You asked for more time.",
    }
    fields = hidden_fields(pm.post("/registry/milestones/move", data=form).text)
    back = pm.post("/registry/milestones/move", data=fields | {"step": "edit"})
    assert back.status_code == 200
    move = back.text.split('id="move"')[1].split("</section>")[0]
    assert f'value="{moved_to}"' in move and 'value="customers asked"' in move
    assert (
        'value="You asked for more time."' in move
        and f'<option value="{world.ids["m_eol"]}" selected>' in move
    )
    with session_scope() as s:
        assert s.get(Milestone, world.ids["m_eol"]).revision == 1


def test_a_confirm_after_the_milestone_changed_shows_the_new_preview_instead(world):
    pm, csrf = logged_in(world, "pm")
    form = {
        "csrf": csrf,
        "milestone": world.ids["m_eol"],
        "date": (world.today + 420 * DAY).isoformat(),
        "reason": "customers asked",
    }
    fields = hidden_fields(pm.post("/registry/milestones/move", data=form).text)
    assert fields["revision"] == "1"
    pm.post(
        "/registry/milestones/move",
        data=form | {"date": (world.today + 430 * DAY).isoformat(), "step": "confirm"},
    )  # someone else, meanwhile
    stale = pm.post("/registry/milestones/move", data=fields | {"step": "confirm"})
    assert "changed while you were looking at the preview (now revision 2)" in text_of(stale.text)
    with session_scope() as s:
        assert s.get(Milestone, world.ids["m_eol"]).date == world.today + 430 * DAY


def test_the_timeline_names_releases_and_each_marker_opens_its_edit_form(world):
    pm, _ = logged_in(world, "pm")
    page = pm.get(f"/registry?milestone={world.ids['m_eol']}").text
    labels = re.findall(r'<text class="row-label"[^>]*><title>([^<]*)</title>', page)
    assert labels[:2] == ["Alauda Container Platform 3.14", "Alauda Container Platform 3.16"]
    marker = re.search(
        rf'<a class="marker" href="/registry\?milestone={world.ids["m_eol"]}#move" '
        r'tabindex="0" aria-label="([^"]+)"',
        page,
    )
    assert marker and "Alauda Container Platform 3.16: end of life" in html.unescape(marker.group(1))
    assert f"EoL {(world.today + 300 * DAY).isoformat()}" in page  # the marker's label
    move = page.split('id="move"')[1].split("</section>")[0]
    assert f'<option value="{world.ids["m_eol"]}" selected>' in move
    table = text_of(page.split('id="milestones"')[1])
    assert table.index("3.16 end of full support") < table.index(
        "3.16 end of life"
    )  # lifecycle order, not a-z
    rep, _ = logged_in(world, "rep")
    assert f'href="#m-{world.ids["m_eol"]}"' in rep.get("/registry").text  # reps cannot edit: the row


def test_a_simulated_clock_moves_the_pages_and_a_banner_says_so(world, monkeypatch):
    pm, _ = logged_in(world, "pm")
    assert "Simulated clock" not in pm.get("/registry").text
    monkeypatch.setenv("LIFECYCLE_CLOCK_OFFSET", str(400 * 86400))
    reset_settings()
    page = text_of(pm.get("/registry").text)
    later = world.today + 400 * DAY
    assert f"today is {later.isoformat()}" in page
    assert f"Simulated clock: it is {later.isoformat()}" in page and "400 days ahead of the real time" in page
    from lifecycle.cli.common import parse_at
    from tasks.jobs import _at

    for clock_reading in (parse_at(None), _at(None)):  # the CLI's default --at and the worker's tick
        assert clock_reading.date() in (later, later + DAY)
    pm.cookies.clear()  # logging in still works: sessions keep the real clock
    again, _ = logged_in(world, "pm")
    assert again.get("/registry").status_code == 200


def test_a_withdrawal_preview_counts_the_cancellations_even_before_the_planner_ran(world):
    pm, csrf = logged_in(
        world, "pm"
    )  # the world's milestones were never planned; acme was told of 3.14's end
    preview = pm.post(
        "/registry/milestones/withdraw",
        data={"csrf": csrf, "milestone": world.ids["m_red"], "reason": "extended"},
    )
    page = text_of(preview.text)
    assert "Withdraw Alauda Container Platform 3.14 · end of life of" in page
    assert re.search(r'id="affected-count">1<', preview.text) and "Cancellation to 1 customer" in page
    assert "Short notice" not in page  # withdrawing is not short notice, however close the date
    assert 'id="confirm" class="danger">Confirm: withdraw it' in preview.text


def test_a_milestone_is_held_while_its_change_is_on_hold_and_not_after_an_undo(db, hold):
    from lifecycle import changes
    from lifecycle.web.pages.registry import held_milestones

    world = webworld.build()
    at = dt.datetime.now(dt.UTC)
    with session_scope() as s:
        m = s.get(Milestone, world.ids["m_318"])
        registry.move_milestone(s, m, date=m.date + DAY, reason="typo", at=at)
        change = registry.current_change(s, m).id
    with session_scope() as s:
        assert set(held_milestones(s, at)) == {world.ids["m_318"]}
        assert held_milestones(s, at + dt.timedelta(minutes=11)) == {}  # the hold is over
        changes.undo(s, change, at=at + dt.timedelta(minutes=1))
    with session_scope() as s:
        assert held_milestones(s, at + dt.timedelta(minutes=1)) == {}
