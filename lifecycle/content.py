"""What a notice says: template contexts built from the database, rendered with Jinja2 per locale.

One customer message (email or portal) lists one or more notices (a digest); one rep message lists
escalations, bounce alerts and agreement news. Templates live in `templates/email/<locale>/`.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import sqlalchemy as sa
from sqlmodel import Session, select

from lifecycle import links, policy
from lifecycle.config import get_settings
from lifecycle.models import (
    Agreement,
    Customer,
    Delivery,
    Milestone,
    MilestoneChange,
    Notice,
    Product,
    Release,
)
from lifecycle.templating import render

KIND_LABELS = {
    "en": {
        "end-of-sale": "end of sale",
        "end-of-full-support": "end of full support",
        "end-of-maintenance": "end of maintenance",
        "end-of-life": "end of life",
    },
    "zh-CN": {
        "end-of-sale": "停止销售",
        "end-of-full-support": "全面支持结束",
        "end-of-maintenance": "维护支持结束",
        "end-of-life": "生命周期终止",
    },
}
STAGE_LABELS = {
    "en": {"m": ("month", "months"), "w": ("week", "weeks")},
    "zh-CN": {"m": ("个月", "个月"), "w": ("周", "周")},
}
AGREEMENT_LABELS = {
    "en": {"none": "no agreement", "acknowledged": "acknowledged", "planned": "upgrade planned",
           "completed": "upgrade completed", "declined": "declined"},
    "zh-CN": {"none": "尚未确认", "acknowledged": "已确认", "planned": "已计划升级", "completed": "已完成升级",
              "declined": "已拒绝"},
}
MONTHS_EN = ("January", "February", "March", "April", "May", "June", "July", "August", "September",
             "October", "November", "December")


def format_date(day: dt.date | None, locale: str) -> str:
    if day is None:
        return ""
    if locale == "zh-CN":
        return f"{day.year}年{day.month}月{day.day}日"
    return f"{day.day} {MONTHS_EN[day.month - 1]} {day.year}"


def stage_label(stage: str | None, locale: str) -> str:
    if not stage:
        return ""
    n, unit = int(stage[:-1]), stage[-1]
    one, many = STAGE_LABELS.get(locale, STAGE_LABELS["en"])[unit]
    if locale == "zh-CN":
        return f"{n}{one}"
    return f"{n} {one if n == 1 else many}"


def kind_label(kind: str, locale: str) -> str:
    return KIND_LABELS.get(locale, KIND_LABELS["en"]).get(kind, kind)


@dataclass
class Rendered:
    subject: str
    text: str
    html: str


def notice_contexts(session: Session, notice_ids: list[int], at: dt.datetime) -> dict[int, dict]:
    """Template context of each notice, in a handful of queries whatever the number of notices."""
    if not notice_ids:
        return {}
    rows = session.exec(
        select(Notice, Customer, Milestone, Release, Product)
        .join(Customer, Customer.id == Notice.customer_id)
        .join(Milestone, Milestone.id == Notice.milestone_id, isouter=True)
        .join(Release, Release.id == sa.func.coalesce(Notice.release_id, Milestone.release_id), isouter=True)
        .join(Product, Product.id == sa.func.coalesce(Milestone.product_id, Release.product_id), isouter=True)
        .where(Notice.id.in_(notice_ids))
    ).all()
    milestone_ids = {n.milestone_id for n, *_ in rows if n.milestone_id}
    changes: dict[tuple[int, int], MilestoneChange] = {}
    if milestone_ids:
        for ch in session.exec(select(MilestoneChange).where(MilestoneChange.milestone_id.in_(milestone_ids))):
            changes[(ch.milestone_id, ch.revision)] = ch
    agreements: dict[tuple[int, int], Agreement] = {}
    pairs = {(c.id, r.id) for _, c, _, r, _ in rows if r is not None}
    if pairs:
        for ag in session.exec(select(Agreement).where(
                Agreement.customer_id.in_({c for c, _ in pairs}), Agreement.release_id.in_({r for _, r in pairs}))):
            agreements[(ag.customer_id, ag.release_id)] = ag
    # Bounce and give-up alerts name the delivery they are about in their slot.
    about_delivery = ("bounce", "undelivered")
    bounce_ids = [int(n.slot) for n, *_ in rows if n.kind in about_delivery and n.slot.isdigit()]
    bounced = {d.id: d for d in session.exec(select(Delivery).where(Delivery.id.in_(bounce_ids)))} if bounce_ids else {}

    out: dict[int, dict] = {}
    for notice, customer, milestone, release, product in rows:
        # Reps are the vendor's own staff: their messages are in English.
        locale = customer.locale if notice.audience == "customer" else "en"
        today = policy.local_date(at, customer.timezone)
        date = notice.milestone_date or (milestone.date if milestone else None)
        change = changes.get((milestone.id, notice.revision)) if milestone else None
        agreement = agreements.get((customer.id, release.id)) if release else None
        ctx = {
            "notice_id": notice.id,
            "kind": notice.kind,
            "audience": notice.audience,
            "stage": notice.slot if notice.kind in ("stage", "escalation") else None,
            "stage_label": stage_label(notice.slot, locale) if notice.kind in ("stage", "escalation") else "",
            "customer_key": customer.key,
            "customer_name": customer.name,
            "product_slug": product.slug if product else "",
            "product_name": product.name if product else "",
            "version": release.version if release else None,
            "milestone_kind": milestone.kind if milestone else None,
            "milestone_label": kind_label(milestone.kind, locale) if milestone else "",
            "date": date,
            "date_text": format_date(date, locale),
            "days_left": policy.days_left(date, today) if date else None,
            "upgrade_to": release.upgrade_to if release else None,
            "revision": notice.revision,
            "old_date_text": format_date(change.old_date, locale) if change and change.old_date else "",
            "reason": (change.reason if change else None) or "",
            "short_notice": bool(milestone and milestone.short_notice_reason and notice.kind == "stage"
                                 and date and not policy.is_history(date, today)
                                 and policy.is_short_notice(date, today)),
            "ack_url": links.ack_url(session, customer.id, release.id) if release else None,
            "calendar_url": links.calendar_url(customer.calendar_token),
            "agreement_status": agreement.status if agreement else "none",
            "agreement_label": AGREEMENT_LABELS.get(locale, AGREEMENT_LABELS["en"])[
                agreement.status if agreement else "none"],
            "agreement_target": agreement.target_version if agreement else None,
            "agreement_feedback": agreement.feedback if agreement else None,
            "agreement_by": agreement.by if agreement else None,
            "detail": notice.detail or "",
            "bounced_email": bounced[int(notice.slot)].recipient
            if notice.kind in about_delivery and notice.slot.isdigit() and int(notice.slot) in bounced else "",
            "dashboard_url": f"{get_settings().base_url}/dashboard",
            "portal_url": f"{get_settings().base_url}/portal",
            "milestone_id": milestone.id if milestone else None,
        }
        out[notice.id] = ctx
    return out


def _sort_key(ctx: dict):
    return (ctx["date"] or dt.date.max, ctx["product_slug"], ctx["version"] or "", ctx["milestone_kind"] or "")


def render_message(audience: str, locale: str, items: list[dict], customer: dict) -> Rendered:
    """Subject, text and HTML of one message listing `items` (notice contexts)."""
    items = sorted(items, key=_sort_key)
    if audience != "customer":
        locale = "en"
    folder = f"email/{locale if locale in ('en', 'zh-CN') else 'en'}"
    ctx = {"items": items, "first": items[0], "more": len(items) - 1, "customer": customer,
           "calendar_url": items[0]["calendar_url"], "webcal_url": links.webcal_url(items[0]["calendar_url"])}
    name = "customer" if audience == "customer" else "rep"
    subject = " ".join(render(f"{folder}/{name}.subject.txt", **ctx).split())
    return Rendered(subject=subject, text=render(f"{folder}/{name}.txt", **ctx),
                    html=render(f"{folder}/{name}.html", **ctx))
