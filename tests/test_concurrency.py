"""Exactly once: four `lifecycle tick` processes at once deliver what one would, no more."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys

from tests import world as w
from tests.conftest import utc

CUSTOMERS = 24


def _fleet():
    w.product()
    w.milestone(dt.date(2027, 9, 30))
    w.milestone(dt.date(2027, 9, 30), kind="end-of-maintenance")
    zones = ["Asia/Shanghai", "Europe/Berlin", "America/Los_Angeles", "Australia/Sydney"]
    for i in range(CUSTOMERS):
        w.customer(f"c{i:02d}", zones[i % 4], emails=[f"a@c{i:02d}.example", f"b@c{i:02d}.example"])


def test_four_ticks_at_once_deliver_each_notice_once_per_channel_and_recipient(db, tmp_path):
    _fleet()
    at = "2027-04-01T12:00:00+00:00"  # every customer's 6m stages of both milestones are due
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "lifecycle", "tick", "--at", at],
            cwd=tmp_path,
            env=dict(os.environ),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    outputs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0, 0], outputs

    signature = w.delivery_signature()
    # 2 notices per customer; each to the portal and to 2 contacts.
    assert len(signature) == CUSTOMERS * 2 * 3
    assert len(set(signature)) == len(signature)
    assert {status for *_, status in signature} <= {"sent", "delivered"}
    # One digest email per contact, each written exactly once: no second send by another process.
    assert len(list((tmp_path / "outbox").glob("*.eml"))) == CUSTOMERS * 2
    emails = w.deliveries("email")
    assert len({d.provider_id for d in emails}) == CUSTOMERS * 2

    # And once more, sequentially: nothing changes.
    w.run(utc(2027, 4, 1, 12))
    assert w.delivery_signature() == signature
    assert len(list((tmp_path / "outbox").glob("*.eml"))) == CUSTOMERS * 2
