"""The FastAPI application. Each area lives in its own module with a `router`."""

from __future__ import annotations

import importlib

from fastapi import FastAPI

from lifecycle import __version__

# Modules under lifecycle.web that expose `router`, in the order they are mounted.
ROUTER_MODULES = ("calendars", "webhooks", "ack", "api", "pages")


def create_app() -> FastAPI:
    app = FastAPI(title="lifecycle", version=__version__,
                  description="Product-lifecycle notices: registry, portal inbox, agreements, calendar feeds.")
    for name in ROUTER_MODULES:
        try:
            module = importlib.import_module(f"lifecycle.web.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"lifecycle.web.{name}":
                raise
            continue
        app.include_router(module.router)

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict:
        return {"ok": True}

    return app
