"""One Jinja2 environment per locale for every template, autoescaped for HTML.

Two roots: `templates/` (web pages: `web/...`) and `lifecycle/channels/`, where each channel keeps its
own message templates, one per message whatever the language (`<channel>/templates/<file>`, e.g.
`email/templates/customer.txt`). Templates mark their words with `{% trans %}` or `_()` (Jinja2's i18n
extension); each locale's environment has that locale's catalog installed (`lifecycle.i18n`).
Jinja2 itself is imported when a template is first rendered (commands that render nothing start fast).

An environment belongs to one locale, so a message whose words are fixed (`_("...")`, `{% trans %}`
with or without `%(name)s` values, `pgettext`) is looked up in the catalog once, when the template is
compiled, not at every render (`fold_translations`): what is rendered is the same, a catalog lookup
and two context calls fewer per message. Plural forms (`ngettext`, `{% trans count=... %}`) depend on
the number and are still chosen at render time."""

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


_FOLDED = {"_": 1, "gettext": 1, "pgettext": 2}  # the names that translate fixed words, and their arguments


def fold_translations(tree, translations):
    """`tree` (a parsed template) with every call of `_`, `gettext` or `pgettext` on fixed words
    replaced by its translation in `translations`, formatted as Jinja2's newstyle gettext formats it:
    the catalog's text marked safe where autoescaping is on, then `% {name: value}` (which escapes the
    values, and turns `%%` into `%`). A template that assigns one of these names is left as it is."""
    from jinja2 import nodes

    if any(n.name in _FOLDED for n in tree.find_all(nodes.Name) if n.ctx != "load"):
        return tree

    from jinja2.visitor import NodeTransformer

    class Fold(NodeTransformer):
        def visit_Call(self, node):
            node = self.generic_visit(node)
            callee = node.node
            if not (
                isinstance(callee, nodes.Name)
                and callee.name in _FOLDED
                and len(node.args) == _FOLDED[callee.name]
                and all(isinstance(a, nodes.Const) and isinstance(a.value, str) for a in node.args)
                and node.dyn_args is None
                and node.dyn_kwargs is None
            ):
                return node
            words = [a.value for a in node.args]
            text = (
                translations.pgettext(*words) if callee.name == "pgettext" else translations.gettext(words[0])
            )
            values = nodes.Dict([nodes.Pair(nodes.Const(k.key), k.value) for k in node.kwargs])
            return nodes.Mod(nodes.MarkSafeIfAutoescape(nodes.Const(text)), values).set_lineno(node.lineno)

    return Fold().visit(tree)


def _environment(loader: BaseLoader, locale: str) -> Environment:
    from jinja2 import Environment

    translations = i18n.translations(locale)

    class LocaleEnvironment(Environment):
        def _parse(self, source, name, filename):
            return fold_translations(super()._parse(source, name, filename), translations)

    # Templates do not change while a process runs: no stat of the file at every render (auto_reload).
    env = LocaleEnvironment(loader=loader, auto_reload=False, **options())
    env.install_gettext_translations(translations, newstyle=True)  # type: ignore[attr-defined]
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
