"""Pure geometry of the registry timeline (an SVG drawn by templates/web/registry.html): no database,
no clock. `layout(rows, today)` takes one `TimelineRow` per product-level line and release, each with
its milestones, and returns the coordinates: a row per line, a marker per milestone with its shape and
colour per kind, a bar for the supported span, the old position of a moved milestone, year ticks and a
line for today. Coordinates are SVG user units; dates outside MIN_DATE..MAX_DATE are clamped.

Every marker carries a text label ("EoL 2027-09-30"). Labels must not hide each other, so a row is
split into lanes: markers are placed left to right, each in the first lane where it and its label fit
(same-day markers necessarily go one under the other, in lifecycle order), and a row grows by a lane
height for every lane beyond the first. A label that would run off the right edge sits to the left of
its marker instead.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from lifecycle import policy
from lifecycle.policy import LIFECYCLE_ORDER
from lifecycle.validation import MAX_DATE, MIN_DATE

KIND_STYLE = {  # shape and colour of each milestone kind on the timeline, in lifecycle order
    "end-of-sale": ("circle", "#2186eb"),
    "end-of-full-support": ("square", "#27ab83"),
    "end-of-maintenance": ("triangle", "#de911d"),
    "end-of-life": ("diamond", "#d64545"),
}
KIND_SHORT = {
    "end-of-sale": "EoS",
    "end-of-full-support": "EoFS",
    "end-of-maintenance": "EoM",
    "end-of-life": "EoL",
}
WIDTH, LABEL_W, PAD_R, ROW_H, TOP = 1000, 230, 24, 30, 34
LANE_H = 22  # extra height of each further lane of a row
ROW_FONT, MARKER_FONT = 12.5, 11  # font sizes of the row labels and the marker labels
ROW_CHAR_W, MARKER_CHAR_W = 6.9, 6.2  # average glyph widths at those sizes (system sans-serif)
MARKER_R = 8  # half the width a marker takes
LABEL_GAP = 4  # space between a marker and its label
LANE_GAP = 6  # least space between two labels in one lane


@dataclass
class Marker:
    id: int
    kind: str
    kind_label: str
    date: dt.date
    status: str  # planned | withdrawn
    moved_from: dt.date | None = None
    held_until: dt.datetime | None = None  # its change's notices are on hold (can be undone) until then


@dataclass
class TimelineRow:
    label: str
    product: str
    version: str | None  # None: the product-level milestones
    released: dt.date | None = None
    ended: str | None = None  # the latest phase ended (dated or not), for the label
    ended_undated: str | None = None  # ended upstream without a published date
    milestones: list[Marker] = field(default_factory=list)
    suffix: str = ""  # kept whole when a long label is shortened ("3.16", "all versions")


def points(shape: str, cx: float, cy: float, r: float = 7) -> str:
    """Polygon points of a marker shape centred on (cx, cy); '' for a circle."""
    pts = {
        "square": [(-r * 0.8, -r * 0.8), (r * 0.8, -r * 0.8), (r * 0.8, r * 0.8), (-r * 0.8, r * 0.8)],
        "triangle": [(0, -r), (r, r * 0.8), (-r, r * 0.8)],
        "diamond": [(0, -r), (r, 0), (0, r), (-r, 0)],
    }.get(shape)
    return " ".join(f"{round(cx + dx, 1)},{round(cy + dy, 1)}" for dx, dy in pts) if pts else ""


def _clamp(day: dt.date) -> dt.date:
    return min(max(day, MIN_DATE), MAX_DATE)


def kind_rank(kind: str) -> int:
    return LIFECYCLE_ORDER.index(kind) if kind in LIFECYCLE_ORDER else len(LIFECYCLE_ORDER)


def marker_text(m: Marker) -> str:
    """The label drawn next to a marker: short kind and date."""
    return f"{KIND_SHORT.get(m.kind, m.kind)} {m.date.isoformat()}"


def fit_label(label: str, suffix: str = "", width: float = LABEL_W - 16) -> str:
    """`label` shortened with an ellipsis to fit `width`, keeping `suffix` (the version) whole."""
    if len(label) * ROW_CHAR_W <= width:
        return label
    head = label[: len(label) - len(suffix)].rstrip() if suffix and label.endswith(suffix) else label
    tail = f" {suffix}" if suffix and label.endswith(suffix) else ""
    room = int(width / ROW_CHAR_W) - len(tail) - 1
    return head[: max(room, 1)].rstrip() + "…" + tail


def lanes(items: list[tuple[float, float]]) -> list[int]:
    """First-fit lanes for horizontal extents (start, end), given in order of their start: an extent
    goes in the first lane whose last extent ends LANE_GAP before it starts."""
    ends: list[float] = []
    out = []
    for start, end in items:
        for lane, last in enumerate(ends):
            if last + LANE_GAP <= start:
                ends[lane] = end
                out.append(lane)
                break
        else:
            ends.append(end)
            out.append(len(ends) - 1)
    return out


def layout(rows: list[TimelineRow], today: dt.date, kind_labels: dict[str, str] | None = None) -> dict:
    """Everything the SVG needs, in drawing order."""
    kind_labels = kind_labels or {}
    dates = [today] + [m.date for r in rows for m in r.milestones] + [r.released for r in rows if r.released]
    dates += [m.moved_from for r in rows for m in r.milestones if m.moved_from]
    dates = [_clamp(d) for d in dates]
    start = dt.date(min(dates).year, 1, 1)
    end = dt.date(max(dates).year + 1, 1, 1)
    span = (end - start).days or 1
    right = WIDTH - PAD_R

    def x(day: dt.date) -> float:
        return round(LABEL_W + (_clamp(day) - start).days / span * (right - LABEL_W), 1)

    out_rows = []
    top = TOP
    for i, row in enumerate(rows):
        y = top + ROW_H / 2
        planned = [m.date for m in row.milestones if m.status == "planned"]
        bar_start = row.released or (min(planned) if planned else None)
        bar_end = max(planned) if planned else None
        placed = []
        for m in row.milestones:
            mx = x(m.date)
            text = marker_text(m)
            w = len(text) * MARKER_CHAR_W
            on_left = mx + MARKER_R + LABEL_GAP + w > WIDTH - 2
            extent = (
                (mx - MARKER_R - LABEL_GAP - w, mx + MARKER_R)
                if on_left
                else (mx - MARKER_R, mx + MARKER_R + LABEL_GAP + w)
            )
            placed.append((extent, kind_rank(m.kind), m, mx, text, on_left))
        placed.sort(key=lambda p: (p[0][0], p[1], p[2].id))
        lane_of = lanes([p[0] for p in placed])
        markers = []
        for (extent, _, m, mx, text, on_left), lane in zip(placed, lane_of, strict=True):
            shape, colour = KIND_STYLE.get(m.kind, ("circle", "#627d98"))
            withdrawn = m.status == "withdrawn"
            my = y + lane * LANE_H
            held = m.held_until.strftime("%H:%M") + " UTC" if m.held_until else None
            markers.append(
                {
                    "id": m.id,
                    "kind": m.kind,
                    "date": m.date.isoformat(),
                    "status": m.status,
                    "x": mx,
                    "y": my,
                    "lane": lane,
                    "shape": shape,
                    "colour": "#9aa5b1" if withdrawn else colour,
                    "withdrawn": withdrawn,
                    "past": policy.is_history(m.date, today),
                    "points": points(shape, mx, my),
                    "old_x": x(m.moved_from) if m.moved_from and not withdrawn else None,
                    "text": text,
                    "text_x": round(extent[0] if on_left else mx + MARKER_R + LABEL_GAP, 1),
                    "extent": (round(extent[0], 1), round(extent[1], 1)),
                    "held": held,
                    "title": f"{row.label}: {m.kind_label or m.kind} {m.date.isoformat()}"
                    + (" (withdrawn)" if withdrawn else "")
                    + (f", moved from {m.moved_from.isoformat()}" if m.moved_from else "")
                    + (f"; on hold until {held}, can be undone" if held else ""),
                }
            )
        markers.sort(key=lambda mk: (mk["lane"], mk["x"]))
        height = ROW_H + max(lane_of, default=0) * LANE_H
        out_rows.append(
            {
                "label": fit_label(row.label, row.suffix),
                "full_label": row.label,
                "y": y,
                "top": top,
                "height": height,
                "product": row.product,
                "version": row.version,
                "ended": row.ended,
                "ended_undated": row.ended_undated,
                "bar": (x(bar_start), x(bar_end)) if bar_start and bar_end and bar_end > bar_start else None,
                "markers": markers,
                "band": i % 2 == 0,
            }
        )
        top += height
    years = list(range(start.year, end.year + 1))
    step = 1 if len(years) <= 12 else (2 if len(years) <= 24 else 5)
    ticks = [
        {"x": x(dt.date(yr, 1, 1)), "label": str(yr) if yr < end.year else ""}
        for yr in years
        if (yr - years[0]) % step == 0
    ]
    height = top + (0 if rows else ROW_H) + 8
    return {
        "width": WIDTH,
        "height": height,
        "label_w": LABEL_W,
        "top": TOP,
        "rows": out_rows,
        "ticks": ticks,
        "today_x": x(today),
        "today": today.isoformat(),
        "right": right,
        "legend": [
            {
                "kind": k,
                "label": kind_labels.get(k, k),
                "short": KIND_SHORT[k],
                "colour": c,
                "shape": s,
                "points": points(s, 0, 0),
            }
            for k, (s, c) in KIND_STYLE.items()
        ],
    }
