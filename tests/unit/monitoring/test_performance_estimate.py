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
    squeezed): the model is less sure there, and so more often wrong."""
    block, frame = _estimate(tmp_path, task, {"noise": 0.2, "shift": -0.6, "spread": 0.4})

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


@pytest.mark.parametrize(("field", "value"), [("metrics", ["log_loss"]), ("metrics", []), ("max_drop", -0.1)])
def test_the_spec_refuses_bad_values_naming_the_field(field: str, value: Any) -> None:
    with pytest.raises(ValidationError, match=field):
        streams.spec("binary", estimate={field: value})


def test_an_old_spec_reports_the_estimate_and_decides_nothing_by_it() -> None:
    rule = streams.spec("binary").monitoring.estimate

    assert rule == PerformanceEstimate()
    assert (rule.enabled, rule.decide, rule.metrics) == (True, False, ["roc_auc", "accuracy", "f1"])
    assert all(f.description for f in PerformanceEstimate.model_fields.values())
