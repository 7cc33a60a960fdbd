"""The SMTP mailer against a real (tiny) SMTP server on the loopback interface."""

from __future__ import annotations

import base64
import email
import email.policy
import socket
import socketserver
import threading
import time
from dataclasses import dataclass, field

import pytest

from lifecycle.config import get_settings, reset_settings
from lifecycle.errors import DeliveryError
from lifecycle.mailers import MAILERS, Attachment, Email
from lifecycle.mailers.smtp import SmtpMailer

ICS = b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nMETHOD:PUBLISH\r\nEND:VCALENDAR\r\n"


@dataclass
class Received:
    mail_from: str
    rcpt_to: list[str]
    data: bytes


@dataclass
class SmtpServer:
    """EHLO/HELO, AUTH PLAIN, MAIL, RCPT, DATA, RSET, NOOP, QUIT; `replies` overrides the answer to a
    command ("GREETING", "MAIL", "RCPT", "DATA", "DATA_END"); "DROP" there closes the connection,
    "HANG" says nothing for 10 seconds, then closes it."""

    replies: dict[str, str] = field(default_factory=dict)
    credentials: tuple[str, str] | None = None
    messages: list[Received] = field(default_factory=list)
    port: int = 0
    connections: int = 0

    def start(self):
        server_state = self

        class Handler(socketserver.StreamRequestHandler):
            def send(self, line: str) -> None:
                self.wfile.write(line.encode() + b"\r\n")

            def answer(self, command: str, default: str) -> bool:
                reply = server_state.replies.get(command, default)
                if reply == "HANG":
                    time.sleep(10)
                    return False
                if reply == "DROP":
                    return False
                self.send(reply)
                return True

            def handle(self):
                server_state.connections += 1
                if not self.answer("GREETING", "220 localhost ESMTP test"):
                    return
                mail_from, rcpts = None, []
                while line := self.rfile.readline():
                    text = line.decode("utf-8", "replace").rstrip("\r\n")
                    verb = text.split(" ", 1)[0].upper()
                    arg = text[len(verb) :].strip()
                    if verb == "EHLO":
                        extensions = ["8BITMIME", "SIZE 10000000"]
                        if server_state.credentials:
                            extensions.append("AUTH PLAIN")
                        self.send("250-localhost")
                        for ext in extensions[:-1]:
                            self.send(f"250-{ext}")
                        self.send(f"250 {extensions[-1]}")
                    elif verb == "HELO":
                        self.send("250 localhost")
                    elif verb == "AUTH":
                        _mech, _, blob = arg.partition(" ")
                        _, user, password = base64.b64decode(blob).decode().split("\0")
                        ok = (user, password) == server_state.credentials
                        self.send(
                            "235 2.7.0 Authentication successful"
                            if ok
                            else "535 5.7.8 Authentication credentials invalid"
                        )
                    elif verb == "MAIL":
                        mail_from, rcpts = arg.split(":", 1)[1].split()[0].strip("<>"), []
                        if not self.answer("MAIL", "250 2.1.0 OK"):
                            return
                    elif verb == "RCPT":
                        rcpts.append(arg.split(":", 1)[1].strip().strip("<>"))
                        if not self.answer("RCPT", "250 2.1.5 OK"):
                            return
                    elif verb == "DATA":
                        if not self.answer("DATA", "354 End data with <CR><LF>.<CR><LF>"):
                            return
                        if server_state.replies.get("DATA", "354").startswith("354"):
                            lines = []
                            while (chunk := self.rfile.readline()) not in (b".\r\n", b""):
                                lines.append(chunk[1:] if chunk.startswith(b"..") else chunk)
                            if not self.answer("DATA_END", "250 2.0.0 queued as 12345"):
                                return
                            if server_state.replies.get("DATA_END", "250").startswith("250"):
                                server_state.messages.append(Received(mail_from, rcpts, b"".join(lines)))
                    elif verb in ("RSET", "NOOP"):
                        self.send("250 OK")
                    elif verb == "QUIT":
                        self.send("221 Bye")
                        return
                    else:
                        self.send("502 5.5.2 Command not recognized")

        self._server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()
        return self

    def stop(self):
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def smtp_server():
    server = SmtpServer().start()
    yield server
    server.stop()


def notice_email(**overrides) -> Email:
    fields = dict(
        to="ops@acme.example",
        to_name="ACME Ops",
        subject="ACP 3.16: end of life on 2027-06-30",
        text="ACP 3.16 reaches end of life on 2027-06-30.\n.leading dot line\n",
        html="<p>ACP 3.16 reaches end of life on 2027-06-30.</p>",
        from_email="lifecycle@vendor.example",
        from_name="Product Lifecycle",
        attachments=[Attachment(filename="lifecycle.ics", content=ICS, mimetype="text/calendar")],
        custom_args={"delivery_ids": "12,13"},
        message_id="<lifecycle-12-abc@vendor.example>",
    )
    fields.update(overrides)
    return Email(**fields)


def send(server: SmtpServer, email_: Email | None = None, **kw) -> str:
    return SmtpMailer("127.0.0.1", server.port, timeout=5, **kw).send(email_ or notice_email())


def test_it_sends_the_mime_message_and_returns_its_message_id(smtp_server):
    provider_id = send(smtp_server)
    assert provider_id == "<lifecycle-12-abc@vendor.example>"
    [got] = smtp_server.messages
    assert got.mail_from == "lifecycle@vendor.example" and got.rcpt_to == ["ops@acme.example"]
    msg = email.message_from_bytes(got.data, policy=email.policy.default)
    assert msg["Message-ID"] == provider_id
    assert msg["Subject"] == "ACP 3.16: end of life on 2027-06-30"
    assert msg.get_body(("plain",)).get_content().splitlines()[1] == ".leading dot line"
    [ics] = [p for p in msg.iter_attachments() if p.get_content_type() == "text/calendar"]
    assert ics.get_filename() == "lifecycle.ics" and ics.get_param("method") == "PUBLISH"


def test_many_emails_go_over_one_connection_and_a_refused_one_does_not_stop_the_others(smtp_server):
    mailer = SmtpMailer("127.0.0.1", smtp_server.port, timeout=5)
    emails = [notice_email(to=f"ops{i}@acme.example", message_id=f"<m{i}@vendor.example>") for i in range(4)]
    assert mailer.send_many(emails) == [f"<m{i}@vendor.example>" for i in range(4)]
    assert smtp_server.connections == 1
    assert [m.rcpt_to for m in smtp_server.messages] == [[f"ops{i}@acme.example"] for i in range(4)]

    def with_a_refusal():
        yield emails[0]
        smtp_server.replies["RCPT"] = "550 5.1.1 no such user"
        yield emails[1]
        del smtp_server.replies["RCPT"]
        yield emails[2]

    smtp_server.messages.clear()
    first, refused, third = mailer.send_many(with_a_refusal())
    assert first == "<m0@vendor.example>" and third == "<m2@vendor.example>"
    assert isinstance(refused, DeliveryError) and refused.permanent and "550" in refused.message
    assert [m.rcpt_to for m in smtp_server.messages] == [["ops0@acme.example"], ["ops2@acme.example"]]
    assert smtp_server.connections == 1 + 2  # a new connection after the error


def test_it_logs_in_when_credentials_are_configured(smtp_server):
    smtp_server.credentials = ("mailer", "s3cret")
    send(smtp_server, username="mailer", password="s3cret")
    assert len(smtp_server.messages) == 1


def test_wrong_credentials_are_a_permanent_error(smtp_server):
    smtp_server.credentials = ("mailer", "s3cret")
    with pytest.raises(DeliveryError) as err:
        send(smtp_server, username="mailer", password="wrong")
    assert err.value.permanent and "535" in err.value.message
    assert smtp_server.messages == []


@pytest.mark.parametrize(
    ("command", "reply", "permanent"),
    [
        ("RCPT", "550 5.1.1 <ops@acme.example>: user unknown", True),
        ("RCPT", "450 4.2.1 mailbox busy, try later", False),
        ("MAIL", "451 4.3.0 temporary failure", False),
        ("MAIL", "553 5.7.1 sender rejected", True),
        ("DATA", "554 5.3.4 message too big", True),
        ("DATA_END", "452 4.3.1 insufficient storage", False),
        ("DATA_END", "554 5.7.1 message rejected as spam", True),
        ("GREETING", "421 4.3.2 service not available", False),
        ("GREETING", "554 5.3.2 no service here", True),
    ],
)
def test_smtp_replies_map_4xx_to_transient_and_5xx_to_permanent(smtp_server, command, reply, permanent):
    smtp_server.replies[command] = reply
    with pytest.raises(DeliveryError) as err:
        send(smtp_server)
    assert err.value.permanent is permanent
    assert reply.split(" ", 1)[0] in err.value.message
    assert smtp_server.messages == []


def test_a_connection_dropped_mid_conversation_is_transient(smtp_server):
    smtp_server.replies["RCPT"] = "DROP"
    with pytest.raises(DeliveryError) as err:
        send(smtp_server)
    assert not err.value.permanent


def test_a_connection_dropped_after_the_message_data_is_an_unknown_outcome(smtp_server):
    smtp_server.replies["DATA_END"] = "DROP"
    with pytest.raises(DeliveryError) as err:
        send(smtp_server)
    assert err.value.unknown and not err.value.permanent
    assert "SMTP outcome unknown: the message was sent" in err.value.message


def test_a_server_silent_after_the_message_data_is_cut_off_at_the_deadline_as_unknown(smtp_server):
    smtp_server.replies["DATA_END"] = "HANG"
    with pytest.raises(DeliveryError) as err:
        SmtpMailer("127.0.0.1", smtp_server.port, timeout=30, deadline=1).send(notice_email())
    assert err.value.unknown and "no reply within the 1 s send deadline" in err.value.message


def test_a_server_silent_before_the_message_data_is_a_plain_transient_error(smtp_server):
    smtp_server.replies["RCPT"] = "HANG"
    with pytest.raises(DeliveryError) as err:
        SmtpMailer("127.0.0.1", smtp_server.port, timeout=30, deadline=1).send(notice_email())
    assert not err.value.unknown and not err.value.permanent
    assert "unreachable: no reply within the 1 s send deadline" in err.value.message


def test_a_refused_connection_is_transient():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(DeliveryError) as err:
        SmtpMailer("127.0.0.1", port, timeout=2).send(notice_email())
    assert not err.value.permanent and "unreachable" in err.value.message


def test_it_never_falls_back_to_plain_text_when_starttls_is_required_but_not_offered(smtp_server):
    with pytest.raises(DeliveryError) as err:
        send(smtp_server, starttls=True)
    assert err.value.permanent and "STARTTLS" in err.value.message
    assert smtp_server.messages == []


def test_from_settings_reads_host_port_and_credentials(monkeypatch, smtp_server):
    smtp_server.credentials = ("u", "p")
    monkeypatch.setenv("LIFECYCLE_EMAIL_BACKEND", "smtp")
    monkeypatch.setenv("LIFECYCLE_SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("LIFECYCLE_SMTP_PORT", str(smtp_server.port))
    monkeypatch.setenv("LIFECYCLE_SMTP_USERNAME", "u")
    monkeypatch.setenv("LIFECYCLE_SMTP_PASSWORD", "p")
    reset_settings()
    mailer = MAILERS["smtp"](get_settings())
    assert mailer.send(notice_email()) == "<lifecycle-12-abc@vendor.example>"
    assert len(smtp_server.messages) == 1
