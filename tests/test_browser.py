"""The web pages in a real headless browser (Debian's Chromium driven by Playwright).

One app server (uvicorn in a thread, on a free port, against a SQLite file) and one browser launch per
story: a customer reads a notice and agrees on an upgrade, their rep sees it on the dashboard and
downloads the CSV, a product manager moves a milestone and sees it on the timeline; a product manager
previews, confirms and undoes a short-notice milestone, and nobody hears of it, or lets it stand and
every affected customer is told once the hold is over. Screenshots of every page go to
test-artifacts/screenshots/.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import os
import socket
import threading
import time
from pathlib import Path

import pytest
import uvicorn
from sqlmodel import select

from lifecycle import escalations, registry
from lifecycle.config import reset_settings
from lifecycle.db import session_scope
from lifecycle.links import ack_url
from lifecycle.models import Agreement, InboxMessage, Milestone, Notice, RegistryChange
from lifecycle.ticks import tick
from lifecycle.web.app import create_app
from tests import webworld
from tests.conftest import ROOT, need_service

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
SHOTS = ROOT / "test-artifacts" / "screenshots"
LAUNCH_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def live(sqlite_db, monkeypatch):
    """(base URL, world) of an app server running in a background thread."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    monkeypatch.setenv("LIFECYCLE_BASE_URL", base)
    reset_settings()
    world = webworld.build()
    server = uvicorn.Server(
        uvicorn.Config(create_app(), host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            pytest.fail("the app server did not start")
        time.sleep(0.05)
    yield base, world
    server.should_exit = True
    thread.join(10)


@pytest.fixture
def browser():
    if not Path(CHROMIUM).exists():
        need_service("Chromium", f"{CHROMIUM} is missing (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        yield b
        b.close()


def shot(page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


CSP_VIOLATIONS: list[str] = []  # console errors of every page the story opens


def watched(ctx):
    """A browser context whose Content-Security-Policy violations are collected."""
    ctx.on(
        "console",
        lambda msg: (
            CSP_VIOLATIONS.append(f"{msg.location.get('url')}: {msg.text}")
            if msg.type == "error" and "Content Security Policy" in msg.text
            else None
        ),
    )
    return ctx


def log_in(browser, base: str, secret: str, **context):
    ctx = watched(browser.new_context(accept_downloads=True, **context))
    page = ctx.new_page()
    page.goto(f"{base}/login")
    page.fill("input[name=token]", secret)
    page.click("button[type=submit]")
    page.wait_for_load_state()
    return page


def test_customer_rep_and_pm_do_their_jobs_in_a_browser(live, browser):
    base, world = live
    planned = (world.today + dt.timedelta(days=14)).isoformat()
    moved_to = (world.today + dt.timedelta(days=420)).isoformat()

    # A customer logs in, sees two unread notices, reads one, and agrees on an upgrade of 3.14.
    CSP_VIOLATIONS.clear()
    page = log_in(browser, base, world.secrets["customer"])
    assert page.url == f"{base}/portal"
    # The stylesheet passes the page's Content-Security-Policy (by nonce): the header is styled.
    assert (
        page.eval_on_selector("header.top", "e => getComputedStyle(e).backgroundColor") == "rgb(16, 42, 67)"
    )
    shot(page, "01-portal")
    assert page.inner_text("#unread-count") == "2"
    page.click("text=ACP 3.14 end of life in 20 days")
    assert "/portal/notices/" in page.url
    assert "Dear customer" in page.inner_text("article")
    shot(page, "02-notice")
    page.click("text=← Inbox")
    assert page.inner_text("#unread-count") == "1"
    subscribe = page.get_attribute("#subscribe", "href")
    assert subscribe.startswith("webcal://127.0.0.1") and subscribe.endswith(".ics")
    form = page.locator(f"#release-{world.ids['r314']} form.agreement-form")
    form.locator("select[name=status]").select_option("planned")
    form.locator("select[name=target]").select_option("3.18")
    form.locator("input[name=planned_date]").fill(planned)
    form.locator("input[name=name]").fill("Ann Operator")
    form.locator("input[name=email]").fill("ann@acme.example")
    form.locator("textarea[name=feedback]").fill("Three months is tight for a bank; six would be better.")
    form.locator("button[type=submit]").click()
    page.wait_for_load_state()
    assert "Your upgrade plan for Alauda Container Platform 3.14 is saved" in page.inner_text("main")
    shot(page, "03-portal-agreed")
    phone = watched(
        browser.new_context(
            viewport={"width": 390, "height": 844},
            device_scale_factor=2,
            storage_state=page.context.storage_state(),
        )
    )
    phone_page = phone.new_page()
    phone_page.goto(f"{base}/portal")
    shot(phone_page, "04-portal-phone")
    phone.close()
    page.context.close()
    with session_scope() as s:
        agreement = s.exec(select(Agreement).where(Agreement.release_id == world.ids["r314"])).one()
        assert (agreement.status, agreement.target_version, agreement.channel) == ("planned", "3.18", "web")

    # The acknowledgement link from an email shows the same release without logging in.
    with session_scope() as s:
        link = ack_url(s, world.ids["acme"], world.ids["r316"])
    ack_ctx = watched(browser.new_context())
    ack_page = ack_ctx.new_page()
    ack_page.goto(link)
    assert "3.16: your upgrade plan" in ack_page.inner_text("h1")
    shot(ack_page, "05-ack-link")
    ack_ctx.close()

    # The rep sees the agreement on the dashboard, filters by risk and downloads the CSV.
    page = log_in(browser, base, world.secrets["rep"])
    assert page.url == f"{base}/dashboard"
    row = page.locator("#agreements tbody tr[data-customer=acme]").first
    assert "planned" in row.inner_text() and row.get_attribute("data-risk") == "green"
    amber = page.locator("#agreements tbody tr[data-risk=amber]")
    assert amber.count() == 1 and "256" in amber.inner_text()
    assert "globex" not in page.inner_text("#agreements")
    shot(page, "06-dashboard")
    with page.expect_download() as download:
        page.click("#csv")
    rows = list(csv.DictReader(io.StringIO(Path(download.value.path()).read_text(encoding="utf-8-sig"))))
    assert {(r["version"], r["agreement"], r["risk"]) for r in rows} == {
        ("3.14", "planned", "green"),
        ("3.16", "none", "amber"),
    }
    page.select_option("select[name=risk]", "amber")
    page.click("form.filters button[type=submit]")
    page.wait_for_load_state()
    assert page.locator("#agreements tbody tr").count() == 1
    page.context.close()

    # The PM moves 3.16's end of life with a reason, withdraws the mesh end of sale, and sees both.
    page = log_in(browser, base, world.secrets["pm"])
    assert page.url == f"{base}/registry"
    move = page.locator("#move form")
    move.locator("select[name=milestone]").select_option(str(world.ids["m_eol"]))
    move.locator("input[name=date]").fill(moved_to)
    move.locator("input[name=reason]").fill("Extended at customers' request")
    move.locator("button[type=submit]").click()
    page.wait_for_load_state()
    assert "check before you confirm" in page.inner_text("h1")  # every change is previewed first
    page.click("#confirm")
    page.wait_for_load_state()
    assert f"Alauda Container Platform 3.16 · end of life moved to {moved_to}" in page.inner_text("main")
    marker = page.locator(f"#timeline a.marker[data-id='{world.ids['m_eol']}']")
    assert marker.get_attribute("data-date") == moved_to
    assert "Extended at customers' request" in page.inner_text("#milestones")
    withdraw = page.locator("#withdraw form")
    withdraw.locator("select[name=milestone]").select_option(
        label=f"Service Mesh (all versions) · end of sale · {(world.today + dt.timedelta(days=400)).isoformat()}"
    )
    withdraw.locator("input[name=reason]").fill("Sold on after all")
    withdraw.locator("button[type=submit]").click()
    page.wait_for_load_state()
    page.click("#confirm")
    page.wait_for_load_state()
    assert page.locator("#timeline a.marker.withdrawn").count() == 1
    shot(page, "07-registry")
    page.context.close()
    with session_scope() as s:
        assert s.get(Milestone, world.ids["m_eol"]).date.isoformat() == moved_to
    assert os.listdir(SHOTS)
    assert CSP_VIOLATIONS == []


def test_anyone_opens_a_product_page_from_its_calendar_events_in_a_browser(live, browser):
    base, world = live
    ctx = browser.new_context()  # nobody logged in
    page = ctx.new_page()
    feed = page.request.get(f"{base}/calendars/products/acp.ics")
    assert feed.ok
    [url] = {
        line.split(":", 1)[1]
        for line in feed.text().replace("\r\n ", "").split("\r\n")
        if line.startswith("URL:")
    }
    assert url == f"{base}/products/acp"
    page.goto(url)
    assert page.url == url and page.inner_text("h1") == "Alauda Container Platform"
    cards = page.locator("section.release")
    assert [cards.nth(i).get_attribute("data-version") for i in range(cards.count())] == [
        "3.18",
        "3.16",
        "3.14",
    ]
    row = page.locator(f"#release-{world.ids['r314']} tr[data-kind=end-of-life]")
    assert (
        row.get_attribute("data-status") == "planned"
        and (world.today + dt.timedelta(days=20)).isoformat() in row.inner_text()
    )
    assert (
        page.get_attribute("#subscribe", "href")
        == f"webcal://{base.split('://', 1)[1]}/calendars/products/acp.ics"
    )
    shot(page, "13-product-page")
    ctx.close()


def _mail_and_inbox(outbox: Path) -> tuple[list[str], int]:
    with session_scope() as s:
        inbox = len(s.exec(select(InboxMessage.id)).all())
    return sorted(p.name for p in outbox.rglob("*.eml")), inbox


def test_a_pm_previews_confirms_and_undoes_a_short_notice_milestone_and_nobody_hears_of_it(
    live, browser, monkeypatch
):
    base, world = live
    monkeypatch.setenv("LIFECYCLE_CHANGE_HOLD", "10m")
    reset_settings()
    outbox = Path(os.environ["LIFECYCLE_OUTBOX_DIR"])
    day, minute = dt.timedelta(days=1), dt.timedelta(minutes=1)
    soon = (world.today + 80 * day).isoformat()  # between 3.16's end of full support and end of life
    same_day = (world.today + 900 * day).isoformat()
    with session_scope() as s:  # 3.18 ends three phases on one day: the timeline stacks them
        for kind in ("end-of-full-support", "end-of-maintenance"):
            registry.add_milestone(
                s,
                product="acp",
                version="3.18",
                kind=kind,
                date=world.today + 900 * day,
                at=dt.datetime.now(dt.UTC) - day,
            )
    tick(dt.datetime.now(dt.UTC))  # what was due anyway goes first: what follows is the PM's change alone
    before = _mail_and_inbox(outbox)

    CSP_VIOLATIONS.clear()
    page = log_in(browser, base, world.secrets["pm"])
    stacked = page.locator(f"#timeline a.marker[data-date='{same_day}']")
    assert stacked.count() == 3
    assert sorted(stacked.nth(i).get_attribute("data-lane") for i in range(3)) == ["0", "1", "2"]
    boxes = [stacked.nth(i).bounding_box() for i in range(3)]
    assert len({round(b["y"]) for b in boxes}) == 3  # one under the other, none hidden
    shot(page, "08-registry-timeline")

    # A marker is reached by keyboard and opens its edit form.
    page.locator(f"#timeline a.marker[data-id='{world.ids['m_eol']}']").focus()
    assert page.evaluate("document.activeElement.dataset.id") == str(world.ids["m_eol"])
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert page.url.endswith(f"/registry?milestone={world.ids['m_eol']}#move")
    assert page.locator("#move select[name=milestone]").input_value() == str(world.ids["m_eol"])

    def add_short_notice_milestone() -> None:
        form = page.locator("#add form")
        form.locator("select[name=scope]").select_option("acp|3.16")
        form.locator("select[name=kind]").select_option("end-of-maintenance")
        form.locator("input[name=date]").fill(soon)
        form.locator("input[name=reason]").fill("The security fix cannot be backported")
        form.locator("input[name=allow_short_notice]").check()
        form.locator("button[type=submit]").click()
        page.wait_for_load_state()
        assert "check before you confirm" in page.inner_text("h1")
        assert page.inner_text("#affected-count") == "2"
        assert "ACME Bank, Globex" in page.inner_text("#affected")
        assert "held until" in page.inner_text("#at-once")

    def changes() -> list[RegistryChange]:
        with session_scope() as s:
            return list(s.exec(select(RegistryChange).order_by(RegistryChange.id)).all())

    made_before = len(changes())
    add_short_notice_milestone()
    shot(page, "09-preview")
    assert len(changes()) == made_before  # the preview wrote nothing
    page.click("#confirm")
    page.wait_for_load_state()
    assert "held until" in page.inner_text("#done")
    assert page.locator("#held li").count() == 1 and page.locator("#timeline a.marker.held").count() == 1
    shot(page, "10-registry-held")
    page.locator("#held li button").click()
    page.wait_for_load_state()
    assert "Undone" in page.inner_text("#done") and page.locator("#held").count() == 0
    added, undo = changes()[made_before:]
    assert (added.action, added.undone_at is not None, undo.action) == ("add", True, "undo")
    hold_until = added.hold_until.replace(tzinfo=dt.UTC)
    tick(hold_until + minute)  # past the hold: nothing was left to send
    assert _mail_and_inbox(outbox) == before
    with session_scope() as s:
        assert (
            s.exec(
                select(Milestone).where(
                    Milestone.kind == "end-of-maintenance", Milestone.release_id == world.ids["r316"]
                )
            ).first()
            is None
        )

    # The same change, left to stand: held first, then every affected customer is told.
    page.goto(f"{base}/registry")
    add_short_notice_milestone()
    page.click("#confirm")
    page.wait_for_load_state()
    with session_scope() as s:
        milestone = registry.get_milestone(s, "acp", "3.16", "end-of-maintenance")
        hold_until = registry.current_change(s, milestone).hold_until.replace(tzinfo=dt.UTC)
        milestone_id = milestone.id
    tick(hold_until - minute)
    assert _mail_and_inbox(outbox) == before  # still on hold
    tick(hold_until + minute)
    emails, inbox = _mail_and_inbox(outbox)
    new_mail = [outbox / name for name in set(emails) - set(before[0])]
    assert inbox == before[1] + 2  # acme and globex, in their portal inboxes
    assert len(new_mail) == 1 and "ops@acme.example" in new_mail[0].read_text()  # globex has no email contact
    with session_scope() as s:
        told = s.exec(
            select(Notice.customer_id).where(Notice.milestone_id == milestone_id, Notice.status == "sent")
        ).all()
    assert sorted(told) == sorted([world.ids["acme"], world.ids["globex"]])

    # The compliance page shows it, with a drill-down to the customers.
    page.goto(f"{base}/registry/compliance")
    assert page.locator("#compliance tbody tr").count() == 4  # the milestones of releases customers run
    row = page.locator("#compliance tr[data-version='3.16'][data-milestone='end-of-maintenance']")
    assert row.locator("td[data-status=late]").inner_text() == "2"  # short notice: told late, by design
    shot(page, "11-compliance")
    row.locator("td[data-status=late] a").click()
    page.wait_for_load_state()
    assert page.locator("#customer-rows tbody tr").count() == 2
    assert "short notice" in page.inner_text("#customer-rows")
    shot(page, "12-compliance-drill-down")
    page.context.close()
    assert CSP_VIOLATIONS == []


def test_a_plan_with_feedback_reaches_the_rep_and_resolves_the_escalation_in_a_browser(live, browser):
    base, world = live
    planned = (world.today + dt.timedelta(days=12)).isoformat()
    feedback = "Three months is tight for a bank; we need six."
    now = dt.datetime.now(dt.UTC)
    with session_scope() as s:  # acme's 3.14 ends in 20 days without an agreement: escalated to Alice
        s.add(
            Notice(
                key="escalation:browser",
                customer_id=world.ids["acme"],
                milestone_id=world.ids["m_red"],
                release_id=world.ids["r314"],
                kind="escalation",
                audience="rep",
                slot="1m",
                due_at=now,
                status="sent",
                created_at=now,
            )
        )
        escalations.sync(s, now)
    CSP_VIOLATIONS.clear()

    # The rep takes the escalation on: in progress, with a note.
    rep = log_in(browser, base, world.secrets["rep"])
    item = rep.locator("#escalations li.escalation[data-customer=acme]")
    assert item.get_attribute("data-state") == "open"
    assert (world.today + dt.timedelta(days=20)).isoformat() in item.locator(".due").inner_text()
    item.locator("summary").click()
    item.locator("select[name=state]").select_option("in-progress")
    item.locator("textarea[name=note]").fill("Called Ann: they will send a plan this week.")
    item.locator("button[type=submit]").click()
    rep.wait_for_load_state()
    item = rep.locator("#escalations li.escalation[data-customer=acme]")
    assert item.get_attribute("data-state") == "in-progress"
    assert "Called Ann: they will send a plan this week." in item.inner_text()
    shot(rep, "10-escalation-in-progress")

    # The customer plans the upgrade of 3.14 with feedback.
    page = log_in(browser, base, world.secrets["customer"])
    form = page.locator(f"#release-{world.ids['r314']} form.agreement-form")
    assert form.locator("select[name=target] option").all_inner_texts()[1:] == [
        f"3.18 (recommended) · supported until {(world.today + dt.timedelta(days=900)).isoformat()}",
        f"3.16 · supported until {(world.today + dt.timedelta(days=300)).isoformat()}",
    ]
    form.locator("select[name=status]").select_option("planned")
    form.locator("select[name=target]").select_option("3.18")
    form.locator("input[name=planned_date]").fill(planned)
    form.locator("input[name=name]").fill("Ann Operator")
    form.locator("textarea[name=feedback]").fill(feedback)
    form.locator("button[type=submit]").click()
    page.wait_for_load_state()
    assert "is saved" in page.inner_text("main")
    shot(page, "11-portal-planned-with-feedback")
    page.context.close()

    # The rep sees the feedback, the date and who recorded it; the agreement resolved the escalation.
    rep.goto(f"{base}/dashboard")
    row = rep.locator("#agreements tbody tr[data-customer=acme][data-version='3.14']")
    assert feedback in row.locator("td.feedback").inner_text()
    assert planned in row.locator("td.plan").inner_text() and "3.18" in row.locator("td.plan").inner_text()
    assert "Ann Operator" in row.locator("td.recorded").inner_text()
    assert row.get_attribute("data-risk") == "green"
    item = rep.locator("#escalations li.escalation[data-customer=acme]")
    assert item.get_attribute("data-state") == "resolved" and "an agreement arrived" in item.inner_text()
    shot(rep, "12-dashboard-feedback-and-resolved")
    with rep.expect_download() as download:
        rep.click("#csv")
    rows = list(csv.DictReader(io.StringIO(Path(download.value.path()).read_text(encoding="utf-8-sig"))))
    [r314] = [r for r in rows if r["version"] == "3.14"]
    assert (r314["feedback"], r314["planned_date"], r314["target"], r314["by"]) == (
        feedback,
        planned,
        "3.18",
        "Ann Operator",
    )
    assert r314["escalation_state"] == "resolved" and r314["risk"] == "green"
    row.locator("a").first.click()
    rep.wait_for_load_state()
    assert feedback in rep.inner_text(f"#release-{world.ids['r314']} table.history")
    shot(rep, "13-customer-page")
    rep.context.close()
    assert CSP_VIOLATIONS == []


def test_the_api_docs_render_with_the_network_disabled(live, browser):
    base, _ = live
    ctx = browser.new_context()
    outside: list[str] = []

    def only_this_server(route):
        if route.request.url.startswith(base):
            route.continue_()
        else:  # an air-gapped install: nothing else can be reached
            outside.append(route.request.url)
            route.abort("internetdisconnected")

    ctx.route("**/*", only_this_server)
    errors: list[str] = []
    ctx.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page = ctx.new_page()
    page.goto(f"{base}/docs")
    page.wait_for_selector(".swagger-ui .info .title", timeout=15000)
    assert "lifecycle" in page.inner_text(".swagger-ui .info .title")
    page.wait_for_selector(".opblock", timeout=15000)
    assert page.locator(".opblock").count() > 20
    shot(page, "20-api-docs-offline")
    ctx.close()
    assert outside == [] and errors == []
