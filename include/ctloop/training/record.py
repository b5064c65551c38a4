"""What a finished training leaves on its model version: the approval, the model card, and a
notification when the candidate was turned down.

It runs in the train DAG's last task, which runs however the run ended, so every registered
version gets its card, including rejected ones: a reviewer reads why a model did not serve too.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

from ctloop.gating import approval as approvals
from ctloop.orchestration import notifier as notify
from ctloop.registry import mlflow_store as registry
from ctloop.registry.model_card import log_model_card, render_model_card

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from ctloop.settings import Settings
    from ctloop.spec.models import PipelineSpec

REFUSALS = ("rejected", "timed_out")


def record_version(
    spec: PipelineSpec, settings: Settings, mlflow_client: MlflowClient, version: str, results: dict
) -> dict:
    """Tag the approval, log the model card, notify a rejection; returns the approval record."""
    approval = approvals.outcome(results.get("approve"), spec.gates.approval == "required")
    if approval["required"]:
        tags = {"ctloop.gating.approval": approval["outcome"], "ctloop.approved_by": approval["by"] or ""}
        tags["ctloop.approval_comment"] = (approval["comment"] or "")[:5000]
        for key, value in tags.items():
            mlflow_client.set_model_version_tag(spec.name, version, key, value)
    card = model_card(spec, mlflow_client, version, results, approval)
    log_model_card(mlflow_client, card["lineage"]["mlflow_run_id"], render_model_card(card))
    decision, promotion = results.get("gate") or {}, results.get("promote") or {}
    refused = decision.get("passed") is False or approval["outcome"] in REFUSALS
    if refused or promotion.get("action") == "rejected_after_reevaluation":
        why = promotion.get("why") or (decision.get("summary") if decision.get("passed") is False else None)
        fields = {"version": version, "why": why or f"approval {approval['outcome']}", "by": approval["by"]}
        notify.send(notify.REJECTION, spec.name, spec.notifications.conn_id, fields)
    return approval


def model_card(
    spec: PipelineSpec, mlflow_client: MlflowClient, version: str, results: dict, approval: dict
) -> dict:
    """The model card's facts, from the run's task results and the registry."""
    registered = mlflow_client.get_model_version(spec.name, version)
    run = mlflow_client.get_run(registered.run_id)
    tags = run.data.tags
    started, validation = results.get("snapshot") or {}, results.get("validate") or {}
    evaluation, decision = results.get("evaluate") or {}, results.get("gate") or {}
    promotion = results.get("promote") or {}
    snapshot = started.get("snapshot") or {}
    return {
        "pipeline": spec.name,
        "version": version,
        "created_at": datetime.fromtimestamp(registered.creation_timestamp / 1000, UTC).isoformat(),
        "model_uri": f"models:/{spec.name}/{version}",
        "model_sha256": registered.tags.get(registry.MODEL_SHA_TAG),
        "data": {"uri": snapshot.get("uri"), "sha256": snapshot.get("sha256"), "rows": snapshot.get("rows")},
        "validation": {
            "success": tags.get("ctloop.validation.data_validation") == "passed",
            "evaluated": (validation.get("statistics") or {}).get("evaluated_expectations"),
            "failed": len(validation.get("schema_failures", []))
            + len(validation.get("expectation_failures", [])),
            "result_uri": validation.get("result_uri"),
        },
        "metrics": {"candidate": evaluation.get("candidate"), "champion": evaluation.get("champion")},
        "champion_version": evaluation.get("champion_version"),
        "slices": decision.get("slices") or [],
        "gate": {k: decision.get(k) for k in ("mode", "passed", "summary", "rules")} if decision else None,
        "lineage": {
            "trigger": tags.get("ctloop.trigger"),
            "reason": tags.get("ctloop.reason"),
            "alert_id": tags.get("ctloop.alert_id"),
            "request_id": tags.get("ctloop.request_id"),
            "reports": (tags.get("ctloop.trigger_reports") or "").split(),
            "dag_run_id": tags.get("ctloop.dag_run_id"),
            "mlflow_run_id": run.info.run_id,
            "code_version": tags.get("ctloop.code_version"),
        },
        "approval": approval,
        "promotion": {
            "action": promotion.get("action") or tags.get("ctloop.registry.promotion") or "not promoted",
            "previous": promotion.get("previous"),
        },
    }
