"""Customer-facing page text in the customer's locale, through the message catalogs (`lifecycle.i18n`).

Only the pages a customer sees (portal, notice, acknowledgement page, channels, and the frame around
them) are translated; the rep and PM pages are the vendor's own and stay English. Pages call
`t("English text", name=value)` (in templates and in Python); `make messages` extracts those calls
and `tests/test_i18n.py` fails on a catalog entry that is untranslated or fuzzy. Chinese text uses
full-width punctuation (：，（）).
"""

from __future__ import annotations

from collections.abc import Callable

from lifecycle import i18n
from lifecycle.i18n import N_

# Words the pages translate from a value (`t(c.state)`, `t(h.channel)`), so they are marked here.
PAGE_VALUES = (
    N_("withdrawn"),
    # how an agreement reached us (lifecycle.agreements.CHANNELS)
    N_("web"),
    N_("email-link"),
    N_("phone"),
    N_("api"),
    N_("cli"),
    N_("import"),
    # a channel subscription's state and the channels' titles
    N_("working"),
    N_("untested"),
    N_("failing"),
    N_("disabled"),
    N_("Signed webhook"),
    N_("Slack"),
    N_("Microsoft Teams"),
)


def translator(locale: str | None) -> Callable[..., str]:
    """`t(text, **values)`: `text` in `locale`, with `{name}` placeholders filled."""
    locale = i18n.supported(locale)

    def t(text: str, **values) -> str:
        return i18n.gettext_in(locale, text, **values)

    t.locale = locale  # type: ignore[attr-defined]
    return t
