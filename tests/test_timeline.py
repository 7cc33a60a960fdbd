"""The registry timeline's geometry, without a database: rows, markers per kind, moved markers, bars,
year ticks and today; labelled markers in lanes that never overlap, same-day markers stacked."""

import datetime as dt

from lifecycle.policy import LIFECYCLE_ORDER
from lifecycle.web.timeline import (
    KIND_SHORT,
    KIND_STYLE,
    LABEL_W,
    LANE_H,
    PAD_R,
    ROW_H,
    TOP,
    WIDTH,
    Marker,
    TimelineRow,
    layout,
)

D = dt.date


def test_rows_are_stacked_and_markers_take_the_shape_and_colour_of_their_kind():
    rows = [
        TimelineRow(
            "acp 3.16",
            "acp",
            "3.16",
            released=D(2024, 1, 15),
            milestones=[
                Marker(1, "end-of-life", "end of life", D(2027, 9, 30), "planned"),
                Marker(2, "end-of-sale", "end of sale", D(2026, 3, 31), "planned"),
            ],
        ),
        TimelineRow(
            "acp 3.18",
            "acp",
            "3.18",
            milestones=[
                Marker(3, "end-of-full-support", "end of full support", D(2027, 12, 31), "withdrawn")
            ],
        ),
    ]
    chart = layout(rows, D(2026, 11, 26))
    assert [r["y"] for r in chart["rows"]] == [TOP + ROW_H / 2, TOP + ROW_H * 1.5]
    first = chart["rows"][0]
    assert [m["kind"] for m in first["markers"]] == ["end-of-sale", "end-of-life"]  # by date
    assert first["markers"][1]["shape"] == KIND_STYLE["end-of-life"][0] == "diamond"
    assert first["markers"][0]["past"] and not first["markers"][1]["past"]
    assert first["bar"][0] < first["markers"][0]["x"] < first["bar"][1]
    withdrawn = chart["rows"][1]["markers"][0]
    assert withdrawn["withdrawn"] and withdrawn["colour"] == "#9aa5b1" and chart["rows"][1]["bar"] is None


def test_the_axis_spans_whole_years_and_today_sits_between_them():
    rows = [
        TimelineRow("p 1", "p", "1", milestones=[Marker(1, "end-of-life", "", D(2028, 6, 30), "planned")])
    ]
    chart = layout(rows, D(2026, 7, 2))
    assert [t["label"] for t in chart["ticks"]] == ["2026", "2027", "2028", ""]
    assert chart["ticks"][0]["x"] == LABEL_W and chart["ticks"][-1]["x"] == WIDTH - PAD_R
    assert LABEL_W < chart["today_x"] < chart["rows"][0]["markers"][0]["x"]


def test_a_moved_marker_remembers_where_it_was_and_says_so():
    rows = [
        TimelineRow(
            "p 1",
            "p",
            "1",
            milestones=[
                Marker(1, "end-of-life", "end of life", D(2028, 6, 30), "planned", moved_from=D(2027, 6, 30))
            ],
        )
    ]
    [marker] = layout(rows, D(2026, 1, 1))["rows"][0]["markers"]
    assert marker["old_x"] < marker["x"] and "moved from 2027-06-30" in marker["title"]


def test_dates_outside_the_valid_range_are_clamped_not_drawn_off_the_chart():
    rows = [
        TimelineRow(
            "p 1",
            "p",
            "1",
            released=D(1900, 1, 1),
            milestones=[Marker(1, "end-of-life", "", D(2027, 1, 1), "planned")],
        )
    ]
    chart = layout(rows, D(2026, 1, 1))
    assert chart["ticks"][0]["label"] == "1970" and chart["rows"][0]["bar"][0] == LABEL_W


def test_same_day_markers_are_stacked_in_lifecycle_order_and_the_row_grows():
    day = D(2027, 12, 31)
    rows = [
        TimelineRow(
            "acp 3.18",
            "acp",
            "3.18",
            milestones=[
                Marker(1, "end-of-life", "end of life", day, "planned"),
                Marker(2, "end-of-sale", "end of sale", day, "planned"),
                Marker(3, "end-of-maintenance", "end of maintenance", day, "planned"),
            ],
        ),
        TimelineRow("acp 3.20", "acp", "3.20", milestones=[Marker(4, "end-of-life", "", day, "planned")]),
    ]
    chart = layout(rows, D(2026, 1, 1))
    stacked = {m["kind"]: m for m in chart["rows"][0]["markers"]}
    assert [stacked[k]["lane"] for k in ("end-of-sale", "end-of-maintenance", "end-of-life")] == [0, 1, 2]
    assert len({m["x"] for m in stacked.values()}) == 1 and len({m["y"] for m in stacked.values()}) == 3
    assert stacked["end-of-life"]["y"] == stacked["end-of-sale"]["y"] + 2 * LANE_H
    assert chart["rows"][0]["height"] == ROW_H + 2 * LANE_H
    assert chart["rows"][1]["top"] == TOP + ROW_H + 2 * LANE_H  # the next row starts below the stack
    assert chart["height"] == TOP + 2 * ROW_H + 2 * LANE_H + 8


def test_every_marker_has_a_label_and_no_two_labels_in_a_lane_overlap():
    # Dates close enough that their labels would collide on one line.
    ms = [
        Marker(i, kind, "", D(2027, 1, 1) + dt.timedelta(days=9 * i), "planned")
        for i, kind in enumerate(
            ["end-of-sale", "end-of-full-support", "end-of-maintenance", "end-of-life"] * 3
        )
    ]
    [row] = layout([TimelineRow("p 1", "p", "1", milestones=ms)], D(2026, 1, 1))["rows"]
    assert {m["text"] for m in row["markers"]} == {f"{KIND_SHORT[m.kind]} {m.date.isoformat()}" for m in ms}
    assert max(m["lane"] for m in row["markers"]) >= 1  # some had to move down
    for a in row["markers"]:
        for b in row["markers"]:
            if a is not b and a["lane"] == b["lane"]:
                assert a["extent"][1] <= b["extent"][0] or b["extent"][1] <= a["extent"][0], (a, b)
    later = Marker(99, "end-of-life", "", D(2027, 10, 1), "planned")
    far = layout([TimelineRow("p 1", "p", "1", milestones=[ms[0], later])], D(2026, 1, 1))["rows"][0]
    assert {m["lane"] for m in far["markers"]} == {0}  # markers far apart share the first lane


def test_a_label_at_the_right_edge_goes_left_of_its_marker():
    rows = [
        TimelineRow("p 1", "p", "1", milestones=[Marker(1, "end-of-life", "", D(2027, 12, 31), "planned")])
    ]
    [marker] = layout(rows, D(2027, 1, 1))["rows"][0]["markers"]
    assert marker["text_x"] < marker["x"] and marker["extent"][1] <= WIDTH


def test_long_row_labels_are_shortened_but_keep_the_version():
    rows = [
        TimelineRow("Alauda Container Platform for Financial Services 3.16", "acp", "3.16", suffix="3.16"),
        TimelineRow("Alauda Container Platform 3.16", "acp", "3.16", suffix="3.16"),
    ]
    long, short = layout(rows, D(2027, 1, 1))["rows"]
    assert long["label"].endswith("… 3.16") and len(long["label"]) < len(long["full_label"])
    assert short["label"] == short["full_label"] == "Alauda Container Platform 3.16"


def test_a_held_marker_says_until_when_it_can_be_undone():
    held = dt.datetime(2027, 1, 5, 14, 5, tzinfo=dt.UTC)
    rows = [
        TimelineRow(
            "p 1",
            "p",
            "1",
            milestones=[Marker(1, "end-of-life", "end of life", D(2027, 3, 1), "planned", held_until=held)],
        )
    ]
    [marker] = layout(rows, D(2027, 1, 5))["rows"][0]["markers"]
    assert marker["held"] == "14:05 UTC" and "on hold until 14:05 UTC" in marker["title"]


def test_the_legend_follows_the_lifecycle_order():
    chart = layout([], D(2027, 1, 1))
    assert [k["kind"] for k in chart["legend"]] == list(LIFECYCLE_ORDER)
    assert [k["short"] for k in chart["legend"]] == ["EoS", "EoFS", "EoM", "EoL"]
