"""The registry timeline's geometry, without a database: rows, markers per kind, moved markers, bars,
year ticks and today."""

import datetime as dt

from lifecycle.web.timeline import KIND_STYLE, LABEL_W, PAD_R, ROW_H, TOP, WIDTH, Marker, TimelineRow, layout

D = dt.date


def test_rows_are_stacked_and_markers_take_the_shape_and_colour_of_their_kind():
    rows = [TimelineRow("acp 3.16", "acp", "3.16", released=D(2024, 1, 15), milestones=[
        Marker(1, "end-of-life", "end of life", D(2027, 9, 30), "planned"),
        Marker(2, "end-of-sale", "end of sale", D(2026, 3, 31), "planned")]),
        TimelineRow("acp 3.18", "acp", "3.18", milestones=[
            Marker(3, "end-of-full-support", "end of full support", D(2027, 12, 31), "withdrawn")])]
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
    rows = [TimelineRow("p 1", "p", "1", milestones=[Marker(1, "end-of-life", "", D(2028, 6, 30), "planned")])]
    chart = layout(rows, D(2026, 7, 2))
    assert [t["label"] for t in chart["ticks"]] == ["2026", "2027", "2028", ""]
    assert chart["ticks"][0]["x"] == LABEL_W and chart["ticks"][-1]["x"] == WIDTH - PAD_R
    assert LABEL_W < chart["today_x"] < chart["rows"][0]["markers"][0]["x"]


def test_a_moved_marker_remembers_where_it_was_and_says_so():
    rows = [TimelineRow("p 1", "p", "1", milestones=[
        Marker(1, "end-of-life", "end of life", D(2028, 6, 30), "planned", moved_from=D(2027, 6, 30))])]
    [marker] = layout(rows, D(2026, 1, 1))["rows"][0]["markers"]
    assert marker["old_x"] < marker["x"] and "moved from 2027-06-30" in marker["title"]


def test_dates_outside_the_valid_range_are_clamped_not_drawn_off_the_chart():
    rows = [TimelineRow("p 1", "p", "1", released=D(1900, 1, 1),
                        milestones=[Marker(1, "end-of-life", "", D(2027, 1, 1), "planned")])]
    chart = layout(rows, D(2026, 1, 1))
    assert chart["ticks"][0]["label"] == "1970" and chart["rows"][0]["bar"][0] == LABEL_W
