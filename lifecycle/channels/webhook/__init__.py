"""A signed webhook, as the Standard Webhooks specification has it (the `standardwebhooks` package).

Each delivery is one POST of a versioned JSON payload (`payload.v1.schema.json` beside this file) with
the headers `webhook-id` (the delivery id: a receiver deduplicates on it, so a send repeated after an
unknown outcome is harmless), `webhook-timestamp` (the real time of the request: receivers refuse
stale ones to stop replays, so it is the wall clock, not the simulated `--at`) and `webhook-signature`
(`v1,` HMAC-SHA256 with the subscription's own secret, `whsec_...`, shown to the customer once when
the subscription is added). 2xx is sent; 4xx other than 408/429 is permanent; 429, 5xx and timeouts
are retried from the delivery row (lifecycle.channels.http).
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

from lifecycle.channels import http
from lifecycle.channels.base import Batch, SubscribedChannel
from lifecycle.channels.secrets import unseal
from lifecycle.config import get_settings

SCHEMA_PATH = Path(__file__).resolve().parent / "payload.v1.schema.json"
VERSION = 1


def new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode("ascii")


def _date(value) -> str | None:
    return value.isoformat() if value else None


def payload(ctx: dict, customer: dict, message_id: str, texts: dict[str, str]) -> dict:
    """The JSON a receiver gets for one notice (see the schema)."""
    has_milestone = bool(ctx.get("milestone_kind"))
    return {
        "type": "lifecycle.test" if ctx["kind"] == "test" else "lifecycle.notice",
        "version": VERSION,
        "id": message_id,
        "notice": {"id": ctx["notice_id"], "kind": ctx["kind"], "stage": ctx["stage"], "lead": ctx["lead"]},
        "customer": {"key": customer["key"], "name": customer["name"]},
        "product": {"slug": ctx["product_slug"], "name": ctx["product_name"]}
        if ctx["product_slug"]
        else None,
        "release": {"version": ctx["version"], "upgrade_to": ctx["upgrade_to"]} if ctx["version"] else None,
        "milestone": {
            "kind": ctx["milestone_kind"],
            "date": _date(ctx["date"]),
            "previous_date": _date(ctx.get("old_date")),
        }
        if has_milestone
        else None,
        "stage_date": _date(ctx["stage_date"]),
        "days_left": ctx["days_left"],
        "ack_url": ctx["ack_url"] if ctx["kind"] != "withdrawn" else None,
        "calendar_url": ctx["calendar_url"],
        "message": {"locale": ctx["locale"], **texts},
    }


class WebhookChannel(SubscribedChannel):
    name: ClassVar[str] = "webhook"
    noun: ClassVar[str] = "webhook call"  # what one message is called in reports
    title: ClassVar[str] = "Signed webhook"
    clock: Callable[[], float] = staticmethod(time.time)  # the webhook-timestamp (see the docstring)

    def new_secrets(self, url: str) -> tuple[dict, dict]:
        secret = new_secret()
        return {"url": url, "secret": secret}, {"secret": secret}

    def send(
        self, batch: Batch, *, at: dt.datetime, session=None, deadline: float | None = None
    ) -> str | None:
        item = batch.items[0]  # one delivery per message (not a digest)
        assert batch.subscription is not None  # a subscribed channel's batch carries its subscription
        config = unseal(batch.subscription["config"])
        message_id = str(item.delivery_id)
        body = payload(
            item.context, batch.customer, message_id, self.texts(item.context, batch.customer["locale"])
        )
        return self.post(config, message_id, body, deadline)

    def send_test(self, config: dict, customer: dict, *, deadline: float) -> str | None:
        from lifecycle.channels.base import test_context

        message_id = f"test-{secrets.token_hex(8)}"
        ctx = test_context(customer, customer["locale"])
        return self.post(
            config,
            message_id,
            payload(ctx, customer, message_id, self.texts(ctx, customer["locale"])),
            deadline,
        )

    def post(self, config: dict, message_id: str, body: dict, deadline: float | None) -> str:
        from standardwebhooks import Webhook

        settings = get_settings()
        data = json.dumps(body, ensure_ascii=False, separators=(",", ":"))
        stamp = dt.datetime.fromtimestamp(int(self.clock()), dt.UTC)
        headers = {
            "content-type": "application/json",
            "user-agent": "lifecycle-webhooks/1",
            "webhook-id": message_id,
            "webhook-timestamp": str(int(stamp.timestamp())),
            "webhook-signature": Webhook(config["secret"]).sign(message_id, stamp, data),
        }
        answer = http.post(
            config["url"],
            data.encode("utf-8"),
            headers,
            what="webhook",
            deadline=deadline if deadline is not None else time.monotonic() + settings.send_deadline,
            timeout=settings.channel_timeout,
        )
        if not answer.ok:
            raise http.error(answer, "webhook")
        return message_id
