"""The FastAPI application. Each area lives in its own module with a `router`; security headers and
failed-attempt limits (one `ratelimit.Limits` per app) apply to all of them."""

from __future__ import annotations

import importlib

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from lifecycle import __version__
from lifecycle.web.headers import SecurityHeaders
from lifecycle.web.ratelimit import Limits

# Modules under lifecycle.web that expose `router`, in the order they are mounted.
ROUTER_MODULES = ("calendars", "webhooks", "ack", "api", "products", "pages", "docs", "metrics")


def _utf8_safe(value):
    if isinstance(value, str):
        return value.encode("utf-8", "replace").decode("utf-8")
    if isinstance(value, list):
        return [_utf8_safe(v) for v in value]
    if isinstance(value, dict):
        return {k: _utf8_safe(v) for k, v in value.items()}
    return value


def create_app() -> FastAPI:
    # /docs is served from the package (lifecycle.web.docs), not from FastAPI's CDN-loading page.
    app = FastAPI(
        title="lifecycle",
        version=__version__,
        docs_url=None,
        redoc_url=None,
        description="Product-lifecycle notices: registry, portal inbox, agreements, calendar feeds.",
    )
    for name in ROUTER_MODULES:
        app.include_router(importlib.import_module(f"lifecycle.web.{name}").router)
    app.state.limits = Limits()
    app.add_middleware(SecurityHeaders)

    @app.exception_handler(RequestValidationError)
    async def _invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        """FastAPI's 422, with inputs that cannot be written as UTF-8 (a lone surrogate) made safe."""
        return JSONResponse(status_code=422, content={"detail": _utf8_safe(jsonable_encoder(exc.errors()))})

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict:
        return {"ok": True}

    return app
