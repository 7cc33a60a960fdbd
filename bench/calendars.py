"""Calendar exports refreshed by what changed (issue 11, item 4): `python -m bench.calendars [--scale 0.04]`.

On a fresh SQLite fleet (`bench.fleet`, scale 0.04 = 4 products and 800 customers, so about 800
calendars), one process, in order:

1. **full export**: plan, then `exports.export` renders and writes every calendar: the floor of a
   refresh that re-renders everything (what every tick after a change did before);
2. **quiet tick**: `ticks.prepare` a minute later, nothing changed: no calendar is rendered;
3. **one milestone moved**: `registry.move_milestone` of one release's end of life, then
   `ticks.prepare`: only the product's calendar and those of the customers who deploy the release are
   candidates; those whose fingerprint changed are rendered and rewritten;
4. **one customer's deployment added**: the same for one customer.

Each step reports seconds, calendars rendered and files rewritten; the ratio is the step's time over
the full export's.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import tempfile
import time
from pathlib import Path

from bench import fleet


def run(scale: float) -> dict:
    with tempfile.TemporaryDirectory(prefix="lc-bench-cal-") as tmp:
        url = f"sqlite:///{Path(tmp) / 'lifecycle.db'}"
        os.environ.update(
            LIFECYCLE_DATABASE_URL=url,
            LIFECYCLE_CALENDAR_DIR=str(Path(tmp) / "calendars"),
            LIFECYCLE_STATE_DIR=str(Path(tmp) / "state"),
            LIFECYCLE_CHANGE_HOLD="0",
        )
        from sqlmodel import select

        from lifecycle import db, registry, scheduler, ticks
        from lifecycle.calendar import exports
        from lifecycle.config import reset_settings
        from lifecycle.models import Customer, Deployment, Milestone, Product, Release

        reset_settings()
        db.upgrade(url)
        counts = fleet.generate(url, scale=scale)
        at = fleet.AT
        with db.session_scope() as s:
            scheduler.plan(s, at)
        rows: dict[str, dict] = {}

        t0 = time.perf_counter()
        with db.session_scope() as s:
            full = exports.export(s, at=at)
        rows["full export (floor)"] = {
            "seconds": time.perf_counter() - t0,
            "rendered": full.rendered,
            "written": len(full.written),
        }

        def tick(name: str, when: dt.datetime) -> None:
            t0 = time.perf_counter()
            result = ticks.prepare(when)
            rows[name] = {
                "seconds": time.perf_counter() - t0,
                "rendered": result.exports_rendered,
                "written": result.exports_refreshed,
            }

        tick("quiet tick", at + dt.timedelta(minutes=1))

        with db.session_scope() as s:
            future = at.date() + dt.timedelta(days=400)
            m = s.exec(
                select(Milestone)
                .where(
                    Milestone.kind == "end-of-life",
                    Milestone.release_id.is_not(None),
                    Milestone.date > future,
                )
                .order_by(Milestone.id)
            ).first()
            release = s.get(Release, m.release_id)
            registry.move_milestone(
                s,
                m,
                date=m.date + dt.timedelta(days=30),
                reason="bench: postponed",
                at=at + dt.timedelta(minutes=2),
                check_lifecycle_order=False,
            )
            deployed = len(
                s.exec(
                    select(Deployment.customer_id).where(
                        Deployment.release_id == release.id, Deployment.removed_at.is_(None)
                    )
                ).all()
            )
        tick(f"one milestone moved ({deployed} customers deploy the release)", at + dt.timedelta(minutes=3))

        with db.session_scope() as s:
            d = s.exec(select(Deployment).order_by(Deployment.id)).first()
            customer, rel = s.get(Customer, d.customer_id), s.get(Release, d.release_id)
            other = s.exec(
                select(Release)
                .where(Release.product_id == rel.product_id, Release.id != rel.id)
                .order_by(Release.id.desc())
            ).first()
            registry.add_deployment(
                s,
                customer=customer,
                product=s.get(Product, rel.product_id),
                version=other.version,
                at=at + dt.timedelta(minutes=4),
            )
        tick("one deployment added", at + dt.timedelta(minutes=5))
        db.dispose_engines()

    floor = rows["full export (floor)"]["seconds"]
    for r in rows.values():
        r["ratio_to_full_export"] = r["seconds"] / floor
    return {"scale": scale, "fleet": counts, "calendars": full.rendered, "rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=0.04)
    args = parser.parse_args()
    result = run(args.scale)
    print(
        f"{result['calendars']} calendars ({result['fleet']['customers']} customers, "
        f"{result['fleet']['products']} products)"
    )
    print(f"{'step':<55} {'seconds':>8} {'rendered':>9} {'written':>8} {'÷ full':>7}")
    for name, r in result["rows"].items():
        print(
            f"{name:<55} {r['seconds']:>8.2f} {r['rendered']:>9} {r['written']:>8} "
            f"{r['ratio_to_full_export']:>7.3f}"
        )
    print(json.dumps(result, default=str))


if __name__ == "__main__":
    main()
