"""`POST /webhooks/sendgrid`: SendGrid's signed event webhook.

The signature covers the exact bytes SendGrid sent, so the raw body is verified before it is parsed.
Nothing is touched unless the post is signed with the configured key and fresh (a replayed post older
than LIFECYCLE_SENDGRID_WEBHOOK_MAX_AGE seconds is refused). SendGrid retries anything but a 2xx, and
events are deduplicated, so a retry is harmless.
"""

from __future__ import annotations

import datetime as dt

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sendgrid.helpers.eventwebhook.eventwebhook_header import EventWebhookHeader
from starlette.concurrency import run_in_threadpool

from lifecycle.config import get_settings
from lifecycle.db import session_scope
from lifecycle.errors import InputError, LifecycleError
from lifecycle.loader import parse_json_bytes
from lifecycle.webhooks import apply_events, load_public_key, verify

router = APIRouter(prefix="/webhooks", tags=["webhooks"])

# SendGrid posts a batch every 30 seconds or at 768 KB; anything far larger is not SendGrid, and it is
# refused before the (unauthenticated) sender can make us buffer it.
MAX_BODY = 5 * 1024 * 1024


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"detail": message}, status_code=status)


def _apply(events: list[dict], at: dt.datetime) -> dict:
    with session_scope() as session:
        return apply_events(session, events, at)


@router.post("/sendgrid", summary="SendGrid event webhook (signed)")
async def sendgrid_events(request: Request) -> JSONResponse:
    at = dt.datetime.now(dt.UTC)
    settings = get_settings()
    if not settings.sendgrid_webhook_public_key:
        return _error(
            503, "the SendGrid event webhook is not configured (LIFECYCLE_SENDGRID_WEBHOOK_PUBLIC_KEY)"
        )
    try:
        key = load_public_key(settings.sendgrid_webhook_public_key)
    except LifecycleError as exc:
        return _error(503, str(exc))
    received = bytearray()
    async for chunk in request.stream():
        received += chunk
        if len(received) > MAX_BODY:
            return _error(413, f"the body is larger than {MAX_BODY} bytes")
    body = bytes(received)
    signature = request.headers.get(EventWebhookHeader.SIGNATURE)
    timestamp = request.headers.get(EventWebhookHeader.TIMESTAMP)
    if not verify(key, body, signature, timestamp, now=at, max_age=settings.sendgrid_webhook_max_age):
        return _error(401, "missing, invalid or stale event webhook signature")
    try:  # size and depth limited before parsing: a body nested 100,000 deep is a 400, not a 500
        events = parse_json_bytes(body, max_bytes=MAX_BODY)
    except InputError as exc:
        return _error(400, f"the body is not acceptable JSON: {exc.message}")
    if not isinstance(events, list) or not all(isinstance(e, dict) for e in events):
        return _error(400, "the body must be a JSON list of event objects")
    counts = await run_in_threadpool(_apply, events, at)
    return JSONResponse(counts)
