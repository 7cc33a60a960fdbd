"""Acceptance (issue 8, item 7): every product calendar exported from the endoflife.date fixtures
parses and holds at least one event, as of several dates; history carries no alarm and no
acknowledgement link. Everything goes through the CLI, as an operator would run it:
`lifecycle import FILE --format endoflife --product SLUG --at T`, then `lifecycle calendar export --at T`.

A customer running the oldest and the newest release of every product shows that upcoming milestones
do keep their alarms and acknowledgement links in a customer's calendar.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path

import icalendar
import pytest
import yaml

from tests.conftest import ROOT
from tests.icscheck import check_ics

SHARED = Path("/work/shared/data/endoflife")  # the team's copy, when this machine has it


def _fixtures() -> list[Path]:
    """tests/data/endoflife/*.json and the shared copies, each distinct content once."""
    seen: dict[str, Path] = {}
    for path in sorted((ROOT / "tests/data/endoflife").glob("*.json")) + sorted(SHARED.glob("*.json")):
        seen.setdefault(hashlib.sha256(path.read_bytes()).hexdigest(), path)
    return sorted(seen.values(), key=lambda p: p.stem)


FIXTURES = _fixtures()


def _customer_file(tmp_path: Path) -> Path:
    deployments = []
    for path in FIXTURES:
        names = [r["name"] for r in json.loads(path.read_text())["result"]["releases"]]
        deployments += [{"product": path.stem, "version": v} for v in dict.fromkeys([names[0], names[-1]])]
    data = {
        "customers": [
            {
                "key": "acme",
                "name": "ACME Bank",
                "timezone": "Europe/Berlin",
                "locale": "en",
                "account_rep": "rep@vendor.example",
                "deployments": deployments,
            }
        ]
    }
    out = tmp_path / "acme.yaml"
    out.write_text(yaml.safe_dump(data))
    return out


def _is_history(event: icalendar.Event, at: dt.date) -> bool:
    """History by the rule the calendars promise: dated before `at`, or of a release that ended
    upstream without a published date (the event says so)."""
    return event.start < at or "no date was published" in str(event["DESCRIPTION"])


@pytest.mark.slow
def test_every_product_calendar_from_the_endoflife_fixtures_parses_with_events_and_quiet_history(
    sqlite_db, cli, tmp_path
):
    """Imported as of 2021 (most dates ahead, some short notice), exported as of three dates: then,
    mid-2026 (the fixtures' present) and 2037 (every fixture date has passed)."""
    imported = "2021-01-01"
    assert {p.stem for p in FIXTURES} >= {"kubernetes", "postgresql", "python", "ubuntu"}
    for path in FIXTURES:
        r = cli("import", path, "--format", "endoflife", "--product", path.stem, "--at", imported)
        assert r.code == 0, r
    r = cli("import", _customer_file(tmp_path), "--at", imported)
    assert r.code == 0, r
    for at in (imported, "2026-06-01", "2037-01-01"):
        out = tmp_path / at
        r = cli("calendar", "export", "--out", out, "--at", at)
        assert r.code == 0, r
        upcoming = _check_export(out, dt.date.fromisoformat(at))
        assert (upcoming > 0) == (at != "2037-01-01"), at


def _check_export(out: Path, day: dt.date) -> int:
    """Check the product calendars and the customer's; return the customer's upcoming milestones."""
    for path in FIXTURES:
        data = (out / "products" / f"{path.stem}.ics").read_bytes()
        cal = icalendar.Calendar.from_ical(data)
        assert len(cal.events) >= 1, path.stem
        check_ics(data)  # and the two other parsers
        for event in cal.events:
            assert "/ack/" not in str(event["DESCRIPTION"])  # a public feed never carries one
            if _is_history(event, day):
                assert list(event.walk("VALARM")) == [], (day, path.stem, str(event["SUMMARY"]))
    upcoming = 0
    for event in check_ics((out / "customers" / "acme.ics").read_bytes()).events:
        uid, description = str(event["UID"]), str(event["DESCRIPTION"])
        if not uid.startswith("milestone-") or str(event["STATUS"]) == "CANCELLED":
            assert list(event.walk("VALARM")) == [] and "/ack/" not in description
        elif _is_history(event, day):
            assert list(event.walk("VALARM")) == [] and "/ack/" not in description, (
                day,
                str(event["SUMMARY"]),
            )
        else:
            upcoming += 1
            assert list(event.walk("VALARM")) and "/ack/" in description, (day, str(event["SUMMARY"]))
    return upcoming
