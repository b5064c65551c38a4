"""The gate's rules beyond point thresholds, gathered for one registered candidate.

The bootstrap and slice rules read both models' per-row scores on the shared holdout, which the
evaluate step stored (the bootstrap on the holdout the relative rules judge, slices on the frozen
one); validity and latency load the registered version as a user would.
Each rule returns verdicts of one shape (:class:`~ctloop.gating.decision.GateVerdict`); this
module only feeds them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ctloop.gating.decision import (
    GateVerdict,
    LatencyMeasurement,
    RelativeComparison,
    RuleChecks,
    SliceResult,
)
from ctloop.io.readers import from_parquet_bytes
from ctloop.io.storage import home_storage
from ctloop.registry import mlflow_store as registry
from ctloop.registry import tags

if TYPE_CHECKING:
    import pandas as pd

    from ctloop.evaluation.weighted_metrics import Predictions
    from ctloop.settings import Settings
    from ctloop.spec.models import PipelineSpec
    from ctloop.training.contracts import Evaluation


def _holdout_predictions(settings: Settings, predictions_key: str) -> tuple[Predictions, Predictions | None]:
    """Both models' per-row scores on a holdout (with every class's probability for a multiclass
    model), as the evaluate step stored them."""
    from ctloop.evaluation.weighted_metrics import Predictions

    rows = _read(settings, predictions_key)
    candidate = Predictions.from_frame(rows, "candidate_prediction", "candidate_score")
    champion = None
    if "champion_prediction" in rows:
        champion = Predictions.from_frame(rows, "champion_prediction", "champion_score")
    return candidate, champion


def _read(settings: Settings, key: str) -> pd.DataFrame:
    return from_parquet_bytes(home_storage(settings).read_bytes(key))


def _bootstrap_rows(evaluation: Evaluation, relative: RelativeComparison) -> tuple[str, str]:
    """(holdout key, predictions key) of the holdout the relative comparison is on."""
    if relative.on == "recent_holdout":
        if evaluation.recent is None:
            raise ValueError("a comparison on the recent holdout needs the recent holdout's scores")
        return evaluation.recent.holdout.key, evaluation.recent.predictions_key
    return evaluation.holdout_key, evaluation.predictions_key


def rule_checks(
    spec: PipelineSpec, settings: Settings, evaluation: Evaluation, version: str, relative: RelativeComparison
) -> RuleChecks:
    """Verdicts of the bootstrap, slice, validity and latency rules, with their evidence; the
    bootstrap compares on the holdout of ``relative`` (and on the metrics of the alert that
    started the run, ``evaluation.alert_metrics``: ctloop.gating.alert_metrics)."""
    from ctloop.gating.alert_metrics import bootstrap_verdicts
    from ctloop.gating.latency import measure_latency
    from ctloop.gating.model_validity import check_validity
    from ctloop.gating.slices import slice_report
    from ctloop.registry.model_trust import policy
    from ctloop.training.estimator import features

    gates = spec.gates
    verdicts: list[GateVerdict] = []
    slices: list[SliceResult] | None = None
    slice_metric: str | None = None
    latency: LatencyMeasurement | None = None
    holdout: Any = None
    if gates.bootstrap or gates.slices or gates.latency:  # read once for every rule that needs it
        holdout = _read(settings, evaluation.holdout_key)
    if gates.bootstrap:
        holdout_key, predictions_key = _bootstrap_rows(evaluation, relative)
        rows = holdout if holdout_key == evaluation.holdout_key else _read(settings, holdout_key)
        candidate, champion = _holdout_predictions(settings, predictions_key)
        y = rows[spec.columns.target].to_numpy()
        verdicts += bootstrap_verdicts(gates, spec.task, evaluation.alert_metrics, y, candidate, champion)
    if gates.slices:
        candidate, champion = _holdout_predictions(settings, evaluation.predictions_key)
        y = holdout[spec.columns.target].to_numpy()
        report = slice_report(gates.slices, gates.slice_rules, spec.task, holdout, y, candidate, champion)
        verdicts += report.verdicts
        slices = report.slices
        slice_metric = gates.slice_rules.metric if gates.slice_rules else spec.primary_metric
    model_uri = f"models:/{spec.name}/{version}"
    sha256 = registry.client(settings).get_model_version(spec.name, version).tags.get(tags.MODEL_SHA256)
    validity, model = check_validity(model_uri, spec.columns.features, settings, sha256, policy(spec))
    verdicts += validity
    if gates.latency and model is not None:
        measured = measure_latency(model, features(holdout, spec), gates.latency)
        verdicts += measured.verdicts
        latency = measured.measurement()
    return RuleChecks(verdicts=verdicts, slices=slices, slice_metric=slice_metric, latency=latency)
