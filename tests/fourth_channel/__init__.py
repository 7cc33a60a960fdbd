"""An example fourth channel, as a new channel is written: this folder (the class and its templates)
plus one line in `lifecycle/channels/registry.py` (here `monkeypatch.setitem(CHANNELS, "pager", ...)`).
It posts {"title", "text"} to the subscription's URL."""

from __future__ import annotations

import json
import time
from typing import ClassVar

from lifecycle.channels import http
from lifecycle.channels.base import SubscribedChannel


class PagerChannel(SubscribedChannel):
    name: ClassVar[str] = "pager"
    noun: ClassVar[str] = "page"
    title: ClassVar[str] = "Pager"

    def post_notice(self, config: dict, ctx: dict, locale: str, deadline: float | None) -> str | None:
        body = json.dumps(self.texts(ctx, locale)).encode()
        answer = http.post(
            config["url"],
            body,
            {"content-type": "application/json"},
            what="pager",
            deadline=deadline or time.monotonic() + 5,
            timeout=5,
        )
        if not answer.ok:
            raise http.error(answer, "pager")
        return None
