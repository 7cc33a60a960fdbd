"""SendGrid's signed event webhook: verify a post, then apply its events to deliveries.

Every email carries the custom arg `delivery_ids` ("12,13": one digest email may carry several
notices), and SendGrid copies custom args as top-level keys of each event. An event applies only to
the listed deliveries whose recipient is the event's `email`: an event without one applies to nothing
(the ids alone could name any delivery). Events are deduplicated on `sg_event_id` (SendGrid retries
posts), so a repeated event changes nothing.

- `processed`: SendGrid has the message. A delivery not yet recorded as sent (`unknown` after a lost
  answer, `sending` by a worker that died or has not recorded yet, `pending` after an error answer)
  becomes `sent`: this is what settles an unknown send without sending it again (lifecycle.recovery).
- `delivered`: the delivery becomes `delivered` (from `sent`, or from any of the states above).
- `bounce` / `dropped`: the delivery becomes `bounced` / `failed` with the reason, the contact is
  flagged undeliverable (the scheduler stops emailing it), and the account rep gets one bounce alert per
  delivery. The notice stays given while another channel (the portal inbox) delivered it; otherwise it
  becomes `failed`.
- anything else (processed, deferred, open, click, ...) is recorded and changes nothing.
"""

from __future__ import annotations

import binascii
import datetime as dt
import re

import sqlalchemy as sa
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec
from sendgrid.helpers.eventwebhook import EventWebhook
from sqlmodel import Session

from lifecycle import policy, reps
from lifecycle.delivery import settle_notices
from lifecycle.errors import LifecycleError
from lifecycle.models import (
    OPEN_STATUSES,
    Contact,
    Customer,
    Delivery,
    DeliveryStatus,
    Notice,
    NoticeKind,
    NoticeStatus,
    WebhookEvent,
    table_of,
)
from lifecycle.scheduler import insert_ignore

D = table_of(Delivery)
N = table_of(Notice)
K = table_of(Contact)
W = table_of(WebhookEvent)

# What a failure event does to the delivery.
FAILURE_STATUS = {"bounce": DeliveryStatus.BOUNCED, "dropped": DeliveryStatus.FAILED}
# A delivery already in one of these states is not failed again (and its rep is not alerted twice).
FINAL_FAILURES = (DeliveryStatus.BOUNCED.value, DeliveryStatus.FAILED.value)

# What `apply_events` returns (always every key, so callers and SendGrid logs see one shape).
COUNTS = (
    "received",
    "recorded",
    "duplicates",
    "invalid",
    "unmatched",
    "settled",
    "delivered",
    "bounced",
    "dropped",
    "alerts",
)
# Events saying SendGrid has the message, and what they make of a delivery.
SETTLING = {"processed": DeliveryStatus.SENT, "delivered": DeliveryStatus.DELIVERED}
# A delivery in one of these states was not recorded as sent yet (lifecycle.models.OPEN_STATUSES).
NOT_YET_SENT = [s.value for s in OPEN_STATUSES]

_PEM = re.compile(r"-----(BEGIN|END) PUBLIC KEY-----|\s+")


# ---------------------------------------------------------------------------------------- verifying


def load_public_key(public_key: str) -> ec.EllipticCurvePublicKey:
    """SendGrid's verification key: base64 DER as the settings page shows it (PEM armour tolerated)."""
    body = _PEM.sub("", public_key or "")
    try:
        key = EventWebhook().convert_public_key_to_ecdsa(body)
    except (ValueError, TypeError) as exc:
        raise LifecycleError(f"the SendGrid webhook public key is not a valid key: {exc}") from None
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise LifecycleError("the SendGrid webhook public key is not an elliptic-curve (ECDSA) key")
    return key


def verify(
    public_key: str | ec.EllipticCurvePublicKey,
    payload: bytes,
    signature: str | None,
    timestamp: str | None,
    *,
    now: dt.datetime,
    max_age: int,
) -> bool:
    """True when `signature` is SendGrid's ECDSA signature of timestamp + raw body, and the timestamp
    is within `max_age` seconds of `now` (either way: a replayed old post is refused too).

    Raises LifecycleError when the configured key itself is unusable (the operator's problem, not the
    sender's)."""
    key = public_key if isinstance(public_key, ec.EllipticCurvePublicKey) else load_public_key(public_key)
    # A Unix time in seconds has 10 digits; anything much longer is garbage (and int() of thousands of
    # digits is refused by Python, or overflows the clock arithmetic).
    if not signature or not timestamp or not timestamp.strip().isdigit() or len(timestamp.strip()) > 12:
        return False
    if abs(now.timestamp() - int(timestamp)) > max_age:
        return False
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        return False
    try:
        return EventWebhook().verify_signature(text, signature.strip(), timestamp.strip(), public_key=key)
    except (binascii.Error, ValueError, InvalidSignature):
        return False


# ----------------------------------------------------------------------------------------- applying


def delivery_ids_of(event: dict) -> list[int]:
    raw = event.get("delivery_ids")
    if raw is None:
        return []
    parts = raw if isinstance(raw, list) else str(raw).split(",")
    return sorted(
        {int(p) for p in (str(x).strip() for x in parts) if p.isascii() and p.isdigit() and len(p) < 16}
    )


def _reason(event: dict) -> str:
    reason = str(event.get("reason") or event.get("response") or event.get("type") or event["event"])
    status = event.get("status")
    if status and str(status) not in reason:
        reason = f"{status} {reason}"
    return reason[:1000]


def apply_events(session: Session, events: list[dict], at: dt.datetime) -> dict:
    """Apply SendGrid events (already verified) in the caller's transaction. Returns counts."""
    counts = dict.fromkeys(COUNTS, 0)
    counts["received"] = len(events)
    conn = session.connection()
    touched: set[int] = set()
    for event in events:
        if not isinstance(event, dict) or not event.get("sg_event_id") or not event.get("event"):
            counts["invalid"] += 1
            continue
        kind = str(event["event"])[:32]
        email = str(event.get("email") or "")[:254] or None
        deliveries = _deliveries(conn, delivery_ids_of(event), email)
        inserted = conn.execute(
            insert_ignore(session, W)
            .values(
                sg_event_id=str(event["sg_event_id"])[:100],
                event=kind,
                delivery_id=deliveries[0].id if deliveries else None,
                email=email,
                reason=_reason(event) if kind in FAILURE_STATUS else None,
                received_at=at,
            )
            .returning(W.c.id)
        ).first()
        if inserted is None:  # seen before: SendGrid retried the post
            counts["duplicates"] += 1
            continue
        counts["recorded"] += 1
        if not deliveries:
            counts["unmatched"] += 1
            continue
        ids = [d.id for d in deliveries]
        if kind in SETTLING:
            settled = _settle(conn, ids, SETTLING[kind], _message_id(event), at)
            counts["settled"] += settled
            if kind == "delivered":
                counts["delivered"] += settled + (
                    conn.execute(
                        D.update()
                        .where(D.c.id.in_(ids), D.c.status == DeliveryStatus.SENT)
                        .values(status=DeliveryStatus.DELIVERED, updated_at=at)
                    ).rowcount
                    or 0
                )
            touched.update(d.notice_id for d in deliveries)
        elif kind in FAILURE_STATUS:
            failed = _fail(session, deliveries, FAILURE_STATUS[kind], _reason(event), at)
            counts["bounced" if kind == "bounce" else "dropped"] += len(failed)
            counts["alerts"] += _alert_reps(session, failed, _reason(event), at)
            touched.update(d.notice_id for d in deliveries)
    settle_notices(session, sorted(touched))
    return counts


def _deliveries(conn, ids: list[int], email: str | None) -> list:
    """The email deliveries an event speaks of: listed by it and sent to the address it names."""
    if not ids or not email:
        return []
    rows = conn.execute(
        sa.select(D.c.id, D.c.notice_id, D.c.customer_id, D.c.contact_id, D.c.recipient, D.c.status)
        .where(D.c.id.in_(ids), D.c.channel == "email")
        .order_by(D.c.id)
    ).all()
    return [r for r in rows if r.recipient.lower() == email.lower()]


def _message_id(event: dict) -> str | None:
    """SendGrid's X-Message-Id: the part of the event's `sg_message_id` before the first dot."""
    raw = str(event.get("sg_message_id") or "").split(".", 1)[0].strip()
    return raw[:200] or None


def _settle(conn, ids: list[int], status: DeliveryStatus, message_id: str | None, at: dt.datetime) -> int:
    """SendGrid has the message: deliveries not yet recorded as sent are. The send time is when the
    send started, as far as we know it."""
    return (
        conn.execute(
            D.update()
            .where(D.c.id.in_(ids), D.c.status.in_(NOT_YET_SENT))
            .values(
                status=status,
                claim_token=None,
                claimed_by=None,
                error=None,
                updated_at=at,
                provider_id=sa.func.coalesce(D.c.provider_id, message_id),
                sent_at=sa.func.coalesce(D.c.sent_at, D.c.send_started_at, at),
            )
        ).rowcount
        or 0
    )


def _fail(session: Session, deliveries: list, status: DeliveryStatus, reason: str, at: dt.datetime) -> list:
    """Mark deliveries bounced/failed and flag their contacts; returns the deliveries that changed."""
    conn = session.connection()
    changed = []
    for d in deliveries:
        n = conn.execute(
            D.update()
            .where(D.c.id == d.id, D.c.status.notin_(FINAL_FAILURES))
            .values(status=status, error=reason, claim_token=None, updated_at=at)
        ).rowcount
        if n:
            changed.append(d)
    contact_ids = sorted({d.contact_id for d in changed if d.contact_id})
    if contact_ids:
        conn.execute(
            K.update()
            .where(K.c.id.in_(contact_ids))
            .values(undeliverable=True, undeliverable_reason=reason, undeliverable_at=at)
        )
    return changed


def _alert_reps(session: Session, deliveries: list, reason: str, at: dt.datetime) -> int:
    """One planned bounce notice to the account rep per failed delivery of a customer notice."""
    if not deliveries:
        return 0
    conn = session.connection()
    notices = {
        r.id: r
        for r in conn.execute(
            sa.select(
                N.c.id,
                N.c.customer_id,
                N.c.milestone_id,
                N.c.release_id,
                N.c.audience,
                N.c.revision,
                N.c.milestone_date,
            ).where(N.c.id.in_(sorted({d.notice_id for d in deliveries})))
        ).all()
    }
    C = table_of(Customer)
    rep_of = dict(
        conn.execute(
            sa.select(C.c.id, C.c.account_rep).where(C.c.id.in_({n.customer_id for n in notices.values()}))
        ).all()
    )
    created = 0
    for d in deliveries:
        notice = notices[d.notice_id]
        if notice.audience != "customer":  # a rep's own alert bounced: nobody further to tell
            continue
        created += (
            conn.execute(
                insert_ignore(session, N)
                .values(
                    key=policy.notice_key(
                        NoticeKind.BOUNCE, notice.customer_id, notice.milestone_id, str(d.id)
                    ),
                    customer_id=notice.customer_id,
                    milestone_id=notice.milestone_id,
                    release_id=notice.release_id,
                    kind=NoticeKind.BOUNCE,
                    audience="rep",
                    slot=str(d.id),
                    revision=notice.revision,
                    milestone_date=notice.milestone_date,
                    detail=f"{d.recipient}: {reason}",
                    due_at=reps.digest_due(
                        session, rep_of[notice.customer_id], at
                    ),  # in the rep's daily digest
                    status=NoticeStatus.PLANNED,
                    created_at=at,
                )
                .returning(N.c.id)
            ).first()
            is not None
        )
    return created
