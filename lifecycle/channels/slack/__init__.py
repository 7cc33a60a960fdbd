"""Slack through an incoming webhook, with `slack_sdk`'s `WebhookClient`: one Block Kit message per
delivery in the customer's language (templates/<locale>/), the acknowledgement link as a button.

The client sends once (no retry handlers: the delivery row owns retries) through connections bounded
by the send deadline. Slack's answers: 200 "ok" is sent; 429 and 5xx are transient; its 4xx error
bodies are permanent and named (`ERRORS`): a revoked or removed webhook, an archived channel, a
refused payload. The webhook URL is the credential: it is sealed at rest and never shown again.
"""

from __future__ import annotations

import time
from functools import cache
from typing import ClassVar

from lifecycle.channels import http
from lifecycle.channels.base import SubscribedChannel
from lifecycle.config import get_settings
from lifecycle.errors import DeliveryError
from lifecycle.mailers.deadline import SendDeadline, deadline_opener

# Slack's error bodies, in words a customer or rep can act on.
ERRORS = {
    "invalid_payload": "Slack refused the message as invalid",
    "invalid_token": "the webhook is no longer valid (revoked, or the app was removed)",
    "no_service": "the webhook was disabled or removed",
    "no_service_id": "the webhook URL is incomplete",
    "no_team": "the Slack workspace no longer exists",
    "team_disabled": "the Slack workspace is disabled",
    "channel_not_found": "the Slack channel no longer exists",
    "channel_is_archived": "the Slack channel is archived",
    "action_prohibited": "a Slack admin restricted posting to this channel",
    "posting_to_general_channel_denied": "only admins may post to this Slack channel",
    "too_many_attachments": "Slack refused the message as too large",
}


def _escape(text: str) -> str:
    """Slack's mrkdwn control characters, escaped as Slack asks."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


@cache
def _deadline_client():
    """The client class, made on first use: slack_sdk is imported only by a process that sends to Slack."""
    from slack_sdk.webhook import WebhookClient
    from slack_sdk.webhook.webhook_response import WebhookResponse

    class _DeadlineClient(WebhookClient):
        """WebhookClient whose one HTTP request obeys a SendDeadline (its own timeout is per operation)."""

        def __init__(self, url: str, deadline: SendDeadline, timeout: float):
            super().__init__(url, timeout=int(max(timeout, 1)), retry_handlers=[])
            self.deadline = deadline

        def _perform_http_request_internal(self, url, req):
            response = deadline_opener(self.deadline).open(req, timeout=self.deadline.timeout(self.timeout))
            body = response.read().decode(response.headers.get_content_charset() or "utf-8", "replace")
            return WebhookResponse(url=url, status_code=response.status, body=body, headers=response.headers)

    return _DeadlineClient


def blocks(texts: dict[str, str], ctx: dict) -> list[dict]:
    out: list[dict] = [
        {"type": "header", "text": {"type": "plain_text", "text": texts["title"][:150], "emoji": False}},
        {"type": "section", "text": {"type": "mrkdwn", "text": _escape(texts["text"])[:3000]}},
    ]
    buttons = []
    if ctx.get("ack_url") and ctx["kind"] != "withdrawn":
        buttons.append(
            {
                "type": "button",
                "action_id": "ack",
                "style": "primary",
                "url": ctx["ack_url"],
                "text": {"type": "plain_text", "text": texts["ack"][:75]},
            }
        )
    if ctx.get("calendar_url") and ctx["kind"] not in ("test", "channel-disabled"):
        buttons.append(
            {
                "type": "button",
                "action_id": "calendar",
                "url": ctx["calendar_url"],
                "text": {"type": "plain_text", "text": texts["calendar"][:75]},
            }
        )
    if buttons:
        out.append({"type": "actions", "elements": buttons})
    return out


class SlackChannel(SubscribedChannel):
    name: ClassVar[str] = "slack"
    noun: ClassVar[str] = "Slack message"  # what one message is called in reports
    title: ClassVar[str] = "Slack"
    text_names: ClassVar[tuple[str, ...]] = ("title", "text", "ack", "calendar")

    def post_notice(self, config: dict, ctx: dict, locale: str, deadline: float | None) -> str | None:
        settings = get_settings()
        texts = self.texts(ctx, locale)
        limit = SendDeadline(deadline if deadline is not None else time.monotonic() + settings.send_deadline)
        if limit.remaining() <= 0:
            raise DeliveryError("Slack not called: the send deadline had already passed")
        client = _deadline_client()(config["url"], limit, settings.channel_timeout)
        try:
            with limit:
                response = client.send(text=texts["title"], blocks=blocks(texts, ctx), unfurl_links=False)
            if limit.expired:
                raise OSError("cut off by the send deadline")
        except Exception as exc:  # noqa: BLE001 - no answer: refused, reset, timed out
            why = (
                "no complete answer within the send deadline"
                if limit.passed
                else f"{type(exc).__name__}: {exc}"
            )
            if limit.written:
                raise DeliveryError(
                    f"Slack outcome unknown: the request was sent, then {why}", unknown=True
                ) from None
            raise DeliveryError(f"Slack unreachable: {why}") from None
        answer = http.Answer(
            status=response.status_code,
            body=(response.body or "")[: http.MAX_BODY],
            headers={k.lower(): v for k, v in (response.headers or {}).items()},
        )
        if answer.ok and answer.body.strip() in ("ok", ""):
            return None
        code = answer.body.strip()
        detail = f"{code}: {ERRORS[code]}" if code in ERRORS else None
        if answer.ok:  # a 200 that is not "ok": Slack did not post it
            raise DeliveryError(f"Slack {answer.status}: {detail or code[:300]}", permanent=code in ERRORS)
        raise http.error(answer, "Slack", detail)
