"""Confidence-based performance estimation on generated streams: a stable noisy window's estimate
stays near the holdout's realised quality, a covariate shift that hurts the model lowers it before
any label exists (and close to what the labels later show), a prior shift with the same features
leaves it alone; binary and multiclass with text labels."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError
from sklearn import metrics as sk

from ctloop.monitoring.performance_estimate import estimate
from ctloop.monitoring.retrain_policy import Evidence, triggers
from ctloop.scoring.prediction_log import SERVED
from ctloop.spec.models import PerformanceEstimate
from tests.unit.monitoring import label_streams as streams
from tests.unit.monitoring.label_streams import TARGET

WINDOW_ROWS = 3000
# A stable window's estimate and the holdout's realised value come from one calibration, fitted on
# the holdout's 2,000 rows: they differ by that calibration's sampling error (about 0.01: recall's
# on the holdout's ~1,200 positives), carried into the estimate, plus the window's own (smaller:
# a mean of probabilities). 0.02 is two of those; the stable windows here differ by at most 0.016
# (recall), and a drop that matters, max_drop 0.05, is well outside it.
STABLE_TOLERANCE = 0.02
# Where the features moved, the estimate is a prediction of what labels will show: within the
# realised value's own sampling error (about 0.009 at 3,000 rows) and the calibration's error.
REALISED_TOLERANCE = 0.03


def _estimate(
    tmp_path: Path, task: str, window: dict[str, Any], rows: int = WINDOW_ROWS, **rule: Any
) -> tuple[dict[str, Any], Any]:
    """The estimate of a window drawn with ``window``'s options, its labels dropped from the
    logged file; returns the block and the window with its labels (what arrives later)."""
    model, _, holdout = streams.champion(task, noise=0.2)
    frame = streams.side(task, model, rows, seed=11, **window)
    logged = streams.write(frame.drop(columns=[TARGET]), tmp_path / "window.parquet", group_rows=700)
    reference = streams.write(holdout, tmp_path / "holdout.parquet")
    return estimate(streams.spec(task, estimate=rule), reference, [logged], SERVED, None), frame


def _signals(block: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["name"]: s for s in block["signals"]}


def _realised(task: str, frame: Any) -> dict[str, float]:
    """What the labels show once they arrive (ctloop's definitions: binary metrics of class 1,
    multiclass macro one-vs-rest)."""
    y, predicted = frame[TARGET].to_numpy(), frame["prediction"].to_numpy()
    if task == "binary":
        return {"accuracy": sk.accuracy_score(y, predicted), "roc_auc": sk.roc_auc_score(y, frame["score"])}
    probabilities = frame[[f"score__{c}" for c in streams.TIERS]].to_numpy()
    return {
        "accuracy": sk.accuracy_score(y, predicted),
        "roc_auc": sk.roc_auc_score(y, probabilities, multi_class="ovr", labels=list(streams.TIERS)),
    }


@pytest.mark.parametrize("task", ["binary", "multiclass"])
def test_a_stable_noisy_window_is_estimated_near_the_holdout(tmp_path: Path, task: str) -> None:
    block, _ = _estimate(tmp_path, task, {"noise": 0.2})

    assert block["verdict"] == "ok"
    assert block["rows"] == WINDOW_ROWS
    for name, signal in _signals(block).items():
        assert signal["value"] == pytest.approx(signal["reference"], abs=STABLE_TOLERANCE), name
        assert signal["verdict"] == "ok"


@pytest.mark.parametrize("task", ["binary", "multiclass"])
def test_a_covariate_shift_that_hurts_the_model_shows_before_its_labels(tmp_path: Path, task: str) -> None:
    """The window moves to the decision boundary (f0 near where the classes meet, every feature
    squeezed): the model is less sure there, and so more often wrong; on 3,000 rows each drop is
    well past max_drop, so its whole interval is (a drop barely past it is not:
    test_a_drop_barely_past_max_drop_is_undecided)."""
    block, frame = _estimate(tmp_path, task, {"noise": 0.2, "shift": -0.6, "spread": 0.3})

    assert block["verdict"] == "alert"
    signals = _signals(block)
    for name in ("accuracy", "roc_auc", "f1"):
        assert signals[name]["drop"] > 0.05, name
        assert signals[name]["verdict"] == "alert"
        assert signals[name]["why"].startswith(f"estimate {name}: ")
    realised = _realised(task, frame)
    for name in ("accuracy", "roc_auc"):
        assert signals[name]["value"] == pytest.approx(realised[name], abs=REALISED_TOLERANCE), name


@pytest.mark.parametrize("task", ["binary", "multiclass"])
def test_a_prior_shift_with_the_same_features_leaves_the_estimate_alone(tmp_path: Path, task: str) -> None:
    block, _ = _estimate(tmp_path, task, {"noise": 0.2, "threshold": 0.3})

    assert block["verdict"] == "ok"


def test_the_holdouts_realised_values_are_the_metrics_of_its_labels(tmp_path: Path) -> None:
    block, _ = _estimate(tmp_path, "binary", {})

    holdout = streams.champion("binary", noise=0.2).holdout
    y, predicted = holdout[TARGET], holdout["prediction"]
    signals = _signals(block)
    assert signals["accuracy"]["reference"] == pytest.approx(sk.accuracy_score(y, predicted))
    assert signals["precision"]["reference"] == pytest.approx(sk.precision_score(y, predicted))
    assert signals["recall"]["reference"] == pytest.approx(sk.recall_score(y, predicted))
    assert signals["f1"]["reference"] == pytest.approx(sk.f1_score(y, predicted))
    # within a bin rows tie: 2,048 bins move roc_auc by far less than any max_drop
    assert signals["roc_auc"]["reference"] == pytest.approx(sk.roc_auc_score(y, holdout["score"]), abs=2e-3)


def test_a_small_window_is_undecided(tmp_path: Path) -> None:
    block, _ = _estimate(tmp_path, "binary", {"shift": -0.6, "spread": 0.4}, rows=300)

    assert block["verdict"] == "undecided"
    assert (
        _signals(block)["accuracy"]["why"]
        == "estimate accuracy: 300 rows < monitoring.estimate.min_rows 1000"
    )


def test_only_the_judged_metrics_decide(tmp_path: Path) -> None:
    block, _ = _estimate(tmp_path, "binary", {"shift": -0.6, "spread": 0.4}, metrics=["precision"])

    signals = _signals(block)
    assert [n for n, s in signals.items() if s["judged"]] == ["precision"]
    assert signals["accuracy"]["why"].endswith("(reported, not judged)")
    assert block["why"] == signals["precision"]["why"]


def test_the_estimate_decides_only_where_the_spec_says_so(tmp_path: Path) -> None:
    fired = {}
    for decide in (False, True):
        block, _ = _estimate(tmp_path, "binary", {"shift": -0.6, "spread": 0.4}, decide=decide)
        spec = streams.spec("binary", estimate={"decide": decide})
        evidence = Evidence("w", WINDOW_ROWS, 0.0, [], 0, estimate=block)
        fired[decide] = [t for t in triggers(spec, evidence)[0] if t.startswith("estimate ")]

    assert fired[False] == []
    assert [t.split(":")[0] for t in fired[True]] == ["estimate accuracy", "estimate f1", "estimate roc_auc"]


def test_regression_is_not_estimated(tmp_path: Path) -> None:
    block = estimate(streams.spec("regression"), None, [], SERVED, None)

    assert block["signals"] == []
    assert block["why"] == "not estimated for regression: the method needs class probabilities"


def test_a_champion_without_a_holdout_is_undecided(tmp_path: Path) -> None:
    block = estimate(streams.spec("binary"), None, [], SERVED, None)

    assert block["verdict"] == "undecided"
    assert "no stored holdout" in block["why"]


def test_the_window_is_reduced_the_same_whatever_its_row_groups(tmp_path: Path) -> None:
    model, _, holdout = streams.champion("multiclass", noise=0.2)
    frame = streams.side("multiclass", model, WINDOW_ROWS, seed=11).drop(columns=[TARGET])
    reference = streams.write(holdout, tmp_path / "holdout.parquet")
    one = streams.write(frame, tmp_path / "one.parquet", group_rows=WINDOW_ROWS)
    parts = [
        streams.write(part, tmp_path / f"part{i}.parquet", 250)
        for i, part in enumerate(streams.chunks(frame))
    ]
    spec = streams.spec("multiclass")

    whole = _signals(estimate(spec, reference, [one], SERVED, None))
    pieces = _signals(estimate(spec, reference, parts, SERVED, None))

    assert {n: s["value"] for n, s in whole.items()} == pytest.approx(
        {n: s["value"] for n, s in pieces.items()}
    )


def test_the_realised_values_of_the_window_stand_beside_the_estimates(tmp_path: Path) -> None:
    model, _, holdout = streams.champion("binary", noise=0.2)
    frame = streams.side("binary", model, WINDOW_ROWS, seed=11)
    logged = streams.write(frame, tmp_path / "window.parquet")
    reference = streams.write(holdout, tmp_path / "holdout.parquet")

    block = estimate(streams.spec(), reference, [logged], SERVED, {"accuracy": 0.8, "roc_auc": 0.9})

    assert {n: s["realised"] for n, s in _signals(block).items()} == {
        "accuracy": 0.8,
        "precision": None,
        "recall": None,
        "f1": None,
        "roc_auc": 0.9,
    }
    assert np.isfinite(_signals(block)["roc_auc"]["value"])


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("metrics", ["log_loss"]),
        ("metrics", []),
        ("max_drop", -0.1),
        ("confidence", 1.0),
        ("confidence", 0.5),
        ("resamples", 10),
        ("bootstrap_rows", 10),
    ],
)
def test_the_spec_refuses_bad_values_naming_the_field(field: str, value: Any) -> None:
    with pytest.raises(ValidationError, match=field):
        streams.spec("binary", estimate={field: value})


def test_an_old_spec_reports_the_estimate_and_decides_nothing_by_it() -> None:
    rule = streams.spec("binary").monitoring.estimate

    assert rule == PerformanceEstimate()
    assert (rule.enabled, rule.decide, rule.metrics) == (True, False, ["roc_auc", "accuracy", "f1"])
    assert rule.confidence == streams.spec("binary").monitoring.quality.confidence == 0.95
    assert all(f.description for f in PerformanceEstimate.model_fields.values())


@pytest.mark.parametrize(("rows", "verdict"), [(200, "undecided"), (3000, "alert")])
def test_a_real_drop_is_undecided_on_a_small_window_and_fires_on_a_large_one(
    tmp_path: Path, rows: int, verdict: str
) -> None:
    """The same covariate shift, estimated on 200 rows and on 3,000: accuracy's and roc_auc's
    drops (about 0.09) are past max_drop on both, their intervals wholly past it only on the
    large window (f1's drop, about 0.3, would fire on either)."""
    shift = {"noise": 0.2, "shift": -0.6, "spread": 0.4}
    block, _ = _estimate(tmp_path, "binary", shift, rows, min_rows=100, metrics=["accuracy", "roc_auc"])

    assert block["verdict"] == verdict
    for name in ("accuracy", "roc_auc"):
        signal = _signals(block)[name]
        low, high = signal["interval"]
        assert signal["drop"] > 0.05, name
        assert signal["verdict"] == verdict, name
        assert (high < signal["reference"] - 0.05) == (verdict == "alert"), name
    if verdict == "undecided":
        assert "but not significantly: its 95% interval [" in _signals(block)["accuracy"]["why"]
    assert _signals(block)["f1"]["verdict"] == "alert"


def test_a_drop_barely_past_max_drop_is_undecided(tmp_path: Path) -> None:
    """Multiclass accuracy expected 0.052 below the holdout's on 3,000 rows: past max_drop 0.05,
    not significantly."""
    block, _ = _estimate(tmp_path, "multiclass", {"noise": 0.2, "shift": -0.6, "spread": 0.4})

    accuracy = _signals(block)["accuracy"]
    assert 0.05 < accuracy["drop"] < 0.06
    assert accuracy["interval"][1] > accuracy["reference"] - 0.05
    assert accuracy["verdict"] == "undecided"


@pytest.mark.parametrize("task", ["binary", "multiclass"])
def test_each_interval_holds_its_estimate_and_accuracys_is_a_sum_of_bernoullis(
    tmp_path: Path, task: str
) -> None:
    """Accuracy's spread is the rows' own p (1 - p): never wider than a binomial's at the same
    accuracy, and on a stable window close to it."""
    block, _ = _estimate(tmp_path, task, {"noise": 0.2})

    for name, signal in _signals(block).items():
        low, high = signal["interval"]
        assert low < signal["value"] < high, name
        assert signal["confidence"] == 0.95
    accuracy = _signals(block)["accuracy"]
    binomial = 1.96 * np.sqrt(accuracy["value"] * (1 - accuracy["value"]) / WINDOW_ROWS)
    half = (accuracy["interval"][1] - accuracy["interval"][0]) / 2
    assert 0.5 * binomial < half <= binomial
    assert accuracy["interval"][0] + half == pytest.approx(accuracy["value"])


@pytest.mark.parametrize("task", ["binary", "multiclass"])
def test_a_wider_confidence_makes_a_wider_interval(tmp_path: Path, task: str) -> None:
    narrow, _ = _estimate(tmp_path, task, {"noise": 0.2}, confidence=0.8)
    wide, _ = _estimate(tmp_path, task, {"noise": 0.2}, confidence=0.99)

    for name in ("accuracy", "f1", "roc_auc"):
        (a, b), (c, d) = _signals(narrow)[name]["interval"], _signals(wide)[name]["interval"]
        assert c < a < b < d, name


def test_the_draws_are_seeded_and_a_capped_sample_widens_the_interval_around_the_estimate(
    tmp_path: Path,
) -> None:
    """bootstrap_rows caps the rows whose labels are drawn: 1,000 of 5,000 rows give an interval
    about sqrt(5) as wide, still centred on the estimate from every row; accuracy's uses every row."""
    window = {"noise": 0.2, "shift": -0.6, "spread": 0.3}
    whole, _ = _estimate(tmp_path, "binary", window, 5000)
    again, _ = _estimate(tmp_path, "binary", window, 5000)
    capped, _ = _estimate(tmp_path, "binary", window, 5000, bootstrap_rows=1000)

    assert _signals(again) == _signals(whole)
    assert _signals(capped)["accuracy"]["interval"] == _signals(whole)["accuracy"]["interval"]
    for name in ("precision", "recall", "f1", "roc_auc"):
        full, sampled = _signals(whole)[name], _signals(capped)[name]
        assert sampled["value"] == full["value"]
        width = (sampled["interval"][1] - sampled["interval"][0]) / (
            full["interval"][1] - full["interval"][0]
        )
        assert 1.5 < width < 3.5, name
        assert sum(sampled["interval"]) / 2 == pytest.approx(full["value"], abs=0.02), name


def test_a_metric_without_an_interval_is_undecided_past_max_drop_and_ok_within() -> None:
    """Too many label draws left it undefined (few expected positives): the point drop alone never
    alerts."""
    from ctloop.monitoring.performance_estimate import _signal

    spec, reason = streams.spec("binary"), "400 of 500 resamples left f1 undefined"
    past = _signal(spec, "f1", (0.5, 0.8, None), reason, 5000)
    within = _signal(spec, "f1", (0.78, 0.8, None), reason, 5000)

    assert (past["verdict"], past["interval"]) == ("undecided", None)
    assert past["why"].endswith(f"a drop of 0.3000 above max_drop 0.05, but has no interval: {reason}")
    assert within["verdict"] == "ok"
