"""Microsoft Teams through a Workflows webhook ("When a Teams webhook request is received"): one
Adaptive Card per delivery in the customer's language (templates/<locale>/), with the acknowledgement
link as an action. Workflows answer 202 Accepted. 429 and 5xx are transient; other 4xx permanent and
named (`ERRORS`). The workflow URL carries its signature (`sig=`): it is sealed at rest.
"""

from __future__ import annotations

import json
import time
from typing import ClassVar

from lifecycle.channels import http
from lifecycle.channels.base import SubscribedChannel
from lifecycle.config import get_settings

ERRORS = {
    400: "Teams refused the card as invalid",
    401: "the workflow URL is not valid any more (its signature was changed)",
    403: "the workflow is not allowed to post (its owner or policy changed)",
    404: "the workflow no longer exists",
}


def card(texts: dict[str, str], ctx: dict) -> dict:
    """The Workflows envelope around one Adaptive Card."""
    actions = []
    if ctx.get("ack_url") and ctx["kind"] != "withdrawn":
        actions.append({"type": "Action.OpenUrl", "title": texts["ack"], "url": ctx["ack_url"]})
    if ctx.get("calendar_url") and ctx["kind"] not in ("test", "channel-disabled"):
        actions.append({"type": "Action.OpenUrl", "title": texts["calendar"], "url": ctx["calendar_url"]})
    content = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "lang": ctx.get("locale") or "en",
        "body": [
            {"type": "TextBlock", "text": texts["title"], "weight": "Bolder", "size": "Medium", "wrap": True},
            {"type": "TextBlock", "text": texts["text"], "wrap": True},
        ],
    }
    if actions:
        content["actions"] = actions
    return {
        "type": "message",
        "attachments": [
            {"contentType": "application/vnd.microsoft.card.adaptive", "contentUrl": None, "content": content}
        ],
    }


class TeamsChannel(SubscribedChannel):
    name: ClassVar[str] = "teams"
    noun: ClassVar[str] = "Teams message"  # what one message is called in reports
    title: ClassVar[str] = "Microsoft Teams"
    text_names: ClassVar[tuple[str, ...]] = ("title", "text", "ack", "calendar")

    def post_notice(self, config: dict, ctx: dict, locale: str, deadline: float | None) -> str | None:
        settings = get_settings()
        body = json.dumps(card(self.texts(ctx, locale), ctx), ensure_ascii=False).encode("utf-8")
        answer = http.post(
            config["url"],
            body,
            {"content-type": "application/json"},
            what="Teams",
            deadline=deadline if deadline is not None else time.monotonic() + settings.send_deadline,
            timeout=settings.channel_timeout,
        )
        if not answer.ok:
            raise http.error(answer, "Teams", ERRORS.get(answer.status))
        return answer.headers.get("x-ms-workflow-run-id")
