"""The Evidently report: real Evidently runs on small frames."""

from __future__ import annotations

import html
import json

import numpy as np
import pandas as pd
import pytest

from ctloop.errors import DriftInputError
from ctloop.monitoring.drift_report import build_report, default_stattest
from ctloop.monitoring.drift_stats import column_drift, dataset_drifted, drift_share

NUMERIC = ["age", "income"]
CATEGORICAL = ["city"]
EVIL = "</script><img src=x onerror=alert(1)>"


def _frame(rows: int, *, seed: int, shift: float = 0.0, labels: float | None = None) -> pd.DataFrame:
    """Features plus score and prediction; ``income`` moves by ``shift`` standard deviations;
    ``labels`` is the share of rows whose label arrived (None: no label column)."""
    rng = np.random.default_rng(seed)
    score = rng.random(rows)
    frame = pd.DataFrame(
        {
            "age": rng.normal(40, 10, rows),
            "income": rng.normal(50 + 10 * shift, 10, rows),
            "city": rng.choice(["paris", "lyon", "nice"], rows),
            "score": score,
            "prediction": (score > 0.5).astype(int),
        }
    )
    if labels is not None:
        target = (rng.random(rows) < score).astype(float)
        target[rng.random(rows) >= labels] = np.nan
        frame["churned"] = target
    return frame


def _build(reference: pd.DataFrame, current: pd.DataFrame, **kwargs) -> tuple[str, dict]:
    options = {
        "numeric": NUMERIC,
        "categorical": CATEGORICAL,
        "target": "churned",
        "task": "classification",
        "title": "churn monitor",
    }
    return build_report(reference, current, **{**options, **kwargs})


def _banner(page: str) -> str:
    start = page.index("<!-- ctloop:banner -->")
    return page[start : page.index("<!-- /ctloop:banner -->", start)]


@pytest.fixture(scope="module")
def shifted() -> tuple[str, dict]:
    """1,500 rows a side (above Evidently's 1,000-row switch), income shifted, half labeled."""
    return _build(_frame(1500, seed=1), _frame(1500, seed=2, shift=2.0, labels=0.5))


def test_a_shifted_column_is_detected_and_the_others_are_not(shifted):
    _, summary = shifted

    columns = summary["drift"]["columns"]
    assert list(columns) == [*NUMERIC, *CATEGORICAL, "score", "prediction"]
    assert columns["income"]["detected"] is True
    assert summary["drift"]["detected"] == ["income"]
    assert columns["income"] == {
        "kind": "numeric",
        "role": "feature",
        "method": "wasserstein",
        "statistic": "distance",
        "threshold": 0.1,
        "score": pytest.approx(columns["income"]["score"]),
        "detected": True,
    }
    assert columns["income"]["score"] > 1.0
    assert columns["city"]["method"] == "jensenshannon"
    assert columns["prediction"] | {"score": 0} == {
        "kind": "categorical",
        "role": "prediction",
        "method": "jensenshannon",
        "statistic": "distance",
        "threshold": 0.1,
        "score": 0,
        "detected": False,
    }
    # the share counts the features only, as ctloop's decision does
    assert summary["drift"]["drifted_columns"] == {
        "count": 1,
        "share": pytest.approx(1 / 3),
        "threshold": 0.5,
        "dataset_drift": False,
    }
    assert summary["drift"]["skipped"] == {}


def test_the_page_is_an_evidently_page_with_the_banner_right_after_body(shifted):
    page, _ = shifted

    assert page.lstrip().startswith("<!DOCTYPE html>")
    assert "window.drawDashboard(" in page
    assert page.count("<!-- ctloop:banner -->") == 1
    assert page.index("<body>") < page.index("<!-- ctloop:banner -->") < page.index('<div id="root_')
    banner = _banner(page)
    assert "churn monitor" in banner
    assert "sample (seed 0) of 1,500 of 1,500 reference rows and 1,500 of 1,500 current rows" in banner
    assert "summary.json" in banner
    assert "computed on the full data" in banner
    assert "Evidently flags drift on this sample in: income" in banner
    assert "at least 0.5 of the features drifted (score and prediction are shown, not counted)" in banner


def test_the_summary_is_plain_json(shifted):
    _, summary = shifted

    assert json.loads(json.dumps(summary, allow_nan=False)) == summary
    assert set(summary) == {"title", "engine", "sample", "drift", "quality"}
    assert summary["engine"] == "evidently 0.7.23"


def test_quality_is_computed_on_the_labeled_rows(shifted):
    page, summary = shifted

    quality = summary["quality"]
    labeled = int(_frame(1500, seed=2, shift=2.0, labels=0.5)["churned"].notna().sum())
    assert quality["computed"] is True
    assert (quality["mode"], quality["classes"], quality["class_count"]) == ("binary", [0, 1], 2)
    assert quality["pos_label"] == 1
    assert quality["labeled_rows"] == quality["sampled"] == labeled
    assert {"Accuracy", "Precision", "Recall", "F1Score", "RocAuc"} <= set(quality["metrics"])
    assert 0.6 < quality["metrics"]["RocAuc"] <= 1.0
    assert f"on {labeled:,} of {labeled:,} labeled current rows" in _banner(page)
    assert "Current: Model Quality Metrics" in page
    assert "Value Drift for column income" in page


@pytest.mark.parametrize("labels", [None, 0.0], ids=["no label column", "no label arrived"])
def test_quality_is_skipped_without_labels(labels):
    page, summary = _build(_frame(300, seed=1), _frame(300, seed=2, labels=labels))

    assert summary["quality"] == {
        "computed": False,
        "reason": "no labeled rows in current (column 'churned')",
    }
    assert "Model quality: not computed" in _banner(page)
    assert "Model Quality Metrics" not in page
    assert summary["drift"]["columns"]["age"]["method"] == "ks"  # 300 rows: Evidently's small-sample test


def test_regression_quality_and_numeric_prediction():
    reference, current = _frame(300, seed=1), _frame(300, seed=2, labels=1.0)
    for frame in (reference, current):
        frame["prediction"] = frame["score"] * 100
    current["churned"] = current["prediction"] + np.random.default_rng(3).normal(0, 5, len(current))

    _, summary = _build(reference, current, task="regression")

    assert summary["drift"]["columns"]["prediction"]["kind"] == "numeric"
    assert summary["quality"]["mode"] == "regression"
    assert {"RMSE", "MAE", "R2Score"} <= set(summary["quality"]["metrics"])


def test_a_quality_section_evidently_cannot_compute_leaves_the_drift_report(monkeypatch):
    import ctloop.monitoring.drift_report as drift_report

    def broken(labeled, known, target, info):
        from evidently import BinaryClassification, DataDefinition
        from evidently.presets import ClassificationPreset

        definition = DataDefinition(
            classification=[BinaryClassification(target="absent", prediction_labels="prediction")]
        )
        return labeled[["prediction"]], definition, ClassificationPreset()

    monkeypatch.setattr(drift_report, "_classification_setup", broken)

    page, summary = _build(_frame(300, seed=1), _frame(300, seed=2, labels=1.0))

    assert summary["quality"]["computed"] is False
    assert summary["quality"]["reason"].startswith("Evidently failed: ")
    assert "Model quality: not computed, Evidently failed" in _banner(page)
    assert len(summary["drift"]["columns"]) == 5


def test_regression_labels_that_are_not_numbers_skip_quality():
    reference, current = _frame(300, seed=1), _frame(300, seed=2)
    current["churned"] = "yes"

    _, summary = _build(reference, current, task="regression")

    assert summary["quality"]["computed"] is False
    assert summary["quality"]["reason"] == "no labeled row has a numeric 'churned'"
    # A small numeric column with two values: Evidently's Z-test, which it refuses to be forced to.
    assert summary["drift"]["columns"]["prediction"]["method"] == "z"


def test_large_frames_are_sampled_reproducibly_with_the_full_data_tests():
    reference, current = _frame(3000, seed=1), _frame(2500, seed=2, shift=2.0)

    first = _build(reference, current, sample_rows=400, seed=7)
    again = _build(reference, current, sample_rows=400, seed=7)
    other = _build(reference, current, sample_rows=400, seed=8)

    sample = first[1]["sample"]
    assert sample == {
        "seed": 7,
        "sample_rows": 400,
        "reference": {"rows": 3000, "sampled": 400},
        "current": {"rows": 2500, "sampled": 400},
    }
    assert again[1] == first[1]
    assert other[1]["drift"]["columns"]["age"]["score"] != first[1]["drift"]["columns"]["age"]["score"]
    # 400 rows alone would make Evidently switch to K-S and chi-square; the full frames decide.
    methods = {c: info["method"] for c, info in first[1]["drift"]["columns"].items()}
    assert methods == {
        "age": "wasserstein",
        "income": "wasserstein",
        "city": "jensenshannon",
        "score": "wasserstein",
        "prediction": "jensenshannon",
    }
    assert "400 of 3,000 reference rows and 400 of 2,500 current rows" in _banner(first[0])


def test_unlisted_columns_are_ignored():
    current = _frame(300, seed=2)
    current["customer_id"] = [f"c{i}" for i in range(len(current))]
    current["scored_at"] = pd.Timestamp("2026-01-01", tz="UTC")
    current["notes"] = None

    _, summary = _build(_frame(300, seed=1), current)

    assert list(summary["drift"]["columns"]) == [*NUMERIC, *CATEGORICAL, "score", "prediction"]


def test_a_column_without_values_in_the_sample_is_left_out_and_said_so():
    reference, current = _frame(3000, seed=1), _frame(3000, seed=2)
    current["age"] = np.nan
    current.loc[0, "age"] = 40.0  # one value in 3,000 rows, which the 100-row sample of seed 3 misses

    page, summary = _build(reference, current, sample_rows=100, seed=3)

    assert summary["drift"]["skipped"] == {"age": "no value in the current sample"}
    assert "age" not in summary["drift"]["columns"]
    assert "Not tested: age: no value in the current sample" in _banner(page)


def test_a_sample_without_any_feature_value_is_refused():
    """Score and prediction alone make no dataset to judge drift on."""
    reference, current = _frame(3000, seed=1), _frame(3000, seed=2)
    current["age"] = np.nan
    current.loc[0, "age"] = 40.0

    with pytest.raises(DriftInputError, match="no listed feature has a value in both samples"):
        _build(reference, current, numeric=["age"], categorical=[], sample_rows=100, seed=3)


def test_a_category_value_in_the_banner_is_escaped():
    reference, current = _frame(300, seed=1), _frame(300, seed=2, labels=1.0)
    for frame in (reference, current):
        frame["prediction"] = np.where(frame["prediction"] == 1, EVIL, "-")
    current["churned"] = np.where(current["churned"] == 1, EVIL, "-")

    page, summary = _build(reference, current)

    banner = _banner(page)
    assert summary["quality"]["pos_label"] == EVIL
    assert html.escape(EVIL) in banner
    assert "<script" not in banner
    assert "<img" not in banner


@pytest.mark.parametrize(
    ("frame", "column", "change", "message"),
    [
        ("reference", None, lambda f: f.iloc[0:0], "the reference frame is empty"),
        (
            "current",
            "city",
            lambda f: f.drop(columns="city"),
            "column 'city' is missing from the current frame",
        ),
        (
            "current",
            "score",
            lambda f: f.drop(columns="score"),
            "column 'score' is missing from the current frame",
        ),
        (
            "reference",
            "age",
            lambda f: f.assign(age=np.nan),
            "column 'age' is all null in the reference frame",
        ),
        (
            "current",
            "income",
            lambda f: f.assign(income=np.inf),
            "column 'income' is all null in the current frame",
        ),
        ("current", "city", lambda f: f.assign(city=None), "column 'city' is all null in the current frame"),
        (
            "reference",
            "age",
            lambda f: f.assign(age="x"),
            "numeric column 'age' in the reference frame has dtype",
        ),
    ],
)
def test_bad_frames_are_refused_before_evidently_runs(frame, column, change, message):
    frames = {"reference": _frame(50, seed=1), "current": _frame(50, seed=2)}
    frames[frame] = change(frames[frame])

    with pytest.raises(DriftInputError, match=message):
        _build(frames["reference"], frames["current"])


def test_a_column_listed_twice_is_refused():
    with pytest.raises(DriftInputError, match="'score' is listed twice"):
        _build(_frame(50, seed=1), _frame(50, seed=2), numeric=[*NUMERIC, "score"])


@pytest.mark.parametrize("rows", [400, 1000, 1001, 5000])
@pytest.mark.parametrize(
    ("kind", "values"),
    [
        ("numeric", np.arange(2.0)),
        ("numeric", np.arange(4.0)),
        ("numeric", np.arange(50.0)),
        ("categorical", np.array(["a", "b"])),
        ("categorical", np.array(["a", "b", "c"])),
    ],
)
def test_the_stattest_is_the_one_evidently_picks(rows, kind, values):
    from evidently.legacy.calculations.stattests.registry import get_stattest
    from evidently.legacy.core import ColumnType

    rng = np.random.default_rng(0)
    reference = pd.Series(rng.choice(values, rows))
    reference[:10] = None  # nulls do not count towards the sample size
    current = pd.Series(rng.choice(values, 300))
    column_type = ColumnType.Numerical if kind == "numeric" else ColumnType.Categorical

    expected = get_stattest(reference.dropna(), current, column_type, None).name

    assert default_stattest(reference, current, kind) == expected


def test_a_multiclass_models_text_predictions_are_tested_as_categories():
    tiers = np.array(["high", "low", "mid"], dtype=object)
    reference, current = _frame(1500, seed=1), _frame(1500, seed=2, labels=0.5)
    reference["prediction"] = np.random.default_rng(3).choice(tiers, 1500, p=[0.5, 0.3, 0.2])
    current["prediction"] = np.random.default_rng(4).choice(tiers, 1500, p=[0.2, 0.3, 0.5])
    current["churned"] = np.where(current["churned"].isna(), None, current["prediction"])

    _, summary = _build(reference, current)

    prediction = summary["drift"]["columns"]["prediction"]
    assert (prediction["kind"], prediction["method"], prediction["detected"]) == (
        "categorical",
        "jensenshannon",
        True,
    )
    assert summary["drift"]["columns"]["score"]["kind"] == "numeric"
    quality = summary["quality"]
    assert (quality["mode"], quality["classes"], quality["class_count"]) == (
        "labels",
        ["high", "low", "mid"],
        3,
    )
    assert quality["metrics"]["Accuracy"] == pytest.approx(1.0)


FEATURES = ["f0", "f1", "f2", "f3", "f4"]


def _features(rows: int, *, seed: int, shifted: int, outputs_shift: float = 0.0) -> pd.DataFrame:
    """Five numeric features and a categorical one, the first ``shifted`` numeric ones moved by two
    standard deviations; score and prediction moved by ``outputs_shift``."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({f: rng.normal(2.0 * (i < shifted), 1.0, rows) for i, f in enumerate(FEATURES)})
    frame["region"] = rng.choice(["north", "south", "east"], rows)
    score = np.clip(rng.normal(0.3 + outputs_shift, 0.1, rows), 0, 1)
    frame["score"], frame["prediction"] = score, np.where(score > 0.5, "yes", "no")
    return frame


@pytest.mark.parametrize(
    ("rows", "shifted", "drifted"),
    [(1200, 2, True), (1200, 1, False), (400, 2, True), (400, 1, False)],
    ids=["distances, 2 of 6 drifted", "distances, 1 of 6", "p-values, 2 of 6 drifted", "p-values, 1 of 6"],
)
def test_evidentlys_headline_is_ctloops_decision_with_the_pipelines_threshold(rows, shifted, drifted):
    """2 of 6 features (0.33) cross a 0.3 threshold, 1 of 6 does not; under Evidently's default 0.5
    neither would. The model's outputs drift hard in both cases: they are not features, so they
    count for neither share. Above 1,000 reference rows the tests are distances, below p-values."""
    reference = _features(rows, seed=1, shifted=0)
    current = _features(rows, seed=2, shifted=shifted, outputs_shift=0.4)
    ours = column_drift(reference, current, FEATURES, ["region"])

    page, summary = _build(
        reference, current, numeric=FEATURES, categorical=["region"], drift_share=0.3, sample_rows=5000
    )

    assert dataset_drifted(ours, share=0.3) is drifted
    evidently = summary["drift"]
    assert evidently["drifted_columns"] == {
        "count": shifted,
        "share": pytest.approx(drift_share(ours)),
        "threshold": 0.3,
        "dataset_drift": drifted,
    }
    assert evidently["detected"] == [*FEATURES[:shifted], "score", "prediction"]
    for result in ours:
        column = evidently["columns"][result.column]
        assert (column["method"], column["threshold"]) == (result.stattest, result.threshold)
        assert column["score"] == pytest.approx(result.score)
        assert column["detected"] is result.drifted
    headline = "Dataset Drift is detected." if drifted else "Dataset Drift is NOT detected."
    assert f"{headline} Dataset drift detection threshold is 0.3" in page
    assert page.count("Dataset drift detection threshold is") == 1


def test_a_drift_share_outside_zero_to_one_is_refused():
    with pytest.raises(ValueError, match="drift_share"):
        _build(_frame(50, seed=1), _frame(50, seed=2), drift_share=0.0)
