"""One Jinja2 environment for every template, autoescaped for HTML.

Two roots: `templates/` (web pages: `web/...`) and `lifecycle/channels/`, where each channel keeps its
own message templates, named `<channel>/templates/<locale>/<file>` (e.g. `email/templates/en/customer.txt`)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # jinja2 is imported when a template is first rendered
    from jinja2 import Environment

TEMPLATES_DIR = Path(__file__).resolve().parent.parent / "templates"
CHANNELS_DIR = Path(__file__).resolve().parent / "channels"


@lru_cache
def environment() -> Environment:
    from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

    env = Environment(
        loader=FileSystemLoader([str(TEMPLATES_DIR), str(CHANNELS_DIR)]),
        autoescape=select_autoescape(enabled_extensions=("html", "htm", "xml"), default_for_string=False),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    return env


def render(name: str, **context) -> str:
    return environment().get_template(name).render(**context)


@lru_cache
def folder_environment(folder: str) -> Environment:
    """An environment rooted at one folder: a channel's own `templates/` (a channel can live anywhere)."""
    from jinja2 import FileSystemLoader

    env = environment().overlay(loader=FileSystemLoader(folder))
    return env


def render_in(folder: Path, name: str, **context) -> str:
    return folder_environment(str(folder)).get_template(name).render(**context)
