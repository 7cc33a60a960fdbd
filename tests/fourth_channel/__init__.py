"""An example fourth channel, as a new channel is written: this folder (the class and its templates)
plus one line in `lifecycle/channels/registry.py` (here `monkeypatch.setitem(CHANNELS, "pager", ...)`).
It posts {"title", "text"} to the subscription's URL."""

from __future__ import annotations

import datetime as dt
import json
import time
from typing import ClassVar

from lifecycle.channels import http
from lifecycle.channels.base import Batch, SubscribedChannel, test_context
from lifecycle.channels.secrets import unseal


class PagerChannel(SubscribedChannel):
    name: ClassVar[str] = "pager"
    noun: ClassVar[str] = "page"
    title: ClassVar[str] = "Pager"

    def send(
        self, batch: Batch, *, at: dt.datetime, session=None, deadline: float | None = None
    ) -> str | None:
        return self.post(
            unseal(batch.subscription["config"]), batch.items[0].context, batch.customer["locale"], deadline
        )

    def send_test(self, config: dict, customer: dict, *, deadline: float) -> str | None:
        return self.post(config, test_context(customer, customer["locale"]), customer["locale"], deadline)

    def post(self, config: dict, ctx: dict, locale: str, deadline: float | None) -> str | None:
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
