"""What a notice says: template contexts built from the database, rendered with Jinja2 in the reader's locale.

One customer message (email or portal) lists one or more notices (a digest); one rep message lists
escalations, bounce alerts and agreement news. The email (and portal) templates live in
`lifecycle/channels/email/templates/`, one per message for every language (`lifecycle.i18n`); other
channels keep theirs in their own folders.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass

import sqlalchemy as sa
from sqlmodel import Session, col, select

from lifecycle import i18n, links, policy, registry, reps
from lifecycle.config import get_settings
from lifecycle.i18n import N_
from lifecycle.models import (
    Agreement,
    AgreementChange,
    Customer,
    Delivery,
    Milestone,
    MilestoneChange,
    Notice,
    Product,
    Release,
    pk,
    table_of,
)
from lifecycle.templating import render

# Every word here is an English message translated through the catalogs (lifecycle.i18n): N_() marks
# it for `make messages`, the functions below translate it for the reader's locale.
KIND_LABELS = {
    "end-of-sale": N_("end of sale"),
    "end-of-full-support": N_("end of full support"),
    "end-of-maintenance": N_("end of maintenance"),
    "end-of-life": N_("end of life"),
}
URGENT_DAYS = 31  # a milestone this close is shown as urgent (red) in messages
AGREEMENT_LABELS = {
    "none": N_("no agreement"),
    "acknowledged": N_("acknowledged"),
    "planned": N_("upgrade planned"),
    "completed": N_("upgrade completed"),
    "declined": N_("declined"),
}
CHANNEL_LABELS = {
    "web": N_("the portal"),
    "email-link": N_("the email link"),
    "phone": N_("phone"),
    "api": N_("the API"),
    "cli": N_("the CLI"),
    "import": N_("an import"),
}
# What customers read about why a date changed: text written for them (MilestoneChange.customer_reason),
# else a neutral sentence for the change's reason code or action. The reason a product manager or an
# import gives (MilestoneChange.reason) is internal and never shown to customers.
REASON_TEXTS = {
    "moved": N_("The vendor has revised this date."),
    "withdrawn": N_("This milestone no longer applies."),
    "reinstated": N_("This milestone applies again."),
    "upstream-moved": N_("The upstream project has changed this date."),
    "upstream-removed": N_("The upstream project no longer publishes this date."),
    "upstream-ended": N_("The upstream project has declared this phase ended without publishing a date."),
    "upstream-restored": N_("The upstream project publishes this date again."),
    "upstream-short": N_("The upstream project published this date less than 3 months ahead."),
    "import-removed": N_("This milestone no longer applies."),
}
LEAD_TEXTS = {
    policy.Lead.SCHEDULED: N_("{days} ({stage} notice)"),
    policy.Lead.CATCH_UP: N_("catch-up: {days}"),
    policy.Lead.SHORT_NOTICE: N_("short notice: {n}"),
    policy.Lead.PASSED: N_("this date has passed"),
}


def days_text(days: int | None, locale: str, *, bare: bool = False) -> str:
    """'98 days left' / '剩余98天' ('98 days' / '98天' when bare); 'today' / '今天' on the day."""
    if days is None:
        return ""
    if days == 0:
        return i18n.gettext_in(locale, "today")
    if days < 0:
        return i18n.ngettext_in(locale, "{n} day ago", "{n} days ago", -days)
    if bare:
        return i18n.ngettext_in(locale, "{n} day", "{n} days", days)
    return i18n.ngettext_in(locale, "{n} day left", "{n} days left", days)


def lead_text(lead: policy.Lead, days: int | None, stage: str | None, locale: str) -> str:
    """The lead-time label of a stage reminder that says what is true (policy.lead decides which)."""
    return i18n.gettext_in(
        locale,
        LEAD_TEXTS[lead],
        days=days_text(days, locale),
        n=days_text(days, locale, bare=True),
        stage=stage_label(stage, locale, possessive=True),
    )


def reason_text(change: MilestoneChange | None, locale: str) -> str:
    """Why a milestone changed, as a customer of `locale` may read it."""
    if change is None:
        return ""
    if change.customer_reason:
        try:
            written = json.loads(change.customer_reason)
        except ValueError:
            written = {}
        if isinstance(written, dict) and written.get(locale):
            return str(written[locale])
    text = REASON_TEXTS.get(change.reason_code or "", REASON_TEXTS.get(change.action, ""))
    return i18n.gettext_in(locale, text) if text else ""


format_date = i18n.format_date


def stage_label(stage: str | None, locale: str, *, possessive: bool = False) -> str:
    """'6 months' / '6个月'; possessive, as in "6 months' notice": "6 months'"."""
    if not stage:
        return ""
    n, unit = int(stage[:-1]), stage[-1]
    if unit == "w":
        return (
            i18n.ngettext_in(locale, "{n} week's", "{n} weeks'", n)
            if possessive
            else i18n.ngettext_in(locale, "{n} week", "{n} weeks", n)
        )
    return (
        i18n.ngettext_in(locale, "{n} month's", "{n} months'", n)
        if possessive
        else i18n.ngettext_in(locale, "{n} month", "{n} months", n)
    )


def kind_label(kind: str, locale: str) -> str:
    return i18n.gettext_in(locale, KIND_LABELS[kind]) if kind in KIND_LABELS else kind


def agreement_label(status: str, locale: str) -> str:
    return i18n.gettext_in(locale, AGREEMENT_LABELS[status]) if status in AGREEMENT_LABELS else status


def channel_label(channel: str | None, locale: str) -> str:
    """How an agreement reached us ('the portal', 'phone', …); '' when unknown."""
    return i18n.gettext_in(locale, CHANNEL_LABELS[channel]) if channel in CHANNEL_LABELS else ""


@dataclass
class Rendered:
    subject: str
    text: str
    html: str


def _told(session: Session, pairs: set[tuple[int, int]]) -> dict[tuple[int, int], list]:
    """Every notice each (customer, milestone) pair was given, oldest first: what they knew before."""
    out: dict[tuple[int, int], list] = {}
    if not pairs:
        return out
    N = table_of(Notice)
    rows = (
        session.connection()
        .execute(
            sa.select(
                N.c.id, N.c.customer_id, N.c.milestone_id, N.c.kind, N.c.milestone_date, N.c.released_at
            )
            .where(
                N.c.customer_id.in_({c for c, _ in pairs}),
                N.c.milestone_id.in_({m for _, m in pairs}),
                N.c.audience == "customer",
                # `status || ''`: not a search of ix_notice_status_due, which SQLite (no statistics)
                # chose over the pairs' ix_notice_customer_milestone and read every sent notice of the
                # fleet, more at each chunk of a catch-up (38 ms a call at half the reference fleet).
                N.c.status.concat("").in_(["sent", "released"]),
            )
            .order_by(N.c.released_at, N.c.id)
        )
        .all()
    )
    for r in rows:
        if (r.customer_id, r.milestone_id) in pairs:
            out.setdefault((r.customer_id, r.milestone_id), []).append(r)
    return out


def notice_contexts(session: Session, notice_ids: list[int], at: dt.datetime) -> dict[int, dict]:
    """Template context of each notice, in a handful of queries whatever the number of notices.

    Everything a template shows is computed here (labels, reasons, tone), per the customer's locale:
    templates never decide thresholds or fall back to another language."""
    if not notice_ids:
        return {}
    rows = session.exec(
        # sqlmodel's select() takes any number of entities, but its overloads stop at four
        select(Notice, Customer, Milestone, Release, Product)  # type: ignore[call-overload]
        .join(Customer, Customer.id == Notice.customer_id)
        .join(Milestone, Milestone.id == Notice.milestone_id, isouter=True)
        .join(Release, Release.id == sa.func.coalesce(Notice.release_id, Milestone.release_id), isouter=True)
        .join(Product, Product.id == sa.func.coalesce(Milestone.product_id, Release.product_id), isouter=True)
        .where(col(Notice.id).in_(notice_ids))
    ).all()
    milestone_ids = {n.milestone_id for n, *_ in rows if n.milestone_id}
    changes: dict[tuple[int, int], MilestoneChange] = {}
    dated: dict[int, MilestoneChange] = {}  # the change that set each milestone's current date
    if milestone_ids:
        for ch in session.exec(
            select(MilestoneChange)
            .where(col(MilestoneChange.milestone_id).in_(milestone_ids))
            .order_by(col(MilestoneChange.revision), col(MilestoneChange.id))
        ):
            changes[(ch.milestone_id, ch.revision)] = ch
            if ch.action in ("created", "moved", "reinstated"):
                dated[ch.milestone_id] = ch
    agreements: dict[tuple[int, int], Agreement] = {}
    pairs = {(c.id, r.id) for _, c, _, r, _ in rows if r is not None}
    if pairs:
        for ag in session.exec(
            select(Agreement).where(
                col(Agreement.customer_id).in_({c for c, _ in pairs}),
                col(Agreement.release_id).in_({r for _, r in pairs}),
            )
        ):
            agreements[(ag.customer_id, ag.release_id)] = ag
    told = _told(
        session,
        {(n.customer_id, n.milestone_id) for n, *_ in rows if n.milestone_id and n.audience == "customer"},
    )
    # Bounce and give-up alerts name the delivery they are about in their slot.
    about_delivery = ("bounce", "undelivered")
    bounce_ids = [int(n.slot) for n, *_ in rows if n.kind in about_delivery and n.slot.isdigit()]
    bounced = (
        {d.id: d for d in session.exec(select(Delivery).where(col(Delivery.id).in_(bounce_ids)))}
        if bounce_ids
        else {}
    )
    rep_settings = reps.settings_of(session, {c.account_rep for _, c, *_ in rows})
    rep_news = _rep_news(session, [n for n, *_ in rows if n.audience == "rep"], at)

    out: dict[int, dict] = {}
    for notice, customer, milestone, release, product in rows:
        # Customers read their own language, reps the language of their settings.
        rep = rep_settings[customer.account_rep.strip().lower()]
        locale = customer.locale if notice.audience == "customer" else rep.locale
        locale = i18n.supported(locale)
        today = policy.local_date(at, customer.timezone)
        date = notice.milestone_date or (milestone.date if milestone else None)
        change = changes.get((milestone.id, notice.revision)) if milestone else None
        agreement = agreements.get((customer.id, release.id)) if release else None
        days = policy.days_left(date, today) if date else None
        # What the customer knew before this notice: the date of the last notice given before it.
        earlier = [
            r
            for r in told.get((customer.id, notice.milestone_id), [])
            if r.id != notice.id
            and (
                notice.released_at is None
                or r.released_at is None
                or _utc(r.released_at) < _utc(notice.released_at)
            )
        ]
        known_date = earlier[-1].milestone_date if earlier and earlier[-1].kind != "withdrawn" else None
        if known_date is None and change is not None and change.old_date and notice.kind != "stage":
            known_date = change.old_date
        lead = None
        if notice.kind == "stage" and date is not None:
            lead = policy.lead(notice.stage_date, date, today, told_before=bool(earlier))
        if notice.kind == "stage":
            why = reason_text(dated.get(milestone.id), locale) if lead == policy.Lead.SHORT_NOTICE else ""
        else:
            why = reason_text(change, locale)
        ctx = {
            "notice_id": notice.id,
            "kind": notice.kind,
            "audience": notice.audience,
            "stage": notice.slot if notice.kind in ("stage", "escalation") else None,
            "stage_label": stage_label(notice.slot, locale) if notice.kind in ("stage", "escalation") else "",
            "lead": str(lead) if lead else None,
            "lead_text": lead_text(lead, days, notice.slot, locale) if lead else "",
            "customer_key": customer.key,
            "customer_name": customer.name,
            "product_slug": product.slug if product else "",
            "product_name": product.name if product else "",
            "version": release.version if release else None,
            "milestone_kind": milestone.kind if milestone else None,
            "milestone_label": kind_label(milestone.kind, locale) if milestone else "",
            "date": date,
            "stage_date": notice.stage_date,
            "date_text": format_date(date, locale),
            "days_left": days,
            "days_text": days_text(days, locale),
            "passed": days is not None and days < 0,
            "tone": _tone(notice.kind, days),
            "upgrade_to": release.upgrade_to if release else None,
            "revision": notice.revision,
            "old_date": known_date if known_date and known_date != date else None,
            "old_date_text": format_date(known_date, locale) if known_date and known_date != date else "",
            "reason": why,
            "short_notice": lead == policy.Lead.SHORT_NOTICE,
            "ack_url": links.ack_url(session, customer.id, release.id)
            if release and (days is None or days >= 0)
            else None,
            "calendar_url": links.calendar_url(customer.calendar_token),
            "agreement_status": agreement.status if agreement else "none",
            "agreement_label": agreement_label(agreement.status if agreement else "none", locale),
            "agreement_target": agreement.target_version if agreement else None,
            "agreement_feedback": agreement.feedback if agreement else None,
            "agreement_by": agreement.by if agreement else None,
            "detail": notice.detail or "",
            "bounced_email": bounced[int(notice.slot)].recipient
            if notice.kind in about_delivery and notice.slot.isdigit() and int(notice.slot) in bounced
            else "",
            "dashboard_url": f"{get_settings().base_url}/dashboard",
            "portal_url": f"{get_settings().base_url}/portal",
            "milestone_id": milestone.id if milestone else None,
            "locale": locale,
            "rep_email": rep.email,
            "rep_name": rep.name or "",
            "rep_display": rep.display,
        }
        if notice.audience == "rep":
            ctx |= rep_news.get(notice.id, {})
            ctx |= _rep_item(ctx, locale)
        out[notice.id] = ctx
    return out


def _rep_news(session: Session, notices: list[Notice], at: dt.datetime) -> dict[int, dict]:
    """What each rep notice reports, in a few queries: the agreement change it was made for (its
    status, target, planned date, feedback, who), what it changed, and the risk of the release's next
    milestone (`policy.risk`: the same rule as the dashboard)."""
    if not notices:
        return {}
    change_ids = [int(n.slot) for n in notices if n.kind == "agreement" and n.slot.isdigit()]
    changes = (
        {
            c.id: c
            for c in session.exec(select(AgreementChange).where(col(AgreementChange.id).in_(change_ids)))
        }
        if change_ids
        else {}
    )
    agreement_ids = {c.agreement_id for c in changes.values()}
    earlier: dict[int, list[AgreementChange]] = {}
    if agreement_ids:
        for c in session.exec(
            select(AgreementChange)
            .where(col(AgreementChange.agreement_id).in_(agreement_ids))
            .order_by(col(AgreementChange.at), col(AgreementChange.id))
        ):
            earlier.setdefault(c.agreement_id, []).append(c)
    customer_ids = {n.customer_id for n in notices}
    release_ids = {n.release_id for n in notices if n.release_id}
    agreements: dict[tuple[int, int | None], Agreement] = {
        (a.customer_id, a.release_id): a
        for a in session.exec(
            select(Agreement).where(
                col(Agreement.customer_id).in_(customer_ids),
                col(Agreement.release_id).in_(release_ids or {0}),
            )
        )
    }
    contacts = registry.contact_counts(session, customer_ids)
    releases = {r.id: r for r in session.exec(select(Release).where(col(Release.id).in_(release_ids or {0})))}
    upcoming: dict[int | None, dt.date] = {}
    if releases:
        for m in session.exec(
            select(Milestone).where(
                Milestone.status == "planned",
                Milestone.date >= at.date() - dt.timedelta(days=1),
                sa.or_(
                    col(Milestone.release_id).in_(list(releases)),
                    sa.and_(
                        col(Milestone.release_id).is_(None),
                        col(Milestone.product_id).in_({r.product_id for r in releases.values()}),
                    ),
                ),
            )
        ):
            for rid, r in releases.items():
                if m.release_id == rid or (m.release_id is None and m.product_id == r.product_id):
                    upcoming[rid] = min(upcoming.get(rid, m.date), m.date)
    customers = {c.id: c for c in session.exec(select(Customer).where(col(Customer.id).in_(customer_ids)))}
    out: dict[int, dict] = {}
    for n in notices:
        info: dict = {}
        agr = agreements.get((n.customer_id, n.release_id))
        change = changes.get(int(n.slot)) if n.kind == "agreement" and n.slot.isdigit() else None
        if change is not None and (agr is None or change.agreement_id != agr.id):
            change = None  # a notice from before 0005, whose slot counted changes: report the agreement as is
        if change is not None:
            history = earlier.get(change.agreement_id, [])
            before = [c for c in history if (c.at, c.id) < (change.at, change.id)]
            prev = before[-1] if before else None
            info["change"] = {
                "status": change.status,
                "target": change.target_version,
                "planned_date": change.planned_date,
                "feedback": change.feedback,
                "by": change.by,
                "recorded_by": change.recorded_by,
                "channel": change.channel,
                "at": change.at,
                "first": prev is None,
                "status_changed": prev is None or prev.status != change.status,
                "old_target": prev.target_version
                if prev and prev.target_version != change.target_version
                else None,
                "old_date": prev.planned_date if prev and prev.planned_date != change.planned_date else None,
                "target_changed": prev is not None and prev.target_version != change.target_version,
                "date_changed": prev is not None and prev.planned_date != change.planned_date,
            }
        mdate = (
            n.milestone_date if n.kind == "escalation" and n.milestone_date else upcoming.get(n.release_id)
        )
        customer = customers[n.customer_id]
        if mdate is not None:
            status = change.status if change else (agr.status if agr else "none")
            target = change.target_version if change else (agr.target_version if agr else None)
            planned = change.planned_date if change else (agr.planned_date if agr else None)
            total, bad = contacts.get(n.customer_id, (0, 0))
            info["risk"] = policy.risk(
                status=status,
                target=target,
                planned_date=planned,
                milestone_date=mdate,
                today=policy.local_date(at, customer.timezone),
                contacts=total,
                bounced=bad,
            )
            info["at_risk"] = policy.plan_at_risk(status, target, planned, mdate)
            info["next_milestone_date"] = mdate
        out[pk(n)] = info
    return out


def _rep_item(ctx: dict, locale: str) -> dict:
    """The texts of a rep item in the rep's language (templates receive words, not rules)."""
    risk = ctx.get("risk")
    out = {
        "risk_colour": risk.colour if risk else "",
        "risk_text": risk.text(locale) if risk else "",
        "next_date_text": format_date(ctx.get("next_milestone_date"), locale),
    }
    change = ctx.get("change")
    if change:
        out |= {
            "change_label": agreement_label(change["status"], locale),
            "change_target": change["target"] or "",
            "change_date_text": format_date(change["planned_date"], locale),
            "change_old_date_text": format_date(change["old_date"], locale) if change["date_changed"] else "",
            "change_old_target": (change["old_target"] or "—") if change["target_changed"] else "",
            "change_feedback": change["feedback"] or "",
            "change_by": change["by"] or "",
            "change_recorded_by": change["recorded_by"]
            if change["recorded_by"] not in (None, change["by"])
            else "",
            "change_status_changed": change["status_changed"],
            "change_channel": channel_label(change["channel"], locale),
        }
    return out


def _utc(value: dt.datetime) -> dt.datetime:
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value


def _tone(kind: str, days: int | None) -> str:
    """How a message item is highlighted: a computed value, so templates hold no thresholds."""
    if kind in ("withdrawn", "changed", "reinstated"):
        return kind
    return "urgent" if days is not None and days <= URGENT_DAYS else "info"


def _rep_sort_key(ctx: dict):
    """A rep's digest: escalations first, then bounces, then agreement news; by customer, oldest first."""
    order = {"escalation": 0, "bounce": 1, "agreement": 2}
    return (
        order.get(ctx["kind"], 9),
        ctx["customer_name"],
        ctx["product_slug"],
        ctx["version"] or "",
        ctx["notice_id"],
    )


def _sort_key(ctx: dict):
    return (
        ctx["date"] or dt.date.max,
        ctx["product_slug"],
        ctx["version"] or "",
        ctx["milestone_kind"] or "",
    )


def render_message(
    audience: str, locale: str, items: list[dict], customer: dict, *, medium: str = "email"
) -> Rendered:
    """Subject, text and HTML of one message listing `items` (notice contexts), for an email or the
    portal inbox (`medium`: only an email can be answered to reach the rep).

    Two reminders of the same milestone in one message (a tick that came late, within the catch-up
    grace) read as one: the latest stage."""
    latest: dict[tuple, dict] = {}
    for item in items:
        if item["kind"] == "stage":
            k = (item["milestone_id"], item["date"])
            if k not in latest or (item["stage_date"] or dt.date.min) > (
                latest[k]["stage_date"] or dt.date.min
            ):
                latest[k] = item
    items = [i for i in items if i["kind"] != "stage" or latest[(i["milestone_id"], i["date"])] is i]
    items = sorted(items, key=_sort_key if audience == "customer" else _rep_sort_key)
    if audience != "customer":
        locale = items[0].get("locale", "en")  # the rep's own language (their settings)
    locale = i18n.supported(locale)
    ctx = {
        "items": items,
        "first": items[0],
        "more": len(items) - 1,
        "customer": customer,
        "calendar_url": items[0]["calendar_url"],
        "webcal_url": links.webcal_url(items[0]["calendar_url"]),
        "rep": {"email": items[0]["rep_email"], "name": items[0]["rep_name"]},
        "has_ack_link": any(i.get("ack_url") and i["kind"] != "withdrawn" for i in items),
        "customers": len({i["customer_key"] for i in items}),
        "kinds": sorted({i["kind"] for i in items}),
        "medium": medium,
        "more_text": i18n.ngettext_in(
            locale,
            " and {n} more lifecycle notice",
            " and {n} more lifecycle notices",
            len(items) - 1,
            total=len(items),
        )
        if len(items) > 1
        else "",
    }
    name = "customer" if audience == "customer" else "rep"
    folder = "email/templates"
    subject = " ".join(render(f"{folder}/{name}.subject.txt", locale, **ctx).split())
    return Rendered(
        subject=subject,
        text=render(f"{folder}/{name}.txt", locale, **ctx),
        html=render(f"{folder}/{name}.html", locale, **ctx),
    )
