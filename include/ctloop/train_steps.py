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

from ctloop import holdout as holdouts
from ctloop import registry
from ctloop import retrain_requests as ledger
from ctloop.dataio import from_parquet_bytes, to_parquet_bytes
from ctloop.evaluation import evaluate
from ctloop.gates import describe, evaluate_gates
from ctloop.promotion import promote
from ctloop.provenance import code_version
from ctloop.snapshot import load_snapshot, take_snapshot
from ctloop.storage import home_storage
from ctloop.training import features, fit
from ctloop.validation import raise_if_failed, render_html, summary, validate_frame

if TYPE_CHECKING:
    from mlflow.entities.model_registry import ModelVersion

    from ctloop.metrics import TaskKind
    from ctloop.settings import Settings
    from ctloop.spec import Gates, PipelineSpec

log = logging.getLogger(__name__)


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
    request = ledger.claim(
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
    mlflow_client.set_tag(run_id, "ctloop.validation", "passed" if report["success"] else "failed")
    outcome = {**summary(report), "result_uri": result_uri, "html_uri": html_uri}
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


def evaluate_models(spec: PipelineSpec, settings: Settings, trained: dict) -> dict:
    """Score the candidate and the current champion on the same frozen holdout."""
    holdout = from_parquet_bytes(home_storage(settings).read_bytes(trained["holdout"]["key"]))
    candidate_model = registry.load_model(settings, trained["model"]["model_uri"], trained["model"]["sha256"])
    candidate = evaluate(candidate_model, holdout, spec)
    mlflow_client = registry.client(settings)
    champion_version = registry.get_champion(mlflow_client, spec.name)
    champion = _champion_metrics(spec, settings, champion_version, holdout) if champion_version else None
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
    }


def gate(gates: Gates, task: TaskKind, settings: Settings, evaluation: dict) -> dict:
    """Decide by the gates and record the decision on the MLflow run."""
    decision = evaluate_gates(
        gates, task, evaluation["candidate"], evaluation["champion"], evaluation["champion_version"]
    )
    decision["summary"] = describe(decision)
    mlflow_client = registry.client(settings)
    run_id = evaluation["mlflow_run_id"]
    mlflow_client.log_dict(run_id, decision, "gate/decision.json")
    mlflow_client.set_tag(run_id, "ctloop.gate", "passed" if decision["passed"] else "rejected")
    mlflow_client.set_tag(run_id, "ctloop.gate_summary", decision["summary"][:5000])
    return decision


def register(
    spec: PipelineSpec, settings: Settings, ctx: RunContext, started: dict, trained: dict, decision: dict
) -> str:
    """Register the candidate as a model version with its evidence, once per Airflow run."""
    mlflow_client = registry.client(settings)
    tags = {
        "ctloop.data_sha256": started["snapshot"]["sha256"],
        "ctloop.validation": "passed",
        "ctloop.holdout_digest": trained["holdout"]["digest"],
        "ctloop.holdout_key": trained["holdout"]["key"],
        "ctloop.code_version": code_version(),
        "ctloop.dag_run_id": ctx.run_id,
        **started["provenance"],
        "ctloop.gate": "passed" if decision["passed"] else "rejected",
        "ctloop.gate_summary": decision["summary"][:5000],
    }
    version = registry.register_version(
        mlflow_client, spec.name, trained["model"], trained["mlflow_run_id"], ctx.run_key, tags
    )
    return str(version.version)


def promote_candidate(
    spec: PipelineSpec, settings: Settings, evaluation: dict, decision: dict, version: str, holdout_key: str
) -> dict:
    """Move ``champion`` to the candidate if its gate passed, compare-and-set."""
    mlflow_client = registry.client(settings)
    run_id = evaluation["mlflow_run_id"]
    if not decision["promote"]:
        outcome = {"action": "not_promoted", "version": version, "why": decision["summary"]}
    else:

        def reevaluate(champion: ModelVersion | None) -> dict:
            holdout = from_parquet_bytes(home_storage(settings).read_bytes(holdout_key))
            champion_metrics = _champion_metrics(spec, settings, champion, holdout) if champion else None
            fresh = evaluate_gates(
                spec.gates,
                spec.task,
                evaluation["candidate"],
                champion_metrics,
                str(champion.version) if champion else None,
            )
            return {**fresh, "summary": describe(fresh)}

        outcome = promote(mlflow_client, settings, spec.name, version, decision, reevaluate)
    mlflow_client.log_dict(run_id, outcome, "promotion/outcome.json")
    mlflow_client.set_tag(run_id, "ctloop.promotion", outcome["action"])
    mlflow_client.set_terminated(run_id, "FINISHED")
    return outcome


def finish(spec: PipelineSpec, settings: Settings, ctx: RunContext) -> dict | None:
    """Close this run's retrain request with how it ended; cooldown and circuit breaker read it."""
    mlflow_client = registry.client(settings)
    experiment = mlflow_client.get_experiment_by_name(spec.name)
    runs = (
        mlflow_client.search_runs(
            [experiment.experiment_id], f"tags.`{registry.RUN_KEY_TAG}` = '{ctx.run_key}'", max_results=1
        )
        if experiment
        else []
    )
    tags = runs[0].data.tags if runs else {}
    if tags.get("ctloop.promotion", "").startswith("promoted"):
        outcome = ledger.PROMOTED
    elif (
        tags.get("ctloop.gate") == "rejected" or tags.get("ctloop.promotion") == "rejected_after_reevaluation"
    ):
        outcome = ledger.REJECTED
    else:
        outcome = tags.get("ctloop.promotion") or "failed"
    version = registry.version_of_run(mlflow_client, spec.name, ctx.run_key)
    return ledger.close(settings, spec.name, ctx.run_key, outcome, version)
