"""Loopback receivers for the HTTP channels, answering like the real ones over real HTTP.

- `webhook`: a Standard Webhooks receiver: every request is verified with the `standardwebhooks`
  library (the subscription's secret) and its body validated against the payload's JSON Schema; a
  request that fails either is answered 400 and recorded with the reason.
- `slack`: an incoming webhook: 200 "ok" (Slack's own answer), or a queued Slack error body.
- `teams`: a Workflows webhook: 202 Accepted, or a queued error.

`queue(status, body, headers)` sets the next answers (then the default again); `requests` records
every request (headers, raw body, parsed JSON, whether it verified). Use as a context manager.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from jsonschema import Draft202012Validator
from standardwebhooks import Webhook

from lifecycle.channels.webhook import SCHEMA_PATH

SCHEMA = Draft202012Validator(
    json.loads(SCHEMA_PATH.read_text()), format_checker=Draft202012Validator.FORMAT_CHECKER
)
DEFAULT = {"webhook": (204, ""), "slack": (200, "ok"), "teams": (202, "")}


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    raw: bytes
    body: object
    status: int = 0
    verified: bool = False
    problem: str | None = None


class _Server(ThreadingHTTPServer):
    request_queue_size = 128  # socketserver's backlog of 5 makes concurrent senders wait a second


@dataclass
class Receiver:
    kind: str
    secret: str | None = None  # the webhook's signing secret (from `channel add`)
    requests: list[Received] = field(default_factory=list)
    _queue: list[tuple[int, str, dict]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def queue(self, status: int, body: str = "", headers: dict | None = None, times: int = 1) -> None:
        with self._lock:
            self._queue += [(status, body, headers or {})] * times

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/{self.kind}/T000/B000/secret-token"

    @property
    def accepted(self) -> list[Received]:
        return [r for r in self.requests if 200 <= r.status < 300]

    def _answer(self, handler: BaseHTTPRequestHandler) -> None:
        raw = handler.rfile.read(int(handler.headers.get("Content-Length") or 0))
        headers = {k.lower(): v for k, v in handler.headers.items()}
        try:
            body = json.loads(raw)
        except ValueError:
            body = raw.decode("utf-8", "replace")
        got = Received(path=handler.path, headers=headers, raw=raw, body=body)
        if self.kind == "webhook":
            try:
                Webhook(self.secret).verify(raw, headers)
                errors = [e.message for e in SCHEMA.iter_errors(body)]
                got.problem = "; ".join(errors) or None
                got.verified = not errors
            except Exception as exc:  # noqa: BLE001 - any verification failure
                got.problem = f"{type(exc).__name__}: {exc}"
        with self._lock:
            status, text, extra = (
                self._queue.pop(0) if self._queue else (*DEFAULT.get(self.kind, (200, "ok")), {})
            )
        if got.problem is not None:
            status, text, extra = 400, got.problem, {}
        got.status = status
        with self._lock:
            self.requests.append(got)
        data = text.encode("utf-8")
        handler.send_response(status)
        for k, v in extra.items():
            handler.send_header(k, v)
        handler.send_header("Content-Type", "text/plain; charset=utf-8")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    def __enter__(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                receiver._answer(self)

            def log_message(self, *args):
                pass

        self._server = _Server(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
