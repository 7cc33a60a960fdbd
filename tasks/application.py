"""Celery application, beat schedule and routing, from lifecycle's settings.

Production: LIFECYCLE_BROKER_URL=redis://... or amqp://... with `celery -A tasks worker` and
`celery -A tasks beat`. Default: a file-system broker inside the state folder, which needs no
server (`lifecycle worker` runs a worker with embedded beat on it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from celery import Celery

from lifecycle.config import get_settings
from lifecycle.files import private_dir


def filesystem_transport_options(state_dir: Path) -> dict:
    base = (private_dir(state_dir) / "broker").resolve()  # queued messages name customers: mode 700
    folders = {
        "data_folder_in": base / "queue",
        "data_folder_out": base / "queue",
        "control_folder": base / "control",
        "processed_folder": base / "processed",
    }
    for folder in folders.values():
        folder.mkdir(parents=True, exist_ok=True)
    return {**{k: str(v) for k, v in folders.items()}, "store_processed": False}


def make_app() -> Celery:
    settings = get_settings()
    celery = Celery("lifecycle", include=["tasks.jobs"])
    broker = settings.broker_url or "filesystem://"
    conf: dict[str, Any] = dict(
        broker_url=broker,
        result_backend=None,
        task_ignore_result=True,
        task_serializer="json",
        accept_content=["json"],
        result_serializer="json",
        timezone="UTC",
        enable_utc=True,
        worker_hijack_root_logger=False,
        broker_connection_retry_on_startup=True,
        task_default_queue="lifecycle",
        task_routes={
            name: {"queue": "lifecycle"}
            for name in (
                "lifecycle.tick",
                "lifecycle.deliver",
                "lifecycle.deliver_due",
                "lifecycle.deliver_customer",
            )
        },
        # One static entry; `expires` just under a minute drops ticks that piled up during downtime.
        beat_schedule={
            "tick": {
                "task": "lifecycle.tick",
                "schedule": settings.tick_seconds,
                "options": {"expires": max(settings.tick_seconds * 0.9, 1.0)},
            }
        },
        beat_scheduler="celery.beat:Scheduler",  # in-memory schedule: no shelve file to corrupt
        worker_prefetch_multiplier=1,
    )
    if broker.startswith("filesystem://"):
        conf["broker_transport"] = "lifecycle.broker:Transport"  # atomic writes, see lifecycle/broker.py
        conf["broker_transport_options"] = filesystem_transport_options(settings.state_dir)
    elif broker.startswith("redis"):
        conf["broker_transport_options"] = {"visibility_timeout": 3600}
    celery.conf.update(conf)
    return celery


app = make_app()
