"""One Jinja2 environment per locale for every template, autoescaped for HTML.

Two roots: `templates/` (web pages: `web/...`) and `lifecycle/channels/`, where each channel keeps its
own message templates, one per message whatever the language (`<channel>/templates/<file>`, e.g.
`email/templates/customer.txt`). Templates mark their words with `{% trans %}` or `_()` (Jinja2's i18n
extension); each locale's environment has that locale's catalog installed (`lifecycle.i18n`).
Jinja2 itself is imported when a template is first rendered (commands that render nothing start fast)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lifecycle import i18n

if TYPE_CHECKING:
    from jinja2 import BaseLoader, Environment

TEMPLATES_DIR = Path(__file__).resolve().parent.parent / "templates"
CHANNELS_DIR = Path(__file__).resolve().parent / "channels"


def options() -> dict[str, Any]:
    """The options babel.cfg gives the extractor too, so the messages it finds are the ones rendered."""
    from jinja2 import StrictUndefined, select_autoescape

    return {
        "autoescape": select_autoescape(enabled_extensions=("html", "htm", "xml"), default_for_string=False),
        "undefined": StrictUndefined,
        "trim_blocks": True,
        "lstrip_blocks": True,
        "keep_trailing_newline": True,
        "extensions": ["jinja2.ext.i18n"],
    }


def _environment(loader: BaseLoader, locale: str) -> Environment:
    from jinja2 import Environment

    # Templates do not change while a process runs: no stat of the file at every render (auto_reload).
    env = Environment(loader=loader, auto_reload=False, **options())
    env.install_gettext_translations(i18n.translations(locale), newstyle=True)  # type: ignore[attr-defined]
    return env


@lru_cache
def environment(locale: str = i18n.SOURCE_LOCALE) -> Environment:
    from jinja2 import FileSystemLoader

    return _environment(FileSystemLoader([str(TEMPLATES_DIR), str(CHANNELS_DIR)]), i18n.supported(locale))


def render(name: str, locale: str = i18n.SOURCE_LOCALE, **context) -> str:
    return environment(locale).get_template(name).render(locale=i18n.supported(locale), **context)


@lru_cache
def folder_environment(folder: str, locale: str = i18n.SOURCE_LOCALE) -> Environment:
    """An environment rooted at one folder: a channel's own `templates/` (a channel can live anywhere)."""
    from jinja2 import FileSystemLoader

    return _environment(FileSystemLoader(folder), i18n.supported(locale))


def render_in(folder: Path, name: str, locale: str = i18n.SOURCE_LOCALE, **context) -> str:
    return (
        folder_environment(str(folder), locale)
        .get_template(name)
        .render(locale=i18n.supported(locale), **context)
    )
