"""What a finished training leaves on its model version: the approval, the model card, and a
notification when the candidate was turned down.

It runs in the train DAG's last task, which runs however the run ended, so every registered
version gets its card, including rejected ones: a reviewer reads why a model did not serve too.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from pydantic import ValidationError

from ctloop import notifications
from ctloop.gating import approval as approvals
from ctloop.io.storage import storage_relative
from ctloop.registry import tags
from ctloop.registry.model_card import (
    CardCode,
    CardData,
    CardGate,
    CardLineage,
    CardMetrics,
    CardPromotion,
    CardTuning,
    CardValidation,
    ModelCard,
    log_model_card,
    render_model_card,
)

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from ctloop.gating.approval import Approval
    from ctloop.settings import Settings
    from ctloop.spec.models import PipelineSpec
    from ctloop.training.contracts import TrainResults

log = logging.getLogger(__name__)


def record_version(
    spec: PipelineSpec, settings: Settings, mlflow_client: MlflowClient, version: str, results: TrainResults
) -> Approval:
    """Tag the approval, log the model card, notify a rejection; returns the approval record."""
    approval = approvals.outcome(results.approve, spec.gates.approval == "required")
    if approval.outcome == "pending":  # the run is over: nobody will be asked any more
        approval = approval.model_copy(update={"outcome": "not_asked"})
    if approval.required:
        version_tags = {tags.APPROVAL: approval.outcome, tags.APPROVED_BY: approval.by or ""}
        version_tags[tags.APPROVAL_COMMENT] = (approval.comment or "")[: tags.TAG_VALUE_CHARS]
        for key, value in version_tags.items():
            mlflow_client.set_model_version_tag(spec.name, version, key, value)
    card = model_card(spec, settings, mlflow_client, version, results, approval)
    log_model_card(mlflow_client, card.lineage.mlflow_run_id, render_model_card(card))
    decision, promotion = results.gate, results.promote
    gate_refused = decision is not None and not decision.passed
    reevaluated_out = promotion is not None and promotion.action == "rejected_after_reevaluation"
    if gate_refused or approval.refused or reevaluated_out:
        why = (promotion.why if promotion else None) or (
            decision.summary if gate_refused and decision else None
        )
        fields = {"version": version, "why": why or f"approval {approval.outcome}", "by": approval.by}
        notifications.emit(notifications.REJECTION, spec.name, spec.notifications.conn_id, fields)
    return approval


def model_card(
    spec: PipelineSpec,
    settings: Settings,
    mlflow_client: MlflowClient,
    version: str,
    results: TrainResults,
    approval: Approval,
) -> ModelCard:
    """The model card's facts, from the run's task results and the registry; a location in
    ctloop's storage reads relative to it (``storage://...``), never as the server's path."""

    def shown(uri: str | None) -> str | None:
        return storage_relative(settings, uri) if uri else uri

    registered = mlflow_client.get_model_version(spec.name, version)
    run = mlflow_client.get_run(str(registered.run_id))
    run_tags = run.data.tags
    started, validation = results.snapshot, results.validation
    evaluation, decision, promotion = results.evaluate, results.gate, results.promote
    snapshot = started.snapshot if started else None
    return ModelCard(
        pipeline=spec.name,
        version=version,
        created_at=datetime.fromtimestamp(registered.creation_timestamp / 1000, UTC).isoformat(),
        model_uri=f"models:/{spec.name}/{version}",
        model_sha256=registered.tags.get(tags.MODEL_SHA256),
        data=CardData(
            uri=shown(snapshot.uri) if snapshot else None,
            sha256=snapshot.sha256 if snapshot else None,
            rows=snapshot.rows if snapshot else None,
            window=results.train.data_window if results.train else None,
            sample=snapshot.sample.note() if snapshot and snapshot.sample else None,
            window_selection=results.train.window_selection.model_dump(mode="json")
            if results.train and results.train.window_selection
            else None,
        ),
        validation=CardValidation(
            success=run_tags.get(tags.VALIDATION) == "passed",
            evaluated=validation.statistics.get("evaluated_expectations") if validation else None,
            failed=len(validation.schema_failures) + len(validation.expectation_failures)
            if validation
            else 0,
            result_uri=shown(validation.result_uri) if validation else None,
        ),
        metrics=CardMetrics(
            candidate=evaluation.candidate if evaluation else None,
            champion=evaluation.champion if evaluation else None,
        ),
        recent_metrics=CardMetrics(candidate=evaluation.recent.candidate, champion=evaluation.recent.champion)
        if evaluation and evaluation.recent
        else None,
        recent_note=evaluation.recent_note if evaluation else "",
        champion_version=evaluation.champion_version if evaluation else None,
        slices=(decision.slices if decision else None) or [],
        gate=CardGate(
            mode=decision.mode,
            passed=decision.passed,
            summary=decision.summary,
            rules=decision.rules,
            relative_on=decision.relative_on,
            relative_on_why=decision.relative_on_why,
        )
        if decision
        else None,
        lineage=CardLineage(
            trigger=run_tags.get(tags.TRIGGER),
            started_by=run_tags.get(tags.STARTED_BY),
            reason=run_tags.get(tags.REASON),
            alert_id=run_tags.get(tags.ALERT_ID),
            request_id=run_tags.get(tags.REQUEST_ID),
            reports=[
                storage_relative(settings, r) for r in (run_tags.get(tags.TRIGGER_REPORTS) or "").split()
            ],
            dag_run_id=run_tags.get(tags.DAG_RUN_ID),
            mlflow_run_id=run.info.run_id,
            code_version=run_tags.get(tags.CODE_VERSION),
        ),
        approval=approval,
        promotion=CardPromotion(
            action=(promotion.action if promotion else None)
            or run_tags.get(tags.PROMOTION)
            or "not promoted",
            previous=promotion.previous if promotion else None,
        ),
        code=CardCode(
            estimator=run.data.params.get(tags.ESTIMATOR),
            features=run_tags.get(tags.FEATURES_CODE),
            features_sha256=run_tags.get(tags.FEATURES_SHA256),
            train_function=run_tags.get(tags.TRAIN_FUNCTION),
            train_function_sha256=run_tags.get(tags.TRAIN_FUNCTION_SHA256),
        ),
        tuning=_tuning(run_tags.get(tags.TUNING)),
        importance=evaluation.importance if evaluation else None,
        per_class=evaluation.per_class if evaluation else None,
    )


def _tuning(recorded: str | None) -> CardTuning | None:
    """The tuning summary the run's tag holds; an unreadable one is left off the card, with a
    warning, rather than failing the task that records the outcome."""
    if not recorded:
        return None
    try:
        return CardTuning.model_validate_json(recorded)
    except ValidationError as exc:
        log.warning("The run's %s tag is not a tuning summary, left off the model card: %s", tags.TUNING, exc)
        return None
