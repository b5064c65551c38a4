"""The pipeline page's charts as inline SVG: drift share and quality with the moments the champion
moved and retrains were asked for, drift per feature for the most drifted features, and the served
quality of the champion against its shadow. No script (the page's CSP forbids them) and nothing to
download.

The numbers become coordinates here (on the scales of ``chart_scales``), and so does every label's
place: a label's width is estimated from its length and font size (``chart_shapes``), and a label
that would overlap another moves to a further row or is left to its line's hover title.
``ui/chart.html`` only turns the layout into SVG elements (and escapes the labels, which carry
decisions, versions and column names from data). All charts of a page share one time axis, so a
moment lines up from one chart to the next; colours are CSS classes over custom properties
(``--ct-chart-*``) that the plugin's theme can set for light and dark.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from markupsafe import Markup

from ctloop.rendering import fragment
from ctloop.ui.chart_scales import AXIS_HEIGHT, LOG_FLOOR, TimeScale, YScale, nice_ticks, tick_label
from ctloop.ui.chart_shapes import (
    FONT,
    LEFT,
    RIGHT,
    SMALL,
    WIDTH,
    Band,
    Dot,
    Figure,
    Key,
    MarkerLine,
    Path,
    Rule,
    Text,
    round_coord,
    text_width,
)

if TYPE_CHECKING:
    from ctloop.registry.ledger import LedgerEntry

MARKER_ROWS = 3
P_VALUE_TESTS = frozenset({"ks", "chisquare", "z"})
"""Tests whose score is a p-value (drift below the threshold); the others are distances (drift above)."""
MOVE_LABELS = {"promotion": "v{}", "rollback": "rollback v{}", "override": "override v{}"}


def pipeline_charts(
    decisions: list[dict[str, Any]],
    moves: list[LedgerEntry],
    *,
    threshold: float,
    metric: str,
    top_features: int = 5,
) -> Markup:
    """Every chart of the pipeline page, from the monitor's history entries and the ledger's moves."""
    figures = layout(decisions, moves, threshold=threshold, metric=metric, top_features=top_features)
    return fragment("ui/chart.html", figures=figures)


def layout(
    decisions: list[dict[str, Any]],
    moves: list[LedgerEntry],
    *,
    threshold: float,
    metric: str,
    top_features: int = 5,
) -> list[Figure]:
    """The three charts on one time axis; none when no monitor run has decided anything yet."""
    if not decisions:
        return []
    runs = sorted(decisions, key=lambda d: _utc(d["at"]))
    scale = TimeScale.over([_utc(d["at"]) for d in runs] + [_utc(m.at) for m in moves])
    return [
        drift_and_quality(runs, moves, scale, threshold=threshold, metric=metric),
        feature_drift(runs, scale, top=top_features),
        served_quality(runs, scale, metric=metric),
    ]


# --- shared drawing --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reading:
    """One value of a series at one moment, with what its hover title says."""

    at: datetime
    value: float | None
    title: str
    over: bool = False  # drawn in the alert colour: at or past its threshold


def _plot(figure: Figure, readings: list[Reading], scale: TimeScale, y: YScale, name: str, cls: str) -> None:
    """A line through the readings, broken where a value is missing, and a dot with a title at each."""
    radius = 2.5 if len(readings) > 60 else 4.0
    segment: list[str] = []
    for reading in [*readings, Reading(scale.end, None, "")]:
        if reading.value is None:
            if len(segment) > 1:
                figure.paths.append(Path(" ".join(segment), cls))
            segment = []
            continue
        x, at_y = scale.x(reading.at), y.y(reading.value)
        segment.append(f"{x},{at_y}")
        dot = f"point {name} {'ct-over' if reading.over else cls}"
        figure.dots.append(Dot(x, at_y, reading.title, dot, radius))


def _add(figure: Figure, drawn: tuple[list[Rule], list[Text]]) -> None:
    rules, texts = drawn
    figure.rules += rules
    figure.texts += texts


def _panel(figure: Figure, top: float, height: float, title: str) -> None:
    """The panel's background, and its title in the row above it, where no point can be."""
    figure.bands.append(Band(LEFT, top, WIDTH - LEFT - RIGHT, height, "ct-panel"))
    figure.texts.append(Text(LEFT, top - 9, title, FONT, cls="ct-title"))


def _right_label(y: float, top: float, height: float, content: str) -> Text:
    """A threshold's label in the right margin at the threshold's height, kept within its panel."""
    baseline = min(max(y + 4, top + SMALL), top + height)
    return Text(WIDTH - RIGHT + 6, round_coord(baseline), content, SMALL, cls="ct-c ct-threshold")


# --- (a) drift share and quality -------------------------------------------------------------------

PANEL, TITLE_ROW, LABEL_ROW = 150, 22, 15


@dataclass(frozen=True)
class Event:
    """A retrain asked for, or a move of the champion, as a vertical line."""

    at: datetime
    kind: str  # retrain, promotion, rollback, override
    label: str
    title: str


def events(runs: list[dict[str, Any]], moves: list[LedgerEntry]) -> list[Event]:
    """Retrains (decisions whose action is retrain) and champion moves, in time order."""
    found = [
        Event(
            _utc(d["at"]), "retrain", "retrain", f"retrain asked for: {d.get('why') or 'no reason recorded'}"
        )
        for d in runs
        if d["action"] == "retrain"
    ]
    for move in moves:
        by = f" by {move.user}" if move.user else ""
        label = MOVE_LABELS.get(move.action, "{}").format(move.to_version)
        found.append(Event(_utc(move.at), move.action, label, f"{move.action} to v{move.to_version}{by}"))
    return sorted(found, key=lambda e: e.at)


def marker_label(x: float, row: int, content: str) -> Text:
    """A line's label on ``row`` of the band above the panels, right of its line (left of the
    chart's right edge when it would run past it)."""
    start = min(x + 3, WIDTH - 2 - text_width(content, SMALL))
    return Text(round_coord(start), (row + 1) * LABEL_ROW - 3, content, SMALL, cls="ct-c")


def stagger(xs: list[float], contents: list[str], rows: int = MARKER_ROWS) -> list[int | None]:
    """The row of each label (in x order), the first where it clears the previous label by 4 units;
    None when no row has room: that line keeps only its hover title."""
    ends = [-math.inf] * rows
    placed: list[int | None] = []
    for x, content in zip(xs, contents, strict=True):
        box = marker_label(x, 0, content).box
        row = next((r for r in range(rows) if box.x0 >= ends[r] + 4), None)
        if row is not None:
            ends[row] = box.x1
        placed.append(row)
    return placed


def drift_and_quality(
    runs: list[dict[str, Any]], moves: list[LedgerEntry], scale: TimeScale, *, threshold: float, metric: str
) -> Figure:
    """Drift share (0..1, the retrain threshold labelled in the right margin, where no point can
    be) above ``metric`` on labeled rows; retrains and champion moves are vertical lines through
    both, labelled in rows above the panels."""
    marks = events(runs, moves)
    xs = [scale.x(e.at) for e in marks]
    rows = stagger(xs, [e.label for e in marks])
    band = (max((r for r in rows if r is not None), default=-1) + 1) * LABEL_ROW
    drift_top = band + TITLE_ROW
    quality_top = drift_top + PANEL + TITLE_ROW + 8
    bottom = quality_top + PANEL
    qualities = [q for d in runs if (q := _finite(d.get("quality"))) is not None]
    kinds = sorted({e.kind for e in marks}, key=list(MARKER_NAMES).index)
    figure = Figure(
        "drift-quality",
        f"Drift share and {metric} over time",
        [
            Key("drift share", "ct-series-drift", "ct-line"),
            Key(f"at or above the retrain threshold {threshold:g}", "ct-over", "ct-dot"),
            Key(f"{metric} on labeled rows", "ct-series-quality", "ct-line"),
            *(Key(MARKER_NAMES[kind], f"ct-marker-{kind}", "ct-dash") for kind in kinds),
        ],
        height=bottom + AXIS_HEIGHT,
        svg_class="history",
    )
    if hidden := sum(row is None for row in rows):
        figure.notes.append(
            f"{hidden} of {len(rows)} line labels would overlap others and are left out:"
            " hover a line to read it."
        )
    _panel(figure, drift_top, PANEL, "drift share")
    _panel(figure, quality_top, PANEL, f"{metric} on labeled rows")
    drift = YScale(drift_top, PANEL, 0.0, 1.0)
    shares = nice_ticks(0.0, 1.0)
    _add(figure, drift.ticks(shares, [tick_label(v) for v in shares]))
    values = nice_ticks(min(qualities), max(qualities)) if qualities else [0.0, 1.0]
    quality = YScale(quality_top, PANEL, values[0], values[-1])
    if qualities:
        _add(figure, quality.ticks(values, [tick_label(v) for v in values]))
    else:
        middle = (LEFT + WIDTH - RIGHT) / 2
        figure.texts.append(Text(middle, quality_top + PANEL / 2, "no labeled rows yet", FONT, "middle"))
    _add(figure, scale.axis([(drift_top, PANEL), (quality_top, PANEL)], bottom))
    limit = drift.y(threshold)
    figure.rules.append(Rule(LEFT, limit, WIDTH - RIGHT, limit, "threshold ct-threshold"))
    figure.texts.append(_right_label(limit, drift_top, PANEL, f"retrain ≥ {threshold:g}"))
    for event, x, row in zip(marks, xs, rows, strict=True):
        label = marker_label(x, row, event.label) if row is not None else None
        start = row * LABEL_ROW + 2 if row is not None else drift_top
        figure.markers.append(
            MarkerLine(
                event.kind,
                f"{event.title}, {event.at:%Y-%m-%d %H:%M:%S} UTC",
                [(x, start, x, drift_top + PANEL), (x, quality_top, x, bottom)],
                label,
            )
        )
    for name, key, y in (("drift", "drift_share", drift), ("quality", "quality", quality)):
        readings = [
            Reading(
                at := _utc(d["at"]),
                value := _finite(d.get(key)),
                f"{at:%Y-%m-%d %H:%M} UTC: {name} {value:.4g}, decision {d['action']}"
                if value is not None
                else "",
                name == "drift" and value is not None and value >= threshold,
            )
            for d in runs
        ]
        _plot(figure, readings, scale, y, name, f"ct-series-{name}")
    return figure


MARKER_NAMES = {
    "retrain": "retrain asked for",
    "promotion": "promotion (label: new champion)",
    "rollback": "rollback (label: restored version)",
    "override": "override (label: chosen version)",
}


# --- (b) drift per feature -------------------------------------------------------------------------

STRIP, STRIP_GAP = 56, 12


@dataclass(frozen=True)
class Ranked:
    """A feature's drift over the recorded runs: how often it drifted and its latest test."""

    column: str
    drifted: int
    latest: dict[str, Any]

    @property
    def severity(self) -> float:
        """The latest score against its threshold, > 1 when drifted, whatever the test's direction."""
        score, threshold = self.latest["score"], self.latest["threshold"]
        if self.latest["stattest"] in P_VALUE_TESTS:
            return float(threshold / max(score, 1e-300))
        return float(score / threshold) if threshold else math.inf


def rank_features(recorded: list[dict[str, Any]]) -> list[Ranked]:
    """Every feature, most drifted first: by the number of runs it drifted in, then by its latest
    score against its own threshold, then by name."""
    counts: dict[str, int] = {}
    latest: dict[str, dict[str, Any]] = {}
    for run in recorded:
        for column in run["feature_drift"]:
            counts[column["column"]] = counts.get(column["column"], 0) + bool(column["drifted"])
            latest[column["column"]] = column
    ranked = [Ranked(name, counts[name], latest[name]) for name in counts]
    return sorted(ranked, key=lambda r: (-r.drifted, -r.severity, r.column))


def feature_drift(runs: list[dict[str, Any]], scale: TimeScale, *, top: int) -> Figure:
    """Small multiples, one strip per feature, because each feature has its own test: a p-value
    (ks, chisquare, z: drift below the threshold, drawn on a log scale since they fall to 1e-30
    under real drift) or a distance (wasserstein, jensenshannon: drift above it, linear). One
    shared axis would have to mix directions and units; a strip each keeps the feature's own
    threshold, scale and "drifts below/above" label, and shades the region where it drifts."""
    recorded = [d for d in runs if d.get("feature_drift") is not None]
    if not recorded:
        return Figure(
            "feature-drift",
            "Drift per feature",
            [],
            ["No per-feature drift recorded yet: the monitor runs so far kept only the drift share."],
        )
    ranked = rank_features(recorded)
    chosen = ranked[:top]
    older = [d for d in runs if d.get("feature_drift") is None]
    figure = Figure(
        "feature-drift",
        f"Drift per feature: the {len(chosen)} most drifted of {len(ranked)} features",
        [
            Key("test score", "ct-series-drift", "ct-line"),
            Key("drifted in that run", "ct-over", "ct-dot"),
            Key("the feature's threshold", "ct-threshold", "ct-dash"),
            Key("where the feature drifts", "ct-zone", "ct-band"),
            *([Key("no per-feature data", "ct-nodata", "ct-band")] if older else []),
        ],
        [
            "Ranked by the number of runs each drifted in, then by its latest score against its threshold;"
            " each strip is the feature's own test on its own scale."
        ],
    )
    if older:
        figure.notes.append(f"{len(older)} of {len(runs)} runs recorded no per-feature drift (grey).")
    top_y = 0.0
    for feature in chosen:
        top_y += TITLE_ROW
        _strip(figure, feature, recorded, older, scale, top_y)
        top_y += STRIP + STRIP_GAP
    bottom = top_y - STRIP_GAP
    _add(
        figure,
        scale.axis(
            [(TITLE_ROW + i * (TITLE_ROW + STRIP + STRIP_GAP), STRIP) for i in range(len(chosen))], bottom
        ),
    )
    figure.height = bottom + AXIS_HEIGHT
    return figure


def _strip(
    figure: Figure,
    feature: Ranked,
    recorded: list[dict[str, Any]],
    older: list[dict[str, Any]],
    scale: TimeScale,
    top: float,
) -> None:
    test, threshold = feature.latest["stattest"], feature.latest["threshold"]
    readings, other = [], 0
    for run in recorded:
        for column in run["feature_drift"]:
            if column["column"] != feature.column:
                continue
            if column["stattest"] != test:
                other += 1
                continue
            at = _utc(run["at"])
            readings.append(
                Reading(
                    at,
                    _finite(column["score"]),
                    f"{at:%Y-%m-%d %H:%M} UTC: {feature.column} {test} {column['score']:.4g}"
                    f"{' (drifted)' if column['drifted'] else ''}",
                    bool(column["drifted"]),
                )
            )
    p_value = test in P_VALUE_TESTS
    scores = [r.value for r in readings if r.value is not None]
    if p_value:
        floor = min(math.log10(max(s, 10.0**LOG_FLOOR)) for s in [*scores, threshold / 10])
        low = max(LOG_FLOOR, math.floor(floor))
        y = YScale(top, STRIP, low, 0.0, log=True)
        decades = sorted({0, low, round(low / 2)}, reverse=True)
        _add(figure, y.ticks([float(d) for d in decades], ["1" if d == 0 else f"1e{d}" for d in decades]))
        zone = Band(LEFT, y.y(threshold), WIDTH - LEFT - RIGHT, top + STRIP - y.y(threshold), "ct-zone")
        sign, kind = ("≤" if test == "ks" else "<"), "p-value"
    else:
        values = nice_ticks(0.0, max([*scores, threshold * 1.5]), 3)
        y = YScale(top, STRIP, values[0], values[-1])
        _add(figure, y.ticks(values, [tick_label(v) for v in values]))
        zone = Band(LEFT, top, WIDTH - LEFT - RIGHT, y.y(threshold) - top, "ct-zone")
        sign, kind = "≥", "distance"
    _panel(figure, top, STRIP, _strip_title(feature, test, kind, len(recorded), other))
    figure.bands.append(zone)
    if older:
        first, last = scale.x(_utc(older[0]["at"])), scale.x(_utc(older[-1]["at"]))
        figure.bands.append(Band(first - 2, top, last - first + 4, STRIP, "ct-nodata"))
    limit = y.y(threshold)
    figure.rules.append(Rule(LEFT, limit, WIDTH - RIGHT, limit, "ct-threshold"))
    figure.texts.append(_right_label(limit, top, STRIP, f"drifts {sign} {threshold:g}"))
    _plot(figure, readings, scale, y, "feature", "ct-series-drift")


def _strip_title(feature: Ranked, test: str, kind: str, runs: int, other: int) -> str:
    name = feature.column if len(feature.column) <= 48 else feature.column[:47] + "…"
    title = f"{name} · {test} {kind} · drifted in {feature.drifted} of {runs} runs"
    return title + (f" · {other} runs under another test not shown" if other else "")


# --- (c) served quality: champion against its shadow -----------------------------------------------

COMPARISONS = (
    ("champion_vs_previous", "champion vs previous champion", ("champion", "previous")),
    ("challenger_vs_champion", "challenger vs champion", ("challenger", "champion")),
)
ROLE_NAMES = {
    "champion": "champion",
    "previous": "previous champion (shadow)",
    "challenger": "challenger (shadow)",
}


def served_quality(runs: list[dict[str, Any]], scale: TimeScale, *, metric: str) -> Figure:
    """Each model's ``metric`` on the same labeled production rows, as the monitor's paired
    comparisons measured it: after a promotion the previous champion shadow-scores, and so does a
    challenger waiting for approval. One panel per comparison, since each is on its own rows."""
    figure = Figure("served-quality", f"Served {metric}: champion against its shadow", [])
    top = 0.0
    panels = []
    for key, title, roles in COMPARISONS:
        compared = [d for d in runs if d.get(key)]
        measured = [d for d in compared if d[key].get("values")]
        unlabeled = sum("values" in d[key] and not d[key]["values"] for d in compared)
        if unlabeled:
            figure.notes.append(
                f"{title}: {unlabeled} of {len(compared)} comparisons had no labeled rows yet."
            )
        if older := sum("values" not in d[key] for d in compared):
            figure.notes.append(f"{title}: {older} earlier comparisons recorded no per-model values.")
        if not measured:
            continue
        top += TITLE_ROW
        _comparison(figure, key, title, roles, measured, scale, top)
        panels.append((top, float(PANEL)))
        top += PANEL + 8
        figure.legend += [
            Key(ROLE_NAMES[role], f"ct-series-{role}", "ct-line")
            for role in roles
            if all(k.cls != f"ct-series-{role}" for k in figure.legend)
        ]
    if not panels:
        figure.notes.insert(
            0,
            "No comparison with labels yet: after a promotion the previous champion shadow-scores each batch,"
            " as does a challenger waiting for approval; both models' values on the same labeled rows"
            " appear here once labels arrive.",
        )
        return figure
    bottom = top - 8
    _add(figure, scale.axis(panels, bottom))
    figure.height = bottom + AXIS_HEIGHT
    return figure


def _comparison(
    figure: Figure,
    key: str,
    title: str,
    roles: tuple[str, str],
    measured: list[dict[str, Any]],
    scale: TimeScale,
    top: float,
) -> None:
    values = [v for d in measured for x in d[key]["values"].values() if (v := _finite(x)) is not None]
    ticks = nice_ticks(min(values), max(values))
    y = YScale(top, PANEL, ticks[0], ticks[-1])
    metric = measured[-1][key].get("metric", "")
    _panel(figure, top, PANEL, f"{title}: {metric} on the same labeled rows")
    _add(figure, y.ticks(ticks, [tick_label(v) for v in ticks]))
    for role in roles:
        readings = []
        for d in measured:
            comparison, at = d[key], _utc(d["at"])
            value = _finite(comparison["values"].get(role))
            version = comparison.get("versions", {}).get(role, "?")
            rows = comparison.get("rows") or 0
            title_text = (
                f"{at:%Y-%m-%d %H:%M} UTC: {role} v{version} {metric} {value:.4g} on {rows:,} rows"
                if value is not None
                else ""
            )
            readings.append(Reading(at, value, title_text))
        _plot(figure, readings, scale, y, role, f"ct-series-{role}")


# --- helpers ---------------------------------------------------------------------------------------


def _utc(text: str) -> datetime:
    """An ISO time as an aware UTC datetime (a naive one is taken as UTC)."""
    at = datetime.fromisoformat(text)
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def _finite(value: Any) -> float | None:
    """A number to draw, or None for a missing or non-finite one (a gap in its line)."""
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else None
