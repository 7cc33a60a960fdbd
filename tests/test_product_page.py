"""The public product page, `/products/<slug>`: what product calendar events link to."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from fastapi.testclient import TestClient

from lifecycle import links, registry
from lifecycle.db import session_scope
from lifecycle.web.app import create_app
from tests.conftest import utc
from tests.icscheck import check_ics

AT = utc(2026, 1, 10)
NOW = utc(2027, 4, 1, 9)  # the page's clock: 3.14's end of life (2026-12-31) and 3.16's full support are past


@pytest.fixture
def client(db, monkeypatch):
    monkeypatch.setattr("lifecycle.web.products.now", lambda: NOW)
    monkeypatch.setattr("lifecycle.web.calendars.now", lambda: NOW)
    with TestClient(create_app()) as c:
        yield c


def _setup(name: str = "Alauda Container Platform") -> None:
    with session_scope() as s:
        registry.upsert_product(s, slug="acp", name=name, at=AT)
        registry.upsert_release(s, product="acp", version="3.9", released=dt.date(2022, 3, 1), at=AT)
        registry.upsert_release(
            s, product="acp", version="3.14", released=dt.date(2023, 6, 15), upgrade_to="3.18", at=AT
        )
        registry.upsert_release(
            s, product="acp", version="3.16", released=dt.date(2024, 1, 15), upgrade_to="3.18", at=AT
        )
        registry.upsert_release(s, product="acp", version="3.18", at=AT)
        for version, kind, date in [
            ("3.14", "end-of-life", dt.date(2026, 12, 31)),
            ("3.16", "end-of-full-support", dt.date(2027, 3, 31)),
            ("3.16", "end-of-life", dt.date(2027, 9, 30)),
            (None, "end-of-sale", dt.date(2028, 6, 30)),
        ]:
            registry.add_milestone(s, product="acp", version=version, kind=kind, date=date, at=AT)
        registry.withdraw_milestone(
            s, registry.get_milestone(s, "acp", None, "end-of-sale"), reason="sold on", at=AT
        )
        release = registry.get_release(s, registry.get_product(s, "acp"), "3.9")
        release.ended = "end-of-life"  # endoflife.date: isEol true, no date
        s.add(release)
        registry.upsert_customer(
            s,
            key="acme",
            name="ACME Secret Bank",
            timezone="UTC",
            locale="en",
            account_rep="rep@vendor.example",
            at=AT,
        )
        registry.add_deployment(s, customer="acme", product="acp", version="3.16", at=AT)


def _rows(html: str, version: str) -> list[tuple[str, str]]:
    """(kind, status) of each milestone row in a release's card."""
    card = re.search(
        rf'<section class="card release"[^>]*data-version="{re.escape(version)}".*?</section>', html, re.S
    )
    return re.findall(r'<tr data-kind="([^"]+)" data-status="([^"]+)">', card.group(0))


def test_anyone_can_read_a_products_releases_and_milestones_without_logging_in(client):
    _setup()
    r = client.get("/products/acp")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    html = r.text
    assert "<h1>Alauda Container Platform</h1>" in html and "Log out" not in html
    assert re.findall(r'data-version="([^"]+)"', html) == ["3.18", "3.16", "3.14", "3.9"]  # newest first
    assert (
        "2024-01-15" in html
        and 'Recommended upgrade: <b class="upgrade-to">Alauda Container Platform 3.18</b>' in html
    )
    assert _rows(html, "3.16") == [("end-of-full-support", "history"), ("end-of-life", "planned")]
    assert _rows(html, "3.14") == [("end-of-life", "history")]
    assert re.findall(
        r'<tr data-kind="([^"]+)" data-status="([^"]+)">',
        html.split('id="all-versions"')[1].split("</section>")[0],
    ) == [("end-of-sale", "withdrawn")]
    assert 'data-ended="end of life"' in html and "ended upstream: end of life, no date published" in html
    assert f'href="{links.webcal_url(links.product_calendar_url("acp"))}"' in html
    assert f'href="{links.product_calendar_url("acp")}"' in html
    assert (
        "ACME" not in html and "acme" not in html and "sold on" not in html
    )  # no customers, no internal reasons


def test_every_event_of_a_product_feed_links_to_a_page_that_opens(client):
    _setup()
    cal = check_ics(client.get("/calendars/products/acp.ics").content)
    urls = {str(e["URL"]) for e in cal.events}
    assert urls == {links.product_page_url("acp")}
    assert client.get(urls.pop().removeprefix("http://127.0.0.1:8000")).status_code == 200


def test_an_unknown_product_page_is_a_404(client):
    r = client.get("/products/nope")
    assert r.status_code == 404 and "No such product" in r.text


def test_a_product_without_releases_says_so(client):
    with session_scope() as s:
        registry.upsert_product(s, slug="new", name="Newcomer", at=AT)
    r = client.get("/products/new")
    assert (
        r.status_code == 200 and "No releases registered yet." in r.text and 'id="all-versions"' not in r.text
    )


def test_hostile_product_names_are_escaped_on_the_product_page(client):
    _setup(name='<script>alert("x")</script> & Co')
    html = client.get("/products/acp").text
    assert "<script>alert" not in html
    assert "<h1>&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; &amp; Co</h1>" in html
