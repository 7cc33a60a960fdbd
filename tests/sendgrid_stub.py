"""A loopback SendGrid that answers `POST /v3/mail/send` like the real one.

It checks the bearer key (401), validates the body against SendGrid's own OpenAPI schema of the request
(tests/data/sendgrid/mail_send_request.json) plus a few rules the live API enforces beyond it (400 with
SendGrid's error shape), and answers 202 with an `X-Message-Id`. Tests queue other answers (429 with
`Retry-After`, 500, a slow answer, an answer trickled a byte at a time) with `stub.queue(...)`; every
request is recorded in `stub.requests`.

Faults at random (seeded): `error_rate` answers that share of requests with 500, 503 or 429 without
accepting them; `hang_rate` accepts that share and then withholds the answer for `hang_seconds` (the
client gives up first, not knowing the message was accepted).

Like SendGrid's event webhook, `post_events(url, private_key)` posts a signed `processed` event (with
the request's `custom_args` as top-level keys) for every accepted request, in batches, retrying posts
that fail; `webhook_posts` records the answers.

Use the `sendgrid_stub` fixture (import it into the test module), or `with SendGridStub() as stub:`.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import json
import random
import secrets
import socket
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
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
    trickle: float = 0.0  # seconds over which the answer is sent, a byte at a time


SIGNATURE = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP = "X-Twilio-Email-Event-Webhook-Timestamp"


def sign(private_key: ec.EllipticCurvePrivateKey, timestamp: str, body: bytes) -> str:
    """As SendGrid does: ECDSA/SHA-256 over the timestamp followed by the raw body, base64 DER."""
    return base64.b64encode(private_key.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))).decode()


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: object  # parsed JSON, or the raw text when it is not JSON
    status: int = 0
    message_id: str | None = None
    received_at: float = 0.0  # time.time() when the whole request was read
    answered: bool = False  # the client was still there to read the whole answer

    @property
    def delivery_ids(self) -> list[int]:
        args = self.body.get("custom_args", {}) if isinstance(self.body, dict) else {}
        return [int(x) for x in str(args.get("delivery_ids", "")).split(",") if x.strip().isdigit()]

    @property
    def to(self) -> str | None:
        try:
            return self.body["personalizations"][0]["to"][0]["email"]
        except (KeyError, IndexError, TypeError):
            return None


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
        errors.append(
            {
                "message": "The personalizations field is required and must have at least one "
                "personalization.",
                "field": "personalizations",
                "help": None,
            }
        )
    if (
        not body.get("subject")
        and not all(p.get("subject") for p in body.get("personalizations", []))
        and not body.get("template_id")
    ):
        errors.append(
            {
                "message": "The subject is required. You can get around this requirement if you use a "
                "template with a subject defined or if every personalization has a subject defined.",
                "field": "subject",
                "help": None,
            }
        )
    types = [c.get("type") for c in body.get("content", [])]
    if not types and not body.get("template_id"):
        errors.append(
            {
                "message": "Unless a valid template_id is provided, the content parameter is required. "
                "There must be at least one defined content block.",
                "field": "content",
                "help": None,
            }
        )
    if "text/plain" in types and types.index("text/plain") != 0:
        errors.append(
            {
                "message": "If present, text/plain content must be first, followed by text/html, "
                "followed by any other content.",
                "field": "content",
                "help": None,
            }
        )
    for i, att in enumerate(body.get("attachments", [])):
        if any(ch in att.get("type", "") for ch in ";\r\n"):
            errors.append(
                {
                    "message": "The attachment type cannot contain ';', or CRLF characters.",
                    "field": f"attachments.{i}.type",
                    "help": None,
                }
            )
    return errors


class _Server(ThreadingHTTPServer):
    # socketserver listens with a backlog of 5: a mailer opening 8 connections at once (its pool of
    # threads) overflowed it, and every connection refused that way waited for the client's SYN to be
    # sent again, a second later. An API server takes many connections at once.
    request_queue_size = 128

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.connections: set[socket.socket] = set()  # open client connections (HTTP keep-alive)
        self.connections_lock = threading.Lock()
        self.accepted = 0  # connections accepted so far

    def process_request(self, request, client_address):
        with self.connections_lock:
            self.connections.add(request)
            self.accepted += 1
        super().process_request(request, client_address)

    def shutdown_request(self, request):
        with self.connections_lock:
            self.connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """Close every open client connection, as a server does with idle keep-alive ones."""
        with self.connections_lock:
            connections = list(self.connections)
        for sock in connections:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


class SendGridStub:
    def __init__(
        self,
        api_key: str = API_KEY,
        *,
        error_rate: float = 0.0,
        hang_rate: float = 0.0,
        hang_seconds: float = 0.0,
        seed: int = 7,
        latency: float = 0.0,
    ):
        self.api_key = api_key
        self.latency = latency  # seconds every accepted request waits for its answer (a distant API)
        self.requests: list[Recorded] = []
        self.error_rate, self.hang_rate, self.hang_seconds = error_rate, hang_rate, hang_seconds
        self.webhook_posts: list[tuple[int, object]] = []  # (status, answer) of each event post
        self._random = random.Random(seed)
        self._queue: list[Queued] = []
        self._events: list[dict] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._poster: threading.Thread | None = None
        self._stopping = threading.Event()

    # -------------------------------------------------------------------------------- test controls

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def queue(
        self,
        status: int,
        *,
        retry_after: int | str | None = None,
        body: dict | None = None,
        headers: dict[str, str] | None = None,
        delay: float = 0.0,
        trickle: float = 0.0,
    ) -> None:
        """Answer the next (not yet answered) mail/send request with this, instead of validating it."""
        with self._lock:
            self._queue.append(Queued(status, retry_after, body, dict(headers or {}), delay, trickle))

    def post_events(
        self, url: str, private_key: ec.EllipticCurvePrivateKey, *, interval: float = 0.5
    ) -> None:
        """Post a signed `processed` event for every accepted request to `url`, every `interval` s."""

        def run() -> None:
            while not self._stopping.wait(interval):
                self._post_batch(url, private_key)
            self._post_batch(url, private_key)

        self._poster = threading.Thread(target=run, name="sendgrid-stub-events", daemon=True)
        self._poster.start()

    def flush_events(self, url: str, private_key: ec.EllipticCurvePrivateKey) -> None:
        self._post_batch(url, private_key)

    def _post_batch(self, url: str, private_key: ec.EllipticCurvePrivateKey) -> None:
        with self._lock:
            events, self._events = self._events[:500], self._events[500:]
        if not events:
            return
        body = json.dumps(events).encode()
        timestamp = str(int(time.time()))
        request = urllib.request.Request(
            url,
            data=body,
            method="POST",
            headers={
                "Content-Type": "application/json",
                SIGNATURE: sign(private_key, timestamp, body),
                TIMESTAMP: timestamp,
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                self.webhook_posts.append((response.status, json.loads(response.read() or b"null")))
                return
        except urllib.error.HTTPError as err:
            self.webhook_posts.append((err.code, err.read().decode("utf-8", "replace")))
        except OSError as exc:
            self.webhook_posts.append((0, str(exc)))
        with self._lock:  # like SendGrid: a failed post is tried again later
            self._events[:0] = events

    def take_events(self) -> list[dict]:
        """The `processed` events not posted yet (for tests that apply them without the web app)."""
        with self._lock:
            events, self._events = self._events, []
        return events

    @property
    def events_pending(self) -> int:
        with self._lock:
            return len(self._events)

    def _accept(self, record: Recorded) -> None:
        """Record an accepted request, and the `processed` event SendGrid would post for it."""
        record.status = 202
        record.message_id = record.message_id or self._message_id()
        args = record.body.get("custom_args", {}) if isinstance(record.body, dict) else {}
        with self._lock:
            self._events.append(
                {
                    "email": record.to,
                    "timestamp": int(time.time()),
                    "event": "processed",
                    "sg_event_id": secrets.token_urlsafe(16),
                    "sg_message_id": f"{record.message_id}.filter0001.1.0",
                    **{k: str(v) for k, v in args.items()},
                }
            )

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

        self._server = _Server(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="sendgrid-stub",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._poster is not None:
            self._poster.join(timeout=60)
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server.close_connections()  # kept-alive ones too: a stopped stub answers nothing
            self._server = None

    @property
    def connections_accepted(self) -> int:
        """How many TCP connections clients opened (a mailer keeping its connections opens few)."""
        return self._server.accepted if self._server is not None else 0

    def close_connections(self) -> None:
        """Close the open client connections now (as a server closes idle keep-alive connections)."""
        if self._server is not None:
            self._server.close_connections()

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
        record = Recorded(
            method="POST",
            path=req.path,
            headers=dict(req.headers.items()),
            body=body,
            received_at=time.time(),
        )
        with self._lock:
            self.requests.append(record)

        if req.path.rstrip("/") != "/v3/mail/send":
            record.status = 404
            return self._reply(req, 404, error_body("not found"))
        if req.headers.get("Authorization") != f"Bearer {self.api_key}":
            record.status = 401
            return self._reply(
                req, 401, error_body("The provided authorization grant is invalid, expired, or revoked")
            )
        with self._lock:
            queued = self._queue.pop(0) if self._queue else None
            roll = self._random.random()
            error = self._random.choice((500, 503, 429))
        if queued is None and roll < self.error_rate:
            queued = Queued(error, retry_after=1 if error != 500 else None)
        elif queued is None and roll < self.error_rate + self.hang_rate:
            queued = Queued(202, delay=self.hang_seconds)
        if queued is not None:
            headers = dict(queued.headers)
            if queued.retry_after is not None:
                headers["Retry-After"] = str(queued.retry_after)
            record.status = queued.status
            if queued.status == 202:
                record.message_id = headers.setdefault("X-Message-Id", self._message_id())
                self._accept(record)
            if queued.delay:
                time.sleep(queued.delay)
            if queued.status == 202:
                return self._reply(req, 202, None, headers, record=record, trickle=queued.trickle)
            default = (
                error_body("too many requests")
                if queued.status == 429
                else error_body("internal server error" if queued.status >= 500 else "bad request")
            )
            return self._reply(
                req, queued.status, queued.body or default, headers, record=record, trickle=queued.trickle
            )
        if not isinstance(body, dict):
            record.status = 400
            return self._reply(req, 400, error_body("Bad Request", None), record=record)
        errors = payload_errors(body)
        if errors:
            record.status = 400
            return self._reply(req, 400, {"errors": errors}, record=record)
        self._accept(record)
        if self.latency:
            time.sleep(self.latency)
        return self._reply(req, 202, None, {"X-Message-Id": record.message_id}, record=record)

    @staticmethod
    def _message_id() -> str:
        return secrets.token_urlsafe(16)[:22]

    def _reply(
        self,
        req: BaseHTTPRequestHandler,
        status: int,
        body: dict | None,
        headers: dict | None = None,
        *,
        record: Recorded | None = None,
        trickle: float = 0.0,
    ) -> None:
        data = json.dumps(body).encode() if body is not None else b""
        try:
            if trickle:  # the whole answer, a byte at a time, spread over `trickle` seconds
                lines = [f"HTTP/1.1 {status} {req.responses.get(status, ('',))[0]}\r\n".encode()]
                lines += [f"{k}: {v}\r\n".encode() for k, v in (headers or {}).items()]
                if data:
                    lines.append(b"Content-Type: application/json\r\n")
                lines.append(f"Content-Length: {len(data)}\r\n\r\n".encode())
                raw = b"".join(lines) + data
                pause = trickle / len(raw)
                for i in range(len(raw)):
                    req.wfile.write(raw[i : i + 1])
                    req.wfile.flush()
                    time.sleep(pause)
            else:
                req.send_response(status)
                for name, value in (headers or {}).items():
                    req.send_header(name, value)
                if data:
                    req.send_header("Content-Type", "application/json")
                req.send_header("Content-Length", str(len(data)))
                req.end_headers()
                req.wfile.write(data)
            if record is not None:
                record.answered = True
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (a timeout test)
            pass


@pytest.fixture
def sendgrid_stub():
    with SendGridStub() as stub:
        yield stub
