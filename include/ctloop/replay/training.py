"""One training run of a replay: the train DAG's tasks, in its order, each at its simulated time.

snapshot → validate → train → evaluate → register → gate → promote → record_outcome, through
:mod:`ctloop.training.steps` as the DAG's tasks call them. A step that fails on bad data stops the
run there and the outcome is still recorded, as ``record_outcome`` does after a failed task.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ctloop.errors import CtloopError
from ctloop.registry import mlflow_store as registry
from ctloop.registry import tags
from ctloop.replay.records import TrainingRecord
from ctloop.training import steps
from ctloop.training.contracts import TrainResults

if TYPE_CHECKING:
    from ctloop.gating.decision import GateDecision
    from ctloop.registry.promotion import PromotionResult
    from ctloop.replay.schedule import SimulatedTime
    from ctloop.settings import Settings
    from ctloop.spec.models import PipelineSpec
    from ctloop.training.contracts import Evaluation, Started, Trained, Validated

# Airflow's run id prefix of each way a training starts.
RUN_TYPES = {"manual": "manual", "schedule": "scheduled", "asset": "asset_triggered"}


def champion_version(spec: PipelineSpec, settings: Settings) -> str | None:
    champion = registry.get_champion(registry.client(settings), spec.name)
    return str(champion.version) if champion else None


def run_training(
    spec: PipelineSpec,
    settings: Settings,
    time: SimulatedTime,
    *,
    trigger: str,
    reason: str,
    index: int,
    step: int,
    alert_metrics: tuple[str, ...] = (),
) -> TrainingRecord:
    """Train, judge and maybe promote a candidate as ``<pipeline>__train`` would (``alert_metrics``:
    what the monitor's alert fired on, as the retrain event carries it); its record."""
    begun = time.next()
    ctx = steps.RunContext(
        dag_id=f"{spec.name}__train",
        run_id=f"{RUN_TYPES[trigger]}__{begun.isoformat()}",
        reason=reason,
        trigger=trigger,
        alert_metrics=alert_metrics,
    )
    before = champion_version(spec, settings)
    started: Started | None = None
    validated: Validated | None = None
    trained: Trained | None = None
    evaluation: Evaluation | None = None
    version: str | None = None
    decision: GateDecision | None = None
    outcome: PromotionResult | None = None
    error = None
    try:
        with time.task():
            started = steps.start(spec, settings, ctx)
        with time.task():
            validated = steps.validate(spec, settings, ctx, started)
        with time.task():
            trained = steps.train(spec, settings, ctx, started)
        with time.task():
            evaluation = steps.evaluate_models(spec, settings, ctx, trained)
        with time.task():
            version = steps.register(spec, settings, ctx, started, trained, validated)
        with time.task():
            decision = steps.gate(spec, settings, evaluation, version)
        with time.task():
            outcome = steps.promote_candidate(
                spec, settings, ctx, started, evaluation, decision, version, approval_response=None
            )
    except CtloopError as exc:
        error = f"{type(exc).__name__}: {exc}"
    results = TrainResults(
        snapshot=started,
        validation=validated,
        train=trained,
        evaluate=evaluation,
        registered=version,
        gate=decision,
        # the promote task skips a turned-down candidate, so the DAG's finish sees no result
        promote=outcome if outcome is not None and not outcome.turned_down else None,
    )
    with time.task():
        steps.finish(spec, settings, ctx, results)
    run_tags: dict[str, str] = {}
    if started is not None:
        run_tags = registry.client(settings).get_run(started.mlflow_run_id).data.tags
    return TrainingRecord(
        index=index,
        step=step,
        at=begun.isoformat(),
        trigger=trigger,
        reason=started.provenance.reason if started is not None else reason,
        run_key=ctx.run_key,
        window=run_tags.get(tags.DATA_WINDOW),
        snapshot_rows=started.snapshot.rows if started is not None else None,
        train_rows=trained.train_rows if trained is not None else None,
        sources=started.snapshot.sources if started is not None else [],
        gate=run_tags.get(tags.GATE),
        gate_summary=decision.summary if decision is not None else None,
        version=version,
        promotion=outcome.action if outcome is not None else None,
        promoted=outcome is not None and outcome.promoted,
        champion_before=before,
        champion_after=champion_version(spec, settings),
        error=error,
    )
