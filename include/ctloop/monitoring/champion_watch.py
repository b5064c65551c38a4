"""Comparing the champion, on the rows it served, with a model that scored the same rows unserved.

A gate judges a candidate on held-out rows; only production shows what a model serves. Two
models shadow-score every batch beside the champion (ctloop.scoring.batches), so once labels
arrive they are measured on the same rows, and the gate's paired bootstrap
(ctloop.gating.paired_bootstrap) turns the difference into an interval:

- the previous champion, while the champion is the version promoted most recently. When the
  interval of (champion - previous) lies wholly below ``-monitoring.watch.margin`` the new
  champion is worse than its predecessor, and the monitor rolls it back. Only a promotion is
  watched: a rollback or a person's override is already a decision about which model serves;
  watching it too would let two models roll each other back in turn.
- the challenger, a candidate waiting for approval (ctloop.registry.challenger): the interval of
  (challenger - champion) tells its reviewer whether it serves better, worse or the same. It
  decides nothing by itself.

Both read ``monitoring.watch`` (min_labels, margin, confidence, resamples, seed) and compare on
``monitoring.quality.metric``, any metric of the task (a multiclass model's roc_auc and log_loss
read every class's probability from the log: ctloop.scoring.prediction_log).

A promotion is watched the way its gate judged it. A retrain the monitor's alert on quality
metrics started was judged on the metrics that fired (``gates.alert_metrics``, recorded as the
decision's ``alert_metrics`` in its run's ``gate/decision.json``): after a moved decision
threshold the fix decides better while it may rank a little worse, and watching roc_auc alone at
margin 0 would roll the fix back and serve the wrong threshold again. So the new champion is then
rolled back when it is significantly worse than its predecessor on a fired metric (beyond
``margin``), or on ``monitoring.quality.metric`` by more than ``gates.alert_metrics.max_regression``
(or ``margin``, if larger). Any other promotion is watched on ``monitoring.quality.metric`` alone.
A challenger is compared with the champion the same way, on the metrics its own gate judged it on.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from ctloop.evaluation.metric_catalog import metric_names
from ctloop.evaluation.weighted_metrics import Predictions
from ctloop.gating.decision import DECISION_ARTIFACT, GateDecision
from ctloop.gating.paired_bootstrap import paired_bootstrap
from ctloop.registry import ledger
from ctloop.registry import mlflow_store as registry
from ctloop.scoring.prediction_log import CHALLENGER, PREVIOUS, SERVED, ModelColumns
from ctloop.spec.models import BootstrapRule

if TYPE_CHECKING:
    from collections.abc import Sequence

    import pandas as pd

    from ctloop.settings import Settings
    from ctloop.spec.models import PipelineSpec

Verdict = Literal["rollback", "hold", "better", "worse", "no_difference", "undecided"]
Outcome = Literal["worse", "better", "no_difference", "undecided"]
MetricVerdict = Literal["worse", "better", "no_difference", "undecided", "not_judged"]
log = logging.getLogger(__name__)


class MetricComparison(BaseModel):
    """The two models on one metric: ``fired`` when the promotion's gate judged the new champion
    on it (the monitor's alert fired on it); ``tolerance`` how much worse, in the metric's units,
    the judged model may be before it is ``worse`` (and ``tolerance_from`` the setting it comes
    from). ``not_judged``: a metric the watch cannot compute on logged predictions."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    metric: str
    fired: bool
    tolerance: float
    tolerance_from: str
    values: dict[str, float] | None
    difference: float | None
    interval: list[float] | None
    verdict: MetricVerdict
    why: str


class PairedComparison(BaseModel):
    """Two models' quality on the same labeled rows: ``versions`` maps each role to its version,
    the first role being the one judged (``champion`` against ``previous``, ``challenger``
    against ``champion``), ``values`` their metric on those rows.

    ``difference`` and ``interval`` are (judged - other) in the metric's good direction, so a
    negative value means the judged model is worse whatever the metric; ``why`` says how the
    verdict was reached. ``metric`` and its figures are ``monitoring.quality.metric``'s, as the
    served-quality chart plots them; ``metrics`` are every metric the verdict was reached on (that
    one alone, unless ``alert_metrics``, the metrics the promotion's gate judged it on, are set).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    versions: dict[str, str]
    rows: int
    metric: str
    values: dict[str, float] | None
    difference: float | None
    interval: list[float] | None
    confidence: float
    verdict: Verdict
    why: str
    alert_metrics: list[str] = []
    metrics: list[MetricComparison] = []


@dataclass(frozen=True)
class Side:
    """One model of a comparison: its role, its version and the columns holding its outputs."""

    role: str
    version: str
    columns: ModelColumns


def watched_promotion(settings: Settings, pipeline: str, champion_version: str) -> ledger.LedgerEntry | None:
    """The promotion that made ``champion_version`` champion, if it is the alias's last move and
    replaced an earlier champion; None when there is nothing to watch."""
    moves = ledger.entries(settings, pipeline)
    last = moves[-1] if moves else None
    if last is None or last.action != "promotion" or last.to_version != champion_version:
        return None
    return last if last.from_version else None


def promoted_on(settings: Settings, promotion: ledger.LedgerEntry) -> list[str]:
    """The metrics the promotion's gate judged the new champion on (:func:`gate_judged_on`, read on
    the training run the ledger names)."""
    return gate_judged_on(settings, promotion.pipeline, promotion.to_version, promotion.mlflow_run_id)


def gate_judged_on(settings: Settings, pipeline: str, version: str, run_id: str | None) -> list[str]:
    """The metrics ``version``'s gate judged it on: its decision's ``alert_metrics``, read from
    ``gate/decision.json`` on its training run ``run_id``. Empty, and so compared as any version,
    when the gate judged it like any run, when no training run or decision is recorded (a move
    forced through the ledger, a version registered by hand), and when the decision is not one this
    release reads (logged). MLflow out of reach fails the monitor run, to be retried: judged on the
    wrong metrics, a fix would be rolled back."""
    import tempfile
    from pathlib import Path

    if not run_id:
        return []
    mlflow_client = registry.client(settings)
    folder = DECISION_ARTIFACT.rsplit("/", 1)[0]
    if DECISION_ARTIFACT not in {found.path for found in mlflow_client.list_artifacts(run_id, folder)}:
        return []
    with tempfile.TemporaryDirectory() as tmp:
        logged = Path(mlflow_client.download_artifacts(run_id, DECISION_ARTIFACT, tmp)).read_text()
    try:
        return GateDecision.model_validate_json(logged).alert_metrics
    except ValidationError as exc:
        log.warning(
            "%s: v%s's gate decision (run %s) is not one this release reads, so it is compared on"
            " monitoring.quality.metric alone: %s",
            pipeline,
            version,
            run_id,
            exc,
        )
        return []


def compare(
    spec: PipelineSpec,
    labeled: pd.DataFrame,
    champion: str,
    previous: str,
    alert_metrics: Sequence[str] = (),
) -> PairedComparison:
    """The champion against the previous champion on the labeled rows it served and the previous
    one shadow-scored: ``rollback`` when significantly worse, ``hold`` otherwise. ``alert_metrics``
    are the metrics its promotion's gate judged it on (:func:`promoted_on`): it is then judged
    on them, and on ``monitoring.quality.metric`` with ``gates.alert_metrics.max_regression``."""
    judged = Side(role="champion", version=champion, columns=SERVED)
    other = Side(role="previous", version=previous, columns=PREVIOUS)
    verdicts: dict[str, Verdict] = {"worse": "rollback", "better": "hold", "no_difference": "hold"}
    return _paired(spec, labeled, judged, other, verdicts, alert_metrics, "the gate that promoted it")


def compare_challenger(
    spec: PipelineSpec,
    labeled: pd.DataFrame,
    champion: str,
    challenger: str,
    alert_metrics: Sequence[str] = (),
) -> PairedComparison:
    """The challenger against the champion on the labeled rows the champion served and the
    challenger shadow-scored: ``better``, ``worse`` or ``no_difference``. ``alert_metrics`` are the
    metrics the challenger's own gate judged it on (:func:`gate_judged_on`): it is then compared on
    them as a promotion so judged is watched, so that its reviewer does not read "worse" of the fix
    its gate passed for deciding better while ranking a little worse."""
    judged = Side(role="challenger", version=challenger, columns=CHALLENGER)
    other = Side(role="champion", version=champion, columns=SERVED)
    return _paired(spec, labeled, judged, other, {}, alert_metrics, "its gate")


def paired_rows(labeled: pd.DataFrame, *sides: Side) -> pd.DataFrame:
    """The labeled rows every one of ``sides`` scored, as its version."""
    if labeled.empty or any(side.columns.version not in labeled.columns for side in sides):
        return labeled.iloc[:0]
    keep = labeled[SERVED.version].notna()
    for side in sides:
        scored = labeled[side.columns.score].notna()
        keep &= scored & (labeled[side.columns.version].astype(str) == side.version)
    return labeled[keep]


@dataclass(frozen=True)
class Judged:
    """One metric a comparison judges on: whether it fired, and how much worse the judged model
    may be on it (``tolerance``, from the setting ``tolerance_from``) before it is worse."""

    metric: str
    fired: bool
    tolerance: float
    tolerance_from: str


def judged_on(spec: PipelineSpec, alert_metrics: Sequence[str]) -> list[Judged]:
    """The metrics a comparison judges on: ``monitoring.quality.metric`` at ``monitoring.watch.margin``
    for a promotion judged like any run; after one judged on an alert's metrics, each of them at
    the margin, then the quality metric (unless it fired) only beyond
    ``gates.alert_metrics.max_regression``, as its gate relaxed the relative rules on it."""
    usual = Judged(
        spec.monitoring.quality.metric, False, spec.monitoring.watch.margin, "monitoring.watch.margin"
    )
    if not alert_metrics:
        return [usual]
    fired = [Judged(m, True, usual.tolerance, usual.tolerance_from) for m in dict.fromkeys(alert_metrics)]
    if usual.metric in alert_metrics:
        return fired
    regression = spec.gates.alert_metrics.max_regression
    relaxed = Judged(usual.metric, False, regression, "gates.alert_metrics.max_regression")
    return [*fired, relaxed if regression > usual.tolerance else usual]


def _paired(
    spec: PipelineSpec,
    labeled: pd.DataFrame,
    judged: Side,
    other: Side,
    verdicts: dict[str, Verdict],
    alert_metrics: Sequence[str],
    gate: str,
) -> PairedComparison:
    """Bootstrap (judged - other) on the rows both scored, on each metric it judges on
    (:func:`judged_on`); ``verdicts`` renames the outcomes ``worse``, ``better`` and
    ``no_difference`` for the comparison's purpose; ``gate`` names, in the why, the gate whose
    ``alert_metrics`` it judges on."""
    watch = spec.monitoring.watch
    rows = paired_rows(labeled, judged, other)
    names = f"v{judged.version} ({judged.role}) and v{other.version} ({other.role})"
    plan = judged_on(spec, alert_metrics)
    too_few = (
        f"undecided: {len(rows):,} labeled rows scored by both {names}"
        f" < monitoring.watch.min_labels {watch.min_labels:,}"
        if len(rows) < watch.min_labels
        else None
    )
    metrics = [_metric(spec, rows, judged, other, item, too_few) for item in plan]
    outcome = _outcome(metrics)
    usual = next(m for m in metrics if m.metric == spec.monitoring.quality.metric)
    why = too_few or (metrics[0].why if len(plan) == 1 else _why(outcome, metrics, gate))
    return PairedComparison(
        versions={judged.role: judged.version, other.role: other.version},
        rows=len(rows),
        metric=usual.metric,
        values=usual.values,
        difference=usual.difference,
        interval=usual.interval,
        confidence=watch.confidence,
        verdict=verdicts.get(outcome, outcome),
        why=why,
        alert_metrics=list(alert_metrics),
        metrics=metrics,
    )


def _unjudged(item: Judged, why: str, verdict: MetricVerdict = "undecided") -> MetricComparison:
    """A metric without figures: too few rows, undefined on them, or not one of the task's."""
    return MetricComparison(
        metric=item.metric,
        fired=item.fired,
        tolerance=item.tolerance,
        tolerance_from=item.tolerance_from,
        values=None,
        difference=None,
        interval=None,
        verdict=verdict,
        why=why,
    )


def _metric(
    spec: PipelineSpec, rows: pd.DataFrame, judged: Side, other: Side, item: Judged, too_few: str | None
) -> MetricComparison:
    """(judged - other) on one metric: ``worse`` when its interval lies wholly below
    ``-tolerance``, ``better`` wholly above ``+tolerance``; ``undecided`` with ``too_few`` rows
    (the sentence why) and where the metric is undefined on them."""
    watch, metric = spec.monitoring.watch, item.metric
    if metric not in metric_names(spec.task):  # say, a regression metric fired for a classifier
        return _unjudged(item, f"not judged: the watch computes no {spec.task} metric {metric}", "not_judged")
    if too_few is not None:
        return _unjudged(item, too_few)
    dtype = rows[SERVED.prediction].dtype
    outputs = [
        Predictions.from_frame(rows, side.columns.prediction, side.columns.score, dtype)
        for side in (judged, other)
    ]
    rule = BootstrapRule(
        metric=metric,
        margin=-item.tolerance,
        confidence=watch.confidence,
        resamples=watch.resamples,
        seed=watch.seed,
    )
    verdict = paired_bootstrap(rule, spec.task, rows[spec.columns.target].to_numpy(), *outputs)
    extra: dict[str, Any] = verdict.model_extra or {}
    if "interval" not in extra:  # the metric is undefined on these rows or on too many resamples
        return _unjudged(item, f"undecided: {verdict.note.removeprefix('failed: ')}")
    low, high = extra["interval"]
    tolerance = item.tolerance
    outcome: Outcome = "worse" if high < -tolerance else "better" if low > tolerance else "no_difference"
    measured = (
        f"{metric} of v{judged.version} ({judged.role}) {extra['candidate']:.4f} against"
        f" v{other.version} ({other.role}) {extra['champion']:.4f} on the same {len(rows):,} labeled rows:"
        f" difference {extra['estimate']:+.4f}, {watch.confidence:.0%} interval [{low:+.4f}, {high:+.4f}]"
    )
    below, above = f"{0 - tolerance:+.4f}", f"{tolerance:+.4f}"  # 0 - 0.0 prints +0.0000
    why = {
        "worse": f"worse: {measured}, wholly below {below} (minus {item.tolerance_from})",
        "better": f"better: {measured}, wholly above {above} ({item.tolerance_from})",
        "no_difference": f"no significant difference: {measured},"
        f" neither wholly below {below} nor above {above}",
    }[outcome]
    return MetricComparison(
        metric=metric,
        fired=item.fired,
        tolerance=tolerance,
        tolerance_from=item.tolerance_from,
        values={judged.role: extra["candidate"], other.role: extra["champion"]},
        difference=extra["estimate"],
        interval=[low, high],
        verdict=outcome,
        why=why,
    )


def _outcome(metrics: list[MetricComparison]) -> Outcome:
    """Worse when worse on any metric judged; undecided when none was decided; better when better
    on every metric decided; otherwise no difference."""
    decided = [m.verdict for m in metrics if m.verdict not in ("undecided", "not_judged")]
    if "worse" in decided:
        return "worse"
    if not decided:
        return "undecided"
    return "better" if all(v == "better" for v in decided) else "no_difference"


def _why(outcome: Outcome, metrics: list[MetricComparison], gate: str) -> str:
    """The verdict of a comparison on several metrics: which decided it, on what it was judged
    (as ``gate`` judged the model) and why (each metric's own reason)."""
    fired = ", ".join(m.metric for m in metrics if m.fired)
    relaxed = [f"{m.metric} only beyond {m.tolerance_from} {m.tolerance:g}" for m in metrics if not m.fired]
    worse = ", ".join(m.metric for m in metrics if m.verdict == "worse")
    head = {
        "worse": f"worse on {worse}",
        "better": "better",
        "no_difference": "no significant regression",
        "undecided": "undecided",
    }[outcome]
    basis = "; ".join([f"the alert's {fired}", *relaxed])
    reasons = "; ".join(m.why for m in metrics)
    return f"{head}, judged as {gate} judged it (on {basis}): {reasons}"
