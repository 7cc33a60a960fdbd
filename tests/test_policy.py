"""The notice policy's pure rules: stage dates, send instants, short notice, catch-up."""

import datetime as dt

import pytest

from lifecycle import policy
from tests.conftest import utc

D = dt.date


@pytest.mark.parametrize("milestone,stage,expected", [
    (D(2027, 5, 31), "3m", D(2027, 2, 28)),   # 31 May -> 28 Feb in a common year
    (D(2028, 5, 31), "3m", D(2028, 2, 29)),   # ... and 29 Feb in a leap year
    (D(2027, 8, 31), "6m", D(2027, 2, 28)),
    (D(2027, 3, 31), "1m", D(2027, 2, 28)),
    (D(2028, 3, 31), "1m", D(2028, 2, 29)),
    (D(2027, 7, 31), "1m", D(2027, 6, 30)),
    (D(2027, 3, 1), "1w", D(2027, 2, 22)),
    (D(2028, 3, 1), "1w", D(2028, 2, 23)),
    (D(2027, 1, 15), "3m", D(2026, 10, 15)),
])
def test_stage_dates_are_calendar_months_with_end_of_month_clamping(milestone, stage, expected):
    assert policy.stage_date(milestone, stage) == expected


@pytest.mark.parametrize("tz,day,expected", [
    ("Asia/Shanghai", D(2027, 2, 28), utc(2027, 2, 28, 1)),            # UTC+8, no DST
    ("Europe/Berlin", D(2027, 3, 27), utc(2027, 3, 27, 8)),            # CET, the day before DST
    ("Europe/Berlin", D(2027, 3, 28), utc(2027, 3, 28, 7)),            # CEST, the day DST starts
    ("Europe/Berlin", D(2027, 10, 31), utc(2027, 10, 31, 8)),          # back to CET
    ("America/Los_Angeles", D(2027, 3, 13), utc(2027, 3, 13, 17)),     # PST
    ("America/Los_Angeles", D(2027, 3, 14), utc(2027, 3, 14, 16)),     # PDT from 02:00 that day
    ("Australia/Sydney", D(2027, 1, 15), utc(2027, 1, 14, 22)),        # AEDT: the previous UTC day
    ("Asia/Kolkata", D(2027, 6, 1), utc(2027, 6, 1, 3, 30)),          # half-hour offset
])
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


@pytest.mark.parametrize("milestone,today,short", [
    (D(2027, 3, 1), D(2026, 12, 1), False),   # exactly three months: fine
    (D(2027, 2, 28), D(2026, 12, 1), True),
    (D(2027, 5, 31), D(2027, 2, 28), False),  # deadline 28 Feb: on the deadline is in time
    (D(2027, 5, 31), D(2027, 3, 1), True),
    (D(2026, 11, 30), D(2026, 12, 1), False),  # already past: history, not short notice
    (D(2026, 12, 1), D(2026, 12, 1), True),   # today
])
def test_short_notice_means_less_than_three_calendar_months(milestone, today, short):
    assert policy.is_short_notice(milestone, today) is short


def test_a_date_before_today_is_history():
    assert policy.is_history(D(2026, 11, 30), D(2026, 12, 1))
    assert not policy.is_history(D(2026, 12, 1), D(2026, 12, 1))


def test_catch_up_picks_only_the_latest_overdue_stage():
    due = {"6m": utc(2026, 6, 1), "3m": utc(2026, 9, 1), "1m": utc(2026, 11, 1), "1w": utc(2026, 11, 24)}
    assert policy.latest_overdue(due, utc(2026, 11, 2)) == "1m"
    assert policy.latest_overdue(due, utc(2026, 5, 1)) is None
    assert policy.latest_overdue(due, utc(2026, 12, 1)) == "1w"


def test_service_is_active_between_start_and_end_inclusive():
    assert policy.service_active(D(2027, 1, 1), D(2027, 1, 1), D(2027, 12, 31))
    assert policy.service_active(D(2027, 12, 31), D(2027, 1, 1), D(2027, 12, 31))
    assert not policy.service_active(D(2028, 1, 1), D(2027, 1, 1), D(2027, 12, 31))
    assert policy.service_active(D(2030, 1, 1), None, None)
