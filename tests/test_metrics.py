"""Watch it run (issue 11, item 8): `GET /metrics` read from the database after a real tick, `GET /healthz`
and `GET /readyz` (503 naming what is down)."""

from __future__ import annotations

import datetime as dt

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from lifecycle import clock
from lifecycle.config import reset_settings
from lifecycle.web.app import create_app
from tests import world as w
from tests.conftest import utc

EOL = dt.date(2027, 6, 30)
TICK = utc(2026, 12, 31, 12)  # the 6-month stage was due on 2026-12-30 at 09:00 local


def at_clock(monkeypatch, at: dt.datetime) -> None:
    """The web's clock reads `at` (as `lifecycle serve --at` makes it)."""
    monkeypatch.setenv("LIFECYCLE_CLOCK_OFFSET", str(clock.offset_to(at)))
    reset_settings()


def scrape(client: TestClient, **headers) -> dict[str, list]:
    response = client.get("/metrics", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return {f.name: f.samples for f in text_string_to_metric_families(response.text)}


def value(samples, name: str, **labels) -> float:
    found = [
        s.value for s in samples if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    ]
    assert len(found) == 1, (name, labels, samples)
    return found[0]


@pytest.fixture
def fleet(db):
    w.product()
    w.milestone(EOL)
    w.customer("acme", "Asia/Shanghai", emails=["ops@acme.example", "cto@acme.example"])
    w.customer("globex", "Europe/Berlin")
    w.run(TICK)


def test_metrics_after_a_tick(fleet, monkeypatch):
    at_clock(monkeypatch, TICK + dt.timedelta(hours=1))
    m = scrape(TestClient(create_app()))
    assert value(m["lifecycle_metrics_database_up"], "lifecycle_metrics_database_up") == 1
    notices = m["lifecycle_notices"]
    assert value(notices, "lifecycle_notices", kind="stage", stage="6m", status="sent") == 2
    assert value(notices, "lifecycle_notices", kind="stage", stage="3m", status="planned") == 2
    sent = m["lifecycle_deliveries_sent"]
    assert value(sent, "lifecycle_deliveries_sent_total", channel="email", kind="stage", stage="6m") == 3
    assert value(sent, "lifecycle_deliveries_sent_total", channel="portal", kind="stage", stage="6m") == 2
    assert value(m["lifecycle_deliveries"], "lifecycle_deliveries", channel="email", status="sent") == 3
    assert not m["lifecycle_delivery_failures"]
    # sent at the tick, due 2026-12-30 01:00Z (Shanghai) and 08:00Z (Berlin): 35 h and 28 h late
    lag = m["lifecycle_delivery_lag_seconds"]
    assert value(lag, "lifecycle_delivery_lag_seconds_bucket", channel="portal", le="86400") == 0
    assert value(lag, "lifecycle_delivery_lag_seconds_bucket", channel="portal", le="259200") == 2
    assert value(lag, "lifecycle_delivery_lag_seconds_bucket", channel="email", le="+Inf") == 3
    gsum = m["lifecycle_delivery_lag_seconds_gsum"]  # a gauge histogram's sum, in the text format 0.0.4
    assert value(gsum, "lifecycle_delivery_lag_seconds_gsum", channel="portal") == pytest.approx(
        (35 + 28) * 3600, abs=5
    )
    assert (
        value(m["lifecycle_oldest_undelivered_due_seconds"], "lifecycle_oldest_undelivered_due_seconds") == 0
    )
    # no customer data in any label
    text = TestClient(create_app()).get("/metrics").text
    assert "acme" not in text and "globex" not in text and "@" not in text


def test_a_due_notice_nobody_delivered_is_the_promise_at_risk(fleet, monkeypatch):
    """No tick since the 3-month stage fell due (2027-03-30 09:00 in Shanghai = 01:00Z): the gauge says
    for how long; a day later the lag window no longer holds the 6-month deliveries."""
    at_clock(monkeypatch, utc(2027, 3, 31, 12))
    m = scrape(TestClient(create_app()))
    assert value(
        m["lifecycle_oldest_undelivered_due_seconds"], "lifecycle_oldest_undelivered_due_seconds"
    ) == pytest.approx(35 * 3600, abs=60)
    assert value(m["lifecycle_undelivered_due_notices"], "lifecycle_undelivered_due_notices") == 2
    assert not m.get("lifecycle_delivery_lag_seconds")  # nothing sent in the last 24 h
    w.run(utc(2027, 3, 31, 12))
    m = scrape(TestClient(create_app()))
    assert (
        value(m["lifecycle_oldest_undelivered_due_seconds"], "lifecycle_oldest_undelivered_due_seconds") == 0
    )
    assert value(m["lifecycle_notices"], "lifecycle_notices", kind="stage", stage="3m", status="sent") == 2


def test_metrics_can_require_a_token(fleet, monkeypatch):
    monkeypatch.setenv("LIFECYCLE_METRICS_TOKEN", "s3cret-metrics")
    reset_settings()
    client = TestClient(create_app())
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert scrape(client, Authorization="Bearer s3cret-metrics")["lifecycle_notices"]


def test_healthz_and_readyz(db):
    client = TestClient(create_app())
    assert client.get("/healthz").json() == {"ok": True}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["ready"] is True, ready.text


def test_readyz_names_the_database_when_it_is_down(monkeypatch, tmp_path):
    monkeypatch.setenv("LIFECYCLE_DATABASE_URL", "postgresql+psycopg://lifecycle@127.0.0.1:1/nothing")
    reset_settings()
    response = TestClient(create_app()).get("/readyz")
    assert response.status_code == 503
    assert response.json()["down"] == ["database"]
    assert "127.0.0.1" not in response.text  # no hosts or URLs to an unauthenticated caller
    metrics = TestClient(create_app()).get("/metrics")
    assert metrics.status_code == 200 and "lifecycle_metrics_database_up 0.0" in metrics.text


@pytest.mark.redis
def test_readyz_checks_the_broker(db, monkeypatch, redis_db):  # redis_db: LIFECYCLE_BROKER_URL=redis://...
    assert TestClient(create_app()).get("/readyz").status_code == 200
    monkeypatch.setenv("LIFECYCLE_BROKER_URL", "redis://127.0.0.1:1/0")
    reset_settings()
    response = TestClient(create_app()).get("/readyz")
    assert response.status_code == 503 and response.json()["down"] == ["broker"], response.text
