"""What orchestrators and Prometheus ask: `GET /metrics` (lifecycle.metrics, read from the database at
scrape time), `GET /readyz` (the database and the broker answer; 503 naming what is down). `GET /healthz`
(the process answers) is in lifecycle.web.app."""

from __future__ import annotations

import hmac
import logging
import os

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from lifecycle import metrics
from lifecycle.config import get_settings
from lifecycle.db import get_engine
from lifecycle.web.auth import now

router = APIRouter(include_in_schema=False)
log = logging.getLogger(__name__)

CHECK_TIMEOUT = 3.0  # seconds a readiness check may take


@router.get("/metrics")
def get_metrics(request: Request) -> Response:
    token = get_settings().metrics_token
    if token:
        given = request.headers.get("authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            return Response(
                "a bearer token is required (LIFECYCLE_METRICS_TOKEN)\n",
                status_code=401,
                media_type="text/plain",
                headers={"WWW-Authenticate": "Bearer"},
            )
    body, content_type = metrics.exposition(get_engine, now)
    return Response(body, media_type=content_type, headers={"Cache-Control": "no-store"})


def _database() -> str | None:
    try:
        with get_engine().connect() as conn:
            conn.exec_driver_sql("SELECT 1")
    except Exception as exc:  # noqa: BLE001 - the answer names it
        return _problem("database", exc)
    return None


def _problem(what: str, exc: Exception) -> str:
    """The log gets the detail; the unauthenticated answer only the kind of failure (no hosts, no URLs)."""
    log.warning("readyz: the %s does not answer: %s", what, exc)
    return f"not reachable ({type(exc).__name__})"


def _broker() -> str | None:
    settings = get_settings()
    url = settings.broker_url
    if not url:  # the no-server broker: a folder in the state directory that must be writable
        folder = settings.state_dir / "broker" / "queue"
        if folder.is_dir() and not os.access(folder, os.W_OK | os.X_OK):
            return f"the broker folder {folder} is not writable"
        if not folder.is_dir() and not os.access(
            settings.state_dir if settings.state_dir.is_dir() else ".", os.W_OK | os.X_OK
        ):
            return f"the state folder {settings.state_dir} cannot hold the broker"
        return None
    from kombu import Connection

    try:
        with Connection(url, connect_timeout=CHECK_TIMEOUT) as conn:
            conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=CHECK_TIMEOUT)
    except Exception as exc:  # noqa: BLE001 - the answer names it
        return _problem("broker", exc)
    return None


@router.get("/readyz")
def readyz() -> JSONResponse:
    checks = {"database": _database(), "broker": _broker()}
    down = [name for name, problem in checks.items() if problem]
    body = {
        "ready": not down,
        "down": down,
        "checks": {name: problem or "ok" for name, problem in checks.items()},
    }
    return JSONResponse(body, status_code=503 if down else 200, headers={"Cache-Control": "no-store"})
