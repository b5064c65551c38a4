"""Quality rules: each metric ``monitoring.quality.rules`` watches, on the window's labeled rows,
against the champion's reference, judged by a bootstrap interval.

One metric sees one kind of change. When the labelling threshold or the class prior moves while
the features keep their distribution, the champion still ranks the rows (roc_auc barely moves)
but decides them wrongly at its threshold (accuracy, f1, precision, recall fall); when only its
probabilities go off, log_loss and brier rise. So the monitor judges each rule on its own.

A point difference on a few hundred labels is mostly noise. A rule alerts only when the whole
``confidence`` interval of its metric over the labeled rows (resampled with replacement, seeded)
lies beyond ``reference - max_drop`` in the metric's bad direction: the drop exceeds ``max_drop``
with that confidence. A small or noisy window stays quiet (``undecided`` when its point estimate
is past the bound, ``ok`` when not); a large clear drop fires on the first window that shows it.
Every rule's figures land in the monitor's summary; the retrain policy reads their verdicts
(ctloop.monitoring.retrain_policy).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict

from ctloop.evaluation.metric_catalog import higher_is_better
from ctloop.evaluation.weighted_metrics import (
    Predictions,
    bootstrap_weights,
    metric_function,
    positive_label,
)
from ctloop.gating.paired_bootstrap import MAX_DEGENERATE_SHARE
from ctloop.registry import tags

if TYPE_CHECKING:
    import numpy as np

    from ctloop.spec.models import PipelineSpec, QualityRule

Verdict = Literal["alert", "ok", "undecided"]
REFERENCE_NAMES = {"holdout": "the champion's holdout", "recent": "the champion's recent holdout"}


class RuleOutcome(BaseModel):
    """One rule on one window, as the summary, the history and the decision carry it.

    ``value`` is the metric on the window's labeled rows, ``reference`` the champion's
    (``reference_source``: its run's ``holdout_<metric>`` or ``recent_<metric>``), ``threshold``
    the value ``max_drop`` away from it in the bad direction, ``drop`` how much worse ``value``
    is (negative when better), ``interval`` the metric's ``confidence`` interval over the labeled
    rows (low, high). ``severe``: an alert whose drop is at least ``severe_multiple`` x ``max_drop``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    metric: str
    value: float | None
    reference: float | None
    reference_source: Literal["holdout", "recent"]
    threshold: float | None
    max_drop: float
    drop: float | None
    interval: list[float] | None
    confidence: float
    labeled_rows: int
    verdict: Verdict
    severe: bool
    why: str


@dataclass(frozen=True)
class Measure:
    """What a rule is judged on: the metric on the labeled rows and its interval, the reference,
    and why a missing one is missing."""

    labeled_rows: int
    value: float | None
    reference: float | None
    reference_source: Literal["holdout", "recent"] = "holdout"
    interval: tuple[float, float] | None = None
    why: str | None = None


def reference(
    spec: PipelineSpec, metric: str, run_metrics: dict[str, float]
) -> tuple[float | None, Literal["holdout", "recent"]]:
    """The champion's reference value of ``metric`` from its training run's metrics, and where it
    comes from: its recent holdout when ``monitoring.quality.reference`` asks for it and the run
    has one, else its frozen holdout (None: a version trained before ctloop computed the metric,
    or registered without a run)."""
    recent = run_metrics.get(f"{tags.RECENT_METRIC_PREFIX}{metric}")
    if spec.monitoring.quality.reference == "recent" and recent is not None:
        return recent, "recent"
    return run_metrics.get(f"{tags.HOLDOUT_METRIC_PREFIX}{metric}"), "holdout"


def assess(
    spec: PipelineSpec,
    y: np.ndarray,
    predictions: Predictions,
    measured: tuple[dict[str, float], dict[str, str]],
    run_metrics: dict[str, float],
) -> list[RuleOutcome]:
    """Every rule judged on the labeled rows ``y`` and the champion's logged ``predictions``.

    ``measured`` is the metrics on these rows and why each missing one is undefined
    (ctloop.evaluation.model_scores.logged_metrics); ``run_metrics`` the champion's training run's.
    The bootstrap runs only for rules that can be decided, all of them on the same resamples."""
    quality = spec.monitoring.quality
    values, undefined = measured
    references = {rule.metric: reference(spec, rule.metric, run_metrics) for rule in quality.rules}
    decidable = [
        rule.metric
        for rule in quality.rules
        if len(y) >= quality.min_labels
        and values.get(rule.metric) is not None
        and references[rule.metric][0] is not None
    ]
    intervals = _intervals(spec, y, predictions, decidable)
    outcomes = []
    for rule in quality.rules:
        interval = intervals.get(rule.metric)
        why = interval if isinstance(interval, str) else undefined.get(rule.metric)
        measure = Measure(
            labeled_rows=len(y),
            value=values.get(rule.metric),
            reference=references[rule.metric][0],
            reference_source=references[rule.metric][1],
            interval=None if interval is None or isinstance(interval, str) else interval,
            why=why,
        )
        outcomes.append(judge(spec, rule, measure))
    return outcomes


def judge(spec: PipelineSpec, rule: QualityRule, measure: Measure) -> RuleOutcome:
    """The verdict of one rule on its measure; ``why`` says it in a sentence."""
    quality = spec.monitoring.quality
    sign = 1.0 if higher_is_better(spec.task, rule.metric) else -1.0
    name = REFERENCE_NAMES[measure.reference_source]
    outcome: dict[str, Any] = {
        "metric": rule.metric,
        "value": measure.value,
        "reference": measure.reference,
        "reference_source": measure.reference_source,
        "threshold": None if measure.reference is None else measure.reference - sign * rule.max_drop,
        "max_drop": rule.max_drop,
        "drop": None,
        "interval": None if measure.interval is None else list(measure.interval),
        "confidence": quality.confidence,
        "labeled_rows": measure.labeled_rows,
        "severe": False,
    }
    rows = f"{measure.labeled_rows:,} labeled rows"
    if measure.labeled_rows < quality.min_labels:
        why = f"{rows} < monitoring.quality.min_labels {quality.min_labels}"
        return RuleOutcome.model_validate({**outcome, "verdict": "undecided", "why": why})
    if measure.value is None or measure.reference is None:
        if measure.value is None:
            side = "the labeled rows" + (f": {measure.why}" if measure.why else "")
        else:
            side = (
                f"{name}: its run has no {measure.reference_source}_{rule.metric} (a version trained"
                " before ctloop computed it, or registered without a run)"
            )
        return RuleOutcome.model_validate(
            {**outcome, "verdict": "undecided", "why": f"cannot be computed on {side}"}
        )
    # rounded, so that 0.80 - 0.75 is a drop of 0.05 and not of 0.05000000000000004
    drop = round(sign * (measure.reference - measure.value), 9)
    outcome["drop"] = drop
    said = (
        f"{measure.value:.4f} on {rows} is {abs(drop):.4f} {'worse' if drop > 0 else 'better'} than"
        f" {name} {measure.reference:.4f} (max_drop {rule.max_drop:g})"
    )
    if measure.interval is None:
        why = f"{said}, but has no interval: {measure.why}" if measure.why else said
        verdict: Verdict = "undecided" if drop > rule.max_drop else "ok"
        return RuleOutcome.model_validate({**outcome, "verdict": verdict, "why": why})
    low, high = measure.interval
    spread = f"{quality.confidence:.0%} interval [{low:.4f}, {high:.4f}]"
    # the drop the interval still allows at its best end: it must exceed max_drop for an alert
    least = round(sign * measure.reference - max(sign * low, sign * high), 9)
    beyond = f"{'below' if sign > 0 else 'above'} {outcome['threshold']:.4f}"
    verdict = significance(drop, least, rule.max_drop)
    if verdict == "alert":
        severe = drop >= round(quality.severe_multiple * rule.max_drop, 9)
        why = f"{said}; its {spread} lies wholly {beyond}"
        return RuleOutcome.model_validate({**outcome, "verdict": "alert", "severe": severe, "why": why})
    if verdict == "undecided":
        why = f"{said}, but not significantly: its {spread} is not wholly {beyond}"
        return RuleOutcome.model_validate({**outcome, "verdict": "undecided", "why": why})
    return RuleOutcome.model_validate({**outcome, "verdict": "ok", "why": f"{said}; {spread}"})


def significance(drop: float, least: float, max_drop: float) -> Verdict:
    """A drop's verdict: ``alert`` when the point ``drop`` and even ``least``, the drop at the
    interval's best end, are beyond ``max_drop``; ``undecided`` when only the point is; else ``ok``."""
    if least > max_drop and drop > max_drop:
        return "alert"
    return "undecided" if drop > max_drop else "ok"


def percentile_interval(values: np.ndarray, confidence: float, metric: str) -> tuple[float, float] | str:
    """The ``confidence`` percentile interval of a metric's resampled ``values``, or why it has
    none: more than MAX_DEGENERATE_SHARE of the resamples left it undefined (NaN)."""
    import numpy as np

    valid = values[np.isfinite(values)]
    degenerate = len(values) - len(valid)
    if degenerate > MAX_DEGENERATE_SHARE * len(values):
        return (
            f"{degenerate} of {len(values)} resamples left {metric} undefined (more than"
            f" {MAX_DEGENERATE_SHARE:.0%}): too few rows of each kind for an interval"
        )
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(valid, [tail, 100 - tail])
    return float(low), float(high)


def _intervals(
    spec: PipelineSpec, y: np.ndarray, predictions: Predictions, metrics: list[str]
) -> dict[str, tuple[float, float] | str]:
    """Each metric's percentile interval over the bootstrap resamples of the labeled rows (of a
    seeded sample of ``bootstrap_rows`` of them when there are more), or why it has none (too many
    resamples leave it undefined: say, one class only)."""
    import numpy as np

    quality = spec.monitoring.quality
    if not metrics:
        return {}
    positive = positive_label(y, predictions)
    if len(y) > quality.bootstrap_rows:  # a sample of fewer rows: a wider interval, a bounded cost
        kept = np.sort(
            np.random.default_rng(quality.seed).choice(len(y), quality.bootstrap_rows, replace=False)
        )
        y, predictions = y[kept], predictions.take(kept)
    functions = {m: metric_function(spec.task, m, y, predictions, positive) for m in metrics}
    draws: dict[str, list[np.ndarray]] = {m: [] for m in metrics}
    for weights in bootstrap_weights(len(y), quality.resamples, quality.seed):
        for metric, function in functions.items():
            draws[metric].append(function(weights))
    return {m: percentile_interval(np.concatenate(c), quality.confidence, m) for m, c in draws.items()}
