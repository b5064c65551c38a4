"""The steps of a training run, as plain functions of small JSON-able inputs and outputs.

The train DAG calls one step per task; a benchmark or a notebook can call them in sequence in
one process. Each step returns a model of :mod:`ctloop.training.contracts` and accepts the
previous steps' results either as those models or as their JSON (what XCom holds). Each step is
safe to retry: it finds what an earlier attempt of the same run made.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ctloop.data import holdout as holdouts
from ctloop.data.snapshots import load_snapshot, take_snapshot
from ctloop.data.training_window import read_training_data
from ctloop.evaluation.importance import ARTIFACT_PATH as IMPORTANCE_ARTIFACT
from ctloop.evaluation.importance import Importances, importances
from ctloop.evaluation.model_scores import evaluate, evaluate_outputs, outputs
from ctloop.evaluation.per_class import record_per_class
from ctloop.gating.decision import DECISION_ARTIFACT, GateDecision, RelativeComparison
from ctloop.gating.rules import evaluate_gates, relative_comparison
from ctloop.io.readers import from_parquet_bytes, to_parquet_bytes
from ctloop.io.storage import home_storage
from ctloop.monitoring import retrain_requests
from ctloop.registry import challenger, faults, model_trust, tags
from ctloop.registry import mlflow_store as registry
from ctloop.registry.ledger import actor
from ctloop.registry.promotion import PromotionResult, primary_comparison, promote
from ctloop.registry.provenance import code_version
from ctloop.training import attempts
from ctloop.training.contracts import (
    Evaluation,
    Finished,
    HoldoutRef,
    HoldoutScores,
    Provenance,
    RecentHoldoutRef,
    SnapshotRef,
    Started,
    Trained,
    TrainResults,
    Validated,
    WindowChoice,
)
from ctloop.training.estimator import features, fit, user_code_tags
from ctloop.training.tuning import record_tuning, recorded_tuning, tune
from ctloop.training.window_selection import (
    choose_window,
    load_change_point,
    refit,
    selection_metric,
    selects,
    window_label,
)
from ctloop.validation.champion_suite import store_suite
from ctloop.validation.data_validation import raise_if_failed, render_html, summary, validate_frame

if TYPE_CHECKING:
    import pandas as pd
    from mlflow import MlflowClient
    from mlflow.entities import Run
    from mlflow.entities.model_registry import ModelVersion

    from ctloop.data.sampling import DataSample
    from ctloop.evaluation.model_scores import FittedModel
    from ctloop.settings import Settings
    from ctloop.spec.models import PipelineSpec

log = logging.getLogger(__name__)
USER_CODE_TAGS = (
    tags.FEATURES_CODE,
    tags.FEATURES_SHA256,
    tags.TRAIN_FUNCTION,
    tags.TRAIN_FUNCTION_SHA256,
    tags.TUNING,
)
# and, for a multiclass model, each class's probability: ``<score column>__<class>`` (Predictions.columns)
PREDICTION_COLUMNS = ("candidate_prediction", "candidate_score", "champion_prediction", "champion_score")
Payload = Mapping[str, Any]  # a step's result as XCom holds it: the model's JSON


@dataclass(frozen=True)
class RunContext:
    """Which Airflow run this is and why it started."""

    dag_id: str
    run_id: str
    reason: str
    note: str = ""
    trigger: str = "manual"
    alert_id: str = ""
    user: str = ""  # the person who started a manual run, when Airflow recorded one
    alert_metrics: tuple[str, ...] = ()  # what the monitor's alert fired on: ctloop.gating.alert_metrics

    @property
    def run_key(self) -> str:
        return f"{self.dag_id}/{self.run_id}"

    @property
    def storage_prefix(self) -> str:
        return f"runs/{self.dag_id}/{re.sub(r'[^A-Za-z0-9._-]', '_', self.run_id)}"


def start(spec: PipelineSpec, settings: Settings, ctx: RunContext) -> Started:
    """Claim the retrain request this run serves, snapshot the data (the recent holdout set aside
    from it and stored) and open (or find) the run's MLflow run with its provenance, including
    every reason and report that asked for it."""
    started_by = actor(ctx.trigger, ctx.user, ctx.alert_id)
    request = retrain_requests.claim(
        settings,
        spec.name,
        ctx.run_key,
        {
            "kind": ctx.trigger,
            "text": ctx.reason,
            "by": ctx.run_key,
            "alert_id": ctx.alert_id,
            "user": started_by,
        },
    )
    reasons = [r for r in request["reasons"] if r["kind"] != "asset" or len(request["reasons"]) == 1]
    provenance = Provenance.model_validate(
        {
            tags.REASON: "; ".join(r["text"] for r in reasons)[: tags.TAG_VALUE_CHARS],
            tags.TRIGGER: ctx.trigger,
            tags.STARTED_BY: started_by,
            tags.ALERT_ID: ctx.alert_id,
            tags.REQUEST_ID: request["id"],
            tags.TRIGGER_REPORTS: " ".join(r["report_uri"] for r in reasons if r.get("report_uri"))[
                : tags.TAG_VALUE_CHARS
            ],
        }
    )
    data = read_training_data(spec, settings)
    snap = take_snapshot(spec, settings, data)
    recent = RecentHoldoutRef(holdout=None, sources=data.recent_sources, note=data.recent_note)
    if data.recent is not None:
        key, digest = holdouts.store(data.recent, spec.name, settings)
        recent = recent.model_copy(
            update={"holdout": HoldoutRef(key=key, digest=digest, rows=len(data.recent))}
        )
    mlflow_client = registry.client(settings)
    experiment_id = registry.ensure_experiment(mlflow_client, spec.name, settings.mlflow_artifact_root)
    attempt = attempts.open_attempt(
        settings,
        mlflow_client,
        experiment_id,
        ctx.run_key,
        {
            tags.PIPELINE: spec.name,
            tags.DAG_RUN_ID: ctx.run_id,
            **provenance.as_tags(),
            tags.NOTE: ctx.note,
            **({tags.MLFLOW_USER: ctx.user} if ctx.user else {}),
            tags.CODE_VERSION: code_version(),
            tags.DATA_SHA256: snap["sha256"],
            tags.SPEC_SHA256: attempts.spec_sha256(spec),
            tags.DATA_URI: snap["uri"],
            tags.DATA_WINDOW: window_label(spec.retrain.data),
            **_sample_tags(snap["sample"]),
            tags.GATE_MODE: spec.gates.mode,
            **_recent_tags(recent),
        },
    )
    log.info(
        "Snapshot %s (%d rows, sha256 %s); recent holdout: %s; MLflow run %s, attempt %d%s",
        snap["uri"],
        snap["rows"],
        snap["sha256"],
        recent.note,
        attempt.run_id,
        attempt.number,
        f" (supersedes MLflow run {attempt.replaced})" if attempt.replaced else "",
    )
    for version in attempts.settle_orphans(settings, mlflow_client, spec.name):
        log.warning("%s v%s: its run ended before its gate judged it; marked abandoned", spec.name, version)
    snapshot = SnapshotRef.model_validate({k: v for k, v in snap.items() if k != "columns"})
    return Started(
        mlflow_run_id=attempt.run_id, snapshot=snapshot, recent_holdout=recent, provenance=provenance
    )


def _sample_tags(sample: DataSample | None) -> dict[str, str]:
    """The ``data.max_rows`` sample as the run and the version record it (nothing without one)."""
    return {tags.DATA_SAMPLE: sample.note()[: tags.TAG_VALUE_CHARS]} if sample else {}


def _recent_tags(recent: RecentHoldoutRef) -> dict[str, str]:
    """The recent holdout as the run and the version record it: what it holds or why there is none."""
    found = {tags.RECENT_HOLDOUT: recent.note[: tags.TAG_VALUE_CHARS]}
    if recent.holdout is not None:
        found |= {
            tags.RECENT_HOLDOUT_DIGEST: recent.holdout.digest,
            tags.RECENT_HOLDOUT_KEY: recent.holdout.key,
        }
    return found


def validate(
    spec: PipelineSpec, settings: Settings, ctx: RunContext, started: Started | Payload
) -> Validated:
    """Validate the snapshot; results are stored and logged before a failure is raised."""
    started = Started.model_validate(started)
    frame = load_snapshot(started.snapshot.key, settings)
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
    run_id = started.mlflow_run_id
    mlflow_client.log_dict(run_id, report, "validation/result.json")
    mlflow_client.log_text(run_id, render_html(report, title), "validation/summary.html")
    mlflow_client.set_tag(run_id, tags.VALIDATION, "passed" if report["success"] else "failed")
    suite_key = store_suite(spec, settings)
    mlflow_client.set_tag(run_id, tags.SUITE_KEY, suite_key)
    outcome = Validated.model_validate(
        {**summary(report), "result_uri": result_uri, "html_uri": html_uri, "suite_key": suite_key}
    )
    if not report["success"]:
        mlflow_client.set_terminated(run_id, "FAILED")
        raise_if_failed(report, f"{spec.data.uri} (snapshot {started.snapshot.sha256[:12]})")
    return outcome


def train(spec: PipelineSpec, settings: Settings, ctx: RunContext, started: Started | Payload) -> Trained:
    """Cut the frozen holdout, fit the spec's model on the rest, and log it to MLflow; a run an
    alert started without an explicit ``retrain.data`` first chooses its window from evidence
    (:mod:`ctloop.training.window_selection`, by the metric the alert fired on, if any) and
    records the choice."""
    import mlflow

    started = Started.model_validate(started)
    frame = load_snapshot(started.snapshot.key, settings)
    recent_ref = started.recent_holdout.holdout
    run_id = started.mlflow_run_id
    mlflow_client = registry.client(settings)
    choice = None
    if recent_ref is not None and selects(spec, ctx.trigger):
        cut = (frame, started.snapshot.source_rows, started.snapshot.labeled_sources)
        metric = selection_metric(spec, ctx.alert_metrics)
        change = load_change_point(spec, settings, started.snapshot, started.recent_holdout.sources, metric)
        earlier = mlflow_client.get_run(run_id).data.tags.get(tags.WINDOW_SELECTION)
        if earlier:  # a retried task: the window this run recorded
            chosen = refit(spec, *cut, WindowChoice.model_validate_json(earlier), change)
        else:
            recent = from_parquet_bytes(home_storage(settings).read_bytes(recent_ref.key))
            chosen = choose_window(spec, *cut, recent, change, metric=metric)
        model, training, holdout, choice = chosen.model, chosen.training, chosen.holdout, chosen.record
        log.info("Training window %s: %s", choice.chosen, choice.why)
        mlflow_client.log_dict(run_id, choice.model_dump(mode="json"), "training/window_selection.json")
        mlflow_client.set_tag(run_id, tags.DATA_WINDOW, choice.chosen)
        mlflow_client.set_tag(run_id, tags.WINDOW_SELECTION, choice.model_dump_json())
    else:
        training, holdout = holdouts.split(frame, spec)
        model = fit(spec, training) if spec.tuning is None else None
    if spec.tuning is not None:  # on the rows the candidate trains on (the chosen window's), never a holdout
        tuned = recorded_tuning(mlflow_client, run_id) or tune(spec, training)
        record_tuning(mlflow_client, run_id, tuned)
        model = fit(spec, training, params=tuned.best_params)
    holdout_key, holdout_digest = holdouts.store(holdout, spec.name, settings)
    params: dict[str, object] = {
        f"{tags.ESTIMATOR_PARAM_PREFIX}{k}": v for k, v in spec.estimator.params.items()
    }
    params |= {
        tags.ESTIMATOR: spec.estimator.class_path,
        tags.HOLDOUT_STRATEGY: spec.holdout.strategy,
        tags.HOLDOUT_FRACTION: spec.holdout.fraction,
        tags.HOLDOUT_SEED: spec.holdout.seed,
        tags.TRAIN_ROWS: len(training),
        tags.HOLDOUT_ROWS: len(holdout),
        tags.RECENT_HOLDOUT_ROWS: started.recent_holdout.holdout.rows
        if started.recent_holdout.holdout
        else 0,
    }
    with mlflow.start_run(run_id=run_id):
        mlflow.log_params({k: str(v) for k, v in params.items()})
    for key, value in user_code_tags(spec).items():
        mlflow_client.set_tag(run_id, key, value)
    logged = registry.log_model(model, features(training.head(200), spec), run_id, model_trust.policy(spec))
    mlflow_client.set_tag(run_id, tags.HOLDOUT_DIGEST, holdout_digest)
    mlflow_client.set_tag(run_id, tags.MODEL_SHA256, logged.sha256)
    return Trained(
        mlflow_run_id=run_id,
        model=logged,
        holdout=HoldoutRef(key=holdout_key, digest=holdout_digest, rows=len(holdout)),
        recent_holdout=started.recent_holdout,
        train_rows=len(training),
        data_window=choice.chosen if choice else window_label(spec.retrain.data),
        window_selection=choice,
    )


def _score_both(
    spec: PipelineSpec, candidate: FittedModel, champion: FittedModel | None, holdout: pd.DataFrame
) -> tuple[dict[str, float], dict[str, float] | None, pd.DataFrame]:
    """Both models' metrics on ``holdout`` and their per-row predictions (as the prediction log
    keeps them: with every class's probability for a multiclass model), from one pass of each."""
    import pandas as pd

    from ctloop.scoring.batches import logged_predictions

    metrics: list[dict[str, float]] = []
    rows: dict[str, Any] = {}
    for model, columns in ((candidate, PREDICTION_COLUMNS[:2]), (champion, PREDICTION_COLUMNS[2:])):
        if model is None:
            continue
        predicted, probabilities = outputs(model, holdout, spec)
        metrics.append(evaluate_outputs(model, holdout, spec, predicted, probabilities))
        rows |= logged_predictions(spec, model, predicted, probabilities).columns(*columns)
    return metrics[0], metrics[1] if len(metrics) > 1 else None, pd.DataFrame(rows)


def recorded_metrics(evaluation: Evaluation) -> dict[str, float]:
    """Every metric of the evaluation under its recorded name: both models on the frozen holdout
    and, when there is one, on the recent holdout."""
    sets = [
        (tags.HOLDOUT_METRIC_PREFIX, evaluation.candidate),
        (tags.CHAMPION_METRIC_PREFIX, evaluation.champion),
    ]
    if evaluation.recent is not None:
        sets += [
            (tags.RECENT_METRIC_PREFIX, evaluation.recent.candidate),
            (tags.CHAMPION_RECENT_METRIC_PREFIX, evaluation.recent.champion),
        ]
    return {f"{prefix}{name}": value for prefix, values in sets for name, value in (values or {}).items()}


def evaluate_models(
    spec: PipelineSpec, settings: Settings, ctx: RunContext, trained: Trained | Payload
) -> Evaluation:
    """Score the candidate and the current champion on the same frozen holdout and on the recent
    holdout, and keep both models' per-row predictions for the gate's bootstrap and slice rules;
    explain both models by permutation importance on the frozen holdout."""
    trained = Trained.model_validate(trained)
    storage = home_storage(settings)
    trust = model_trust.policy(spec)
    candidate_model = registry.load_model(settings, trained.model.model_uri, trained.model.sha256, trust)
    mlflow_client = registry.client(settings)
    champion_version = registry.get_champion(mlflow_client, spec.name)
    champion_model = registry.load_version(settings, champion_version, trust) if champion_version else None
    scores: dict[str, HoldoutScores] = {}
    frames: dict[str, pd.DataFrame] = {}
    for name, ref in (("holdout", trained.holdout), ("recent", trained.recent_holdout.holdout)):
        if ref is None:
            continue
        holdout = frames[name] = from_parquet_bytes(storage.read_bytes(ref.key))
        candidate, champion, rows = _score_both(spec, candidate_model, champion_model, holdout)
        predictions_key = f"{ctx.storage_prefix}/{name}_predictions.parquet"
        storage.write_bytes(predictions_key, to_parquet_bytes(rows))
        scores[name] = HoldoutScores(
            holdout=ref, candidate=candidate, champion=champion, predictions_key=predictions_key
        )
    frozen = scores["holdout"]
    evaluation = Evaluation(
        mlflow_run_id=trained.mlflow_run_id,
        candidate=frozen.candidate,
        champion=frozen.champion,
        champion_version=str(champion_version.version) if champion_version else None,
        holdout_digest=trained.holdout.digest,
        holdout_key=trained.holdout.key,
        predictions_key=frozen.predictions_key,
        recent=scores.get("recent"),
        recent_note=trained.recent_holdout.note,
        trigger=ctx.trigger,
        alert_metrics=list(ctx.alert_metrics),
        per_class=record_per_class(spec, settings, trained.mlflow_run_id, frozen),
        importance=_explain(
            spec, mlflow_client, trained.mlflow_run_id, frames["holdout"], candidate_model, champion_model
        ),
    )
    for key, value in recorded_metrics(evaluation).items():
        mlflow_client.log_metric(trained.mlflow_run_id, key, value)
    return evaluation


def _explain(
    spec: PipelineSpec,
    mlflow_client: MlflowClient,
    run_id: str,
    holdout: pd.DataFrame,
    candidate: FittedModel,
    champion: FittedModel | None,
) -> Importances | None:
    """Both models' permutation importance on the frozen holdout, logged on the run; a large
    shift against the champion is tagged on the run and warned about, for a reviewer to look at
    (it informs, it does not gate)."""
    began = time.perf_counter()
    found = importances(spec, holdout, candidate, champion)
    if found is None:
        return None
    mlflow_client.log_dict(run_id, found.model_dump(mode="json"), IMPORTANCE_ARTIFACT)
    seconds = time.perf_counter() - began
    if found.large_shifts:
        mlflow_client.set_tag(run_id, tags.IMPORTANCE_SHIFT, found.summary[: tags.TAG_VALUE_CHARS])
        log.warning("Feature importance shifted against the champion (%.1f s): %s", seconds, found.summary)
    else:
        log.info("Feature importance (%.1f s): %s", seconds, found.summary)
    return found


def register(
    spec: PipelineSpec,
    settings: Settings,
    ctx: RunContext,
    started: Started | Payload,
    trained: Trained | Payload,
    validation: Validated | Payload,
) -> str:
    """Register the candidate as a model version with its evidence, once per Airflow run; returns
    the version number.

    Registration comes before the gate, so the gate judges the model as users will load it
    (``models:/<name>/<version>``); a rejected version stays in the registry, tagged rejected.
    """
    started = Started.model_validate(started)
    trained = Trained.model_validate(trained)
    validation = Validated.model_validate(validation)
    mlflow_client = registry.client(settings)
    earlier = registry.version_of_run(mlflow_client, spec.name, ctx.run_key, trained.mlflow_run_id)
    if earlier is not None:
        attempts.take_up(mlflow_client, spec.name, earlier)
    run_tags = mlflow_client.get_run(trained.mlflow_run_id).data.tags
    version_tags = {
        tags.DATA_SHA256: started.snapshot.sha256,
        tags.VALIDATION: "passed",
        tags.HOLDOUT_DIGEST: trained.holdout.digest,
        tags.HOLDOUT_KEY: trained.holdout.key,
        **_recent_tags(trained.recent_holdout),
        tags.DATA_WINDOW: trained.data_window,
        **_sample_tags(started.snapshot.sample),
        **(
            {tags.WINDOW_SELECTION: trained.window_selection.model_dump_json()}
            if trained.window_selection
            else {}
        ),
        tags.SUITE_KEY: validation.suite_key,
        tags.CODE_VERSION: code_version(),
        tags.DAG_RUN_ID: ctx.run_id,
        tags.ATTEMPT: run_tags.get(tags.ATTEMPT, "1"),
        **{key: run_tags[key] for key in USER_CODE_TAGS if key in run_tags},
        **started.provenance.as_tags(),
        tags.GATE: attempts.PENDING,
    }
    version = registry.register_version(
        mlflow_client, spec.name, trained.model, trained.mlflow_run_id, ctx.run_key, version_tags
    )
    return str(version.version)


def gate(
    spec: PipelineSpec, settings: Settings, evaluation: Evaluation | Payload, version: str
) -> GateDecision:
    """Decide by every rule of the gates, the relative ones on the holdout this run's trigger asks
    for (``gates.recent_holdout``); record the decision on the MLflow run and the version, and
    both holdouts' metrics on the version."""
    from ctloop.gating.approval import evidence_markdown
    from ctloop.gating.checks import rule_checks

    evaluation = Evaluation.model_validate(evaluation)
    mlflow_client = registry.client(settings)
    attempts.take_up(mlflow_client, spec.name, version)
    relative = relative_comparison(spec.gates.recent_holdout, evaluation)
    checks = rule_checks(spec, settings, evaluation, version, relative)
    decision = evaluate_gates(
        spec.gates,
        spec.task,
        evaluation.candidate,
        evaluation.champion,
        evaluation.champion_version,
        extra_verdicts=checks.verdicts,
        relative=relative,
        alert_metrics=evaluation.alert_metrics,
    )
    evidence = {"slices": checks.slices, "slice_metric": checks.slice_metric, "latency": checks.latency}
    decision = decision.model_copy(update=evidence)
    run_id = evaluation.mlflow_run_id
    mlflow_client.log_dict(run_id, decision.model_dump(mode="json"), DECISION_ARTIFACT)
    faults.point("gate.after_decision_logged")
    verdict = "passed" if decision.passed else "rejected"
    for key, value in {
        tags.GATE: verdict,
        tags.GATE_SUMMARY: decision.summary[: tags.TAG_VALUE_CHARS],
        tags.GATE_RELATIVE_ON: decision.relative_on,
    }.items():
        mlflow_client.set_tag(run_id, key, value)
        mlflow_client.set_model_version_tag(spec.name, version, key, value)
    for metric, number in recorded_metrics(evaluation).items():
        mlflow_client.set_model_version_tag(
            spec.name, version, f"{tags.VERSION_METRIC_PREFIX}{metric}", f"{number:.6g}"
        )
    if spec.gates.approval == "required":
        run = mlflow_client.get_run(run_id)
        links = {
            "MLflow run": f"{settings.mlflow_tracking_uri} run {run_id}",
            "reports that started it": run.data.tags.get(tags.TRIGGER_REPORTS, ""),
        }
        markdown = evidence_markdown(decision, evaluation, run.data.tags, version, links)
        decision = decision.model_copy(update={"evidence_md": markdown})
        if decision.promote:  # a person will be asked: until they answer, it is the challenger
            challenger.mark(settings, spec.name, version)
    return decision


def promote_candidate(
    spec: PipelineSpec,
    settings: Settings,
    ctx: RunContext,
    started: Started | Payload,
    evaluation: Evaluation | Payload,
    decision: GateDecision | Payload,
    version: str,
    approval_response: Payload | None,
) -> PromotionResult:
    """Move ``champion`` to the candidate if its gate passed (and a person approved, where the
    spec requires it), compare-and-set, recorded in the ledger; then notify."""
    from ctloop import notifications
    from ctloop.gating.approval import outcome as approval_outcome

    started = Started.model_validate(started)
    evaluation = Evaluation.model_validate(evaluation)
    decision = GateDecision.model_validate(decision)
    mlflow_client = registry.client(settings)
    run_id = evaluation.mlflow_run_id
    approval = approval_outcome(approval_response, spec.gates.approval == "required")
    if not decision.promote:
        outcome = PromotionResult(action="not_promoted", version=version, why=decision.summary)
    else:
        attempts.take_up(mlflow_client, spec.name, version)
        candidate = evaluation.candidate
        recent = evaluation.recent if decision.relative_on == "recent_holdout" else None

        def reevaluate(champion: ModelVersion | None) -> GateDecision:
            """The gate's rules against the new champion, the relative ones on the same holdout."""
            storage = home_storage(settings)
            model = registry.load_version(settings, champion, model_trust.policy(spec)) if champion else None

            def champion_on(key: str) -> dict[str, float] | None:
                return evaluate(model, from_parquet_bytes(storage.read_bytes(key)), spec) if model else None

            relative = RelativeComparison(
                on=decision.relative_on,
                why=decision.relative_on_why,
                candidate=recent.candidate if recent else candidate,
                champion=champion_on(recent.holdout.key if recent else evaluation.holdout_key),
            )
            fresh = evaluate_gates(
                spec.gates,
                spec.task,
                candidate,
                champion_on(evaluation.holdout_key) if recent else relative.champion,
                str(champion.version) if champion else None,
                relative=relative,
                alert_metrics=evaluation.alert_metrics,
            )
            primary = primary_comparison(
                spec.task, spec.primary_metric, relative.candidate, relative.champion
            )
            return fresh.model_copy(update={"primary": primary})

        outcome = promote(
            mlflow_client,
            settings,
            spec.name,
            version,
            decision,
            reevaluate,
            reason=started.provenance.reason,
            run_key=ctx.run_key,
            mlflow_run_id=run_id,
            user=actor(ctx.trigger, ctx.user, ctx.alert_id),
            approver=approval.by,
            evidence=_evidence(evaluation, started),
        )
    mlflow_client.log_dict(run_id, outcome.model_dump(mode="json"), "promotion/outcome.json")
    mlflow_client.set_tag(run_id, tags.PROMOTION, outcome.action)
    mlflow_client.set_terminated(run_id, "FINISHED")
    if outcome.promoted:
        fields = {"version": version, "previous": outcome.previous, "gate": decision.summary}
        notifications.emit(notifications.PROMOTION, spec.name, spec.notifications.conn_id, fields)
    return outcome


def _evidence(evaluation: Evaluation, started: Started) -> dict[str, str]:
    """The URIs a reviewer follows from a ledger entry."""
    recent = evaluation.recent
    return {
        "snapshot": started.snapshot.uri,
        "holdout": evaluation.holdout_key,
        "holdout_predictions": evaluation.predictions_key,
        "recent_holdout": recent.holdout.key if recent else "",
        "recent_holdout_predictions": recent.predictions_key if recent else "",
        "trigger_reports": started.provenance.trigger_reports,
    }


def finish(
    spec: PipelineSpec, settings: Settings, ctx: RunContext, results: TrainResults | Payload
) -> Finished | None:
    """Close this run's retrain request with how it ended (cooldown and circuit breaker read it),
    record the approval on the version, log its model card, and notify a rejection.

    A run that ended before a promotion decision ends its MLflow run FAILED and abandons a version
    its gate never judged (``ctloop.training.attempts``), so nothing is left waiting for it.
    """
    from ctloop.training.record import record_version

    results = TrainResults.model_validate(results)
    mlflow_client = registry.client(settings)
    run = _attempt_run(mlflow_client, spec.name, ctx.run_key, results)
    run_id = run.info.run_id if run else None
    version = registry.version_of_run(mlflow_client, spec.name, ctx.run_key, run_id) if run_id else None
    approval = record_version(spec, settings, mlflow_client, version, results) if version else None
    run_tags = mlflow_client.get_run(run_id).data.tags if run_id else {}
    promotion = run_tags.get(tags.PROMOTION)
    if (promotion or "").startswith("promoted"):
        outcome = retrain_requests.PROMOTED
    elif (
        run_tags.get(tags.GATE) == "rejected"
        or promotion == "rejected_after_reevaluation"
        or (approval is not None and approval.refused)
    ):
        outcome = retrain_requests.REJECTED
    else:
        outcome = promotion or "failed"
    if outcome == "failed" and run_id:
        _end_failed(settings, mlflow_client, spec.name, ctx.run_key, run_id, version)
    if version:
        challenger.release(settings, spec.name, version, f"its training run ended: {outcome}")
    attempts.settle_orphans(settings, mlflow_client, spec.name)
    closed = retrain_requests.close(settings, spec.name, ctx.run_key, outcome, version)
    return None if closed is None else Finished.model_validate(closed)


def _attempt_run(
    mlflow_client: MlflowClient, pipeline: str, run_key: str, results: TrainResults
) -> Run | None:
    """The MLflow run of this run's attempt: the one its snapshot opened, else the latest."""
    if results.snapshot is not None:
        return mlflow_client.get_run(results.snapshot.mlflow_run_id)
    experiment = mlflow_client.get_experiment_by_name(pipeline)
    return attempts.latest_run(mlflow_client, experiment.experiment_id, run_key) if experiment else None


def _end_failed(
    settings: Settings,
    mlflow_client: MlflowClient,
    pipeline: str,
    run_key: str,
    run_id: str,
    version: str | None,
) -> None:
    """End the MLflow run of a run that failed before a decision, and abandon the version its gate
    never judged: clearing the run's failed tasks in Airflow takes it up again."""
    mlflow_client.set_terminated(run_id, "FAILED")
    if version and mlflow_client.get_model_version(pipeline, version).tags.get(tags.GATE) == attempts.PENDING:
        why = (
            f"abandoned: its training run {run_key} failed before its gate judged it; clear the run's"
            " failed tasks in Airflow to judge it, or start a new run"
        )
        attempts.abandon(settings, mlflow_client, pipeline, version, why)
