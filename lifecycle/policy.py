"""The notice policy as pure functions: no database, no clock. Time is always passed in.

- A stage's date is the milestone date minus N calendar months (end-of-month clamped: 31 May - 3
  months = 28/29 Feb) or N weeks.
- A stage is due at 09:00 local time in the customer's timezone on its date (DST-correct).
- The 3-month stage is the contractual minimum and is always planned.
- A milestone date less than 3 months after `at` is "short notice"; a date before `at` is history.
- Eligibility is judged at a notice's *effective* due instant, never at the moment a tick runs: a
  stage falls due at its own instant, or when the customer became affected under the current date
  (deployment added, service started, date registered or moved), whichever is later. Stages that fall
  due at the same effective instant are caught up: only the latest is sent. A tick that runs late
  sends what fell due while the customer was eligible; only when it is later than `CATCH_UP_GRACE`
  (an outage, not a tick cadence) are older overdue stages dropped in favour of the latest.
- Reminders follow the current date: stage notices are keyed by the date they announce, so a moved
  milestone gets its stages again for the new date, and never twice for the same date.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache
from zoneinfo import ZoneInfo

from dateutil.relativedelta import relativedelta

from lifecycle import i18n
from lifecycle.i18n import N_

# The 3-month stage is the contractual minimum: it is always planned, whatever the configuration says.
CONTRACT_STAGE = "3m"
DEFAULT_STAGES = ("6m", "3m", "1m", "1w")
_STAGE_RE = re.compile(r"^(\d{1,2})([mw])$")
CONTRACT_MONTHS = 3
ESCALATION_STAGE = "1m"
# A tick later than this after a stage's effective due instant is an outage: of several overdue
# stages only the latest goes. Any tick cadence up to this long gives the same notices.
CATCH_UP_GRACE = dt.timedelta(days=7)


class SkipReason(StrEnum):
    """Why a notice was not sent (skipped) or not wanted any more (cancelled)."""

    SUPERSEDED = "superseded"  # catch-up: fell due at the same instant as a later stage, which went
    OUTAGE = "superseded-after-outage"  # the tick came too late: a later overdue stage went instead
    COVERED_BY_CHANGE = "covered-by-change"  # a date-changed / reinstated notice told them instead
    AGREEMENT = "agreement"  # the customer agreed an upgrade before the stage fell due
    SERVICE_LAPSED = "service-lapsed"  # the service period ended before the stage fell due
    SERVICE_NOT_STARTED = "service-not-started"  # the service starts after the milestone
    MILESTONE_PASSED = "milestone-passed"  # history: never notified
    NOT_AFFECTED = "not-affected"  # the deployment was removed before the stage fell due
    WITHDRAWN = "withdrawn"  # the milestone was withdrawn
    MOVED = "moved"  # the stage announced a date the milestone no longer has
    REPLACED = "replaced"  # a later change notice replaces this one before it went out
    EVERY_CHANNEL_FAILED = "every-channel-failed"  # nothing delivered it (a failed notice)


# Skipped or cancelled notices with these reasons come back when the situation changes (renewal,
# re-deployment, a milestone moved back to a date, reinstated).
REPLANNABLE = frozenset(
    {
        None,
        SkipReason.SERVICE_LAPSED,
        SkipReason.NOT_AFFECTED,
        SkipReason.MILESTONE_PASSED,
        SkipReason.WITHDRAWN,
        SkipReason.MOVED,
        SkipReason.SERVICE_NOT_STARTED,
    }
)


def notice_key(
    kind: str, customer_id: int, milestone_id: int | None, slot: str, date: dt.date | None = None
) -> str:
    """The unique key of a notice: one per customer, milestone and slot (a stage, or a revision for
    change notices); stages and escalations also name the milestone date they speak of."""
    key = f"{kind}:{customer_id}:{milestone_id or 0}:{slot}"
    return f"{key}:{date.isoformat()}" if date is not None else key


@dataclass(frozen=True, order=True)
class Stage:
    """A lead time before a milestone: `months` calendar months or `weeks` weeks."""

    days_hint: int  # for ordering: the larger, the earlier the stage
    name: str
    months: int = 0
    weeks: int = 0

    def date_before(self, milestone_date: dt.date) -> dt.date:
        return milestone_date - relativedelta(months=self.months, weeks=self.weeks)


def parse_stage(name: str) -> Stage:
    m = _STAGE_RE.match(name.strip())
    if not m or int(m.group(1)) == 0:
        raise ValueError(f"invalid stage {name!r}: use a number of months or weeks such as 6m or 1w")
    n, unit = int(m.group(1)), m.group(2)
    if unit == "m":
        return Stage(days_hint=n * 31, name=f"{n}m", months=n)
    return Stage(days_hint=n * 7, name=f"{n}w", weeks=n)


@lru_cache
def parse_stages(spec: str | tuple[str, ...] = DEFAULT_STAGES) -> tuple[str, ...]:
    """Stage names, earliest first; the contractual 3-month stage is always included."""
    names = spec.split(",") if isinstance(spec, str) else list(spec)
    stages = {parse_stage(n) for n in names if n.strip()} | {parse_stage(CONTRACT_STAGE)}
    return tuple(s.name for s in sorted(stages, reverse=True))


def stage_date(milestone_date: dt.date, stage: str) -> dt.date:
    return parse_stage(stage).date_before(milestone_date)


@lru_cache(maxsize=1024)
def zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


@lru_cache(maxsize=65536)
def local_instant(day: dt.date, tz: str, hour: int = 9) -> dt.datetime:
    """`hour`:00 local time on `day` in `tz`, as an aware UTC datetime.

    On a DST gap the wall time is moved forward (fold=0 semantics of zoneinfo), so the instant exists.
    """
    local = dt.datetime(day.year, day.month, day.day, hour, tzinfo=zone(tz))
    # Normalise through UTC: a non-existent wall time (spring-forward gap) resolves forward.
    return local.astimezone(dt.UTC)


def due_at(milestone_date: dt.date, stage: str, tz: str, hour: int = 9) -> dt.datetime:
    return local_instant(stage_date(milestone_date, stage), tz, hour)


def local_date(at: dt.datetime, tz: str) -> dt.date:
    return at.astimezone(zone(tz)).date()


@lru_cache(maxsize=65536)
def contract_deadline(milestone_date: dt.date) -> dt.date:
    """The last day on which a first notice still keeps the 'at least 3 months' promise."""
    return milestone_date - relativedelta(months=CONTRACT_MONTHS)


def is_short_notice(milestone_date: dt.date, at: dt.datetime | dt.date) -> bool:
    """True when the date is less than 3 calendar months after `at` (and not already past)."""
    today = at.date() if isinstance(at, dt.datetime) else at
    return today <= milestone_date and today > contract_deadline(milestone_date)


def is_history(milestone_date: dt.date, at: dt.datetime | dt.date) -> bool:
    today = at.date() if isinstance(at, dt.datetime) else at
    return milestone_date < today


def days_left(milestone_date: dt.date, today: dt.date) -> int:
    return (milestone_date - today).days


def effective_due(
    stage_day: dt.date,
    tz: str,
    *,
    affected_since: dt.datetime | None,
    service_start: dt.date | None,
    hour: int = 9,
) -> tuple[dt.date, dt.datetime]:
    """(send day, due instant) of a stage: its own day at `hour` local, moved to the first day of
    service if it falls before it, and to the instant the customer became affected under the current
    date if that is later (then it goes at once rather than waiting for 09:00)."""
    day = max(stage_day, service_start) if service_start else stage_day
    due = local_instant(day, tz, hour)
    if affected_since is not None and affected_since > due:
        return local_date(affected_since, tz), affected_since
    return day, due


def stage_outcome(
    day: dt.date,
    due: dt.datetime,
    milestone_date: dt.date,
    *,
    service_start: dt.date | None,
    service_end: dt.date | None,
    removed: dt.datetime | None,
    change_due: dt.datetime | None,
) -> tuple[str, SkipReason | str | None] | None:
    """What becomes of a stage falling due on `day` at `due`, judged at that instant:
    ("planned", None), ("skipped", reason), or None when it is not wanted at all (the customer stopped
    running the release before it fell due)."""
    if day > milestone_date:  # became affected after the date: history
        return (
            "skipped",
            SkipReason.SERVICE_NOT_STARTED
            if service_start and service_start > milestone_date
            else SkipReason.MILESTONE_PASSED,
        )
    if service_end is not None and day > service_end:
        return "skipped", SkipReason.SERVICE_LAPSED
    if removed is not None and due >= removed:
        return None
    if change_due is not None and due <= change_due:  # the change notice told them instead
        return "skipped", SkipReason.COVERED_BY_CHANGE
    return "planned", None


def caught_up(stages: list[tuple[dt.date, dt.datetime, bool]]) -> list[bool]:
    """Catch-up: of the stages (stage date, due instant, going out) that fall due at the same instant,
    only the latest goes; True for each stage superseded by a later one due with it."""
    latest: dict[dt.datetime, dt.date] = {}
    for sdate, due, going in stages:
        if going:
            latest[due] = max(latest.get(due, sdate), sdate)
    return [going and sdate < latest[due] for sdate, due, going in stages]


# A release's phases end in this order: end of sale <= end of full support <= end of maintenance <=
# end of life (lifecycle.models.MilestoneKind lists the same kinds in the same order).
LIFECYCLE_ORDER = ("end-of-sale", "end-of-full-support", "end-of-maintenance", "end-of-life")


@dataclass(frozen=True)
class OrderViolation:
    """Two milestones out of lifecycle order (`earlier` should not be after `later`), or a release
    milestone after the product-level milestone of the same kind (`scope` = "product")."""

    earlier: str
    earlier_date: dt.date
    later: str
    later_date: dt.date
    scope: str = "release"

    def message(self) -> str:
        label = {k: k.replace("-", " ") for k in LIFECYCLE_ORDER}
        if self.scope == "product":
            return (
                f"{label[self.earlier]} of the release ({self.earlier_date.isoformat()}) is after the "
                f"product's {label[self.later]} ({self.later_date.isoformat()}): no version can outlive its "
                "product"
            )
        return (
            f"{label[self.earlier]} ({self.earlier_date.isoformat()}) is after {label[self.later]} "
            f"({self.later_date.isoformat()}): phases end in the order end of sale, full support, "
            "maintenance, life"
        )


def order_violations(dates: dict[str, dt.date]) -> list[OrderViolation]:
    """Pairs of a release's milestones (kind -> date) out of lifecycle order."""
    kinds = [k for k in LIFECYCLE_ORDER if k in dates]
    return [
        OrderViolation(a, dates[a], b, dates[b])
        for i, a in enumerate(kinds)
        for b in kinds[i + 1 :]
        if dates[a] > dates[b]
    ]


def product_violations(
    product_dates: dict[str, dt.date], release_dates: dict[str, dt.date]
) -> list[OrderViolation]:
    """A release milestone after the product-level milestone of the same kind."""
    return [
        OrderViolation(k, release_dates[k], k, product_dates[k], scope="product")
        for k in LIFECYCLE_ORDER
        if k in product_dates and k in release_dates and release_dates[k] > product_dates[k]
    ]


class Lead(StrEnum):
    """What a stage reminder can truthfully say about its lead time."""

    SCHEDULED = "scheduled"  # sent on its stage day: "98 days left (3 months' notice)"
    CATCH_UP = "catch-up"  # sent after its stage day, having been told before or in time
    SHORT_NOTICE = "short-notice"  # the first word less than 3 months before the date
    PASSED = "passed"  # the date is past (a late tick after an outage)


def lead(stage_day: dt.date | None, milestone_date: dt.date, today: dt.date, *, told_before: bool) -> Lead:
    """Which lead-time label is true for a stage reminder read on `today` (the customer's day)."""
    if milestone_date < today:
        return Lead.PASSED
    if stage_day is not None and today <= stage_day:
        return Lead.SCHEDULED
    if not told_before and today > contract_deadline(milestone_date):
        return Lead.SHORT_NOTICE
    return Lead.CATCH_UP


# ------------------------------------------------------------------------------------- upgrade plans


def version_key(version: str) -> tuple:
    """Natural order for version strings: 1.9 < 1.10, 3.16 < 3.18."""
    return tuple(
        (0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"[.\-_+~]", version)
    )


@dataclass(frozen=True)
class Target:
    """A release offered as an upgrade target: its version and the day it ends (its end of life), or
    `ended` when it has ended without a published date."""

    version: str
    end: dt.date | None = None
    ended: bool = False

    def ended_on(self, day: dt.date) -> bool:
        return self.ended or (self.end is not None and self.end < day)


class PlanProblem(StrEnum):
    """Why an upgrade plan is refused. The English text (a template over the problem's values) is the
    key the page translator looks up, so portal and acknowledgement pages say it in the customer's
    language."""

    TARGET_REQUIRED = "target"
    DATE_REQUIRED = "date"
    DATE_PAST = "date-past"
    TARGET_UNKNOWN = "target-unknown"
    TARGET_NOT_LATER = "target-not-later"
    TARGET_ENDED = "target-ended"


PLAN_TEXTS = {
    PlanProblem.TARGET_REQUIRED: N_("A planned upgrade needs a target version."),
    PlanProblem.DATE_REQUIRED: N_("A planned upgrade needs a planned date."),
    PlanProblem.DATE_PAST: N_("{date} is in the past: a planned upgrade needs a date from today on."),
    PlanProblem.TARGET_UNKNOWN: N_("There is no release {target} of this product."),
    PlanProblem.TARGET_NOT_LATER: N_(
        "{target} is not a later release than {version}: choose a newer version."
    ),
    PlanProblem.TARGET_ENDED: N_(
        "{target} reaches its end of life on {end}, before the planned date {date}: "
        "choose a version that is still supported then."
    ),
}
PLAN_FIELDS = {
    PlanProblem.TARGET_REQUIRED: "target",
    PlanProblem.DATE_REQUIRED: "planned_date",
    PlanProblem.DATE_PAST: "planned_date",
    PlanProblem.TARGET_UNKNOWN: "target",
    PlanProblem.TARGET_NOT_LATER: "target",
    PlanProblem.TARGET_ENDED: "target",
}


def plan_problem(
    status: str,
    version: str,
    target: str | None,
    planned_date: dt.date | None,
    today: dt.date,
    targets: dict[str, Target],
) -> tuple[PlanProblem, dict] | None:
    """The one rule for a valid upgrade plan, on every channel (portal, link, API, CLI, rep form):
    `planned` needs a target and a date from today on; any target must be a later release of the same
    product (`targets`: every release of the product) that has not itself ended on the planned date
    (today without one). (problem, values for its text), or None when the plan is valid. A date after
    the milestone is valid but at risk (`plan_at_risk`)."""
    if status == "planned" and not target:
        return PlanProblem.TARGET_REQUIRED, {}
    found = targets.get(target) if target else None
    if target and found is None:
        return PlanProblem.TARGET_UNKNOWN, {"target": target}
    if target and version_key(target) <= version_key(version):
        return PlanProblem.TARGET_NOT_LATER, {"target": target, "version": version}
    if status == "planned":
        if planned_date is None:
            return PlanProblem.DATE_REQUIRED, {}
        if planned_date < today:
            return PlanProblem.DATE_PAST, {"date": planned_date.isoformat()}
    if found is None:
        return None
    day = planned_date if planned_date is not None and planned_date > today else today
    if found.ended_on(day):
        return PlanProblem.TARGET_ENDED, {
            "target": target,
            "end": found.end.isoformat() if found.end else "—",
            "date": day.isoformat(),
        }
    return None


def valid_targets(version: str, targets: dict[str, Target], today: dt.date) -> list[Target]:
    """Upgrade targets a picker offers: later releases not ended today, newest first."""
    return sorted(
        (
            t
            for t in targets.values()
            if version_key(t.version) > version_key(version) and not t.ended_on(today)
        ),
        key=lambda t: version_key(t.version),
        reverse=True,
    )


def plan_at_risk(
    status: str, target: str | None, planned_date: dt.date | None, milestone_date: dt.date
) -> bool:
    """A `planned` upgrade dated after the milestone (or, from before the rule, without a target or a
    date): recorded, but it does not count as agreed for reminders and escalation."""
    if status != "planned":
        return False
    return not target or planned_date is None or planned_date > milestone_date


def counts_as_agreed(
    status: str, target: str | None, planned_date: dt.date | None, milestone_date: dt.date
) -> bool:
    """An agreement that stops routine reminders about a milestone (the scheduler's SQL is the same
    rule: `scheduler.agreed_at_due`)."""
    return status in AGREED and not plan_at_risk(status, target, planned_date, milestone_date)


AGREED = ("acknowledged", "planned", "completed")


# ----------------------------------------------------------------------------------------------- risk


RISK_TEXTS = {  # English messages, translated through the catalogs (lifecycle.i18n)
    "only-bounced": N_("their only contact bounced: no email reaches them"),
    "all-bounced": N_("every contact bounced: no email reaches them"),
    "plan-late": N_("the upgrade is planned for {date}, after the milestone on {milestone}"),
    "plan-incomplete": N_("the plan has no target or date"),
    "none-1m": N_("no agreement, and the milestone is less than a month away"),
    "declined-1m": N_("the customer declined, and the milestone is less than a month away"),
    "none-3m": N_("no agreement, and the milestone is less than 3 months away"),
    "declined-3m": N_("the customer declined, and the milestone is less than 3 months away"),
    "agreed": N_("agreed ({status})"),
    "agreed-plan": N_("upgrade to {target} planned for {date}"),
    "far": N_("the milestone is more than 3 months away"),
}


@dataclass(frozen=True)
class Risk:
    """The rep's traffic light for one customer and milestone, with every reason for its colour
    (codes of `RISK_TEXTS` and their values)."""

    colour: str  # red | amber | green
    reasons: tuple[tuple[str, tuple[tuple[str, str], ...]], ...]

    def text(self, locale: str = "en") -> str:
        # TRANSLATORS: between the reasons of a risk ("no agreement, …; every contact bounced: …")
        sep = i18n.gettext_in(locale, "; ")
        return sep.join(
            i18n.gettext_in(locale, RISK_TEXTS[code], **dict(values)) for code, values in self.reasons
        )

    @property
    def reason(self) -> str:
        return self.text("en")


def _why(code: str, **values) -> tuple[str, tuple[tuple[str, str], ...]]:
    return code, tuple(sorted((k, str(val)) for k, val in values.items()))


def risk(
    *,
    status: str,
    target: str | None,
    planned_date: dt.date | None,
    milestone_date: dt.date,
    today: dt.date,
    contacts: int = 0,
    bounced: int = 0,
) -> Risk:
    """The one risk rule (dashboard, CSV, API, emails, portal):

    - red: every contact bounced (no email reaches the customer), the plan is at risk, or there is no
      agreement and the milestone's 1-month stage has come;
    - amber: no agreement and the milestone is less than 3 months away;
    - green: agreed, or the milestone is further out.
    """
    red = []
    if contacts and bounced >= contacts:
        red.append(_why("all-bounced" if contacts > 1 else "only-bounced"))
    if plan_at_risk(status, target, planned_date, milestone_date):
        red.append(
            _why("plan-late", date=planned_date.isoformat(), milestone=milestone_date.isoformat())
            if planned_date and target
            else _why("plan-incomplete")
        )
    agreed = status in AGREED
    prefix = "declined" if status == "declined" else "none"
    if not agreed and today >= stage_date(milestone_date, ESCALATION_STAGE):
        red.append(_why(f"{prefix}-1m"))
    if red:
        return Risk("red", tuple(red))
    if not agreed and is_short_notice(milestone_date, today):
        return Risk("amber", (_why(f"{prefix}-3m"),))
    if agreed:
        return Risk(
            "green",
            (
                _why("agreed-plan", status=status, target=target, date=planned_date.isoformat())
                if target and planned_date
                else _why("agreed", status=status),
            ),
        )
    return Risk("green", (_why("far"),))


# ------------------------------------------------------------------------------------------ rep digest


def digest_due(at: dt.datetime, tz: str, hour: int = 9) -> dt.datetime:
    """When a rep notice made at `at` goes out: in the rep's daily digest, at `hour`:00 in the rep's
    timezone on or after `at`. Everything a rep is told in a day goes in one email."""
    day = local_date(at, tz)
    due = local_instant(day, tz, hour)
    return due if due >= at else local_instant(day + dt.timedelta(days=1), tz, hour)
