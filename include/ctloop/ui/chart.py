"""The monitoring history as one inline SVG: drift share and model quality over time, with the
moments a retrain was asked for and the champion moved. No script and nothing to download.

The numbers become coordinates here; ``ui/chart.html`` turns the coordinates into SVG elements
(and escapes the labels, which carry decisions and versions from data).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from markupsafe import Markup

from ctloop.rendering import fragment

WIDTH, PANEL, GAP, LEFT, RIGHT, TOP = 900, 150, 40, 56, 16, 28
MUTED = "#57606a"
COLORS = {
    "drift": "#0969da",
    "quality": "#1a7f37",
    "retrain": "#bc4c00",
    "promotion": "#8250df",
    "rollback": "#cf222e",
    "override": "#cf222e",
}


@dataclass(frozen=True)
class Point:
    at: datetime
    drift_share: float | None
    quality: float | None
    action: str


@dataclass(frozen=True)
class Marker:
    at: datetime
    kind: str  # retrain, promotion, rollback, override
    label: str


@dataclass(frozen=True)
class Text:
    x: float
    y: float
    content: str
    size: int = 11
    fill: str = MUTED
    anchor: str = "start"


@dataclass(frozen=True)
class Panel:
    top: int
    title: Text
    ticks: list[Text]


@dataclass(frozen=True)
class Line:
    """A vertical marker line, or the horizontal threshold, with its label."""

    x1: float
    x2: float
    y1: float
    y2: float
    label: Text


@dataclass(frozen=True)
class Dot:
    x: float
    y: float
    title: str


@dataclass(frozen=True)
class Series:
    name: str
    color: str
    dots: list[Dot]

    @property
    def line(self) -> str:
        return " ".join(f"{dot.x},{dot.y}" for dot in self.dots)


@dataclass(frozen=True)
class MarkerLine:
    kind: str
    color: str
    title: str
    line: Line


@dataclass(frozen=True)
class Chart:
    """Everything the template draws, in SVG user units."""

    metric: str
    height: int
    panels: list[Panel]
    threshold: Line
    notes: list[Text]
    markers: list[MarkerLine]
    series: list[Series]
    axis: list[Text]
    width: int = WIDTH
    left: int = LEFT
    right: int = RIGHT
    panel_height: int = PANEL


def history_chart(points: list[Point], markers: list[Marker], *, threshold: float, metric: str) -> Markup:
    """Two panels sharing the time axis: drift share (0..1, with the retrain threshold) above,
    ``metric`` on labeled rows below; vertical lines mark retrains and champion moves."""
    return fragment("ui/chart.html", chart=layout(points, markers, threshold=threshold, metric=metric))


def layout(points: list[Point], markers: list[Marker], *, threshold: float, metric: str) -> Chart | None:
    """Where everything goes; None when there is nothing to draw."""
    if not points:
        return None
    times = [p.at for p in points] + [m.at for m in markers]
    start, end = min(times), max(times)
    span = (end - start).total_seconds() or 1.0

    def x(at: datetime) -> float:
        offset = (at - start).total_seconds() / span if end > start else 0.5
        return _round(LEFT + offset * (WIDTH - LEFT - RIGHT))

    qualities = [p.quality for p in points if p.quality is not None]
    low, high = (min(qualities), max(qualities)) if qualities else (0.0, 1.0)
    pad = max((high - low) * 0.15, 0.01)
    low, high = low - pad, high + pad
    drift_top, quality_top = TOP, TOP + PANEL + GAP
    height = quality_top + PANEL + 30
    limit = _y(drift_top, threshold, 0.0, 1.0)
    label = Text(
        WIDTH - RIGHT - 4, _round(limit - 4), f"retrain at {threshold:g}", fill="#cf222e", anchor="end"
    )
    unlabeled = Text(WIDTH / 2, quality_top + PANEL / 2, "no labeled rows yet", size=12, anchor="middle")
    return Chart(
        metric=metric,
        height=height,
        panels=[
            _panel(drift_top, "drift share", 0.0, 1.0),
            _panel(quality_top, f"{metric} (labeled rows)", low, high, ticks=bool(qualities)),
        ],
        threshold=Line(LEFT, WIDTH - RIGHT, limit, limit, label),
        notes=[] if qualities else [unlabeled],
        markers=[_marker(marker, x(marker.at), height) for marker in markers],
        series=[
            _series(points, x, drift_top, 0.0, 1.0, "drift", lambda p: p.drift_share),
            _series(points, x, quality_top, low, high, "quality", lambda p: p.quality),
        ],
        axis=[
            Text(LEFT, height - 8, f"{start:%Y-%m-%d %H:%M}"),
            Text(WIDTH - RIGHT, height - 8, f"{end:%Y-%m-%d %H:%M} UTC", anchor="end"),
        ],
    )


def _round(value: float) -> float:
    """To a tenth of a unit: finer is invisible and only makes the page longer."""
    return round(value, 1)


def _y(top: int, value: float, low: float, high: float) -> float:
    return _round(top + PANEL - (value - low) / ((high - low) or 1.0) * PANEL)


def _panel(top: int, title: str, low: float, high: float, *, ticks: bool = True) -> Panel:
    return Panel(
        top,
        Text(LEFT + 6, top + 14, title, size=12, fill="#1f2328"),
        [
            Text(LEFT - 6, top + 4, f"{high:.2f}", anchor="end"),
            Text(LEFT - 6, top + PANEL, f"{low:.2f}", anchor="end"),
        ]
        if ticks
        else [],
    )


def _marker(marker: Marker, x: float, height: int) -> MarkerLine:
    color = COLORS.get(marker.kind, MUTED)
    return MarkerLine(
        marker.kind,
        color,
        f"{marker.label} at {marker.at:%Y-%m-%d %H:%M:%S}",
        Line(x, x, TOP - 6, height - 30, Text(_round(x + 3), TOP - 10, marker.label, fill=color)),
    )


def _series(
    points: list[Point],
    x: Callable[[datetime], float],
    top: int,
    low: float,
    high: float,
    name: str,
    value: Callable[[Point], float | None],
) -> Series:
    dots = [
        Dot(x(p.at), _y(top, v, low, high), f"{p.at:%Y-%m-%d %H:%M:%S}: {name} {v:.3f}, decision {p.action}")
        for p in points
        if (v := value(p)) is not None
    ]
    return Series(name, COLORS[name], dots)
