"""Pure geometry of the registry timeline (an SVG drawn by templates/web/registry.html): no database,
no clock. `layout(rows, today)` takes one `TimelineRow` per product-level line and release, each with
its milestones, and returns the coordinates: a row per line, a marker per milestone with its shape and
colour per kind, a bar for the supported span, the old position of a moved milestone, year ticks and a
line for today. Coordinates are SVG user units; dates outside MIN_DATE..MAX_DATE are clamped."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from lifecycle.validation import MAX_DATE, MIN_DATE

KIND_STYLE = {  # shape and colour of each milestone kind on the timeline
    "end-of-sale": ("circle", "#2186eb"),
    "end-of-full-support": ("square", "#27ab83"),
    "end-of-maintenance": ("triangle", "#de911d"),
    "end-of-life": ("diamond", "#d64545"),
}
WIDTH, LABEL_W, PAD_R, ROW_H, TOP = 1000, 190, 24, 30, 34


@dataclass
class Marker:
    id: int
    kind: str
    kind_label: str
    date: dt.date
    status: str  # planned | withdrawn
    moved_from: dt.date | None = None


@dataclass
class TimelineRow:
    label: str
    product: str
    version: str | None  # None: the product-level milestones
    released: dt.date | None = None
    ended: str | None = None  # the latest phase ended (dated or not), for the label
    ended_undated: str | None = None  # ended upstream without a published date
    milestones: list[Marker] = field(default_factory=list)


def points(shape: str, cx: float, cy: float, r: float = 7) -> str:
    """Polygon points of a marker shape centred on (cx, cy); '' for a circle."""
    pts = {
        "square": [(-r * .8, -r * .8), (r * .8, -r * .8), (r * .8, r * .8), (-r * .8, r * .8)],
        "triangle": [(0, -r), (r, r * .8), (-r, r * .8)],
        "diamond": [(0, -r), (r, 0), (0, r), (-r, 0)],
    }.get(shape)
    return " ".join(f"{round(cx + dx, 1)},{round(cy + dy, 1)}" for dx, dy in pts) if pts else ""


def _clamp(day: dt.date) -> dt.date:
    return min(max(day, MIN_DATE), MAX_DATE)


def layout(rows: list[TimelineRow], today: dt.date, kind_labels: dict[str, str] | None = None) -> dict:
    """Everything the SVG needs, in drawing order."""
    kind_labels = kind_labels or {}
    dates = [today] + [m.date for r in rows for m in r.milestones] + [r.released for r in rows if r.released]
    dates += [m.moved_from for r in rows for m in r.milestones if m.moved_from]
    dates = [_clamp(d) for d in dates]
    start = dt.date(min(dates).year, 1, 1)
    end = dt.date(max(dates).year + 1, 1, 1)
    span = (end - start).days or 1

    def x(day: dt.date) -> float:
        return round(LABEL_W + (_clamp(day) - start).days / span * (WIDTH - LABEL_W - PAD_R), 1)

    out_rows = []
    for i, row in enumerate(rows):
        y = TOP + i * ROW_H + ROW_H / 2
        planned = [m.date for m in row.milestones if m.status == "planned"]
        bar_start = row.released or (min(planned) if planned else None)
        bar_end = max(planned) if planned else None
        markers = []
        for m in sorted(row.milestones, key=lambda m: m.date):
            shape, colour = KIND_STYLE.get(m.kind, ("circle", "#627d98"))
            withdrawn = m.status == "withdrawn"
            mx = x(m.date)
            markers.append({
                "id": m.id, "kind": m.kind, "date": m.date.isoformat(), "status": m.status, "x": mx, "y": y,
                "shape": shape, "colour": "#9aa5b1" if withdrawn else colour, "withdrawn": withdrawn,
                "past": m.date < today, "points": points(shape, mx, y),
                "old_x": x(m.moved_from) if m.moved_from and not withdrawn else None,
                "title": f"{row.label} {m.kind_label or m.kind}: {m.date.isoformat()}"
                         + (" (withdrawn)" if withdrawn else "")
                         + (f", moved from {m.moved_from.isoformat()}" if m.moved_from else ""),
            })
        out_rows.append({"label": row.label, "y": y, "product": row.product, "version": row.version,
                         "ended": row.ended, "ended_undated": row.ended_undated,
                         "bar": (x(bar_start), x(bar_end)) if bar_start and bar_end and bar_end > bar_start else None,
                         "markers": markers, "band": i % 2 == 0})
    years = list(range(start.year, end.year + 1))
    step = 1 if len(years) <= 12 else (2 if len(years) <= 24 else 5)
    ticks = [{"x": x(dt.date(yr, 1, 1)), "label": str(yr) if yr < end.year else ""}
             for yr in years if (yr - years[0]) % step == 0]
    height = TOP + max(len(rows), 1) * ROW_H + 8
    return {"width": WIDTH, "height": height, "label_w": LABEL_W, "top": TOP, "rows": out_rows, "ticks": ticks,
            "today_x": x(today), "today": today.isoformat(), "right": WIDTH - PAD_R,
            "legend": [{"kind": k, "label": kind_labels.get(k, k), "colour": c, "shape": s,
                        "points": points(s, 0, 0)} for k, (s, c) in KIND_STYLE.items()]}
