"""The one translation mechanism (lifecycle/i18n.py): gettext catalogs in lifecycle/locale.

Every catalog is complete (no untranslated or fuzzy entry, nothing obsolete, placeholders that match),
up to date with the messages in the code and templates (`make messages` was run), written with
full-width punctuation in Chinese, and adding a language is adding a catalog."""

from __future__ import annotations

import datetime as dt
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from babel.messages.catalog import Catalog
from babel.messages.pofile import read_po, write_po

from lifecycle import content, i18n, templating
from tests.conftest import ROOT

CATALOG_LOCALES = [loc for loc in i18n.locales() if loc != i18n.SOURCE_LOCALE]


def problems(catalog: Catalog) -> list[str]:
    """What keeps a catalog from being shipped: untranslated, fuzzy or obsolete entries, and
    translations whose placeholders do not match their message (Babel's checks)."""
    out = []
    if catalog.fuzzy:
        out.append("the catalog's header is fuzzy")
    for m in catalog:
        if not m.id:
            continue
        strings = m.string if isinstance(m.string, tuple) else (m.string,)
        if not all(strings):
            out.append(f"untranslated: {m.id!r}")
        if m.fuzzy:
            out.append(f"fuzzy: {m.id!r}")
    out += [f"obsolete: {mid!r}" for mid in catalog.obsolete]
    for m, errors in catalog.check():
        out += [f"{m.id!r}: {e}" for e in errors]
    return out


def extracted_messages(tmp_path: Path) -> set[tuple[str | None, str]]:
    """The messages `make messages` extracts today, with the keywords the Makefile gives pybabel."""
    keywords = next(
        line.split(":=", 1)[1]
        for line in (ROOT / "Makefile").read_text().splitlines()
        if line.startswith("KEYWORDS :=")
    )
    pot = tmp_path / "messages.pot"
    pybabel = Path(sys.executable).parent / "pybabel"
    subprocess.run(
        [
            str(pybabel),
            "-q",
            "extract",
            "-F",
            "babel.cfg",
            *shlex.split(keywords),
            "--no-location",
            "-o",
            str(pot),
            ".",
        ],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    with pot.open("rb") as f:
        return {(m.context, m.id if isinstance(m.id, str) else m.id[0]) for m in read_po(f) if m.id}


def test_there_is_a_zh_cn_catalog():
    assert i18n.locales() == ("en", "zh-CN")
    assert len(i18n.catalog("zh-CN")) > 250


@pytest.mark.parametrize("locale", CATALOG_LOCALES)
def test_every_catalog_is_complete(locale):
    assert problems(i18n.catalog(locale)) == []


def test_an_untranslated_fuzzy_or_mismatched_entry_is_a_problem():
    catalog = Catalog(locale="zh_CN", fuzzy=False)
    catalog.add("Hello", "你好")
    catalog.add("Dear %(name)s,", "尊敬的%(who)s：", flags={"python-format"})
    catalog.add("Untranslated", "")
    catalog.add("Guessed", "猜的", flags={"fuzzy"})
    found = problems(catalog)
    assert len(found) == 3 and "untranslated: 'Untranslated'" in found and "fuzzy: 'Guessed'" in found
    assert any("unknown named placeholder 'who'" in p for p in found)


@pytest.mark.slow
@pytest.mark.parametrize("locale", CATALOG_LOCALES)
def test_every_catalog_holds_exactly_the_messages_of_the_code_and_templates(locale, tmp_path):
    extracted = extracted_messages(tmp_path)
    catalog = {(m.context, m.id if isinstance(m.id, str) else m.id[0]) for m in i18n.catalog(locale) if m.id}
    assert {
        "missing (run make messages)": sorted(extracted - catalog, key=str),
        "not in the sources any more": sorted(catalog - extracted, key=str),
    } == {"missing (run make messages)": [], "not in the sources any more": []}
    assert (None, "Dear %(name)s,") in extracted and (None, "{n} day left") in extracted  # templates, Python


def test_chinese_text_uses_full_width_punctuation():
    for m in i18n.catalog("zh-CN"):
        for text in m.string if isinstance(m.string, tuple) else (m.string,):
            assert not re.search(r"[\u4e00-\u9fff][:,;()]|[:,;(][\u4e00-\u9fff]", text), text


def test_the_words_of_a_message_come_from_the_catalog():
    day = dt.date(2027, 3, 31)
    assert (
        content.format_date(day, "en") == "31 March 2027"
        and content.format_date(day, "zh-CN") == "2027年3月31日"
    )
    assert [content.days_text(d, "en") for d in (-2, -1, 0, 1, 98)] == [
        "2 days ago",
        "1 day ago",
        "today",
        "1 day left",
        "98 days left",
    ]
    assert [content.days_text(d, "zh-CN") for d in (-2, 0, 98)] == ["已过2天", "今天", "剩余98天"]
    assert (
        content.days_text(98, "zh-CN", bare=True) == "98天"
        and content.days_text(1, "en", bare=True) == "1 day"
    )
    assert (
        content.stage_label("1w", "en") == "1 week"
        and content.stage_label("6m", "en", possessive=True) == "6 months'"
    )
    assert content.stage_label("6m", "zh-CN", possessive=True) == "6个月"
    assert (
        content.kind_label("end-of-life", "zh-CN") == "生命周期终止"
        and content.kind_label("x", "zh-CN") == "x"
    )
    assert i18n.gettext_in("fr", "today") == "today"  # a language without a catalog reads English
    assert i18n.gettext_in("zh-CN", "") == ""  # never the catalog's header


def test_a_template_renders_in_the_locale_it_is_given():
    item = {"kind": "test", "customer_name": "ACME", "product_name": "", "version": None}
    folder = templating.CHANNELS_DIR / "slack" / "templates"
    assert (
        templating.render_in(folder, "title.txt", "en", item=item).strip()
        == "Test message from Product Lifecycle"
    )
    assert templating.render_in(folder, "title.txt", "zh-CN", item=item).strip() == "产品生命周期测试消息"
    # HTML: the catalog's markup is kept, the values are escaped
    html = templating.environment("zh-CN").from_string(
        '{% autoescape true %}{{ _("Feedback: <em>%(feedback)s</em>", feedback=f) }}{% endautoescape %}'
    )
    assert html.render(f="<b>&") == "客户反馈：<em>&lt;b&gt;&amp;</em>"


@pytest.fixture
def locale_dir(tmp_path, monkeypatch):
    """lifecycle/locale copied to a temporary folder, with every cache of catalogs and templates cleared."""
    import shutil

    folder = tmp_path / "locale"
    shutil.copytree(i18n.LOCALE_DIR, folder)
    monkeypatch.setattr(i18n, "LOCALE_DIR", folder)
    caches = (
        i18n.locales,
        i18n.translations,
        i18n.format_date,
        templating.environment,
        templating.folder_environment,
    )
    for cache in caches:
        cache.cache_clear()
    yield folder
    for cache in caches:
        cache.cache_clear()


def test_adding_a_language_is_adding_a_catalog(locale_dir):
    catalog = Catalog(locale="fr", fuzzy=False)
    catalog.add("Dear %(name)s,", "Madame, Monsieur %(name)s,", flags={"python-format"})
    catalog.add("d MMMM y", "d MMMM y")
    catalog.add("end of life", "fin de vie")
    (locale_dir / "fr" / "LC_MESSAGES").mkdir(parents=True)
    with (locale_dir / "fr" / "LC_MESSAGES" / "messages.po").open("wb") as f:
        write_po(f, catalog)
    assert i18n.locales() == ("en", "fr", "zh-CN")
    from lifecycle import validation

    assert validation.locale("fr") == "fr"  # customers and reps may now have it
    text = templating.render(
        "email/templates/customer.txt",
        "fr",
        customer={"name": "ACME"},
        items=[],
        medium="email",
        has_ack_link=False,
        calendar_url="",
        rep={"name": "", "email": "r@v"},
    )
    assert text.startswith("Madame, Monsieur ACME,")  # untranslated messages stay English
    assert content.format_date(dt.date(2027, 3, 31), "fr") == "31 mars 2027"  # month names: CLDR's
    assert content.kind_label("end-of-life", "fr") == "fin de vie"


def test_compiled_mo_files_are_used_when_they_are_current(locale_dir):
    po = locale_dir / "zh_CN" / "LC_MESSAGES" / "messages.po"
    subprocess.run(
        [str(Path(sys.executable).parent / "pybabel"), "-q", "compile", "-d", str(locale_dir)],
        check=True,
        capture_output=True,
    )
    mo = po.with_suffix(".mo")
    assert mo.exists()
    # A .mo that says something else shows it is the one read (and a stale one is not).
    catalog = i18n.catalog("zh-CN")
    catalog.get("today").string = "今日"
    from babel.messages.mofile import write_mo

    with mo.open("wb") as f:
        write_mo(f, catalog)
    assert i18n.gettext_in("zh-CN", "today") == "今日"
    i18n.translations.cache_clear()
    po.touch()  # edited after the .mo was compiled
    mo_time = po.stat().st_mtime - 10
    import os

    os.utime(mo, (mo_time, mo_time))
    assert i18n.gettext_in("zh-CN", "today") == "今天"


# ------------------------------------------------------------- fixed words translated once, at compile time


class CountingTranslations:
    """A catalog that counts its lookups (to tell compile time from render time)."""

    def __init__(self, inner):
        self.inner, self.calls = inner, 0

    def gettext(self, message):
        self.calls += 1
        return self.inner.gettext(message)

    def ngettext(self, singular, plural, n):
        self.calls += 1
        return self.inner.ngettext(singular, plural, n)

    def pgettext(self, context, message):
        self.calls += 1
        return self.inner.pgettext(context, message)

    def npgettext(self, context, singular, plural, n):
        self.calls += 1
        return self.inner.npgettext(context, singular, plural, n)


def _plain_environment(translations, autoescape: bool):
    """Jinja2's own i18n, without folding: what a folded template must render exactly like."""
    from jinja2 import DictLoader, Environment

    env = Environment(loader=DictLoader({}), **(templating.options() | {"autoescape": autoescape}))
    env.install_gettext_translations(translations, newstyle=True)
    return env


EDGE_TEMPLATES = [
    '{{ _("today") }}|{{ _("Dear %(name)s,", name=name) }}|{{ _("100%% of %(name)s", name=name) }}',
    "{% trans %}today{% endtrans %}|{% trans n=name %}Dear {{ n }},{% endtrans %}",
    '{{ pgettext("email subject", "A notification channel was turned off") }}|{{ gettext("today") }}',
    '{{ ngettext("%(num)d day left", "%(num)d days left", count) }}|{% trans count=count %}'
    "{{ count }} day left{% pluralize %}{{ count }} days left{% endtrans %}",
    '{% set _ = shout %}{{ _("today") }}',  # assigns the name: left to render time
    '{% macro m(_) %}{{ _("today") }}{% endmacro %}{{ m(shout) }}',
    '{{ _("Feedback: <em>%(feedback)s</em>", feedback=name) }}{{ _("%s") }}{{ _(name) }}',
    '{{ _("100%") if false else "" }}',
]


@pytest.mark.parametrize("locale", ["en", "zh-CN"])
@pytest.mark.parametrize("autoescape", [True, False])
@pytest.mark.parametrize("source", EDGE_TEMPLATES)
def test_fixed_words_are_translated_at_compile_time_and_render_as_jinjas_own_i18n(source, autoescape, locale):
    from jinja2 import DictLoader

    counting = CountingTranslations(i18n.translations(locale))
    env = templating._environment(DictLoader({}), locale)
    env.install_gettext_translations(counting, newstyle=True)
    env.autoescape = autoescape
    folded = env.from_string(source)
    plain = _plain_environment(i18n.translations(locale), autoescape).from_string(source)
    values = [
        {"name": "<b>&'ACME'", "count": 1, "shout": str.upper},
        {"name": "x%sy", "count": 3, "shout": str.upper},
    ]
    for v in values:
        assert folded.render(**v) == plain.render(**v)
        assert type(folded.render(**v)) is type(plain.render(**v))
    counting.calls = 0
    folded.render(**values[0])
    if source.startswith(("{{ _(", "{% trans %}", '{{ pgettext("')) and "_(name)" not in source:
        assert counting.calls == 0, "fixed words were looked up at render time"


def test_every_template_renders_the_same_folded_or_not(db, tmp_path, monkeypatch):
    """Every template a realistic run renders (email, portal, rep, calendar; en and zh-CN customers;
    stages, a move, a withdrawal), rendered again without folding, gives the same text."""
    from jinja2 import Template

    from tests import world as w
    from tests.conftest import utc

    calls: list[tuple] = []
    template_render = Template.render

    def recording(self, *args, **context):
        calls.append((self.environment.loader, self.name, dict(*args, **context)))
        return template_render(self, *args, **context)

    monkeypatch.setattr(Template, "render", recording)
    D = dt.date
    w.product()
    w.milestone(D(2027, 9, 30))
    w.milestone(D(2027, 12, 31), version="3.18")
    w.customer("hooli", "Asia/Shanghai", locale="zh-CN", deploy=(("acp", "3.16"), ("acp", "3.18")))
    w.customer("initech", "America/New_York", deploy=(("acp", "3.16"),))
    w.run(utc(2026, 12, 1), utc(2027, 3, 30, 2), utc(2027, 7, 1, 2))
    w.move(D(2027, 10, 31), at=utc(2027, 7, 2), reason="internal only")
    w.run(utc(2027, 7, 2, 1))
    w.withdraw(at=utc(2027, 7, 3), version="3.18", reason="internal only")
    w.run(utc(2027, 7, 3, 1), utc(2027, 10, 1, 1))
    names = {name for _, name, _ in calls}
    assert {"email/templates/customer.html", "email/templates/customer.txt"} <= names, names
    assert {c["locale"] for _, _, c in calls} >= {"en", "zh-CN"}
    monkeypatch.setattr(Template, "render", template_render)
    for loader, name, context in calls:
        folded = templating._environment(loader, context["locale"]).get_template(name).render(context)
        plain = _plain_environment(i18n.translations(context["locale"]), True)
        plain.loader, plain.autoescape = loader, templating.options()["autoescape"]
        assert folded == plain.get_template(name).render(context), name
