from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as sk

from ctloop.errors import SpecError
from ctloop.evaluation.weighted_metrics import Predictions
from ctloop.gating.slices import slice_labels, slice_report
from ctloop.spec.models import Slice, SliceRules

CONTRACTS = ["month_to_month", "one_year", "two_year"]


def _holdout(n: int = 3000, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "contract": rng.choice(CONTRACTS, n, p=[0.5, 0.3, 0.2]),
            "tenure_months": rng.integers(0, 72, n).astype(float),
        }
    )
    return frame, (rng.random(n) < 0.3).astype(int)


def _scores(y: np.ndarray, skill: np.ndarray | float, seed: int) -> Predictions:
    """``skill`` per row: 0 is noise, 1 separates the classes perfectly."""
    noise = np.random.default_rng(seed).random(len(y))
    score = np.clip(skill * y + (1 - skill) * noise, 0, 1)
    return Predictions((score > 0.5).astype(int), score)


def _by_contract() -> Slice:
    return Slice(name="contract", column="contract")


def test_labels_by_value_all_values_and_bins():
    frame = pd.DataFrame(
        {"contract": ["one_year", "two_year", None, "one_year"], "tenure": [0, 12, 24.5, 99]}
    )
    listed = slice_labels(frame, Slice(name="c", column="contract", values=["two_year"]))
    assert listed.tolist() == [None, "contract=two_year", None, None]
    seen = slice_labels(frame, Slice(name="c", column="contract"))
    assert seen.tolist() == ["contract=one_year", "contract=two_year", None, "contract=one_year"]
    bands = slice_labels(frame, Slice(name="t", column="tenure", bins=[0, 12, 24, 48]))
    assert bands.tolist() == ["tenure=[0, 12)", "tenure=[12, 24)", "tenure=[24, 48)", None]
    assert (bands.index == frame.index).all()


def test_a_slice_where_the_candidate_regresses_fails_and_the_others_pass():
    frame, y = _holdout()
    champion = _scores(y, 0.4, seed=1)
    # as good as the champion except on two-year contracts, where it is noise
    skill = np.where(frame["contract"] == "two_year", 0.0, 0.4)
    candidate = _scores(y, skill, seed=1)
    rules = SliceRules(metric="roc_auc", max_regression=0.05)
    report = slice_report([_by_contract()], rules, "classification", frame, y, candidate, champion)
    verdicts = {v.slice: v for v in report.verdicts}
    assert [v.rule for v in report.verdicts] == ["slice_regression"] * 3
    assert verdicts["contract=two_year"].passed is False
    assert verdicts["contract=two_year"].value < -0.05
    assert "contract=two_year" in verdicts["contract=two_year"].note
    assert verdicts["contract=one_year"].passed is True
    assert verdicts["contract=month_to_month"].passed is True
    entry = next(e for e in report.slices if e.slice == "contract=two_year")
    assert entry.rows == int((frame["contract"] == "two_year").sum())
    assert entry.judged
    assert entry.why_not_judged is None
    assert set(entry.candidate) == {"roc_auc", "accuracy", "f1", "precision", "recall", "log_loss", "brier"}


def test_regression_is_skipped_without_a_champion_while_the_gap_is_judged():
    frame, y = _holdout()
    rules = SliceRules(metric="roc_auc", max_regression=0.01, max_gap=0.5)
    report = slice_report([_by_contract()], rules, "classification", frame, y, _scores(y, 0.4, 1), None)
    regressions = [v for v in report.verdicts if v.rule == "slice_regression"]
    assert [v.passed for v in regressions] == [None] * 3
    assert all("no champion" in v.note for v in regressions)
    gap = next(v for v in report.verdicts if v.rule == "slice_gap")
    assert gap.passed is True
    assert 0 <= gap.value <= 0.5
    assert all(e.champion is None for e in report.slices)


def test_the_gap_between_best_and_worst_slice_fails_when_too_wide():
    frame, y = _holdout()
    skill = np.where(frame["contract"] == "two_year", 0.05, 0.6)
    report = slice_report(
        [_by_contract()],
        SliceRules(metric="roc_auc", max_gap=0.1),
        "classification",
        frame,
        y,
        _scores(y, skill, 1),
        None,
    )
    (gap,) = report.verdicts
    assert gap.rule == "slice_gap"
    assert gap.passed is False
    assert gap.worst == "contract=two_year"
    assert gap.value > 0.1
    assert "must be <= 0.1000: failed" in gap.note


def test_lower_is_better_gap_ranks_the_smallest_error_best():
    frame, _ = _holdout()
    y = np.random.default_rng(3).normal(size=len(frame))
    noise = np.where(frame["contract"] == "one_year", 2.0, 0.1)
    values = y + noise * np.random.default_rng(4).normal(size=len(frame))
    report = slice_report(
        [_by_contract()],
        SliceRules(metric="rmse", max_gap=0.5),
        "regression",
        frame,
        y,
        Predictions(values, values),
        None,
    )
    (gap,) = report.verdicts
    assert gap.worst == "contract=one_year"
    assert gap.passed is False


def test_small_and_one_class_slices_are_reported_but_not_judged():
    frame, y = _holdout(400)
    frame.loc[:4, "contract"] = "promo"  # 5 rows
    frame.loc[5:59, "contract"] = "legacy"  # 55 rows, all negative
    y[5:60] = 0
    rules = SliceRules(metric="roc_auc", max_regression=0.1, min_rows=30)
    champion = _scores(y, 0.4, 2)
    report = slice_report([_by_contract()], rules, "classification", frame, y, _scores(y, 0.4, 1), champion)
    entries = {e.slice: e for e in report.slices}
    assert entries["contract=promo"].judged is False
    assert "5 rows, fewer than min_rows 30" in entries["contract=promo"].why_not_judged
    assert entries["contract=legacy"].judged is False
    assert "one class only" in entries["contract=legacy"].why_not_judged
    assert entries["contract=legacy"].candidate["roc_auc"] is None
    assert entries["contract=legacy"].candidate["accuracy"] is not None
    judged = {v.slice for v in report.verdicts}
    assert judged == {"contract=month_to_month", "contract=one_year", "contract=two_year"}


def test_listed_values_without_rows_are_reported_and_bins_label_numeric_bands():
    frame, y = _holdout()
    slices = [
        Slice(name="contract", column="contract", values=["two_year", "lifetime"]),
        Slice(name="tenure", column="tenure_months", bins=[0, 12, 24]),
    ]
    report = slice_report(
        slices, SliceRules(metric="accuracy"), "classification", frame, y, _scores(y, 0.4, 1), None
    )
    rows = {e.slice: e.rows for e in report.slices}
    assert rows == {
        "contract=two_year": int((frame["contract"] == "two_year").sum()),
        "contract=lifetime": 0,
        "tenure_months=[0, 12)": int((frame["tenure_months"] < 12).sum()),
        "tenure_months=[12, 24)": int(frame["tenure_months"].between(12, 23.999).sum()),
    }
    assert report.verdicts == []  # neither max_regression nor max_gap is set
    assert next(e for e in report.slices if e.rows == 0).judged is False


def test_without_rules_slices_are_reported_only():
    frame, y = _holdout()
    report = slice_report([_by_contract()], None, "classification", frame, y, _scores(y, 0.4, 1), None)
    assert report.verdicts == []
    assert {e.why_not_judged for e in report.slices} == {"gates.slice_rules is not set"}


def test_a_slice_column_missing_from_the_holdout_is_named():
    frame, y = _holdout()
    slices = [_by_contract(), Slice(name="region", column="region")]
    with pytest.raises(SpecError, match=r"gates\.slices\.1\.column: 'region'"):
        slice_report(slices, None, "classification", frame, y, _scores(y, 0.4, 1), None)


def _multiclass(y: np.ndarray, skill: np.ndarray | float, seed: int) -> Predictions:
    """A three-class model's output on text labels, separating them by ``skill`` per row."""
    classes = np.array(["high", "low", "mid"], dtype=object)
    noise = np.random.default_rng(seed).normal(size=(len(y), 3))
    logits = np.asarray(skill).reshape(-1, 1) * (y[:, None] == classes[None, :]) + noise
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return Predictions(
        classes[probabilities.argmax(axis=1)], probabilities.max(axis=1), probabilities, classes
    )


@pytest.mark.parametrize("metric", ["roc_auc", "log_loss", "f1"])
def test_a_multiclass_candidate_worse_on_one_slice_fails_there(metric):
    frame, _ = _holdout()
    y = np.random.default_rng(5).choice(np.array(["high", "low", "mid"], dtype=object), len(frame))
    champion = _multiclass(y, 2.0, seed=1)
    candidate = _multiclass(y, np.where(frame["contract"] == "two_year", 0.0, 2.0), seed=1)
    rules = SliceRules(metric=metric, max_regression=0.05)
    report = slice_report([_by_contract()], rules, "classification", frame, y, candidate, champion)
    verdicts = {v.slice: v.passed for v in report.verdicts}
    assert verdicts == {
        "contract=two_year": False,
        "contract=one_year": True,
        "contract=month_to_month": True,
    }
    entry = next(e for e in report.slices if e.slice == "contract=one_year")
    assert all(value is not None for value in entry.candidate.values())
    rows = (frame["contract"] == "one_year").to_numpy()
    expected = sk.roc_auc_score(
        y[rows], candidate.probabilities[rows], multi_class="ovr", labels=candidate.classes
    )
    assert entry.candidate["roc_auc"] == pytest.approx(expected, rel=1e-9)


def test_a_multiclass_slice_missing_a_class_is_shown_without_roc_auc_and_not_judged_on_it():
    frame, _ = _holdout(900)
    y = np.random.default_rng(6).choice(np.array(["high", "low", "mid"], dtype=object), len(frame))
    y[(frame["contract"] == "two_year").to_numpy()] = "low"
    predictions = _multiclass(y, 2.0, seed=2)
    rules = SliceRules(metric="roc_auc", max_gap=0.5)
    report = slice_report([_by_contract()], rules, "classification", frame, y, predictions, None)
    entry = next(e for e in report.slices if e.slice == "contract=two_year")
    assert entry.candidate["roc_auc"] is None
    assert entry.candidate["accuracy"] is not None
    assert not entry.judged
    assert "one-vs-rest" in entry.why_not_judged


def test_a_regressor_worse_on_one_slice_fails_there_on_every_regression_metric():
    frame, _ = _holdout()
    y = np.random.default_rng(3).normal(size=len(frame))
    good = y + 0.3 * np.random.default_rng(4).normal(size=len(frame))
    bad = np.where(
        frame["contract"] == "one_year", y + 1.5 * np.random.default_rng(5).normal(size=len(frame)), good
    )
    for metric in ("rmse", "mae", "r2"):
        rules = SliceRules(metric=metric, max_regression=0.05)
        report = slice_report(
            [_by_contract()], rules, "regression", frame, y, Predictions(bad, bad), Predictions(good, good)
        )
        failed = [v.slice for v in report.verdicts if v.passed is False]
        assert failed == ["contract=one_year"], metric
