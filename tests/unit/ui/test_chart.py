"""The pipeline page's charts: a real time axis, round y ticks, labels that never overlap each other
or a point, the most drifted features, and old history entries that still render."""

from __future__ import annotations

import itertools
import math
import random
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from ctloop.registry.ledger import LedgerEntry
from ctloop.ui.chart import layout, pipeline_charts, rank_features
from ctloop.ui.chart_scales import nice_ticks, time_ticks
from ctloop.ui.chart_shapes import LEFT, RIGHT, WIDTH, Box, Figure, Text, text_width

T0 = datetime(2026, 11, 27, 21, 0, tzinfo=UTC)


def move(seq: int, at: datetime, action: str = "promotion", to: str = "2") -> LedgerEntry:
    return LedgerEntry(
        seq=seq,
        pipeline="churn",
        action=action,
        alias="champion",
        from_version="1",
        to_version=to,
        at=at.isoformat(),
        run_key=None,
        mlflow_run_id=None,
        user="alice" if action != "promotion" else None,
        reason="r",
        gate_decision="promote",
        approver=None,
        evidence={},
    )


def column(name: str, stattest: str, score: float) -> dict[str, Any]:
    threshold = 0.05 if stattest in ("ks", "chisquare", "z") else 0.1
    drifted = score <= threshold if stattest in ("ks", "chisquare", "z") else score >= threshold
    return {"column": name, "stattest": stattest, "score": score, "threshold": threshold, "drifted": drifted}


def history(runs: int, features: int, every: timedelta, seed: int = 0) -> list[dict[str, Any]]:
    """Monitor history entries as ``_record`` writes them: the first three features drift in the
    second half (two p-value tests, one distance), quality arrives on three runs of four, and the
    previous champion shadow-scores after run 10, with labels from run 15 on."""
    rng = random.Random(seed)
    entries = []
    for i in range(runs):
        late = i >= runs // 2
        columns = []
        for f in range(features):
            test = "ks" if f % 3 == 0 else ("chisquare" if f % 3 == 1 else "wasserstein")
            if test == "wasserstein":
                score = rng.uniform(0.15, 0.4) if late and f < 3 else rng.uniform(0.0, 0.08)
            else:
                score = rng.uniform(0, 1e-6) if late and f < 3 else rng.uniform(0.06, 1.0)
            columns.append(column(f"feature_{f:02d}", test, score))
        share = sum(c["drifted"] for c in columns) / features
        compared = {
            "versions": {"champion": "3", "previous": "2"},
            "rows": 0 if i < 15 else 120 * i,
            "metric": "roc_auc",
            "values": None
            if i < 15
            else {"champion": rng.uniform(0.8, 0.85), "previous": rng.uniform(0.7, 0.8)},
            "difference": None,
            "interval": None,
            "verdict": "hold",
        }
        entries.append(
            {
                "at": (T0 + i * every).isoformat(),
                "action": "retrain" if i % 9 == 4 else "hold",
                "why": "drift share at least 0.3",
                "drift_share": max(share, rng.uniform(0.0, 1.0)),
                "quality": rng.uniform(0.75, 0.9) if i % 4 else None,
                "feature_drift": columns,
                "champion_vs_previous": compared if i > 10 else None,
            }
        )
    return entries


def dense_moves(start: datetime, count: int = 30) -> list[LedgerEntry]:
    """``count`` champion moves within an hour, every third a rollback or an override."""
    kinds = ("promotion", "rollback", "override")
    return [move(i, start + timedelta(minutes=2 * i), kinds[i % 3], str(i + 2)) for i in range(count)]


def overlaps(figure: Figure) -> list[tuple[str, str]]:
    boxes = [(t.content, t.box) for t in figure.all_texts()]
    return [(a, b) for (a, box), (b, other) in itertools.combinations(boxes, 2) if box.overlaps(other)]


def dot_box(dot: Any) -> Box:
    return Box(dot.x - dot.radius, dot.y - dot.radius, dot.x + dot.radius, dot.y + dot.radius)


# --- the time axis ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("span", "unit", "label"),
    [
        (timedelta(minutes=25), "minute", r"\d\d:\d\d"),
        (timedelta(hours=7), "hour", r"\d\d:\d\d"),
        (timedelta(days=9), "day", r"\d\d [A-Z][a-z]{2}"),
        (timedelta(days=40), "week", r"\d\d [A-Z][a-z]{2}"),
        (timedelta(days=200), "month", r"[A-Z][a-z]{2}"),
        (timedelta(days=3000), "year", r"\d{4}"),
    ],
)
def test_time_ticks_take_a_round_step_for_the_span(span: timedelta, unit: str, label: str) -> None:
    start = datetime(2026, 11, 27, 21, 13, 7, tzinfo=UTC)
    step, ticks = time_ticks(start, start + span)
    assert step.unit == unit
    assert 4 <= len(ticks) <= 10
    assert all(start <= t.at <= start + span for t in ticks)
    assert all(re.fullmatch(label, t.label) for t in ticks)
    gaps = {b.at - a.at for a, b in itertools.pairwise(ticks)}
    if step.fixed is not None:
        assert gaps == {step.fixed}
    else:  # calendar months and years: every tick on the first of a month
        assert {(t.at.day, t.at.hour, t.at.minute) for t in ticks} == {(1, 0, 0)}


def test_hour_ticks_say_the_date_where_the_day_changes_and_utc_once() -> None:
    step, ticks = time_ticks(
        datetime(2026, 11, 29, 17, 40, tzinfo=UTC), datetime(2026, 11, 30, 6, 0, tzinfo=UTC)
    )
    assert step.unit == "hour"
    dated = {t.label: t.date for t in ticks if t.date}
    assert dated == {"18:00": "Sun 29 Nov 2026", "00:00": "Mon 30 Nov"}  # the year only once
    _, ticks = time_ticks(datetime(2026, 12, 31, 20, 0, tzinfo=UTC), datetime(2027, 1, 1, 4, 0, tzinfo=UTC))
    assert [t.date for t in ticks if t.date] == ["Thu 31 Dec 2026", "Fri 01 Jan 2027"]
    (figure, _, _) = layout(history(3, 2, timedelta(hours=6)), [], threshold=0.3, metric="roc_auc")
    assert [t.content for t in figure.texts].count("UTC") == 1


@pytest.mark.parametrize(
    "span",
    [timedelta(minutes=3), timedelta(hours=30), timedelta(days=13), timedelta(days=70), timedelta(days=500)],
)
def test_axis_labels_never_overlap_and_stay_inside_the_chart(span: timedelta) -> None:
    runs = history(12, 4, span / 11)
    for figure in layout(runs, [move(1, T0)], threshold=0.3, metric="roc_auc"):
        assert overlaps(figure) == []
        for text in figure.all_texts():
            box = text.box
            assert box.x0 >= 0
            assert box.x1 <= WIDTH
            assert box.y0 >= 0
            assert box.y1 <= figure.height


def test_y_ticks_are_three_to_five_round_values_covering_the_data() -> None:
    assert nice_ticks(0.0, 1.0) == [0.0, 0.25, 0.5, 0.75, 1.0]
    for low, high in [(0.8123, 0.8917), (12.5, 1530.0), (-0.31, 0.02), (0.7, 0.7)]:
        ticks = nice_ticks(low, high)
        assert 2 <= len(ticks) <= 5
        assert ticks[0] <= low
        assert ticks[-1] >= high
        steps = {round(b - a, 9) for a, b in itertools.pairwise(ticks)}
        assert len(steps) == 1
        (step,) = steps
        assert round(step / 10 ** math.floor(math.log10(step)), 6) in (1, 2, 2.5, 5)


def test_text_width_estimates_wide_glyphs_wider() -> None:
    assert text_width("UTC", 12) > text_width("utc", 12) == pytest.approx(3 * 12 * 0.66)
    assert Text(100, 50, "abc", 10, "end").box.x1 == 100


# --- markers and the threshold --------------------------------------------------------------------


def test_thirty_moves_within_an_hour_label_what_fits_and_leave_the_rest_to_their_titles() -> None:
    runs = history(200, 6, timedelta(hours=1))
    moves = dense_moves(T0 + timedelta(hours=50))
    figure = layout(runs, moves, threshold=0.3, metric="roc_auc")[0]
    assert overlaps(figure) == []
    labelled = [m for m in figure.markers if m.label is not None]
    assert 3 <= len(labelled) < len(figure.markers)
    assert len(figure.markers) == 30 + sum(r["action"] == "retrain" for r in runs)
    assert all("UTC" in m.title for m in figure.markers)
    hidden = len(figure.markers) - len(labelled)
    assert f"{hidden} of {len(figure.markers)} line labels would overlap" in figure.notes[0]
    svg = pipeline_charts(runs, moves, threshold=0.3, metric="roc_auc")
    assert svg.count('class="marker rollback ct-marker-rollback"') == 10
    assert svg.count('class="marker override ct-marker-override"') == 10


def test_markers_far_apart_are_all_labelled_on_one_row() -> None:
    runs = history(10, 2, timedelta(days=1))
    moves = [move(1, T0 + timedelta(days=2)), move(2, T0 + timedelta(days=7), "rollback", "1")]
    figure = layout(runs, moves, threshold=0.3, metric="roc_auc")[0]
    labels = {m.label.content: m.label.y for m in figure.markers if m.label is not None}
    assert labels == {"v2": labels["v2"], "rollback v1": labels["v2"], "retrain": labels["v2"]}
    assert figure.notes == []


@pytest.mark.parametrize("threshold", [0.0, 0.05, 0.3, 0.5, 0.97, 1.0])
def test_the_threshold_label_sits_in_the_right_margin_clear_of_every_point(threshold: float) -> None:
    runs = history(40, 3, timedelta(minutes=30))
    for i, run in enumerate(runs):
        run["drift_share"] = threshold if i % 2 else min(1.0, threshold + 0.01)
    figure = layout(runs, [], threshold=threshold, metric="roc_auc")[0]
    (label,) = [t for t in figure.texts if t.content.startswith("retrain ≥")]
    assert label.content == f"retrain ≥ {threshold:g}"
    assert label.box.x0 > WIDTH - RIGHT
    assert not any(label.box.overlaps(dot_box(dot)) for dot in figure.dots)
    assert all(not text.box.overlaps(dot_box(dot)) for text in figure.all_texts() for dot in figure.dots)


def test_drift_share_is_drawn_on_a_fixed_zero_to_one_scale_with_the_threshold() -> None:
    runs = [
        {"at": T0.isoformat(), "action": "hold", "drift_share": 0.0, "quality": None},
        {"at": (T0 + timedelta(hours=1)).isoformat(), "action": "hold", "drift_share": 1.0, "quality": None},
    ]
    svg = pipeline_charts(runs, [], threshold=0.25, metric="roc_auc")
    ys = [float(y) for y in re.findall(r'class="point drift [^"]+" cx="[^"]+" cy="([^"]+)"', svg)]
    top, bottom = ys[1], ys[0]
    threshold = float(re.search(r'class="threshold ct-threshold"[^>]* y1="([^"]+)"', svg).group(1))
    assert bottom - top == 150
    assert threshold == top + 150 * 0.75
    assert 'class="point drift ct-over"' in svg  # 1.0 is past the threshold, 0.0 is not
    assert "no labeled rows yet" in svg


# --- what each chart draws -------------------------------------------------------------------------


def test_each_decision_is_a_point_and_each_move_a_marker() -> None:
    runs = history(3, 2, timedelta(hours=1))
    runs[0]["quality"] = None
    runs[1]["action"] = "retrain"
    svg = pipeline_charts(runs, [move(1, T0)], threshold=0.3, metric="roc_auc")
    chart = svg[svg.index('<svg class="history"') : svg.index("</svg>")]
    assert len(re.findall(r'<circle class="point drift ', chart)) == 3
    assert len(re.findall(r'<circle class="point quality ', chart)) == 2  # no quality without labels
    assert chart.count('class="marker promotion ') == 1
    assert chart.count('class="marker retrain ') == 1
    assert svg.count('<svg class="history"') == 1
    assert 'width="100%"' in chart
    assert "max-width:9" not in svg


def test_the_most_drifted_features_come_first_whatever_their_test_direction() -> None:
    def run(*columns: dict[str, Any]) -> dict[str, Any]:
        return {"feature_drift": list(columns)}

    recorded = [
        run(
            column("a", "ks", 0.5),
            column("b", "wasserstein", 0.2),
            column("c", "z", 0.01),
            column("d", "ks", 0.9),
        ),
        run(
            column("a", "ks", 0.001),
            column("b", "wasserstein", 0.3),
            column("c", "z", 0.2),
            column("d", "ks", 0.04),
        ),
    ]
    ranked = rank_features(recorded)
    # b drifted twice; a, c and d once: a's latest p-value (0.001) is 50x past its threshold, d's 1.25x;
    # c no longer drifts
    assert [(r.column, r.drifted) for r in ranked] == [("b", 2), ("a", 1), ("d", 1), ("c", 1)]
    figure = layout(
        [
            {"at": (T0 + timedelta(hours=i)).isoformat(), "action": "hold", **r}
            for i, r in enumerate(recorded)
        ],
        [],
        threshold=0.3,
        metric="roc_auc",
        top_features=2,
    )[1]
    assert figure.title == "Drift per feature: the 2 most drifted of 4 features"
    titles = [t.content for t in figure.texts if t.cls == "ct-title"]
    assert titles == [
        "b · wasserstein distance · drifted in 2 of 2 runs",
        "a · ks p-value · drifted in 1 of 2 runs",
    ]
    assert [t.content for t in figure.texts if t.content.startswith("drifts")] == [
        "drifts ≥ 0.1",
        "drifts ≤ 0.05",
    ]


def test_a_p_value_of_zero_sits_on_the_strip_floor() -> None:
    runs = [
        {"at": T0.isoformat(), "action": "hold", "feature_drift": [column("x", "chisquare", 0.0)]},
        {
            "at": (T0 + timedelta(hours=1)).isoformat(),
            "action": "hold",
            "feature_drift": [column("x", "chisquare", 0.5)],
        },
    ]
    figure = layout(runs, [], threshold=0.3, metric="roc_auc")[1]
    (strip,) = [b for b in figure.bands if b.cls == "ct-panel"]
    low, high = sorted(dot.y for dot in figure.dots)[::-1]
    assert low == strip.y + strip.height
    assert strip.y < high < strip.y + strip.height
    assert "1e-12" in [t.content for t in figure.texts]
    assert [t.content for t in figure.texts if t.content.startswith("drifts")] == ["drifts < 0.05"]


def test_entries_written_before_per_feature_drift_and_per_model_values_still_render() -> None:
    old = [
        {
            "at": (T0 + timedelta(hours=i)).isoformat(),
            "action": "hold",
            "drift_share": 0.1,
            "quality": 0.8,
            "champion_vs_previous": {
                "versions": {"champion": "2", "previous": "1"},
                "rows": 10,
                "verdict": "hold",
            },
        }
        for i in range(3)
    ]
    only_old = layout(old, [], threshold=0.3, metric="roc_auc")
    assert only_old[1].height == 0
    assert "No per-feature drift recorded yet" in only_old[1].notes[0]
    assert only_old[2].height == 0
    assert "3 earlier comparisons recorded no per-model values" in " ".join(only_old[2].notes)
    assert "No comparison with labels yet" in only_old[2].notes[0]
    mixed = old + history(3, 4, timedelta(hours=1))
    for entry in mixed[3:]:
        entry["at"] = (datetime.fromisoformat(entry["at"]) + timedelta(hours=3)).isoformat()
    figure = layout(mixed, [], threshold=0.3, metric="roc_auc")[1]
    assert "3 of 6 runs recorded no per-feature drift (grey)." in figure.notes
    assert len([b for b in figure.bands if b.cls == "ct-nodata"]) == 4  # one band per strip
    assert overlaps(figure) == []


def test_served_quality_plots_both_models_once_labels_arrive() -> None:
    runs = history(30, 2, timedelta(hours=2))
    figure = layout(runs, [], threshold=0.3, metric="roc_auc")[2]
    champion = [d for d in figure.dots if "ct-series-champion" in d.cls]
    previous = [d for d in figure.dots if "ct-series-previous" in d.cls]
    assert len(champion) == len(previous) == 15  # runs 15..29 had labels
    assert "champion v3 roc_auc" in champion[0].title
    assert "on 1,800 rows" in champion[0].title
    assert "champion vs previous champion: 4 of 19 comparisons had no labeled rows yet." in figure.notes
    assert [k.label for k in figure.legend] == ["champion", "previous champion (shadow)"]
    assert all(LEFT <= d.x <= WIDTH - RIGHT for d in figure.dots)


def test_a_waiting_challenger_gets_a_panel_of_its_own_against_the_champion() -> None:
    runs = history(8, 2, timedelta(hours=2))
    for i, run in enumerate(runs):
        run["challenger_vs_champion"] = {
            "versions": {"challenger": "4", "champion": "3"},
            "rows": 500,
            "metric": "roc_auc",
            "values": {"challenger": 0.9, "champion": 0.8 + i / 100},
            "verdict": "better",
        }
    figure = layout(runs, [], threshold=0.3, metric="roc_auc")[2]
    titles = [t.content for t in figure.texts if t.cls == "ct-title"]
    assert titles == [
        "challenger vs champion: roc_auc on the same labeled rows"
    ]  # no labels for the watch yet
    assert [k.label for k in figure.legend] == ["challenger (shadow)", "champion"]
    assert len([d for d in figure.dots if "ct-series-challenger" in d.cls]) == 8
    assert "champion vs previous champion: 0 of 0" not in " ".join(figure.notes)
    assert overlaps(figure) == []
    runs = history(30, 2, timedelta(hours=2)) + runs[-1:]
    both = layout(runs, [], threshold=0.3, metric="roc_auc")[2]
    assert len([t for t in both.texts if t.cls == "ct-title"]) == 2
    assert [k.label for k in both.legend] == ["champion", "previous champion (shadow)", "challenger (shadow)"]
    assert overlaps(both) == []


def test_a_single_decision_draws_one_point_in_the_middle_of_an_hour_of_axis() -> None:
    (run,) = history(1, 3, timedelta(hours=1))
    run["quality"] = 0.8
    figures = layout([run], [], threshold=0.3, metric="roc_auc")
    drift = [d for d in figures[0].dots if "drift" in d.cls]
    assert len(drift) == 1
    assert drift[0].x == pytest.approx((LEFT + WIDTH - RIGHT) / 2, abs=0.1)
    assert figures[0].paths == []  # a line needs two points
    ticks = [t for t in figures[0].texts if re.fullmatch(r"\d\d:\d\d", t.content)]
    assert 4 <= len(ticks) <= 10
    assert all(overlaps(f) == [] for f in figures)


@pytest.mark.parametrize("metric", ["f1_macro", "log_loss", "rmse", "r2"])
def test_the_spec_metric_names_the_quality_panel_and_the_served_quality(metric: str) -> None:
    runs = history(20, 3, timedelta(hours=1))
    for run in runs:
        if run["champion_vs_previous"]:
            run["champion_vs_previous"]["metric"] = metric
    svg = pipeline_charts(runs, [], threshold=0.3, metric=metric)
    assert f"Drift share and {metric} over time" in svg
    assert f"{metric} on labeled rows" in svg
    assert f"Served {metric}: champion against its shadow" in svg
    assert f"champion vs previous champion: {metric} on the same labeled rows" in svg


def test_labels_are_escaped() -> None:
    runs = history(2, 1, timedelta(hours=1))
    runs[0]["feature_drift"][0]["column"] = "<script>alert(1)</script>"
    svg = pipeline_charts(runs, [move(1, T0, to="<b>")], threshold=0.3, metric="<i>")
    assert "<script>" not in svg
    assert "&lt;script&gt;" in svg
    assert "<b>" not in svg
    assert "<i>" not in svg


def test_no_decision_yet_draws_no_chart() -> None:
    svg = pipeline_charts([], [move(1, T0)], threshold=0.3, metric="roc_auc")
    assert "<svg" not in svg
    assert "No monitor run has decided anything yet." in svg
