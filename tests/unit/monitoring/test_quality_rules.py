"""Quality rules on generated streams: each kind of change fires the rules that see it, a noisy
stable stream fires none, a small window stays undecided and a large clear drop fires at once.

The champion is the exact probability model of a known process (a latent score crossing a
threshold), so its reference is its holdout on that process; the windows change one thing."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from ctloop.evaluation.model_scores import logged_metrics
from ctloop.evaluation.weighted_metrics import Predictions
from ctloop.monitoring.quality_rules import Measure, assess, judge, reference
from ctloop.monitoring.retrain_policy import RETRAIN, Evidence, decide
from ctloop.spec.models import PipelineSpec
from tests.helpers import example_spec
from tests.unit.evaluation.task_kinds import regression_spec

SCALE = 0.3  # the latent noise's scale: a strong model, as a churn model is
BINARY_RULES = {"roc_auc": 0.05, "accuracy": 0.04, "f1": 0.05, "log_loss": 0.08, "brier": 0.03}
MULTICLASS_RULES = {"roc_auc": 0.05, "accuracy": 0.04, "f1": 0.05, "log_loss": 0.1, "brier": 0.05}
REGRESSION_RULES = {"rmse": 0.3, "mae": 0.25, "r2": 0.05}
TIERS = np.array(["high", "low", "mid"], dtype=object)  # a classifier's classes_: sorted


def _spec(rules: dict[str, float], *, task: str = "classification", **quality: object) -> PipelineSpec:
    listed = [{"metric": m, "max_drop": d} for m, d in rules.items()]
    settings = {"rules": listed, "min_labels": 300, "resamples": 400, **quality}
    if task == "regression":
        spec = regression_spec("q", monitoring={"quality": {"metric": "rmse"}})
        raw = spec.model_dump()
        raw["monitoring"]["quality"] = settings
        return PipelineSpec.model_validate(raw)
    return PipelineSpec.model_validate(example_spec("q", "data", monitoring={"quality": settings}))


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-z))


def binary(n: int, seed: int, *, threshold: float = 0.0, noise: float = 0.0, power: float = 1.0):
    """Labels ``yes`` when x plus logistic noise crosses ``threshold`` (a share ``noise`` flipped),
    and the champion's probabilities for the process at threshold 0, with its logits times
    ``power`` (above 1 pushed toward 0 and 1, below 1 shrunk toward 0.5)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    positive = x + SCALE * rng.logistic(size=n) > threshold
    positive ^= rng.random(n) < noise
    p = (1 - noise) * _sigmoid(x / SCALE) + noise * (1 - _sigmoid(x / SCALE))
    p = _sigmoid(power * np.log(p / (1 - p)))
    y = np.where(positive, "yes", "no").astype(object)
    return y, Predictions(np.where(p > 0.5, "yes", "no").astype(object), p)


def multiclass(n: int, seed: int, *, shift: float = 0.0, noise: float = 0.0, power: float = 1.0):
    """Tiers ``low``/``mid``/``high`` by where x plus logistic noise falls against two cut points
    (moved by ``shift``; a share ``noise`` relabeled at random), and the champion's probabilities
    of the unshifted process, raised to ``power`` and renormalised."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    cuts = np.array([-0.5, 0.5])
    tier = np.digitize(x + SCALE * rng.logistic(size=n), cuts + shift)  # 0 low, 1 mid, 2 high
    relabel = rng.random(n) < noise
    tier = np.where(relabel, rng.integers(0, 3, n), tier)
    below = _sigmoid((cuts[None, :] - x[:, None]) / SCALE)  # P(latent < cut | x)
    low, mid, high = below[:, 0], below[:, 1] - below[:, 0], 1 - below[:, 1]
    by_tier = (1 - noise) * np.column_stack([low, mid, high]) + noise / 3
    by_tier = by_tier**power / (by_tier**power).sum(axis=1, keepdims=True)
    names = np.array(["low", "mid", "high"], dtype=object)
    probabilities = by_tier[:, [2, 0, 1]]  # in the classes' sorted order: high, low, mid
    predicted = TIERS[probabilities.argmax(axis=1)]
    return names[tier], Predictions(predicted, probabilities.max(axis=1), probabilities, TIERS)


def regression(n: int, seed: int, *, bias: float = 0.0, noise: float = 1.0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    predicted = 2 * x
    return predicted + bias + rng.normal(0, noise, n), Predictions(predicted, predicted)


def _verdicts(spec: PipelineSpec, stream, n: int, seed: int, **change) -> dict[str, str]:
    """Each rule's verdict on a window of ``n`` rows with ``change``, against a holdout of the
    unchanged process (the champion's reference)."""
    held_y, held = stream(40_000, 1, **{k: v for k, v in change.items() if k == "noise"})
    run_metrics = {f"holdout_{m}": v for m, v in logged_metrics(spec, held_y, held)[0].items()}
    y, predictions = stream(n, seed, **change)
    outcomes = assess(spec, y, predictions, logged_metrics(spec, y, predictions), run_metrics)
    return {o.metric: o.verdict for o in outcomes}


def test_a_moved_labelling_threshold_fires_accuracy_not_roc_auc() -> None:
    """The features keep their distribution and the ranking holds; decisions at 0.5 go wrong."""
    verdicts = _verdicts(_spec(BINARY_RULES), binary, 2000, 7, threshold=0.8)
    assert verdicts["accuracy"] == "alert"
    assert verdicts["f1"] == "alert"
    assert verdicts["roc_auc"] == "ok"


def test_probabilities_shrunk_toward_one_half_fire_calibration_only() -> None:
    """A monotone change of the scores that keeps their side of 0.5: ranking and decisions are
    exactly the same, only calibration sees it."""
    verdicts = _verdicts(_spec(BINARY_RULES), binary, 2000, 7, power=0.3)
    assert (verdicts["brier"], verdicts["log_loss"]) == ("alert", "alert")
    assert (verdicts["roc_auc"], verdicts["accuracy"], verdicts["f1"]) == ("ok", "ok", "ok")


def test_probabilities_pushed_toward_0_and_1_fire_log_loss() -> None:
    verdicts = _verdicts(_spec(BINARY_RULES), binary, 2000, 7, power=4.0)
    assert verdicts["log_loss"] == "alert"
    assert (verdicts["roc_auc"], verdicts["accuracy"]) == ("ok", "ok")


@pytest.mark.parametrize("seed", range(6))
def test_a_noisy_stable_stream_fires_nothing(seed: int) -> None:
    """20% of the labels flipped, before and after: the champion is as good as its holdout said."""
    verdicts = _verdicts(_spec(BINARY_RULES), binary, 1500, 100 + seed, noise=0.2)
    assert "alert" not in verdicts.values(), verdicts


def test_a_small_window_with_a_real_drop_stays_undecided_and_below_min_labels_says_so() -> None:
    spec = _spec({"accuracy": 0.04}, min_labels=100)
    held_y, held = binary(40_000, 1)
    run_metrics = {"holdout_accuracy": logged_metrics(spec, held_y, held)[0]["accuracy"]}
    y, predictions = binary(120, 7, threshold=0.8)
    (small,) = assess(spec, y, predictions, logged_metrics(spec, y, predictions), run_metrics)
    assert small.drop > 0.04  # past max_drop on its face ...
    assert small.verdict == "undecided"  # ... but not with 95% confidence on 120 rows
    assert "not significantly" in small.why
    assert small.interval[1] > small.threshold
    y, predictions = binary(99, 7, threshold=0.8)
    (few,) = assess(spec, y, predictions, logged_metrics(spec, y, predictions), run_metrics)
    assert (few.verdict, few.interval) == ("undecided", None)
    assert few.why == "99 labeled rows < monitoring.quality.min_labels 100"


def test_a_large_clear_drop_fires_at_once_and_is_severe() -> None:
    """Labels the model gets mostly wrong, on just min_labels rows: a retrain on the first window."""
    spec = _spec(BINARY_RULES)
    held_y, held = binary(40_000, 1)
    run_metrics = {f"holdout_{m}": v for m, v in logged_metrics(spec, held_y, held)[0].items()}
    y, predictions = binary(300, 7)
    flipped = np.where(y == "yes", "no", "yes").astype(object)
    outcomes = assess(spec, flipped, predictions, logged_metrics(spec, flipped, predictions), run_metrics)
    assert [o.verdict for o in outcomes] == ["alert"] * len(BINARY_RULES)
    assert all(o.severe for o in outcomes)
    evidence = Evidence("w", 5000, 0.0, [], 300, quality_rules=tuple(outcomes))
    decision = decide(spec, evidence, [], [], datetime(2026, 3, 1, tzinfo=UTC))
    assert (decision["action"], decision["severe"]) == (RETRAIN, True)
    assert decision["k_of_n"]["alerts"] == 1  # k-of-n alone would have waited
    assert [t.split(":")[0] for t in decision["triggers"]] == [f"quality {m}" for m in BINARY_RULES]


def test_multiclass_text_labels_moved_cut_points_fire_decisions_and_shrunk_probabilities_calibration() -> (
    None
):
    spec = _spec(MULTICLASS_RULES)
    moved = _verdicts(spec, multiclass, 2000, 7, shift=0.5)
    assert (moved["accuracy"], moved["f1"]) == ("alert", "alert")
    assert moved["roc_auc"] == "ok"
    shrunk = _verdicts(spec, multiclass, 2000, 7, power=0.3)
    assert (shrunk["brier"], shrunk["log_loss"]) == ("alert", "alert")
    assert (shrunk["accuracy"], shrunk["f1"]) == ("ok", "ok")
    for seed in range(3):
        stable = _verdicts(spec, multiclass, 1500, 100 + seed, noise=0.2)
        assert "alert" not in stable.values(), stable


def test_regression_a_biased_stream_fires_every_error_rule_and_a_noisy_stable_one_none() -> None:
    spec = _spec(REGRESSION_RULES, task="regression")
    biased = _verdicts(spec, regression, 1000, 7, bias=1.0)
    assert biased == {"rmse": "alert", "mae": "alert", "r2": "alert"}
    for seed in range(3):
        stable = _verdicts(spec, regression, 1000, 100 + seed, noise=1.0)
        assert "alert" not in stable.values(), stable


def test_a_version_without_the_metric_on_its_run_leaves_that_rule_undecided_and_the_others_judged() -> None:
    """A champion trained before brier was computed has no holdout_brier."""
    spec = _spec(BINARY_RULES)
    held_y, held = binary(40_000, 1)
    run_metrics = {f"holdout_{m}": v for m, v in logged_metrics(spec, held_y, held)[0].items()}
    del run_metrics["holdout_brier"]
    y, predictions = binary(2000, 7, threshold=0.8)
    outcomes = {
        o.metric: o for o in assess(spec, y, predictions, logged_metrics(spec, y, predictions), run_metrics)
    }
    assert (outcomes["brier"].verdict, outcomes["brier"].reference, outcomes["brier"].interval) == (
        "undecided",
        None,
        None,
    )
    assert "its run has no holdout_brier" in outcomes["brier"].why
    assert outcomes["accuracy"].verdict == "alert"


def test_the_reference_is_the_recent_holdout_when_the_spec_asks_and_the_run_has_one() -> None:
    run_metrics = {"holdout_accuracy": 0.85, "recent_accuracy": 0.80, "holdout_brier": 0.1}
    recent = _spec({"accuracy": 0.04, "brier": 0.03}, reference="recent")
    assert reference(recent, "accuracy", run_metrics) == (0.80, "recent")
    assert reference(recent, "brier", run_metrics) == (0.1, "holdout")  # no recent value: the holdout
    assert reference(_spec({"accuracy": 0.04}), "accuracy", run_metrics) == (0.85, "holdout")
    (judged,) = [
        judge(recent, recent.monitoring.quality.rules[0], Measure(1000, 0.70, 0.80, "recent", (0.69, 0.71)))
    ]
    assert judged.verdict == "alert"
    assert "than the champion's recent holdout 0.8000" in judged.why


@pytest.mark.parametrize(
    ("interval", "verdict"),
    # accuracy 0.80 against 0.90 with max_drop 0.05: the bound is 0.85
    [((0.78, 0.8499), "alert"), ((0.78, 0.85), "undecided"), ((0.70, 0.90), "undecided")],
)
def test_an_alert_needs_the_whole_interval_past_the_bound(interval, verdict) -> None:
    spec = _spec({"accuracy": 0.05})
    outcome = judge(spec, spec.monitoring.quality.rules[0], Measure(1000, 0.80, 0.90, "holdout", interval))
    assert (outcome.verdict, outcome.drop, outcome.threshold) == (verdict, 0.1, pytest.approx(0.85))


def test_a_lower_is_better_metric_needs_its_interval_wholly_above_the_bound() -> None:
    spec = _spec({"brier": 0.03})
    rule = spec.monitoring.quality.rules[0]
    above = judge(spec, rule, Measure(1000, 0.20, 0.10, "holdout", (0.1301, 0.25)))
    assert (above.verdict, above.threshold) == ("alert", pytest.approx(0.13))
    assert "lies wholly above 0.1300" in above.why
    straddles = judge(spec, rule, Measure(1000, 0.20, 0.10, "holdout", (0.12, 0.25)))
    assert straddles.verdict == "undecided"
    better = judge(spec, rule, Measure(1000, 0.08, 0.10, "holdout", (0.07, 0.09)))
    assert (better.verdict, better.drop) == ("ok", -0.02)
    assert "0.0200 better than the champion's holdout" in better.why


def test_the_bootstrap_is_seeded() -> None:
    spec = _spec(BINARY_RULES)
    y, predictions = binary(800, 3, threshold=0.3)
    run_metrics = {f"holdout_{m}": 0.5 for m in BINARY_RULES}
    once, again = (
        assess(spec, y, predictions, logged_metrics(spec, y, predictions), run_metrics) for _ in range(2)
    )
    assert once == again
    other = _spec(BINARY_RULES, seed=1)
    moved = assess(other, y, predictions, logged_metrics(other, y, predictions), run_metrics)
    assert [o.interval for o in moved] != [o.interval for o in once]


def test_many_labels_are_resampled_from_a_seeded_sample_whose_interval_is_wider(monkeypatch):
    """Above bootstrap_rows the interval comes from a sample: the value still from every row, the
    interval wider (a drop it calls significant is significant), the same on a re-run."""
    from ctloop.monitoring import quality_rules

    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 8_000)
    score = np.clip(y * 0.3 + rng.uniform(0, 0.7, len(y)), 0, 1)
    predictions = Predictions((score > 0.5).astype(int), score)
    whole = quality_rules._intervals(
        _spec({"accuracy": 0.05}, bootstrap_rows=10_000), y, predictions, ["accuracy"]
    )["accuracy"]
    sampled = quality_rules._intervals(
        _spec({"accuracy": 0.05}, bootstrap_rows=2_000), y, predictions, ["accuracy"]
    )["accuracy"]
    again = quality_rules._intervals(
        _spec({"accuracy": 0.05}, bootstrap_rows=2_000), y, predictions, ["accuracy"]
    )["accuracy"]
    assert sampled == again
    assert sampled[1] - sampled[0] > 1.5 * (whole[1] - whole[0])  # ~ sqrt(4) wider
