"""The monitoring history chart: one point per decision, lines where the champion moved."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from ctloop.ui.chart import PANEL, TOP, Marker, Point, history_chart

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _points(*values: tuple[float, float | None]) -> list[Point]:
    return [Point(T0 + timedelta(hours=i), d, q, "hold") for i, (d, q) in enumerate(values)]


def test_each_decision_is_a_point_and_each_move_a_marker() -> None:
    svg = history_chart(
        _points((0.1, None), (0.5, 0.8), (0.2, 0.75)),
        [Marker(T0, "promotion", "v1"), Marker(T0 + timedelta(hours=1), "retrain", "retrain")],
        threshold=0.3,
        metric="roc_auc",
    )
    assert svg.count('<circle class="point drift"') == 3
    assert svg.count('<circle class="point quality"') == 2  # no quality without labels
    assert svg.count('class="marker promotion"') == 1
    assert svg.count('class="marker retrain"') == 1


def test_drift_share_is_drawn_on_a_fixed_zero_to_one_scale_with_the_threshold() -> None:
    svg = history_chart(_points((0.0, None), (1.0, None)), [], threshold=0.25, metric="roc_auc")
    ys = [float(y) for y in re.findall(r'class="point drift" cx="[^"]+" cy="([^"]+)"', svg)]
    assert ys == [TOP + PANEL, TOP]  # 0 at the bottom of the panel, 1 at its top
    threshold = float(re.search(r'class="threshold"[^>]* y1="([^"]+)"', svg).group(1))
    assert threshold == TOP + PANEL * 0.75
    assert "no labeled rows yet" in svg


def test_labels_are_escaped() -> None:
    svg = history_chart(
        _points((0.1, 0.9)),
        [Marker(T0, "promotion", "<script>alert(1)</script>")],
        threshold=0.3,
        metric="<b>",
    )
    assert "<script>" not in svg
    assert "&lt;script&gt;" in svg
    assert "<b>" not in svg


def test_no_decision_yet_draws_no_chart() -> None:
    assert "<svg" not in history_chart([], [], threshold=0.3, metric="roc_auc")
