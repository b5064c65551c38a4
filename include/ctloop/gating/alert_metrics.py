"""Judging a retrain on what started it: the metrics of the monitor's alert.

An alert on a decision or calibration metric (accuracy after a moved labelling threshold, brier
after a class prior moved) says the champion's decisions or probabilities are wrong while its
ranking may be intact. A candidate that puts them right need not rank any better, so a gate that
asks for a better roc_auc rejects every such fix and the cooldown then keeps the wrong model.
For a run such an alert started, ``gates.alert_metrics`` asks the candidate to be better than the
champion on each fired metric where the relative rules are judged (the spec's ``gates.bootstrap``
judges the first fired metric, or stays on its own metric when that fired; the others by the
point difference), and turns the relative rules and the bootstrap on the other metrics into
non-inferiority: not worse than the champion by more than ``max_regression``.

The monitor names the fired metrics (:func:`fired_metrics`, from its summary's verdicts), the
retrain event carries them as a list, and the train run hands them to the gate and the window
selection as data: nothing parses the text of a trigger.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ctloop.evaluation.metric_catalog import metric_names
from ctloop.gating.decision import GateVerdict
from ctloop.gating.paired_bootstrap import paired_bootstrap

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from numpy.typing import ArrayLike

    from ctloop.evaluation.metric_catalog import TaskKind
    from ctloop.evaluation.weighted_metrics import Predictions
    from ctloop.spec.models import Gates, PipelineSpec

RANKING = frozenset({"roc_auc"})  # a label shift leaves the ranking intact
# What a label shift puts wrong when the quality rules watch no decision or calibration metric.
SHIFTED: dict[TaskKind, tuple[str, ...]] = {"classification": ("accuracy", "brier"), "regression": ("rmse",)}
ALERT = "alert"  # the ``rule`` of a verdict on a fired metric


def fired_metrics(spec: PipelineSpec, summary: Mapping[str, Any]) -> list[str]:
    """The metrics the monitor's window in ``summary`` alerted on, in order: each quality rule that
    fired; for a label shift that fired, the quality rules' decision and calibration metrics (all
    but ranking; when they watch none, accuracy and brier, or rmse); each estimated metric that
    fired where the estimate decides. Empty when no metric fired (drift, a champion regression).
    The same verdicts as the decision's triggers (ctloop.monitoring.retrain_policy.triggers)."""
    fired: list[str] = []
    quality = summary.get("quality") or {}
    if quality.get("labeled_rows", 0) >= spec.monitoring.quality.min_labels:
        fired += [r["metric"] for r in quality.get("rules", []) if r.get("verdict") == "alert"]
    shift, estimate = summary.get("label_shift") or {}, summary.get("estimate") or {}
    if _alerted(shift):
        watched = [r.metric for r in spec.monitoring.quality.rules if r.metric not in RANKING]
        fired += watched or list(SHIFTED[spec.task])
    if _alerted(estimate):
        fired += [s["name"] for s in estimate["signals"] if s.get("judged", True) and s["verdict"] == "alert"]
    return list(dict.fromkeys(fired))


def _alerted(block: Mapping[str, Any]) -> bool:
    """Whether a label shift or estimate block decides and one of its judged signals alerted."""
    return bool(block.get("decides", True)) and any(
        s.get("judged", True) and s.get("verdict") == "alert" for s in block.get("signals", [])
    )


def judged_metrics(gates: Gates, task: TaskKind, fired: Sequence[str]) -> tuple[list[str], str]:
    """The fired metrics this run's gate judges the candidate on, and why (both empty for a run no
    alert on a metric started); none when ``gates.alert_metrics`` is off."""
    if not fired:
        return [], ""
    said = ", ".join(fired)
    if not gates.alert_metrics.enabled:
        return [], f"started by an alert on {said}; gates.alert_metrics.enabled is false: judged like any run"
    known = metric_names(task)
    metrics = [m for m in fired if m in known]
    if not metrics:
        return [], f"started by an alert on {said}, none a metric a {task} training produces"
    return metrics, (
        f"started by the monitor's alert on {', '.join(metrics)}: the candidate must be better than the"
        " champion on it (a moved decision threshold, class prior or calibration is not put right by a"
        " better ranking); relative rules and the bootstrap on other metrics only must not be worse by"
        f" more than gates.alert_metrics.max_regression {gates.alert_metrics.max_regression:g}"
    )


def bootstrap_verdicts(
    gates: Gates,
    task: TaskKind,
    fired: Sequence[str],
    y: ArrayLike,
    candidate: Predictions,
    champion: Predictions | None,
) -> list[GateVerdict]:
    """The spec's bootstrap verdict. In a run judged on fired metrics the bootstrap judges what
    fired: kept as it is when its metric fired (the candidate must also be better on the whole
    holdout), else run on the first fired metric at the spec's margin, confidence, resamples and
    seed, its own metric then judged as non-inferiority (lower bound >= -max_regression). The
    other fired metrics are judged by the point difference (ctloop.gating.rules): one interval per
    run, as the spec asks, since several at once on a few hundred recent rows would refuse fixes
    the spec's own bootstrap accepts."""
    rule = gates.bootstrap
    if rule is None:
        return []
    metrics, _ = judged_metrics(gates, task, fired)
    if not metrics:
        return [paired_bootstrap(rule, task, y, candidate, champion)]
    if rule.metric in metrics:
        return [_better(paired_bootstrap(rule, task, y, candidate, champion))]
    tolerance = gates.alert_metrics.max_regression
    relaxed = paired_bootstrap(rule.model_copy(update={"margin": -tolerance}), task, y, candidate, champion)
    note = f"{relaxed.note} (margin {rule.margin:g} relaxed: the run is judged on {', '.join(metrics)})"
    moved = paired_bootstrap(rule.model_copy(update={"metric": metrics[0]}), task, y, candidate, champion)
    return [_updated(relaxed, note=note, relaxed_from=f"margin {rule.margin:g}"), _better(moved)]


def _better(verdict: GateVerdict) -> GateVerdict:
    """A fired metric's bootstrap verdict: it fails too when the candidate is not better on the
    whole holdout (an interval of [0, 0]: the same decisions as the champion's)."""
    estimate = getattr(verdict, "estimate", None)
    if verdict.passed and estimate is not None and estimate <= 0:
        note = f"{verdict.note}; but it is not better on the whole holdout ({estimate:+.4f}): failed"
        return _updated(verdict, rule=ALERT, passed=False, note=note)
    return _updated(verdict, rule=ALERT)


def _updated(verdict: GateVerdict, **fields: Any) -> GateVerdict:
    """The verdict with ``fields`` changed or added (extra fields are kept, as the decision shows them)."""
    return GateVerdict.model_validate({**verdict.model_dump(), **fields})
