"""The notice policy's pure rules: stage dates, send instants, short notice, catch-up."""

import datetime as dt

import pytest

from lifecycle import policy
from tests.conftest import utc

D = dt.date


@pytest.mark.parametrize(
    "milestone,stage,expected",
    [
        (D(2027, 5, 31), "3m", D(2027, 2, 28)),  # 31 May -> 28 Feb in a common year
        (D(2028, 5, 31), "3m", D(2028, 2, 29)),  # ... and 29 Feb in a leap year
        (D(2027, 8, 31), "6m", D(2027, 2, 28)),
        (D(2027, 3, 31), "1m", D(2027, 2, 28)),
        (D(2028, 3, 31), "1m", D(2028, 2, 29)),
        (D(2027, 7, 31), "1m", D(2027, 6, 30)),
        (D(2027, 3, 1), "1w", D(2027, 2, 22)),
        (D(2028, 3, 1), "1w", D(2028, 2, 23)),
        (D(2027, 1, 15), "3m", D(2026, 10, 15)),
    ],
)
def test_stage_dates_are_calendar_months_with_end_of_month_clamping(milestone, stage, expected):
    assert policy.stage_date(milestone, stage) == expected


@pytest.mark.parametrize(
    "tz,day,expected",
    [
        ("Asia/Shanghai", D(2027, 2, 28), utc(2027, 2, 28, 1)),  # UTC+8, no DST
        ("Europe/Berlin", D(2027, 3, 27), utc(2027, 3, 27, 8)),  # CET, the day before DST
        ("Europe/Berlin", D(2027, 3, 28), utc(2027, 3, 28, 7)),  # CEST, the day DST starts
        ("Europe/Berlin", D(2027, 10, 31), utc(2027, 10, 31, 8)),  # back to CET
        ("America/Los_Angeles", D(2027, 3, 13), utc(2027, 3, 13, 17)),  # PST
        ("America/Los_Angeles", D(2027, 3, 14), utc(2027, 3, 14, 16)),  # PDT from 02:00 that day
        ("Australia/Sydney", D(2027, 1, 15), utc(2027, 1, 14, 22)),  # AEDT: the previous UTC day
        ("Asia/Kolkata", D(2027, 6, 1), utc(2027, 6, 1, 3, 30)),  # half-hour offset
    ],
)
def test_a_stage_is_due_at_nine_local_time_as_a_utc_instant(tz, day, expected):
    assert policy.local_instant(day, tz) == expected


def test_the_three_month_stage_cannot_be_configured_away():
    assert policy.parse_stages("6m,1m") == ("6m", "3m", "1m")
    assert policy.parse_stages("1w") == ("3m", "1w")
    assert policy.parse_stages("6m,3m,1m,1w") == ("6m", "3m", "1m", "1w")


@pytest.mark.parametrize("bad", ["0m", "3x", "m", "-1m", ""])
def test_an_invalid_stage_is_refused(bad):
    with pytest.raises(ValueError):
        policy.parse_stage(bad)


@pytest.mark.parametrize(
    "milestone,today,short",
    [
        (D(2027, 3, 1), D(2026, 12, 1), False),  # exactly three months: fine
        (D(2027, 2, 28), D(2026, 12, 1), True),
        (D(2027, 5, 31), D(2027, 2, 28), False),  # deadline 28 Feb: on the deadline is in time
        (D(2027, 5, 31), D(2027, 3, 1), True),
        (D(2026, 11, 30), D(2026, 12, 1), False),  # already past: history, not short notice
        (D(2026, 12, 1), D(2026, 12, 1), True),  # today
    ],
)
def test_short_notice_means_less_than_three_calendar_months(milestone, today, short):
    assert policy.is_short_notice(milestone, today) is short


def test_a_date_before_today_is_history():
    assert policy.is_history(D(2026, 11, 30), D(2026, 12, 1))
    assert not policy.is_history(D(2026, 12, 1), D(2026, 12, 1))


def test_a_stage_falls_due_at_nine_local_or_when_the_customer_became_affected_if_later():
    tz = "Europe/Berlin"
    assert policy.effective_due(D(2027, 3, 31), tz, affected_since=None, service_start=None) == (
        D(2027, 3, 31),
        utc(2027, 3, 31, 7),
    )
    # the service starts later: the first day of service, at 09:00
    assert policy.effective_due(D(2027, 3, 31), tz, affected_since=None, service_start=D(2027, 5, 10)) == (
        D(2027, 5, 10),
        utc(2027, 5, 10, 7),
    )
    # deployed after the stage's 09:00: at once (its local day)
    assert policy.effective_due(
        D(2027, 3, 31), tz, affected_since=utc(2027, 4, 20, 23), service_start=None
    ) == (D(2027, 4, 21), utc(2027, 4, 20, 23))


def test_a_stage_is_judged_at_the_instant_it_falls_due():
    due, day, mdate = utc(2027, 6, 30, 1), D(2027, 6, 30), D(2027, 9, 30)
    none = {"service_start": None, "service_end": None, "removed": None, "change_due": None}
    assert policy.stage_outcome(day, due, mdate, **none) == ("planned", None)
    assert policy.stage_outcome(day, due, mdate, **{**none, "service_end": D(2027, 6, 29)}) == (
        "skipped",
        "service-lapsed",
    )
    assert policy.stage_outcome(day, due, mdate, **{**none, "service_end": D(2027, 6, 30)}) == (
        "planned",
        None,
    )
    # removed after it fell due: it still goes; removed before: not wanted
    assert policy.stage_outcome(day, due, mdate, **{**none, "removed": utc(2027, 7, 1)}) == ("planned", None)
    assert policy.stage_outcome(day, due, mdate, **{**none, "removed": utc(2027, 6, 29)}) is None
    assert policy.stage_outcome(day, due, mdate, **{**none, "change_due": utc(2027, 7, 1)}) == (
        "skipped",
        "covered-by-change",
    )
    assert policy.stage_outcome(D(2027, 10, 1), due, mdate, **none) == ("skipped", "milestone-passed")


def test_stages_falling_due_at_one_instant_are_caught_up_to_the_latest():
    late, own = utc(2027, 4, 20, 12), utc(2027, 6, 30, 1)
    stages = [
        (D(2026, 12, 31), late, True),
        (D(2027, 3, 31), late, True),
        (D(2027, 5, 31), own, True),
        (D(2027, 6, 23), own, False),
    ]
    assert policy.caught_up(stages) == [True, False, False, False]
