"""The one translation mechanism: gettext message catalogs, for every text a person reads.

English is the source language: the messages in the code and the templates are English, and
`lifecycle/locale/<locale>/LC_MESSAGES/messages.po` (Babel's layout; `zh_CN` for `zh-CN`) holds one
catalog per other language. Templates mark their text with `_()`, `ngettext()` and `pgettext()`
(Jinja2's i18n extension, new style: `%(name)s` placeholders filled by keyword), installed per locale
by `lifecycle.templating`; Python code marks the texts it keeps in tables with `N_()` and translates
them with `gettext_in(locale, ...)` / `ngettext_in(...)` (`{name}` placeholders); the web pages' `t()`
is the same lookup. Dates are formatted with a CLDR pattern that is itself a message ("d MMMM y",
"y年M月d日"), so a new language brings its own date format with its catalog.

`make messages` extracts the messages (babel.cfg) and updates every catalog; `make compile-messages`
writes `.mo` files, which are generated and never committed. Without them (a fresh clone, an editable
install) a catalog is compiled in memory from its `.po` on first use. Adding a language is adding a
catalog: `make new-language LOCALE=fr`, translate it, done (`locales()` finds it).
"""

from __future__ import annotations

import datetime as dt
import gettext as _gettext
import io
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from babel.messages.catalog import Catalog

LOCALE_DIR = Path(__file__).resolve().parent / "locale"
DOMAIN = "messages"
SOURCE_LOCALE = "en"


def N_(message: str) -> str:
    """Marks a message for extraction where it is defined; it is translated where it is shown."""
    return message


def catalog_name(locale: str) -> str:
    """The catalog folder of a locale: 'zh-CN' -> 'zh_CN' (Babel's and gettext's spelling)."""
    return locale.replace("-", "_")


@lru_cache
def locales() -> tuple[str, ...]:
    """Every locale a customer or rep may have: English and one per catalog, in `lifecycle/locale/`."""
    found = sorted(
        p.parent.parent.name.replace("_", "-") for p in LOCALE_DIR.glob(f"*/LC_MESSAGES/{DOMAIN}.po")
    )
    return (SOURCE_LOCALE, *(loc for loc in found if loc != SOURCE_LOCALE))


def supported(locale: str | None) -> str:
    """`locale` when there is a catalog for it, else English."""
    return locale if locale in locales() else SOURCE_LOCALE


@lru_cache
def translations(locale: str | None) -> _gettext.NullTranslations:
    """The compiled catalog of `locale` (no catalog: the English messages as they are).

    A `.mo` file is used when `make compile-messages` wrote one that is not older than its `.po`;
    otherwise the `.po` is compiled in memory (fuzzy entries are never used)."""
    locale = supported(locale)
    if locale == SOURCE_LOCALE:
        return _gettext.NullTranslations()
    folder = LOCALE_DIR / catalog_name(locale) / "LC_MESSAGES"
    po, mo = folder / f"{DOMAIN}.po", folder / f"{DOMAIN}.mo"
    if mo.exists() and mo.stat().st_mtime >= po.stat().st_mtime:
        with mo.open("rb") as f:
            return _gettext.GNUTranslations(f)
    from babel.messages.mofile import write_mo
    from babel.messages.pofile import read_po

    with po.open("rb") as f:
        catalog = read_po(f, locale=catalog_name(locale), domain=DOMAIN)
    buf = io.BytesIO()
    write_mo(buf, catalog, use_fuzzy=False)
    buf.seek(0)
    return _gettext.GNUTranslations(buf)


def gettext_in(locale: str | None, message: str, **values) -> str:
    """`message` in `locale`, with `{name}` placeholders filled from `values`."""
    if not message:
        return message  # gettext("") is the catalog's header
    out = translations(locale).gettext(message)
    return out.format(**values) if values else out


def ngettext_in(locale: str | None, singular: str, plural: str, n: int, **values) -> str:
    """The singular or plural message for `n` in `locale` (`{n}` is filled in)."""
    return translations(locale).ngettext(singular, plural, n).format(n=n, **values)


def pgettext_in(locale: str | None, context: str, message: str, **values) -> str:
    """`message` in `locale` where the same English words need another translation in `context`."""
    out = translations(locale).pgettext(context, message)
    return out.format(**values) if values else out


DATE_PATTERN = N_("d MMMM y")  # CLDR pattern: "31 March 2027"; zh-CN: "y年M月d日"


@lru_cache(maxsize=8192)  # Babel takes about 0.1 ms a date; a message lists the same few dates
def format_date(day: dt.date | None, locale: str | None) -> str:
    """A calendar date as the locale writes it in running text."""
    if day is None:
        return ""
    from babel.dates import format_date as babel_format_date

    return babel_format_date(day, gettext_in(locale, DATE_PATTERN), locale=catalog_name(supported(locale)))


def catalog(locale: str) -> Catalog:
    """The Babel catalog (`babel.messages.catalog.Catalog`) of a locale's `.po`, as translators edit it."""
    from babel.messages.pofile import read_po

    with (LOCALE_DIR / catalog_name(locale) / "LC_MESSAGES" / f"{DOMAIN}.po").open("rb") as f:
        return read_po(f, locale=catalog_name(locale), domain=DOMAIN)


def messages(locale: str) -> dict[str, str]:
    """English message -> its translation in `locale` (the singular of a plural message; no context)."""
    out: dict[str, str] = {}
    for m in catalog(locale):
        if m.id and not m.context:
            msgid = m.id if isinstance(m.id, str) else m.id[0]
            out[msgid] = m.string if isinstance(m.string, str) else (m.string[0] if m.string else "")
    return out
