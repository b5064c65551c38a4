from __future__ import annotations

import time

import numpy as np
import pytest
from sklearn import metrics as sk

from ctloop.evaluation.weighted_metrics import Predictions, metric_function, metric_value, positive_label
from ctloop.gating.paired_bootstrap import paired_bootstrap
from ctloop.spec.models import BootstrapRule


def _classifier(y: np.ndarray, skill: float, seed: int, decimals: int | None = None) -> Predictions:
    """Scores that separate the classes by ``skill``; rounding makes ties, as real models do."""
    noise = np.random.default_rng(seed).random(len(y))
    score = np.clip(skill * y + (1 - skill) * noise, 0, 1)
    if decimals is not None:
        score = score.round(decimals)
    return Predictions((score > 0.5).astype(int), score)


def _regressor(y: np.ndarray, noise: float, seed: int) -> Predictions:
    values = y + noise * np.random.default_rng(seed).normal(size=len(y))
    return Predictions(values, values)


def _labels(n: int, seed: int = 0, share: float = 0.3) -> np.ndarray:
    return (np.random.default_rng(seed).random(n) < share).astype(int)


SKLEARN = {
    "roc_auc": lambda y, p: sk.roc_auc_score(y, p.score),
    "accuracy": lambda y, p: sk.accuracy_score(y, p.predicted),
    "f1": lambda y, p: sk.f1_score(y, p.predicted),
    "precision": lambda y, p: sk.precision_score(y, p.predicted),
    "recall": lambda y, p: sk.recall_score(y, p.predicted),
    "log_loss": lambda y, p: sk.log_loss(y, p.score),
    "rmse": lambda y, p: np.sqrt(sk.mean_squared_error(y, p.predicted)),
    "mae": lambda y, p: sk.mean_absolute_error(y, p.predicted),
    "r2": lambda y, p: sk.r2_score(y, p.predicted),
}


@pytest.mark.parametrize("metric", list(SKLEARN))
def test_fast_metrics_agree_with_sklearn_on_the_holdout_and_on_a_resample(metric):
    task = "regression" if metric in ("rmse", "mae", "r2") else "classification"
    if task == "regression":
        y = np.random.default_rng(1).normal(size=3000)
        predictions = _regressor(y, 0.7, seed=2)
    else:
        y = _labels(3000)
        predictions = _classifier(y, 0.3, seed=2, decimals=2)  # many tied scores
    positive = positive_label(y, predictions)
    value, why = metric_value(task, metric, y, predictions, positive)
    assert why is None
    assert value == pytest.approx(SKLEARN[metric](y, predictions), rel=1e-9, abs=1e-12)
    # a resample is a vector of how often each row is drawn: the same as scoring the drawn rows
    drawn = np.random.default_rng(3).integers(0, len(y), len(y))
    counts = np.bincount(drawn, minlength=len(y)).astype(float)[None, :]
    resampled = metric_function(task, metric, y, predictions, positive)(counts)[0]
    assert resampled == pytest.approx(SKLEARN[metric](y[drawn], predictions.take(drawn)), rel=1e-9)
    assert resampled != pytest.approx(value, rel=1e-6)


@pytest.mark.parametrize("metric", ["roc_auc", "log_loss", "accuracy"])
def test_a_better_candidate_passes(metric):
    y = _labels(4000)
    verdict = paired_bootstrap(
        BootstrapRule(metric=metric, resamples=500),
        "classification",
        y,
        _classifier(y, 0.5, seed=1),
        _classifier(y, 0.3, seed=2),
    )
    assert verdict.rule == "bootstrap"
    assert verdict.kind == "ci_lower_bound"
    assert verdict.passed is True, verdict.note
    low, high = verdict.interval
    assert 0 < low == verdict.value < verdict.estimate < high
    assert verdict.degenerate == 0
    assert "passed" in verdict.note
    assert f"{low:+.4f}" in verdict.note


def test_an_equal_candidate_fails_a_zero_margin_and_a_better_one_fails_a_large_margin():
    y = _labels(4000)
    champion = _classifier(y, 0.3, seed=2)
    same = Predictions(
        champion.predicted.copy(), champion.score + 1e-4 * np.random.default_rng(5).random(4000)
    )
    tie = paired_bootstrap(BootstrapRule(metric="roc_auc", margin=0.0), "classification", y, same, champion)
    assert tie.passed is False
    assert tie.interval[0] < 0 < tie.interval[1]
    better = _classifier(y, 0.5, seed=1)
    strict = paired_bootstrap(
        BootstrapRule(metric="roc_auc", margin=0.5), "classification", y, better, champion
    )
    assert strict.passed is False
    assert strict.value > 0
    assert "must be >= +0.5000: failed" in strict.note


def test_lower_is_better_metrics_count_a_smaller_error_as_an_improvement():
    y = np.random.default_rng(1).normal(size=2000)
    rule = BootstrapRule(metric="rmse", resamples=300)
    better = paired_bootstrap(rule, "regression", y, _regressor(y, 0.5, 1), _regressor(y, 1.0, 2))
    worse = paired_bootstrap(rule, "regression", y, _regressor(y, 1.0, 2), _regressor(y, 0.5, 1))
    assert better.passed is True
    assert better.estimate > 0
    assert worse.passed is False
    assert worse.interval[1] < 0
    assert better.candidate < better.champion


def test_skipped_without_a_champion():
    y = _labels(100)
    verdict = paired_bootstrap(
        BootstrapRule(metric="roc_auc"), "classification", y, _classifier(y, 0.5, 1), None
    )
    assert verdict.passed is None
    assert verdict.value is None
    assert "no champion" in verdict.note


def test_the_seed_makes_the_interval_reproducible():
    y = _labels(1000)
    candidate, champion = _classifier(y, 0.4, 1), _classifier(y, 0.35, 2)

    def interval(seed: int) -> list[float]:
        rule = BootstrapRule(metric="roc_auc", resamples=200, seed=seed)
        return paired_bootstrap(rule, "classification", y, candidate, champion).interval

    assert interval(7) == interval(7)
    assert interval(7) != interval(8)


def test_resamples_with_one_class_are_left_out_and_counted():
    y = np.zeros(60, dtype=int)
    y[:3] = 1  # about 5% of resamples draw no positive row at all
    rule = BootstrapRule(metric="roc_auc", resamples=1000)
    verdict = paired_bootstrap(rule, "classification", y, _classifier(y, 0.6, 1), _classifier(y, 0.1, 2))
    assert 0 < verdict.degenerate <= 100
    assert f"{verdict.degenerate} degenerate resamples left out" in verdict.note
    assert verdict.passed in (True, False)
    assert np.isfinite(verdict.interval).all()


def test_too_many_degenerate_resamples_fail_clearly():
    y = np.zeros(40, dtype=int)
    y[0] = 1  # a positive is missing from about 37% of resamples
    verdict = paired_bootstrap(
        BootstrapRule(metric="roc_auc"), "classification", y, _classifier(y, 0.6, 1), _classifier(y, 0.1, 2)
    )
    assert verdict.passed is False
    assert verdict.value is None
    assert "too small for an interval" in verdict.note
    assert verdict.degenerate > 100


def test_a_metric_undefined_on_the_whole_holdout_fails_clearly():
    y = np.zeros(50, dtype=int)
    verdict = paired_bootstrap(
        BootstrapRule(metric="roc_auc"), "classification", y, _classifier(y, 0.6, 1), _classifier(y, 0.1, 2)
    )
    assert verdict.passed is False
    assert "one class only" in verdict.note


def test_multiclass_labels_alone_support_label_metrics_and_name_what_ranking_metrics_need():
    y = np.random.default_rng(0).integers(0, 3, 600)
    good = Predictions(np.where(np.random.default_rng(1).random(600) < 0.8, y, (y + 1) % 3), np.ones(600))
    poor = Predictions(np.where(np.random.default_rng(2).random(600) < 0.4, y, (y + 1) % 3), np.ones(600))
    for metric in ("accuracy", "f1", "precision", "recall"):
        verdict = paired_bootstrap(BootstrapRule(metric=metric), "classification", y, good, poor)
        assert verdict.passed is True, metric
    auc = paired_bootstrap(BootstrapRule(metric="roc_auc"), "classification", y, good, poor)
    assert auc.passed is False
    assert "every class's probability" in auc.note


def _multiclass(y: np.ndarray, skill: float, seed: int) -> Predictions:
    """A three-class model's output on text labels: every class's probability, and the top one."""
    classes = np.array(["high", "low", "mid"], dtype=object)
    logits = skill * (y[:, None] == classes[None, :]) + np.random.default_rng(seed).normal(size=(len(y), 3))
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return Predictions(
        classes[probabilities.argmax(axis=1)], probabilities.max(axis=1), probabilities, classes
    )


@pytest.mark.parametrize("metric", ["roc_auc", "log_loss", "f1", "precision", "recall", "accuracy"])
def test_a_better_multiclass_candidate_passes_and_a_worse_one_fails(metric):
    y = np.random.default_rng(0).choice(
        np.array(["high", "low", "mid"], dtype=object), 3000, p=[0.2, 0.5, 0.3]
    )
    better, worse = _multiclass(y, 2.0, 1), _multiclass(y, 0.8, 2)
    rule = BootstrapRule(metric=metric, resamples=300)
    passed = paired_bootstrap(rule, "classification", y, better, worse)
    failed = paired_bootstrap(rule, "classification", y, worse, better)
    assert passed.passed is True, passed.note
    assert passed.degenerate == 0
    assert failed.passed is False
    assert failed.interval[1] < 0
    twin = Predictions(
        better.predicted.copy(), better.score.copy(), better.probabilities.copy(), better.classes
    )
    assert paired_bootstrap(rule, "classification", y, twin, better).interval == [0.0, 0.0]


@pytest.mark.parametrize("metric", ["mae", "r2"])
def test_a_better_regressor_passes_on_every_regression_metric(metric):
    y = np.random.default_rng(1).normal(size=2000)
    rule = BootstrapRule(metric=metric, resamples=300)
    assert (
        paired_bootstrap(rule, "regression", y, _regressor(y, 0.5, 1), _regressor(y, 1.0, 2)).passed is True
    )
    assert (
        paired_bootstrap(rule, "regression", y, _regressor(y, 1.0, 2), _regressor(y, 0.5, 1)).passed is False
    )


def test_a_thousand_resamples_of_twenty_thousand_rows_take_well_under_seconds():
    y = _labels(20_000)
    candidate, champion = _classifier(y, 0.4, 1, decimals=3), _classifier(y, 0.35, 2)
    for metric in ("roc_auc", "log_loss", "f1"):
        started = time.perf_counter()
        verdict = paired_bootstrap(
            BootstrapRule(metric=metric, resamples=1000), "classification", y, candidate, champion
        )
        elapsed = time.perf_counter() - started
        assert verdict.passed is not None
        assert elapsed < 5.0, f"{metric}: {elapsed:.2f} s"


def test_both_models_are_scored_on_the_same_draws():
    """Paired: a candidate identical to the champion differs by exactly zero on every resample."""
    y = _labels(2000)
    champion = _classifier(y, 0.3, seed=2)
    twin = Predictions(champion.predicted.copy(), champion.score.copy())
    for metric in ("roc_auc", "log_loss", "f1"):
        verdict = paired_bootstrap(
            BootstrapRule(metric=metric, resamples=200), "classification", y, twin, champion
        )
        assert verdict.interval == [0.0, 0.0], metric
