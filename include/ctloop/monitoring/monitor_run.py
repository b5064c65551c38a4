"""One monitor run: recent production data against the champion's own training snapshot.

Drift and quality are decided by ctloop.monitoring.drift_stats on the full data; people read an
Evidently report built from a sample of the same frames (ctloop.monitoring.drift_report). Both
land under the run's storage prefix and in MLflow, the decision goes into the pipeline's monitor
history, and a confirmed alert opens (or joins) a retrain request. While the champion is the
version promoted most recently, its served quality is compared with the previous champion's on
the same rows (ctloop.monitoring.champion_watch); a significant regression rolls it back through
the ledger, with the monitor as the user, and asks for a retrain. A challenger waiting for
approval is compared with the champion the same way, for its reviewer; that decides nothing.
"""

from __future__ import annotations

import hashlib
import json
import logging
from typing import TYPE_CHECKING, Any, TypedDict

from ctloop import clock, notifications
from ctloop.data.snapshots import load_snapshot, snapshot_key
from ctloop.errors import RollbackRefused
from ctloop.evaluation.model_scores import logged_metrics
from ctloop.evaluation.weighted_metrics import Predictions
from ctloop.io.readers import from_parquet_bytes, to_parquet_bytes
from ctloop.io.storage import home_storage
from ctloop.monitoring import retrain_requests
from ctloop.monitoring.champion_watch import PairedComparison, compare, compare_challenger, watched_promotion
from ctloop.monitoring.drift_stats import column_drift, drift_share
from ctloop.monitoring.retrain_policy import ATTACH, HOLD, RETRAIN, ROLLBACK, Evidence, decide
from ctloop.registry import ledger, model_trust, tags
from ctloop.registry import mlflow_store as registry
from ctloop.registry.rollback import rollback
from ctloop.scoring.batches import predict
from ctloop.scoring.prediction_log import LABELED, PREDICTIONS, SERVED, batch_ids, read_partitions

if TYPE_CHECKING:
    import pandas as pd
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

    from ctloop.evaluation.metric_catalog import TaskKind
    from ctloop.io.storage import Storage
    from ctloop.settings import Settings
    from ctloop.spec.models import PipelineSpec
    from ctloop.training.steps import RunContext

log = logging.getLogger(__name__)

MONITOR_USER = ledger.MONITOR  # the ledger's "by" of a rollback the monitor makes


class Window(TypedDict):
    """The monitored window: its batch ids, their logged rows (with labels where they arrived),
    the champion's labeled rows in it, every labeled row the champion served (its watch compares
    on all of them), and a key that changes when the window's rows or labels do."""

    batches: list[str]
    current: pd.DataFrame
    labeled: pd.DataFrame
    served: pd.DataFrame
    window_key: str


def history_prefix(pipeline: str) -> str:
    return f"monitor/{pipeline}/history"


def reference_frame(spec: PipelineSpec, settings: Settings, champion: ModelVersion) -> pd.DataFrame:
    """The champion's training snapshot with the champion's predictions on it, cached per version."""
    storage = home_storage(settings)
    key = f"monitor/{spec.name}/reference/v{champion.version}.parquet"
    if storage.exists(key):
        return from_parquet_bytes(storage.read_bytes(key))
    snapshot = load_snapshot(snapshot_key(spec.name, champion.tags[tags.DATA_SHA256]), settings)
    model = registry.load_version(settings, champion, model_trust.policy(spec))
    reference = snapshot[[*spec.columns.features, spec.columns.target]].copy()
    reference["prediction"], reference["score"] = predict(model, snapshot, spec)
    storage.write_bytes(key, to_parquet_bytes(reference))
    return reference


def current_window(spec: PipelineSpec, settings: Settings, champion_version: str) -> Window:
    """The last ``window_batches`` scored batches, and the latest labeled rows the champion scored."""
    n = spec.monitoring.window_batches
    window = batch_ids(PREDICTIONS, spec.name, settings)[-n:]
    current = read_partitions(PREDICTIONS, spec.name, window, settings)
    labeled_ids = batch_ids(LABELED, spec.name, settings)
    served = read_partitions(LABELED, spec.name, labeled_ids, settings)
    labeled = served
    if not served.empty:
        served = served[served["model_version"].astype(str) == champion_version]
        recent = sorted(served["batch_id"].unique())[-n:]
        labeled = served[served["batch_id"].isin(recent)]
    target = spec.columns.target
    if not labeled.empty and not current.empty:
        current = current.merge(labeled[[*spec.columns.id, target]], on=spec.columns.id, how="left")
    key_parts = {
        "batches": window,
        "labeled": labeled.groupby("batch_id").size().to_dict() if not labeled.empty else {},
    }
    window_key = hashlib.sha256(json.dumps(key_parts, sort_keys=True).encode()).hexdigest()[:16]
    return {
        "batches": window,
        "current": current,
        "labeled": labeled,
        "served": served,
        "window_key": window_key,
    }


def quality(spec: PipelineSpec, labeled: pd.DataFrame) -> dict[str, float] | None:
    """Model quality on the labeled rows, from the logged predictions: the metrics defined there."""
    return None if labeled.empty else _quality(spec, labeled)[0]


def _quality(spec: PipelineSpec, labeled: pd.DataFrame) -> tuple[dict[str, float], dict[str, str]]:
    """The champion's metrics on labeled rows it served, and why each one left out is undefined
    (a multiclass model's ranking metrics read every class's logged probability)."""
    y = labeled[spec.columns.target].to_numpy()
    return logged_metrics(spec, y, Predictions.from_frame(labeled, SERVED.prediction, SERVED.score))


def prediction_columns(task: TaskKind) -> tuple[list[str], list[str]]:
    """The model's output columns tested for drift, (numeric, categorical): a classifier's score
    and predicted class (binary or multiclass, labels of any type); a regressor's predicted value,
    as a number (its score is the same value)."""
    if task == "regression":
        return [SERVED.prediction], []
    return [SERVED.score], [SERVED.prediction]


def run_monitor(spec: PipelineSpec, settings: Settings, ctx: RunContext) -> dict[str, Any]:
    """Measure, report, decide and record; returns the summary (small enough for XCom)."""
    mlflow_client = registry.client(settings)
    champion = registry.get_champion(mlflow_client, spec.name)
    if champion is None:  # a cron tick before the first training: nothing to compare, not an error
        why = f"no champion yet; nothing to monitor until {spec.name}__train promotes one"
        return {
            "pipeline": spec.name,
            "run_key": ctx.run_key,
            "decision": {"action": HOLD, "alert": False, "why": why},
        }
    version = str(champion.version)
    window = current_window(spec, settings, version)
    storage = home_storage(settings)
    summary: dict[str, Any] = {
        "pipeline": spec.name,
        "run_key": ctx.run_key,
        "at": clock.now().isoformat(timespec="seconds"),
        "champion_version": version,
        "window": {"batches": window["batches"], "rows": len(window["current"])},
    }
    if window["current"].empty:
        summary["decision"] = {"action": HOLD, "alert": False, "why": "no batch has been scored yet"}
        return summary
    reference = reference_frame(spec, settings, champion)
    summary |= _measure(spec, reference, window, mlflow_client, champion)
    summary |= _write_report(spec, settings, ctx, reference, window)
    comparison = _watch(spec, settings, version, window)
    if comparison is not None:
        summary["champion_vs_previous"] = comparison.model_dump()
    challenger = _challenger(spec, mlflow_client, version, window)
    if challenger is not None:
        summary["challenger_vs_champion"] = challenger.model_dump()
    entries = _entries(storage, spec.name)
    history = _history(entries, version)
    summary["recent_decisions"] = _recent(spec, entries, version)
    requests = retrain_requests.all_requests(storage, spec.name)
    evidence = Evidence(
        window_key=window["window_key"],
        current_rows=len(window["current"]),
        drift_share=summary["drift"]["share"],
        drifted_features=[c["column"] for c in summary["drift"]["drifted_columns"]],
        labeled_rows=summary["quality"]["labeled_rows"],
        quality=summary["quality"]["value"],
        champion_quality=summary["quality"]["champion_value"],
        quality_why=summary["quality"]["undefined"].get(summary["quality"]["metric"]),
        regression=comparison.why if comparison is not None and comparison.verdict == ROLLBACK else None,
    )
    decision = decide(spec, evidence, history, requests, clock.now())
    if decision["action"] == ROLLBACK and comparison is not None:
        decision |= _roll_back(spec, settings, ctx, comparison)
    if decision["action"] in (RETRAIN, ATTACH) or decision.get("retrain"):
        outcome, request = retrain_requests.request_retrain(settings, spec.name, _reason(summary, decision))
        decision |= {"request": outcome, "request_id": request["id"]}
    summary_key = f"{ctx.storage_prefix}/summary.json"
    summary |= {"decision": decision, "summary_uri": storage.uri(summary_key)}
    storage.write_bytes(summary_key, json.dumps(summary, indent=2, default=str).encode())
    _record(storage, spec.name, summary)
    _log_to_mlflow(spec, settings, mlflow_client, ctx, summary)
    return summary


def _watch(spec: PipelineSpec, settings: Settings, version: str, window: Window) -> PairedComparison | None:
    """The champion against the champion it replaced, while it is the one promoted most recently."""
    promotion = watched_promotion(settings, spec.name, version) if spec.monitoring.watch.enabled else None
    if promotion is None or promotion.from_version is None:
        return None
    return compare(spec, window["served"], version, promotion.from_version)


def _challenger(
    spec: PipelineSpec, mlflow_client: MlflowClient, version: str, window: Window
) -> PairedComparison | None:
    """The candidate waiting for approval against the champion, on the rows both scored."""
    challenger = registry.get_alias(mlflow_client, spec.name, registry.CHALLENGER)
    if challenger is None or str(challenger.version) == version:
        return None
    return compare_challenger(spec, window["served"], version, str(challenger.version))


def _roll_back(
    spec: PipelineSpec, settings: Settings, ctx: RunContext, comparison: PairedComparison
) -> dict[str, Any]:
    """Move ``champion`` back to the previous champion through the ledger and notify; a refused
    move (the champion moved since, say) is recorded as a hold, without a retrain."""
    versions = comparison.versions
    try:
        outcome = rollback(
            settings,
            spec.name,
            target=versions["previous"],
            reason=f"monitor: {comparison.why}",
            user=MONITOR_USER,
            run_key=ctx.run_key,
        )
    except RollbackRefused as exc:
        log.warning("%s: the monitor's rollback was refused: %s", spec.name, exc)
        why = f"{comparison.why}; rollback refused: {exc}"
        return {"action": HOLD, "retrain": False, "why": why, "rollback": {"moved": False, "why": str(exc)}}
    fields = {
        "version": outcome.from_version,
        "to": outcome.to,
        "action": outcome.action,
        "by": MONITOR_USER,
        "reason": comparison.why,
    }
    sent = notifications.emit(notifications.ROLLBACK, spec.name, spec.notifications.conn_id, fields)
    return {"rollback": {**outcome.model_dump(mode="json"), "notification": sent}}


def _measure(
    spec: PipelineSpec,
    reference: pd.DataFrame,
    window: Window,
    mlflow_client: MlflowClient,
    champion: ModelVersion,
) -> dict[str, Any]:
    current = window["current"]
    features = column_drift(reference, current, spec.columns.numeric, spec.columns.categorical)
    predictions = column_drift(reference, current, *prediction_columns(spec.task))
    metric = spec.monitoring.quality.metric
    metrics, undefined = _quality(spec, window["labeled"]) if not window["labeled"].empty else (None, {})
    # a version registered without a run has no holdout value: quality is then left undecided
    champion_metrics = mlflow_client.get_run(champion.run_id).data.metrics if champion.run_id else {}
    return {
        "reference": {"snapshot_sha256": champion.tags.get(tags.DATA_SHA256), "rows": len(reference)},
        "drift": {
            "share": drift_share(features),
            "drifted_columns": [c.as_dict() for c in features if c.drifted],
            "columns": [c.as_dict() for c in features],
        },
        "prediction_drift": [c.as_dict() for c in predictions],
        "quality": {
            "metric": metric,
            "value": (metrics or {}).get(metric),
            "champion_value": champion_metrics.get(f"holdout_{metric}"),
            "labeled_rows": len(window["labeled"]),
            "labeled_batches": sorted(window["labeled"]["batch_id"].unique().tolist())
            if not window["labeled"].empty
            else [],
            "metrics": metrics,
            "undefined": undefined,
        },
    }


def _write_report(
    spec: PipelineSpec, settings: Settings, ctx: RunContext, reference: pd.DataFrame, window: Window
) -> dict[str, Any]:
    from ctloop.monitoring.drift_report import build_report

    html, evidently_summary = build_report(
        reference,
        window["current"],
        numeric=spec.columns.numeric,
        categorical=spec.columns.categorical,
        target=spec.columns.target,
        task=spec.task,
        sample_rows=spec.monitoring.report_sample_rows,
        drift_share=spec.monitoring.drift.share,
        title=f"{spec.name} drift report, {ctx.run_id}",
    )
    uri = home_storage(settings).write_bytes(f"{ctx.storage_prefix}/report.html", html.encode())
    return {"report_uri": uri, "evidently": evidently_summary}


def _entries(storage: Storage, pipeline: str) -> list[dict[str, Any]]:
    """Every recorded decision, of every champion, oldest first."""
    return [json.loads(storage.read_bytes(k)) for k in storage.list_keys(history_prefix(pipeline))]


def _history(entries: list[dict[str, Any]], champion_version: str) -> list[dict[str, Any]]:
    """Earlier decisions made under the same champion: the windows k-of-n counts."""
    return [e for e in entries if e["champion_version"] == champion_version and e.get("new_evidence", True)]


def _recent(spec: PipelineSpec, entries: list[dict[str, Any]], champion_version: str) -> list[dict[str, Any]]:
    """The last ``retrain.k_of_n.n`` earlier decisions of any champion, oldest first, each saying whether
    it counts for k-of-n: a promotion does not erase what the monitor saw before it."""
    kept = ("at", "run_key", "champion_version", "action", "alert", "quality", "drift_share")
    return [
        {**{k: e.get(k) for k in kept}, "counts_for_k_of_n": e["champion_version"] == champion_version}
        for e in entries[-spec.retrain.k_of_n.n :]
    ]


def _record(storage: Storage, pipeline: str, summary: dict[str, Any]) -> None:
    decision = summary["decision"]
    entry = {
        "run_key": summary["run_key"],
        "at": summary["at"],
        "champion_version": summary["champion_version"],
        "window_key": decision.get("window_key"),
        "new_evidence": decision.get("new_evidence", False),
        "alert": decision["alert"],
        "action": decision["action"],
        "why": decision["why"],
        "drift_share": summary["drift"]["share"],
        "quality": summary["quality"]["value"],
        "feature_drift": [
            {k: c[k] for k in ("column", "stattest", "score", "threshold", "drifted")}
            for c in summary["drift"]["columns"]
        ],
        "batches": summary["window"]["batches"],
        "report_uri": summary["report_uri"],
        "summary_uri": summary["summary_uri"],
        "champion_vs_previous": _compact(summary.get("champion_vs_previous")),
        "challenger_vs_champion": _compact(summary.get("challenger_vs_champion")),
        "rollback": decision.get("rollback"),
    }
    stamp = summary["at"].replace(":", "").replace("-", "")
    run = summary["run_key"].rsplit("/", 1)[-1]
    safe = "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in run)
    storage.write_bytes(f"{history_prefix(pipeline)}/{stamp}_{safe}.json", json.dumps(entry).encode())


def _compact(comparison: dict[str, Any] | None) -> dict[str, Any] | None:
    """What a history row and the served-quality chart show of a paired comparison."""
    if comparison is None:
        return None
    kept = ("versions", "rows", "metric", "values", "difference", "interval", "verdict")
    return {k: comparison[k] for k in kept}


def _reason(summary: dict[str, Any], decision: dict[str, Any]) -> dict[str, Any]:
    return {
        "kind": "monitor",
        "text": "; ".join(decision["triggers"]),
        "by": summary["run_key"],
        "report_uri": summary["report_uri"],
        "drift_share": summary["drift"]["share"],
        "quality": summary["quality"]["value"],
    }


def _log_to_mlflow(
    spec: PipelineSpec,
    settings: Settings,
    mlflow_client: MlflowClient,
    ctx: RunContext,
    summary: dict[str, Any],
) -> None:
    """One MLflow run per monitor run, in the ``<pipeline>-monitoring`` experiment."""
    experiment_id = registry.ensure_experiment(
        mlflow_client, f"{spec.name}-monitoring", settings.mlflow_artifact_root
    )
    decision = summary["decision"]
    run_id = registry.ensure_run(
        mlflow_client,
        experiment_id,
        ctx.run_key,
        {
            tags.PIPELINE: spec.name,
            tags.CHAMPION_VERSION: summary["champion_version"],
            tags.DECISION: decision["action"],
            tags.WHY: decision["why"][: tags.TAG_VALUE_CHARS],
            tags.REPORT_URI: summary["report_uri"],
        },
    )
    figures = {
        "drift_share": summary["drift"]["share"],
        "drifted_columns": len(summary["drift"]["drifted_columns"]),
        "current_rows": summary["window"]["rows"],
        "labeled_rows": summary["quality"]["labeled_rows"],
    }
    if summary["quality"]["value"] is not None:
        figures[f"quality_{summary['quality']['metric']}"] = summary["quality"]["value"]
    for key, figure in (("champion_vs_previous", "vs_previous"), ("challenger_vs_champion", "challenger_vs")):
        compared = summary.get(key) or {}
        if compared.get("difference") is not None:
            figures[f"{figure}_difference"] = compared["difference"]
    for key, value in figures.items():
        mlflow_client.log_metric(run_id, key, float(value))
    mlflow_client.log_dict(run_id, summary, "monitor/summary.json")
    html = home_storage(settings).read_bytes(f"{ctx.storage_prefix}/report.html").decode()
    mlflow_client.log_text(run_id, html, "monitor/report.html")
    mlflow_client.set_terminated(run_id, "FINISHED")
