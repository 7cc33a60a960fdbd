"""Security headers on every response: a Content-Security-Policy, no framing, no referrer, no sniffing.

- Our pages (`pages.render_page`) carry their own policy: no scripts at all, the one `<style>` of
  web/base.html allowed by a per-response nonce, style attributes allowed (the portal shows our own
  HTML emails, which need them), forms posting only back to this site.
- The API docs (`/docs`) load Swagger UI from this site (`lifecycle.web.docs`: no CDN, so they work
  air-gapped) and start it with an inline script: their policy allows scripts from this site and that
  script by hash, computed from the page as served, and nothing else inline.
- Everything else (JSON, calendars, redirects) gets a policy that allows nothing.

`Referrer-Policy: no-referrer` matters most: acknowledgement links and calendar feeds carry their
secret in the URL, and a click from such a page must not hand it to another site.
"""

from __future__ import annotations

import base64
import hashlib
import re

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

COMMON = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}
NOTHING = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
DOCS_PATHS = ("/docs", "/docs/oauth2-redirect")
_INLINE_SCRIPT = re.compile(rb"<script(?![^>]*\bsrc=)[^>]*>(.*?)</script>", re.S | re.I)


def page_policy(nonce: str) -> str:
    return (
        "default-src 'self'; script-src 'none'; "
        f"style-src 'self' 'nonce-{nonce}'; style-src-attr 'unsafe-inline'; img-src 'self' data:; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
    )


def docs_policy(html: bytes) -> str:
    hashes = " ".join(
        f"'sha256-{base64.b64encode(hashlib.sha256(body).digest()).decode()}'"
        for body in _INLINE_SCRIPT.findall(html)
    )
    return (
        f"default-src 'self'; script-src 'self' {hashes}; "
        "style-src 'self' 'unsafe-inline'; img-src 'self' data:; font-src 'self' data:; "
        "worker-src 'self' blob:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; "
        "base-uri 'none'; object-src 'none'"
    )


class SecurityHeaders:
    """ASGI middleware: the common headers, and a policy for any response that has none of its own."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["path"] in DOCS_PATHS:
            await self._docs(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                _add(message, NOTHING)
            await send(message)

        await self.app(scope, receive, send_with_headers)

    async def _docs(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Hold the (small) docs page until it is whole, to hash its inline scripts."""
        start: Message | None = None
        body = bytearray()

        async def hold(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                start = message
                return
            if message["type"] == "http.response.body":
                body.extend(message.get("body", b""))
                if message.get("more_body"):
                    return
                assert start is not None  # ASGI: the response starts before its body
                _add(start, docs_policy(bytes(body)))
                await send(start)
                await send({"type": "http.response.body", "body": bytes(body)})
                return
            await send(message)

        await self.app(scope, receive, hold)


def _add(start: Message, policy: str) -> None:
    headers = MutableHeaders(scope=start)
    for name, value in COMMON.items():
        if name not in headers:
            headers[name] = value
    if "content-security-policy" not in headers:
        headers["Content-Security-Policy"] = policy
