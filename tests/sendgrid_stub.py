"""A loopback SendGrid that answers `POST /v3/mail/send` like the real one.

It checks the bearer key (401), validates the body against SendGrid's own OpenAPI schema of the request
(tests/data/sendgrid/mail_send_request.json) plus a few rules the live API enforces beyond it (400 with
SendGrid's error shape), and answers 202 with an `X-Message-Id`. Tests queue other answers (429 with
`Retry-After`, 500, a slow answer) with `stub.queue(...)`; every request is recorded in `stub.requests`.

Use the `sendgrid_stub` fixture (import it into the test module), or `with SendGridStub() as stub:`.
"""

from __future__ import annotations

import copy
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

SCHEMA_PATH = Path(__file__).resolve().parent / "data" / "sendgrid" / "mail_send_request.json"
API_KEY = "SG.test-key.loopback-stub"


def _schema() -> dict:
    schema = copy.deepcopy(json.loads(SCHEMA_PATH.read_text()))
    # The spec types message-level custom_args as a string; the live API accepts (and the sendgrid
    # library sends) an object of strings, which is what webhook events later carry back.
    schema["properties"]["custom_args"] = {"type": "object", "additionalProperties": {"type": "string"}}
    return schema


VALIDATOR = Draft202012Validator(_schema(), format_checker=Draft202012Validator.FORMAT_CHECKER)


@dataclass
class Queued:
    status: int
    retry_after: int | str | None = None
    body: dict | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds to wait before answering (a slow SendGrid, for timeouts)


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: object  # parsed JSON, or the raw text when it is not JSON
    status: int = 0
    message_id: str | None = None


def error_body(message: str, field: str | None = None) -> dict:
    return {"errors": [{"message": message, "field": field, "help": None}]}


def _field_path(path) -> str | None:
    parts = [str(p) for p in path]
    return ".".join(parts) if parts else None


def payload_errors(body: object) -> list[dict]:
    """SendGrid-shaped errors for a request body: the schema, then a few rules of the live API."""
    errors = [
        {"message": e.message, "field": _field_path(e.absolute_path), "help": None}
        for e in sorted(VALIDATOR.iter_errors(body), key=lambda e: list(map(str, e.absolute_path)))
    ]
    if errors or not isinstance(body, dict):
        return errors
    if not body.get("personalizations"):
        errors.append({"message": "The personalizations field is required and must have at least one "
                       "personalization.", "field": "personalizations", "help": None})
    if not body.get("subject") and not all(p.get("subject") for p in body.get("personalizations", [])) \
            and not body.get("template_id"):
        errors.append({"message": "The subject is required. You can get around this requirement if you use a "
                       "template with a subject defined or if every personalization has a subject defined.",
                       "field": "subject", "help": None})
    types = [c.get("type") for c in body.get("content", [])]
    if not types and not body.get("template_id"):
        errors.append({"message": "Unless a valid template_id is provided, the content parameter is required. "
                       "There must be at least one defined content block.", "field": "content", "help": None})
    if "text/plain" in types and types.index("text/plain") != 0:
        errors.append({"message": "If present, text/plain content must be first, followed by text/html, "
                       "followed by any other content.", "field": "content", "help": None})
    for i, att in enumerate(body.get("attachments", [])):
        if any(ch in att.get("type", "") for ch in ";\r\n"):
            errors.append({"message": "The attachment type cannot contain ';', or CRLF characters.",
                           "field": f"attachments.{i}.type", "help": None})
    return errors


class SendGridStub:
    def __init__(self, api_key: str = API_KEY):
        self.api_key = api_key
        self.requests: list[Recorded] = []
        self._queue: list[Queued] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -------------------------------------------------------------------------------- test controls

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def queue(self, status: int, *, retry_after: int | str | None = None, body: dict | None = None,
              headers: dict[str, str] | None = None, delay: float = 0.0) -> None:
        """Answer the next (not yet answered) mail/send request with this, instead of validating it."""
        with self._lock:
            self._queue.append(Queued(status, retry_after, body, dict(headers or {}), delay))

    @property
    def accepted(self) -> list[Recorded]:
        return [r for r in self.requests if r.status == 202]

    # ------------------------------------------------------------------------------------ lifecycle

    def start(self) -> SendGridStub:
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep test output quiet
                pass

            def do_POST(self):
                stub._handle(self)

            def do_GET(self):
                stub._reply(self, 404, error_body("not found"))

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="sendgrid-stub", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> SendGridStub:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ----------------------------------------------------------------------------------- answering

    def _handle(self, req: BaseHTTPRequestHandler) -> None:
        length = int(req.headers.get("Content-Length") or 0)
        raw = req.rfile.read(length) if length else b""
        try:
            body: object = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", "replace")
        record = Recorded(method="POST", path=req.path, headers=dict(req.headers.items()), body=body)
        with self._lock:
            self.requests.append(record)

        if req.path.rstrip("/") != "/v3/mail/send":
            record.status = 404
            return self._reply(req, 404, error_body("not found"))
        if req.headers.get("Authorization") != f"Bearer {self.api_key}":
            record.status = 401
            return self._reply(req, 401, error_body(
                "The provided authorization grant is invalid, expired, or revoked"))
        with self._lock:
            queued = self._queue.pop(0) if self._queue else None
        if queued is not None:
            if queued.delay:
                time.sleep(queued.delay)
            headers = dict(queued.headers)
            if queued.retry_after is not None:
                headers["Retry-After"] = str(queued.retry_after)
            record.status = queued.status
            if queued.status == 202:
                record.message_id = headers.setdefault("X-Message-Id", self._message_id())
                return self._reply(req, 202, None, headers)
            default = error_body("too many requests") if queued.status == 429 else error_body(
                "internal server error" if queued.status >= 500 else "bad request")
            return self._reply(req, queued.status, queued.body or default, headers)
        if not isinstance(body, dict):
            record.status = 400
            return self._reply(req, 400, error_body("Bad Request", None))
        errors = payload_errors(body)
        if errors:
            record.status = 400
            return self._reply(req, 400, {"errors": errors})
        record.status = 202
        record.message_id = self._message_id()
        return self._reply(req, 202, None, {"X-Message-Id": record.message_id})

    @staticmethod
    def _message_id() -> str:
        return secrets.token_urlsafe(16)[:22]

    @staticmethod
    def _reply(req: BaseHTTPRequestHandler, status: int, body: dict | None, headers: dict | None = None) -> None:
        data = json.dumps(body).encode() if body is not None else b""
        try:
            req.send_response(status)
            for name, value in (headers or {}).items():
                req.send_header(name, value)
            if data:
                req.send_header("Content-Type", "application/json")
            req.send_header("Content-Length", str(len(data)))
            req.end_headers()
            req.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (a timeout test)
            pass


@pytest.fixture
def sendgrid_stub():
    with SendGridStub() as stub:
        yield stub
