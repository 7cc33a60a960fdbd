"""The portal inbox and the customer pages in the customer's language: unread/all, paging, mark all
read, times in the customer's timezone, a banner on a notice later changed or cancelled, a new
calendar link on demand; zh-CN pages without English UI text; every page string has a zh-CN entry."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlmodel import select

from lifecycle import i18n, registry
from lifecycle.db import session_scope
from lifecycle.links import ack_token
from lifecycle.models import Customer, InboxMessage, Notice
from lifecycle.web.app import create_app
from tests import webworld
from tests.conftest import ROOT
from tests.test_web_pages import logged_in

# What a translator wrote for each language: its message catalog (lifecycle/locale), English -> text.
CATALOGS = {locale: i18n.messages(locale) for locale in i18n.locales() if locale != i18n.SOURCE_LOCALE}
CUSTOMER_PAGES = (
    "portal.html",
    "notice.html",
    "ack.html",
    "_release.html",
    "_agreement_form.html",
    "base.html",
    "message.html",
    "channels.html",
)


@pytest.fixture
def world(sqlite_db):
    return webworld.build()


def add_messages(
    world,
    n: int,
    *,
    customer: str = "acme",
    kind: str = "stage",
    milestone: str = "m_red",
    start: dt.datetime | None = None,
) -> list[int]:
    start = start or dt.datetime.now(dt.UTC) - dt.timedelta(days=n)
    ids = []
    with session_scope() as s:
        for i in range(n):
            at = start + dt.timedelta(hours=i)
            notice = Notice(
                key=f"t:{customer}:{kind}:{milestone}:{start.isoformat()}:{i}",
                customer_id=world.ids[customer],
                milestone_id=world.ids[milestone],
                kind=kind,
                slot=str(i),
                due_at=at,
                status="sent",
                created_at=at,
            )
            s.add(notice)
            s.flush()
            msg = InboxMessage(
                customer_id=world.ids[customer],
                notice_id=notice.id,
                subject=f"{kind} notice {i}",
                body_text="x",
                body_html="<html><body><p>x</p></body></html>",
                created_at=at,
            )
            s.add(msg)
            s.flush()
            ids.append(msg.id)
    return ids


def subjects(html: str) -> list[str]:
    return re.findall(r'<span class="subject">([^<]+)', html)


def test_the_inbox_filters_unread_pages_and_marks_all_read(world):
    add_messages(world, 25)  # 27 in all with the world's two
    client, csrf = logged_in(world, "customer")
    first = client.get("/portal").text
    assert len(subjects(first)) == 20 and "Page 1 of 2" in first
    second = client.get("/portal?page=2").text
    assert len(subjects(second)) == 7 and 'rel="prev"' in second
    client.get(f"/portal/notices/{world.ids['msg_acme']}")
    unread = client.get("/portal?show=unread&page=2").text
    assert len(subjects(unread)) == 6 and "ACP 3.14 end of life in 20 days" not in unread
    done = client.post("/portal/inbox/read-all", data={"csrf": csrf}, follow_redirects=False)
    assert done.status_code == 303
    page = client.get(done.headers["location"]).text
    assert 'id="unread-count">0<' in page and "Every notice is marked read." in page
    assert "Nothing unread." in client.get("/portal?show=unread").text
    api = TestClient(create_app())
    box = api.get("/api/customers/acme/inbox?unread=true", headers=world.auth("customer")).json()
    assert (box["unread"], box["total"], box["messages"]) == (0, 0, [])
    assert client.post("/portal/inbox/read-all", data={"csrf": "forged"}).status_code == 403


def test_inbox_times_are_in_the_customers_timezone(world):
    with session_scope() as s:
        acme = s.get(Customer, world.ids["acme"])
        acme.timezone = "Asia/Shanghai"
        s.add(acme)
    [mid] = add_messages(world, 1, start=dt.datetime(2030, 1, 1, 23, 30, tzinfo=dt.UTC))
    client, _ = logged_in(world, "customer")
    assert "2030-01-02 07:30" in client.get("/portal").text  # UTC+8
    notice = client.get(f"/portal/notices/{mid}").text
    assert "Received 2030-01-02 07:30 (Asia/Shanghai)" in notice and "UTC" not in notice


def test_a_notice_later_changed_or_cancelled_links_to_the_newer_notice(world):
    old = dt.datetime.now(dt.UTC) - dt.timedelta(days=30)
    [stage] = add_messages(world, 1, start=old)
    [changed] = add_messages(world, 1, kind="changed", start=old + dt.timedelta(days=1))
    [withdrawn] = add_messages(world, 1, kind="withdrawn", start=old + dt.timedelta(days=2))
    client, _ = logged_in(world, "customer")
    page = client.get(f"/portal/notices/{stage}").text
    assert "This notice was later cancelled." in page and f'href="/portal/notices/{withdrawn}"' in page
    assert "later cancelled" in client.get("/portal").text
    assert (
        "later"
        not in client.get(f"/portal/notices/{withdrawn}").text.split("<main>")[1].split("notice-body")[0]
    )
    [other] = add_messages(world, 1, milestone="m_amber", start=old)
    assert "was later" not in client.get(f"/portal/notices/{other}").text
    assert changed


def test_a_customer_rotates_their_calendar_link_and_the_old_one_stops_working(world):
    with session_scope() as s:
        old = s.get(Customer, world.ids["acme"]).calendar_token
    client, csrf = logged_in(world, "customer")
    assert client.get(f"/calendars/customers/{old}.ics").status_code == 200
    done = client.post("/portal/calendar/rotate", data={"csrf": csrf}, follow_redirects=False)
    assert done.status_code == 303
    page = client.get(done.headers["location"]).text
    with session_scope() as s:
        new = s.get(Customer, world.ids["acme"]).calendar_token
    assert new != old and new in page and "the old one no longer works" in page
    assert client.get(f"/calendars/customers/{old}.ics").status_code == 404
    assert client.get(f"/calendars/customers/{new}.ics").status_code == 200


# ------------------------------------------------------------------------------------------ zh-CN pages


def english_words(html: str, data: list[str]) -> list[str]:
    """Latin words a reader sees on a page, once the data (names, versions, addresses, dates, URLs)
    and the markup are taken out."""
    text = re.sub(r"<(script|style)\b.*?</\1>", " ", html, flags=re.S)
    titles = re.findall(r'(?:title|placeholder|aria-label)="([^"]*)"', text)
    text = re.sub(r"<[^>]+>", " ", text) + " " + " ".join(titles)
    text = text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&").replace("&#39;", "'")
    for value in sorted(data, key=len, reverse=True):
        text = text.replace(value, " ")
    text = re.sub(r"\S+@\S+|https?://\S+|webcal://\S+|\.ics\b", " ", text)
    return re.findall(r"[A-Za-z]{2,}", text)


def test_zh_cn_customer_pages_contain_no_english_ui_text(world):
    with session_scope() as s:
        acme = s.get(Customer, world.ids["acme"])
        acme.locale, acme.timezone, acme.name = "zh-CN", "Asia/Shanghai", "中国银行"
        s.add(acme)
    [stage] = add_messages(world, 1, start=dt.datetime.now(dt.UTC) - dt.timedelta(days=3))
    add_messages(world, 1, kind="changed", start=dt.datetime.now(dt.UTC) - dt.timedelta(days=2))
    data = [
        "Alauda Container Platform",
        "Service Mesh",
        "ACP",
        "Asia/Shanghai",
        "stage notice",
        "changed notice",
        "Dear customer",
        "end of life in 20 days",
        "end of full support in 60 days",
    ]
    client, csrf = logged_in(world, "customer")
    pages = {
        "portal": client.get("/portal").text,
        "notice": client.get(f"/portal/notices/{stage}").text,
        "missing": client.get("/portal/notices/999999").text,
    }
    pages["refused"] = client.post(
        "/portal/agreements",
        data={
            "csrf": csrf,
            "release_id": world.ids["r316"],
            "status": "planned",
            "target": "3.14",
            "planned_date": "2099-01-01",
            "name": "王",
        },
    ).text
    with session_scope() as s:
        link = f"/ack/{ack_token(s, world.ids['acme'], world.ids['r316'])}"
    anonymous = TestClient(create_app())
    pages["ack"] = anonymous.get(link).text
    pages["ack-refused"] = anonymous.post(link, data={"status": "planned", "name": "王"}).text
    for name, html in pages.items():
        assert re.search(r"<title>[^<]*产品生命周期</title>", html), name
        assert english_words(html, data) == [], name
    assert "该产品没有" not in pages["refused"] and "不比3.16更新" in pages["refused"]
    assert "计划升级需要选择目标版本" in pages["ack-refused"]


def customer_page_strings() -> dict[str, set[str]]:
    """Every translatable string of the customer pages, per template."""
    out = {}
    for name in CUSTOMER_PAGES:
        source = (ROOT / "templates" / "web" / name).read_text(encoding="utf-8")
        found = {
            a or b for a, b in re.findall(r't\(\s*"((?:[^"\\]|\\.)*)"|t\(\s*\'((?:[^\'\\]|\\.)*)\'', source)
        }
        out[name] = found
    return out


def test_every_customer_page_string_has_a_zh_cn_entry_with_full_width_punctuation():
    strings = customer_page_strings()
    assert sum(len(v) for v in strings.values()) > 60
    from lifecycle import policy
    from lifecycle.agreements import ALL_WITHDRAWN, NOT_RUN
    from lifecycle.web.pages.common import FIELD_ERRORS

    strings["messages"] = {
        *policy.PLAN_TEXTS.values(),
        *FIELD_ERRORS.values(),
        NOT_RUN,
        ALL_WITHDRAWN,
        "Customer portal",
        "Portal",
        "Not found",
        "No such notice",
    }
    for locale, catalog in CATALOGS.items():
        missing = {name: sorted(s - catalog.keys()) for name, s in strings.items() if s - catalog.keys()}
        assert missing == {}, f"{locale}: strings without a translation"
    for text in CATALOGS["zh-CN"].values():
        assert not re.search(r"[\u4e00-\u9fff][:,;()]|[:,;(][\u4e00-\u9fff]", text), (
            text
        )  # no ASCII punctuation


def test_the_page_strings_are_listed_per_locale(tmp_path):
    """The list of page strings per locale, as a translator reads it (test-artifacts/page-strings.txt)."""
    strings = sorted(set().union(*customer_page_strings().values()))
    lines = []
    for locale, catalog in {"en": {}, **CATALOGS}.items():
        lines.append(f"[{locale}]")
        lines += [f"{s} = {catalog.get(s, s)}" for s in strings]
    out = Path(ROOT / "test-artifacts")
    out.mkdir(exist_ok=True)
    (out / "page-strings.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert "Mark all read = 全部标为已读" in lines and "Mark all read = Mark all read" in lines


def test_a_zh_cn_portal_rejects_nothing_a_customer_could_read_in_english_after_rotation(world):
    with session_scope() as s:
        acme = s.exec(select(Customer).where(Customer.key == "acme")).one()
        acme.locale = "zh-CN"
        s.add(acme)
        registry.rotate_calendar_token(s, acme, dt.datetime.now(dt.UTC))
    client, csrf = logged_in(world, "customer")
    page = client.get(
        client.post("/portal/calendar/rotate", data={"csrf": csrf}, follow_redirects=False).headers[
            "location"
        ]
    ).text
    assert "您的日历链接已更换" in page
