"""A run the monitor's alert on quality metrics started is judged on what fired: the candidate must
be better on the fired metrics, and relative rules and the bootstrap on the others turn into
non-inferiority within ``gates.alert_metrics.max_regression``. The data are generated: a binary
stream whose decision threshold moved (same ranking, wrong decisions), a three-class model on
text labels biased toward one class, and a regressor whose mean moved."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from ctloop.evaluation.metric_catalog import metric_names
from ctloop.evaluation.weighted_metrics import Predictions, metric_value, positive_label
from ctloop.gating.alert_metrics import bootstrap_verdicts, fired_metrics, judged_metrics
from ctloop.gating.rules import evaluate_gates
from ctloop.spec.models import Gates, PipelineSpec
from ctloop.training.window_selection import selection_metric
from tests.helpers import example_spec

ROWS = 800
MIN_IMPROVEMENT = {"metric": "roc_auc", "min_improvement": 0.002}


def _gates(*rules: dict, bootstrap: dict | None = None, **alert: object) -> Gates:
    raw: dict = {"rules": list(rules), "bootstrap": bootstrap}
    if alert:
        raw["alert_metrics"] = alert
    return Gates.model_validate(raw)


def _metrics(task: str, y: np.ndarray, predictions: Predictions) -> dict[str, float]:
    positive = positive_label(y, predictions) if task == "classification" else None
    found = {m: metric_value(task, m, y, predictions, positive)[0] for m in metric_names(task)}
    return {m: v for m, v in found.items() if v is not None}


def _threshold_moved(seed: int = 0) -> tuple[np.ndarray, Predictions, Predictions, Predictions]:
    """Labels after the labelling threshold moved; the candidate's scores put the threshold where
    it now is, the champion's the same ranking with the old threshold (better on accuracy, brier
    and log loss, equal on roc_auc); a noisy candidate with the new threshold ranks worse."""
    rng = np.random.default_rng(seed)
    latent = rng.normal(size=ROWS)
    y = (latent + 0.6 * rng.normal(size=ROWS) > 0.5).astype(int)

    def model(signal: np.ndarray, centre: float) -> Predictions:
        score = 1 / (1 + np.exp(-2 * (signal - centre)))
        return Predictions((score > 0.5).astype(int), score)

    noisy = model(latent + 0.8 * rng.normal(size=ROWS), 0.5)
    return y, model(latent, 0.5), model(latent, 0.0), noisy


def _decide(gates: Gates, task: str, y: np.ndarray, candidate: Predictions, champion: Predictions, fired=()):
    """The decision as the gate step makes it: metric rules on both models' metrics, the bootstrap
    verdicts on their per-row predictions."""
    extra = bootstrap_verdicts(gates, task, fired, y, candidate, champion)
    return evaluate_gates(
        gates,
        task,
        _metrics(task, y, candidate),
        _metrics(task, y, champion),
        "1",
        extra_verdicts=extra,
        alert_metrics=fired,
    )


BOOTSTRAP = {"metric": "roc_auc", "margin": 0.0, "resamples": 300}


def test_a_candidate_better_on_accuracy_and_equal_on_roc_auc_passes_only_when_accuracy_fired():
    y, candidate, champion, _ = _threshold_moved()
    gates = _gates(MIN_IMPROVEMENT, bootstrap=BOOTSTRAP)
    refused = _decide(gates, "classification", y, candidate, champion)
    assert not refused.passed
    assert [r.rule for r in refused.rules if r.passed is False] == ["relative"]  # roc_auc: no gain
    assert refused.alert_metrics == []
    assert refused.alert_metrics_why == ""

    passed = _decide(gates, "classification", y, candidate, champion, fired=["accuracy"])
    assert passed.passed, passed.failed
    assert passed.alert_metrics == ["accuracy"]
    assert "accuracy" in passed.alert_metrics_why
    assert "0.01" in passed.alert_metrics_why
    assert "judged on the alert's accuracy" in passed.summary
    relaxed = next(r for r in passed.rules if r.rule == "relative")
    assert (relaxed.kind, relaxed.bound, relaxed.relaxed_from) == (
        "max_regression",
        0.01,
        "min_improvement 0.002",
    )
    spec_bootstrap = next(r for r in passed.rules if r.rule == "bootstrap")
    assert (spec_bootstrap.metric, spec_bootstrap.bound) == ("roc_auc", -0.01)
    alert = next(r for r in passed.rules if r.rule == "alert")
    assert (alert.metric, alert.kind, alert.passed) == ("accuracy", "ci_lower_bound", True)
    assert alert.candidate > alert.champion
    assert 0 < alert.interval[0] < alert.interval[1]
    assert alert.confidence == 0.95
    assert alert.resamples == 300
    assert [r.metric for r in passed.rules if r.rule == "alert"] == ["accuracy"]  # no point twin


def test_a_candidate_worse_on_roc_auc_than_the_tolerance_fails_even_when_better_on_what_fired():
    y, _, champion, noisy = _threshold_moved()
    decision = _decide(
        _gates(MIN_IMPROVEMENT, bootstrap=BOOTSTRAP), "classification", y, noisy, champion, ["brier"]
    )
    assert not decision.passed
    failed = {(r.rule, r.metric) for r in decision.rules if r.passed is False}
    assert {("relative", "roc_auc"), ("bootstrap", "roc_auc")} <= failed


def test_a_candidate_not_better_on_the_fired_metric_fails():
    y, candidate, champion, _ = _threshold_moved()
    # the champion is now the one with the right threshold: the candidate does not fix what fired
    decision = _decide(
        _gates(MIN_IMPROVEMENT, bootstrap=BOOTSTRAP), "classification", y, champion, candidate, ["accuracy"]
    )
    assert not decision.passed
    assert [(r.rule, r.metric) for r in decision.rules if r.passed is False] == [("alert", "accuracy")]


def test_the_same_decisions_as_the_champion_are_not_better_even_with_a_zero_interval():
    y, candidate, _, _ = _threshold_moved()
    twin = Predictions(candidate.predicted.copy(), candidate.score.copy())
    decision = _decide(_gates(bootstrap=BOOTSTRAP), "classification", y, candidate, twin, ["accuracy"])
    alert = next(r for r in decision.rules if r.rule == "alert")
    assert alert.interval == [0.0, 0.0]
    assert alert.passed is False
    assert "not better on the whole holdout" in alert.note


@pytest.mark.parametrize(
    ("candidate", "passed"),
    [
        ({"accuracy": 0.85, "roc_auc": 0.795}, True),  # roc_auc 0.005 worse: within the tolerance
        ({"accuracy": 0.85, "roc_auc": 0.78}, False),  # 0.02 worse: beyond it
        ({"accuracy": 0.79, "roc_auc": 0.82}, False),  # not better on what fired
    ],
)
def test_without_a_bootstrap_the_fired_metric_is_judged_by_the_point_difference(candidate, passed):
    champion = {"accuracy": 0.79, "roc_auc": 0.80}
    decision = evaluate_gates(
        _gates(MIN_IMPROVEMENT), "classification", candidate, champion, "1", alert_metrics=["accuracy"]
    )
    assert decision.passed is passed
    alert = next(r for r in decision.rules if r.rule == "alert")
    assert (alert.kind, alert.candidate, alert.champion) == (
        "better_than_champion",
        candidate["accuracy"],
        0.79,
    )
    assert alert.passed is (candidate["accuracy"] > champion["accuracy"])


def test_switched_off_or_on_an_unknown_metric_a_run_is_judged_like_any_run():
    champion, candidate = {"accuracy": 0.79, "roc_auc": 0.80}, {"accuracy": 0.85, "roc_auc": 0.80}
    off = evaluate_gates(
        _gates(MIN_IMPROVEMENT, enabled=False),
        "classification",
        candidate,
        champion,
        "1",
        alert_metrics=["accuracy"],
    )
    assert not off.passed
    assert off.alert_metrics == []
    assert "gates.alert_metrics.enabled is false" in off.alert_metrics_why
    unknown = evaluate_gates(
        _gates(MIN_IMPROVEMENT), "classification", candidate, champion, alert_metrics=["rmse"]
    )
    assert not unknown.passed
    assert unknown.alert_metrics == []
    assert judged_metrics(_gates(), "classification", ["rmse", "brier"])[0] == ["brier"]


def test_a_fired_metric_is_skipped_without_a_champion():
    decision = evaluate_gates(
        _gates(MIN_IMPROVEMENT),
        "classification",
        {"accuracy": 0.8, "roc_auc": 0.8},
        None,
        alert_metrics=["accuracy"],
    )
    assert decision.passed
    assert next(r for r in decision.rules if r.rule == "alert").passed is None


def _multiclass(y: np.ndarray, bias: float, seed: int = 1) -> Predictions:
    """A three-class model on text labels; ``bias`` pushes its decisions toward "low"."""
    classes = np.array(["high", "low", "mid"], dtype=object)
    logits = 1.5 * (y[:, None] == classes[None, :]) + np.random.default_rng(seed).normal(size=(len(y), 3))
    logits[:, 1] += bias
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return Predictions(
        classes[probabilities.argmax(axis=1)], probabilities.max(axis=1), probabilities, classes
    )


def test_multiclass_on_text_labels_a_fix_of_the_class_mix_passes_when_accuracy_fired():
    y = np.random.default_rng(0).choice(
        np.array(["high", "low", "mid"], dtype=object), ROWS, p=[0.3, 0.4, 0.3]
    )
    candidate, champion = _multiclass(y, 0.0), _multiclass(y, 1.2)
    gates = _gates({"metric": "roc_auc", "min_improvement": 0.01}, bootstrap=BOOTSTRAP)
    assert not _decide(gates, "classification", y, candidate, champion).passed
    decision = _decide(gates, "classification", y, candidate, champion, ["accuracy", "f1"])
    assert decision.passed, decision.failed
    # the bootstrap moves to the first fired metric; the others are judged by the point difference
    alerts = {r.metric: r.kind for r in decision.rules if r.rule == "alert"}
    assert alerts == {"accuracy": "ci_lower_bound", "f1": "better_than_champion"}


def test_a_bootstrap_on_a_metric_that_fired_stays_as_the_spec_set_it():
    y, candidate, _, noisy = _threshold_moved()
    gates = _gates(MIN_IMPROVEMENT, bootstrap=BOOTSTRAP)
    decision = _decide(gates, "classification", y, candidate, noisy, ["roc_auc", "accuracy"])
    assert decision.passed, decision.failed
    assert [r.rule for r in decision.rules] == ["relative", "alert", "alert"]
    relative, accuracy, roc_auc = decision.rules
    assert (relative.kind, relative.bound) == ("min_improvement", 0.002)  # roc_auc fired: not relaxed
    assert (accuracy.metric, accuracy.kind) == ("accuracy", "better_than_champion")
    assert (roc_auc.metric, roc_auc.kind, roc_auc.bound) == ("roc_auc", "ci_lower_bound", 0.0)


def test_regression_a_fix_of_the_mean_passes_when_rmse_fired():
    rng = np.random.default_rng(2)
    y = rng.normal(size=ROWS)
    values = y + 0.5 * rng.normal(size=ROWS)
    candidate, champion = Predictions(values, values), Predictions(values + 0.3, values + 0.3)
    gates = _gates({"metric": "r2", "min_improvement": 0.2}, bootstrap={"metric": "r2", "resamples": 300})
    assert not _decide(gates, "regression", y, candidate, champion).passed
    decision = _decide(gates, "regression", y, candidate, champion, ["rmse"])
    assert decision.passed, decision.failed
    alert = next(r for r in decision.rules if r.rule == "alert")
    assert alert.metric == "rmse"
    assert alert.candidate < alert.champion


def test_the_tolerance_is_refused_below_zero_naming_the_field():
    with pytest.raises(ValidationError, match="max_regression"):
        _gates(max_regression=-0.01)
    assert Gates().alert_metrics.enabled
    assert Gates().alert_metrics.max_regression == 0.01


def _spec(**quality) -> PipelineSpec:
    raw = example_spec("p", "data")
    raw["monitoring"]["quality"] |= quality
    return PipelineSpec.model_validate(raw)


def _summary(
    rules: dict[str, str], shift: str = "ok", estimate: str = "ok", decides: bool = False, rows: int = 2000
):
    return {
        "quality": {"labeled_rows": rows, "rules": [{"metric": m, "verdict": v} for m, v in rules.items()]},
        "label_shift": {"verdict": shift, "signals": [{"name": "label_rate", "verdict": shift}]},
        "estimate": {"decides": decides, "signals": [{"name": "f1", "judged": True, "verdict": estimate}]},
    }


@pytest.mark.parametrize(
    ("summary", "fired"),
    [
        (_summary({"roc_auc": "ok", "accuracy": "alert", "brier": "undecided"}), ["accuracy"]),
        (_summary({"roc_auc": "alert", "accuracy": "ok", "brier": "alert"}), ["roc_auc", "brier"]),
        # a label shift puts decisions and calibration wrong: the watched ones that are not ranking
        (
            _summary({"roc_auc": "ok", "accuracy": "ok", "brier": "alert"}, shift="alert"),
            ["brier", "accuracy"],
        ),
        (_summary({"accuracy": "alert"}, rows=999), []),  # below monitoring.quality.min_labels 1000
        (_summary({}, estimate="alert"), []),  # the estimate does not decide
        (_summary({}, estimate="alert", decides=True), ["f1"]),
        ({"quality": {}, "label_shift": None}, []),  # drift or a regression: no metric
    ],
)
def test_the_fired_metrics_are_read_from_the_monitors_verdicts(summary, fired):
    assert fired_metrics(_spec(), summary) == fired


def test_a_label_shift_without_watched_decision_metrics_implies_the_defaults():
    spec = _spec(rules=[{"metric": "roc_auc", "max_drop": 0.05}])
    assert fired_metrics(spec, _summary({"roc_auc": "ok"}, shift="alert")) == ["accuracy", "brier"]


def test_windows_are_scored_by_the_first_fired_metric_the_gate_judges():
    spec = _spec()
    assert selection_metric(spec, ("brier", "accuracy")) == "brier"
    assert selection_metric(spec, ()) == spec.primary_metric == "roc_auc"
    assert selection_metric(spec, ("rmse",)) == "roc_auc"
    off = spec.model_copy(update={"gates": _gates(enabled=False)})
    assert selection_metric(off, ("brier",)) == "roc_auc"
