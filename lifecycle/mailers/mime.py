"""The MIME message for an `Email` (used by the file and SMTP backends).

Built with the stdlib's `compat32` classes and the C encoders (`binascii` quoted-printable, base64):
the same structure and parsed content as an `EmailMessage` (policy.default), about four times cheaper,
because policy.default re-parses every header through `headerregistry` when it is set and when it is
written. Headers are encoded here instead: non-ASCII values as RFC 2047 encoded words (`Header`),
display names by `formataddr`. Line breaks in header values become spaces (no header injection).

The structure: `multipart/alternative` (text, then HTML), wrapped in `multipart/mixed` with the
attachments when there are any. Text parts are 7bit when they are plain ASCII with short lines, else
quoted-printable (readable in the outbox); attachments are base64.
"""

from __future__ import annotations

import base64
import binascii
import re
import secrets
from email.header import Header
from email.message import Message
from email.mime.multipart import MIMEMultipart
from email.policy import Compat32
from email.utils import format_datetime, formataddr, formatdate, make_msgid

from lifecycle.mailers import Attachment, Email

_BREAKS = re.compile(r"[\r\n]+")
_LONGEST_7BIT_LINE = 998  # RFC 5322


class _Policy(Compat32):
    """compat32, minus a `Header` built and encoded for every header line: a short ASCII one is written
    as it is (what `Header.encode` gives back for it)."""

    def _fold(self, name, value, sanitize):
        if (
            isinstance(value, str)
            and value.isascii()
            and len(name) + len(value) + 2 <= (self.max_line_length or 78)
            and "\n" not in value
            and "\r" not in value
        ):
            return f"{name}: {value}{self.linesep}"
        return super()._fold(name, value, sanitize)


POLICY = _Policy()


def _boundary() -> str:
    """A boundary no body can contain, so the generator need not search the bodies for one: a
    quoted-printable body writes "=" as "=3D", base64 has no "-", and a 7bit body would have to hold
    these 96 random bits."""
    return f"==lifecycle-{secrets.token_hex(12)}=="


def _header(value: str, name: str) -> str | Header:
    value = _BREAKS.sub(" ", value)
    if value.isascii():
        return value  # folded by the generator when long
    return Header(value, "utf-8", header_name=name)


def _address(name: str | None, addr: str) -> str:
    addr = _BREAKS.sub("", addr)
    return formataddr((_BREAKS.sub(" ", name), addr), charset="utf-8") if name else addr


def _text(body: str, subtype: str) -> Message:
    part = Message(policy=POLICY)
    part["Content-Type"] = f'text/{subtype}; charset="utf-8"'
    if body.isascii() and all(len(line) <= _LONGEST_7BIT_LINE for line in body.split("\n")):
        part["Content-Transfer-Encoding"] = "7bit"
        part.set_payload(body)
    else:
        part["Content-Transfer-Encoding"] = "quoted-printable"
        part.set_payload(binascii.b2a_qp(body.encode("utf-8"), istext=True).decode("ascii"))
    return part


def _attachment(att: Attachment) -> Message:
    part = Message(policy=POLICY)
    if att.mimetype == "text/calendar":
        part["Content-Type"] = 'text/calendar; method="PUBLISH"'
    else:
        part["Content-Type"] = att.mimetype
    part.add_header("Content-Disposition", "attachment", filename=att.filename)
    part["Content-Transfer-Encoding"] = "base64"
    part.set_payload(base64.encodebytes(att.content).decode("ascii"))
    return part


def to_mime(email: Email) -> Message:
    parts = [_text(email.text, "plain"), _text(email.html, "html")]
    body: Message = MIMEMultipart("alternative", _subparts=parts, boundary=_boundary(), policy=POLICY)
    if email.attachments:
        del body["MIME-Version"]
        parts = [body, *map(_attachment, email.attachments)]
        body = MIMEMultipart("mixed", _subparts=parts, boundary=_boundary(), policy=POLICY)
    body["Subject"] = _header(email.subject, "Subject")  # type: ignore[assignment]  # compat32 takes a Header
    body["From"] = _address(email.from_name, email.from_email)
    body["To"] = _address(email.to_name, email.to)
    if email.reply_to:
        body["Reply-To"] = _address(email.reply_to_name, email.reply_to)
    body["Date"] = (
        format_datetime(email.date, usegmt=True) if email.date else formatdate(localtime=False, usegmt=True)
    )
    body["Message-ID"] = email.message_id or make_msgid(domain=email.from_email.split("@")[-1])
    for name, value in email.headers.items():
        body[name] = _header(value, name)  # type: ignore[assignment]
    if email.custom_args:
        body["X-Lifecycle-Args"] = ";".join(f"{k}={v}" for k, v in sorted(email.custom_args.items()))
    return body
