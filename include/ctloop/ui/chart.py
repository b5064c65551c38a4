"""The monitoring history as one inline SVG: drift share and model quality over time, with the
moments a retrain was asked for and the champion moved. No script and nothing to download."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from ctloop.ui.render import esc

WIDTH, PANEL, GAP, LEFT, RIGHT, TOP = 900, 150, 40, 56, 16, 28
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


def history_chart(points: list[Point], markers: list[Marker], *, threshold: float, metric: str) -> str:
    """Two panels sharing the time axis: drift share (0..1, with the retrain threshold) above,
    ``metric`` on labeled rows below; vertical lines mark retrains and champion moves."""
    if not points:
        return '<p class="muted">No monitor run has decided anything yet.</p>'
    times = [p.at for p in points] + [m.at for m in markers]
    start, end = min(times), max(times)
    span = (end - start).total_seconds() or 1.0

    def x(at: datetime) -> float:
        offset = (at - start).total_seconds() / span if end > start else 0.5
        return LEFT + offset * (WIDTH - LEFT - RIGHT)

    qualities = [p.quality for p in points if p.quality is not None]
    low, high = (min(qualities), max(qualities)) if qualities else (0.0, 1.0)
    pad = max((high - low) * 0.15, 0.01)
    low, high = low - pad, high + pad
    drift_top, quality_top = TOP, TOP + PANEL + GAP
    height = quality_top + PANEL + 30
    parts = [
        _panel(drift_top, "drift share", 0.0, 1.0),
        _panel(quality_top, f"{metric} (labeled rows)", low, high, ticks=bool(qualities)),
        _hline(drift_top, threshold, 0.0, 1.0, f"retrain at {threshold:g}"),
    ]
    if not qualities:
        parts.append(
            _text(WIDTH / 2, quality_top + PANEL / 2, "no labeled rows yet", size=12, anchor="middle")
        )
    for marker in markers:
        mx = x(marker.at)
        color = COLORS.get(marker.kind, "#57606a")
        parts.append(
            f'<g class="marker {esc(marker.kind)}">'
            f"<title>{esc(marker.label)} at {marker.at:%Y-%m-%d %H:%M:%S}</title>"
            f'<line x1="{mx:.1f}" x2="{mx:.1f}" y1="{TOP - 6}" y2="{height - 30}" stroke="{color}" '
            f'stroke-dasharray="3 3"/>{_text(mx + 3, TOP - 10, marker.label, fill=color)}</g>'
        )
    parts.append(_series(points, x, drift_top, 0.0, 1.0, "drift", lambda p: p.drift_share))
    parts.append(_series(points, x, quality_top, low, high, "quality", lambda p: p.quality))
    parts.append(_text(LEFT, height - 8, f"{start:%Y-%m-%d %H:%M}"))
    parts.append(_text(WIDTH - RIGHT, height - 8, f"{end:%Y-%m-%d %H:%M} UTC", anchor="end"))
    return (
        f'<svg class="history" role="img" aria-label="drift share and {esc(metric)} over time" '
        f'viewBox="0 0 {WIDTH} {height}" width="100%" style="max-width:{WIDTH}px">{"".join(parts)}</svg>'
    )


def _y(top: int, value: float, low: float, high: float) -> float:
    return top + PANEL - (value - low) / ((high - low) or 1.0) * PANEL


def _text(
    x: float, y: float, content: str, *, size: int = 11, fill: str = "#57606a", anchor: str = "start"
) -> str:
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" fill="{fill}" text-anchor="{anchor}">'
        f"{esc(content)}</text>"
    )


def _panel(top: int, title: str, low: float, high: float, *, ticks: bool = True) -> str:
    frame = (
        f'<rect x="{LEFT}" y="{top}" width="{WIDTH - LEFT - RIGHT}" height="{PANEL}" fill="#f6f8fa" '
        f'stroke="#d0d7de"/>{_text(LEFT + 6, top + 14, title, size=12, fill="#1f2328")}'
    )
    if not ticks:
        return frame
    return (
        f"{frame}{_text(LEFT - 6, top + 4, f'{high:.2f}', anchor='end')}"
        f"{_text(LEFT - 6, top + PANEL, f'{low:.2f}', anchor='end')}"
    )


def _hline(top: int, value: float, low: float, high: float, label: str) -> str:
    y = _y(top, value, low, high)
    return (
        f'<line class="threshold" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" '
        f'stroke="#cf222e" stroke-dasharray="6 4"/>'
        f"{_text(WIDTH - RIGHT - 4, y - 4, label, fill='#cf222e', anchor='end')}"
    )


def _series(points, x, top: int, low: float, high: float, name: str, value) -> str:
    color = COLORS[name]
    known = [(x(p.at), _y(top, value(p), low, high), p) for p in points if value(p) is not None]
    line = " ".join(f"{px:.1f},{py:.1f}" for px, py, _ in known)
    dots = "".join(
        f'<circle class="point {name}" cx="{px:.1f}" cy="{py:.1f}" r="4" fill="{color}">'
        f"<title>{p.at:%Y-%m-%d %H:%M:%S}: {name} {value(p):.3f}, decision {esc(p.action)}</title></circle>"
        for px, py, p in known
    )
    return f'<polyline fill="none" stroke="{color}" stroke-width="2" points="{line}"/>{dots}'
