"""The stdlib MIME message for an `Email` (used by the file and SMTP backends)."""

from __future__ import annotations

from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, formataddr, formatdate, make_msgid

from lifecycle.mailers import Email


def to_mime(email: Email) -> EmailMessage:
    msg = EmailMessage()
    msg["Subject"] = email.subject
    msg["From"] = (
        formataddr((email.from_name or "", email.from_email)) if email.from_name else email.from_email
    )
    msg["To"] = str(Address(display_name=email.to_name or "", addr_spec=email.to))
    if email.reply_to:
        msg["Reply-To"] = str(Address(display_name=email.reply_to_name or "", addr_spec=email.reply_to))
    msg["Date"] = (
        format_datetime(email.date, usegmt=True) if email.date else formatdate(localtime=False, usegmt=True)
    )
    msg["Message-ID"] = email.message_id or make_msgid(domain=email.from_email.split("@")[-1])
    for name, value in email.headers.items():
        msg[name] = value
    if email.custom_args:
        msg["X-Lifecycle-Args"] = ";".join(f"{k}={v}" for k, v in sorted(email.custom_args.items()))
    msg.set_content(email.text, subtype="plain", charset="utf-8")
    msg.add_alternative(email.html, subtype="html", charset="utf-8")
    for att in email.attachments:
        maintype, subtype = att.mimetype.split("/", 1)
        params = {"method": "PUBLISH"} if att.mimetype == "text/calendar" else {}
        msg.add_attachment(
            att.content, maintype=maintype, subtype=subtype, filename=att.filename, params=params
        )
    return msg
