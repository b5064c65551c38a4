"""The steps of a training run, as plain functions of small JSON-able inputs and outputs.

The train DAG calls one step per task; a benchmark or a notebook can call them in sequence in
one process. Each step is safe to retry: it finds what an earlier attempt of the same run made.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ctloop.data import holdout as holdouts
from ctloop.data.snapshots import load_snapshot, take_snapshot
from ctloop.evaluation.model_scores import evaluate
from ctloop.gating.rules import describe, evaluate_gates
from ctloop.io.readers import from_parquet_bytes, to_parquet_bytes
from ctloop.io.storage import home_storage
from ctloop.monitoring import retrain_requests
from ctloop.registry import mlflow_store as registry
from ctloop.registry.promotion import primary_comparison, promote
from ctloop.registry.provenance import code_version
from ctloop.training.estimator import features, fit
from ctloop.validation.champion_suite import SUITE_TAG, store_suite
from ctloop.validation.data_validation import raise_if_failed, render_html, summary, validate_frame

if TYPE_CHECKING:
    from mlflow.entities.model_registry import ModelVersion

    from ctloop.settings import Settings
    from ctloop.spec.models import PipelineSpec

log = logging.getLogger(__name__)
PREDICTION_COLUMNS = ("candidate_prediction", "candidate_score", "champion_prediction", "champion_score")


@dataclass(frozen=True)
class RunContext:
    """Which Airflow run this is and why it started."""

    dag_id: str
    run_id: str
    reason: str
    note: str = ""
    trigger: str = "manual"
    alert_id: str = ""

    @property
    def run_key(self) -> str:
        return f"{self.dag_id}/{self.run_id}"

    @property
    def storage_prefix(self) -> str:
        return f"runs/{self.dag_id}/{re.sub(r'[^A-Za-z0-9._-]', '_', self.run_id)}"


def start(spec: PipelineSpec, settings: Settings, ctx: RunContext) -> dict:
    """Claim the retrain request this run serves, snapshot the data and open (or find) the run's
    MLflow run with its provenance, including every reason and report that asked for it."""
    request = retrain_requests.claim(
        settings,
        spec.name,
        ctx.run_key,
        {"kind": ctx.trigger, "text": ctx.reason, "by": ctx.run_key, "alert_id": ctx.alert_id},
    )
    reasons = [r for r in request["reasons"] if r["kind"] != "asset" or len(request["reasons"]) == 1]
    provenance = {
        "ctloop.reason": "; ".join(r["text"] for r in reasons)[:5000],
        "ctloop.trigger": ctx.trigger,
        "ctloop.alert_id": ctx.alert_id,
        "ctloop.request_id": request["id"],
        "ctloop.trigger_reports": " ".join(r["report_uri"] for r in reasons if r.get("report_uri"))[:5000],
    }
    snap = take_snapshot(spec, settings)
    mlflow_client = registry.client(settings)
    experiment_id = registry.ensure_experiment(mlflow_client, spec.name, settings.mlflow_artifact_root)
    run_id = registry.ensure_run(
        mlflow_client,
        experiment_id,
        ctx.run_key,
        tags={
            "ctloop.pipeline": spec.name,
            "ctloop.dag_run_id": ctx.run_id,
            **provenance,
            "ctloop.note": ctx.note,
            "ctloop.code_version": code_version(),
            "ctloop.data_sha256": snap["sha256"],
            "ctloop.data_uri": snap["uri"],
            "ctloop.data_window": spec.retrain.data.window
            + (f":{spec.retrain.data.last}" if spec.retrain.data.last else ""),
            "ctloop.gate_mode": spec.gates.mode,
        },
    )
    log.info(
        "Snapshot %s (%d rows, sha256 %s); MLflow run %s", snap["uri"], snap["rows"], snap["sha256"], run_id
    )
    return {
        "mlflow_run_id": run_id,
        "snapshot": {k: v for k, v in snap.items() if k != "columns"},
        "provenance": provenance,
    }


def validate(spec: PipelineSpec, settings: Settings, ctx: RunContext, started: dict) -> dict:
    """Validate the snapshot; results are stored and logged before a failure is raised."""
    frame = load_snapshot(started["snapshot"]["key"], settings)
    report = validate_frame(frame, spec, settings.expectations_dir)
    storage = home_storage(settings)
    title = f"{spec.name} data validation, {ctx.run_id}"
    result_uri = storage.write_bytes(
        f"{ctx.storage_prefix}/validation.json", json.dumps(report, default=str).encode()
    )
    html_uri = storage.write_bytes(
        f"{ctx.storage_prefix}/validation.html", render_html(report, title).encode()
    )
    mlflow_client = registry.client(settings)
    run_id = started["mlflow_run_id"]
    mlflow_client.log_dict(run_id, report, "validation/result.json")
    mlflow_client.log_text(run_id, render_html(report, title), "validation/summary.html")
    mlflow_client.set_tag(
        run_id, "ctloop.validation.data_validation", "passed" if report["success"] else "failed"
    )
    suite_key = store_suite(spec, settings)
    mlflow_client.set_tag(run_id, SUITE_TAG, suite_key)
    outcome = {**summary(report), "result_uri": result_uri, "html_uri": html_uri, "suite_key": suite_key}
    if not report["success"]:
        mlflow_client.set_terminated(run_id, "FAILED")
        raise_if_failed(report, f"{spec.data.uri} (snapshot {started['snapshot']['sha256'][:12]})")
    return outcome


def train(spec: PipelineSpec, settings: Settings, ctx: RunContext, started: dict) -> dict:
    """Cut the frozen holdout, fit the spec's model on the rest, and log it to MLflow."""
    import mlflow

    frame = load_snapshot(started["snapshot"]["key"], settings)
    training, holdout = holdouts.split(frame, spec)
    holdout_digest = holdouts.digest(holdout)
    storage = home_storage(settings)
    holdout_key = f"holdouts/{spec.name}/{holdout_digest}.parquet"
    if not storage.exists(holdout_key):
        storage.write_bytes(holdout_key, to_parquet_bytes(holdout))
    model = fit(spec, training)
    run_id = started["mlflow_run_id"]
    mlflow_client = registry.client(settings)
    params = {f"estimator.{k}": v for k, v in spec.estimator.params.items()}
    params |= {
        "estimator": spec.estimator.class_path,
        "holdout.strategy": spec.holdout.strategy,
        "holdout.fraction": spec.holdout.fraction,
        "holdout.seed": spec.holdout.seed,
        "train_rows": len(training),
        "holdout_rows": len(holdout),
    }
    with mlflow.start_run(run_id=run_id):
        mlflow.log_params({k: str(v) for k, v in params.items()})
    logged = registry.log_model(model, features(training.head(200), spec), run_id)
    mlflow_client.set_tag(run_id, "ctloop.holdout_digest", holdout_digest)
    mlflow_client.set_tag(run_id, registry.MODEL_SHA_TAG, logged["sha256"])
    return {
        "mlflow_run_id": run_id,
        "model": logged,
        "holdout": {"key": holdout_key, "digest": holdout_digest, "rows": len(holdout)},
        "train_rows": len(training),
    }


def _champion_metrics(spec: PipelineSpec, settings: Settings, champion: ModelVersion, holdout) -> dict:
    model = registry.load_model(settings, champion.source, champion.tags.get(registry.MODEL_SHA_TAG))
    return evaluate(model, holdout, spec)


def evaluate_models(spec: PipelineSpec, settings: Settings, ctx: RunContext, trained: dict) -> dict:
    """Score the candidate and the current champion on the same frozen holdout, and keep both
    models' per-row predictions for the gate's bootstrap and slice rules."""
    import pandas as pd

    from ctloop.scoring.batches import predict

    storage = home_storage(settings)
    holdout = from_parquet_bytes(storage.read_bytes(trained["holdout"]["key"]))
    candidate_model = registry.load_model(settings, trained["model"]["model_uri"], trained["model"]["sha256"])
    candidate = evaluate(candidate_model, holdout, spec)
    rows = dict(zip(PREDICTION_COLUMNS[:2], predict(candidate_model, holdout, spec), strict=True))
    mlflow_client = registry.client(settings)
    champion_version = registry.get_champion(mlflow_client, spec.name)
    champion = None
    if champion_version:
        champion_model = registry.load_model(
            settings, champion_version.source, champion_version.tags.get(registry.MODEL_SHA_TAG)
        )
        champion = evaluate(champion_model, holdout, spec)
        rows |= dict(zip(PREDICTION_COLUMNS[2:], predict(champion_model, holdout, spec), strict=True))
    predictions_key = f"{ctx.storage_prefix}/holdout_predictions.parquet"
    storage.write_bytes(predictions_key, to_parquet_bytes(pd.DataFrame(rows)))
    run_id = trained["mlflow_run_id"]
    metrics = {f"holdout_{k}": v for k, v in candidate.items()}
    metrics |= {f"champion_holdout_{k}": v for k, v in (champion or {}).items()}
    for key, value in metrics.items():
        mlflow_client.log_metric(run_id, key, value)
    return {
        "mlflow_run_id": run_id,
        "candidate": candidate,
        "champion": champion,
        "champion_version": str(champion_version.version) if champion_version else None,
        "holdout_digest": trained["holdout"]["digest"],
        "holdout_key": trained["holdout"]["key"],
        "predictions_key": predictions_key,
    }


def register(
    spec: PipelineSpec, settings: Settings, ctx: RunContext, started: dict, trained: dict, validation: dict
) -> str:
    """Register the candidate as a model version with its evidence, once per Airflow run.

    Registration comes before the gate, so the gate judges the model as users will load it
    (``models:/<name>/<version>``); a rejected version stays in the registry, tagged rejected.
    """
    mlflow_client = registry.client(settings)
    tags = {
        "ctloop.data_sha256": started["snapshot"]["sha256"],
        "ctloop.validation.data_validation": "passed",
        "ctloop.holdout_digest": trained["holdout"]["digest"],
        "ctloop.holdout_key": trained["holdout"]["key"],
        SUITE_TAG: validation["suite_key"],
        "ctloop.code_version": code_version(),
        "ctloop.dag_run_id": ctx.run_id,
        **started["provenance"],
        "ctloop.gate": "pending",
    }
    version = registry.register_version(
        mlflow_client, spec.name, trained["model"], trained["mlflow_run_id"], ctx.run_key, tags
    )
    return str(version.version)


def gate(spec: PipelineSpec, settings: Settings, evaluation: dict, version: str) -> dict:
    """Decide by every rule of the gates; record the decision on the MLflow run and the version."""
    from ctloop.gating.approval import evidence_markdown
    from ctloop.gating.checks import rule_checks

    checks = rule_checks(spec, settings, evaluation, version)
    decision = evaluate_gates(
        spec.gates,
        spec.task,
        evaluation["candidate"],
        evaluation["champion"],
        evaluation["champion_version"],
        extra_verdicts=checks["verdicts"],
    )
    decision |= {k: v for k, v in checks.items() if k != "verdicts"}
    decision["summary"] = describe(decision)
    mlflow_client = registry.client(settings)
    run_id = evaluation["mlflow_run_id"]
    mlflow_client.log_dict(run_id, decision, "gate/decision.json")
    verdict = "passed" if decision["passed"] else "rejected"
    for key, value in {"ctloop.gate": verdict, "ctloop.gate_summary": decision["summary"][:5000]}.items():
        mlflow_client.set_tag(run_id, key, value)
        mlflow_client.set_model_version_tag(spec.name, version, key, value)
    if spec.gates.approval == "required":
        run = mlflow_client.get_run(run_id)
        links = {
            "MLflow run": f"{settings.mlflow_tracking_uri} run {run_id}",
            "reports that started it": run.data.tags.get("ctloop.trigger_reports", ""),
        }
        decision["evidence_md"] = evidence_markdown(decision, evaluation, run.data.tags, version, links)
    return decision


def promote_candidate(
    spec: PipelineSpec,
    settings: Settings,
    ctx: RunContext,
    started: dict,
    evaluation: dict,
    decision: dict,
    version: str,
    approval_response: dict | None,
) -> dict:
    """Move ``champion`` to the candidate if its gate passed (and a person approved, where the
    spec requires it), compare-and-set, recorded in the ledger; then notify."""
    from ctloop.gating.approval import outcome as approval_outcome
    from ctloop.orchestration import notifier as notify

    mlflow_client = registry.client(settings)
    run_id = evaluation["mlflow_run_id"]
    approval = approval_outcome(approval_response, spec.gates.approval == "required")
    if not decision["promote"]:
        outcome = {"action": "not_promoted", "version": version, "why": decision["summary"]}
    else:

        def reevaluate(champion: ModelVersion | None) -> dict:
            holdout = from_parquet_bytes(home_storage(settings).read_bytes(evaluation["holdout_key"]))
            champion_metrics = _champion_metrics(spec, settings, champion, holdout) if champion else None
            fresh = evaluate_gates(
                spec.gates,
                spec.task,
                evaluation["candidate"],
                champion_metrics,
                str(champion.version) if champion else None,
            )
            primary = primary_comparison(
                spec.task, spec.primary_metric, evaluation["candidate"], champion_metrics
            )
            return {**fresh, "summary": describe(fresh), "primary": primary}

        outcome = promote(
            mlflow_client,
            settings,
            spec.name,
            version,
            decision,
            reevaluate,
            reason=started["provenance"]["ctloop.reason"],
            run_key=ctx.run_key,
            mlflow_run_id=run_id,
            approver=approval["by"],
            evidence=_evidence(evaluation, started),
        )
    mlflow_client.log_dict(run_id, outcome, "promotion/outcome.json")
    mlflow_client.set_tag(run_id, "ctloop.registry.promotion", outcome["action"])
    mlflow_client.set_terminated(run_id, "FINISHED")
    if outcome["action"].startswith("promoted"):
        fields = {"version": version, "previous": outcome["previous"], "gate": decision["summary"]}
        notify.send(notify.PROMOTION, spec.name, spec.notifications.conn_id, fields)
    return outcome


def _evidence(evaluation: dict, started: dict) -> dict:
    """The URIs a reviewer follows from a ledger entry."""
    return {
        "snapshot": started["snapshot"]["uri"],
        "holdout": evaluation["holdout_key"],
        "holdout_predictions": evaluation["predictions_key"],
        "trigger_reports": started["provenance"]["ctloop.trigger_reports"],
    }


def finish(spec: PipelineSpec, settings: Settings, ctx: RunContext, results: dict) -> dict | None:
    """Close this run's retrain request with how it ended (cooldown and circuit breaker read it),
    record the approval on the version, log its model card, and notify a rejection."""
    from ctloop.training.record import record_version

    mlflow_client = registry.client(settings)
    experiment = mlflow_client.get_experiment_by_name(spec.name)
    runs = (
        mlflow_client.search_runs(
            [experiment.experiment_id], f"tags.`{registry.RUN_KEY_TAG}` = '{ctx.run_key}'", max_results=1
        )
        if experiment
        else []
    )
    version = registry.version_of_run(mlflow_client, spec.name, ctx.run_key)
    approval = record_version(spec, settings, mlflow_client, version, results) if version else None
    tags = mlflow_client.get_run(runs[0].info.run_id).data.tags if runs else {}
    if tags.get("ctloop.registry.promotion", "").startswith("promoted"):
        outcome = retrain_requests.PROMOTED
    elif (
        tags.get("ctloop.gate") == "rejected"
        or tags.get("ctloop.registry.promotion") == "rejected_after_reevaluation"
        or (approval and approval["outcome"] in ("rejected", "timed_out"))
    ):
        outcome = retrain_requests.REJECTED
    else:
        outcome = tags.get("ctloop.registry.promotion") or "failed"
    return retrain_requests.close(settings, spec.name, ctx.run_key, outcome, version)
