"""``<pipeline>__train``: snapshot → validate → train → evaluate → gate → register → promote."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

from airflow.sdk import Param, dag, task
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from ctloop.orchestration.assets import retrain_asset
from ctloop.orchestration.dag_defaults import dag_args
from ctloop.orchestration.operators.promotion_gate import PromotionGateOperator
from ctloop.orchestration.schedules import cron_or_assets
from ctloop.orchestration.task_wrapper import TaskRun, ctloop_task

if TYPE_CHECKING:
    from airflow.sdk import DAG

    from ctloop.registry.promotion import PromotionResult
    from ctloop.spec.models import PipelineSpec
    from ctloop.training.contracts import Evaluation, Finished, Started, Trained, Validated

APPROVE_TASK = "approve"
RESULT_TASKS = ("snapshot", "validate", "train", "evaluate", "register", "gate", "promote")


def train_params() -> dict[str, Param]:
    """The trigger form: why a person starts a retraining, and a note for the record.

    Airflow's form requires a field whose type does not allow null and refuses it empty, so
    ``reason`` is required there while its empty default keeps scheduled and asset-triggered runs
    (which use the defaults, validated at parse) valid; a manual run that still arrives without one
    (the REST API) fails at snapshot (:func:`ctloop.orchestration.run_context.require_reason`).
    An external alert's id is no Param, so people never see it: the plugin's alert endpoint passes
    it in the run's conf (see ``run_context``).
    """
    return {
        "reason": Param(
            "",
            type="string",
            title="Reason",
            description="Required: why this training runs; recorded on the MLflow run, the model"
            " version and the ledger.",
        ),
        "note": Param(
            None,
            type=["null", "string"],  # optional: a "" default makes Airflow's trigger form require it
            title="Note",
            description="Optional free text for reviewers, e.g. a ticket or what changed in the data.",
        ),
        "data_window": Param(
            "spec",
            type="string",
            enum=["spec", "all", "batches", "days"],
            title="Training data window",
            description="What this run trains on: the spec's retrain.data ('spec'), all labeled data,"
            " or only the last N batches or days (set 'Last N'), e.g. to recover from concept drift.",
        ),
        "data_last": Param(
            None,
            type=["null", "integer"],
            minimum=1,
            title="Last N",
            description="N batches or days, for the 'batches' and 'days' windows.",
        ),
        "gate_mode": Param(
            "spec",
            type="string",
            enum=["spec", "enabled", "dry_run"],
            title="Gate mode",
            description="'dry_run' judges and records the candidate but never promotes it;"
            " 'spec' uses gates.mode from the pipeline YAML.",
        ),
    }


def approval_answer(context) -> dict | None:
    """The reviewer's answer (see RecordedApprovalOperator), or None when nobody was asked."""
    from ctloop.orchestration.operators.approval import RESPONSE_KEY

    return context["ti"].xcom_pull(task_ids=APPROVE_TASK, key=RESPONSE_KEY)


def approval_operator(spec: PipelineSpec):
    """Airflow's human-in-the-loop approval, showing the gate's evidence; silence rejects."""
    from ctloop import notifications
    from ctloop.orchestration.notifier import CtloopNotifier
    from ctloop.orchestration.operators.approval import RecordedApprovalOperator

    return RecordedApprovalOperator(
        task_id=APPROVE_TASK,
        subject=f"Promote {spec.name} v{{{{ ti.xcom_pull(task_ids='register') }}}} to champion?",
        body="{{ ti.xcom_pull(task_ids='gate')['evidence_md'] }}",
        defaults=["Reject"],
        response_timeout=timedelta(hours=spec.gates.approval_timeout_hours),
        params={
            "comment": Param(
                "",
                type="string",
                title="Comment",
                description="Why you approve or reject; recorded in the ledger and the model card.",
            )
        },
        notifiers=[
            CtloopNotifier(
                event=notifications.APPROVAL_REQUEST,
                pipeline=spec.name,
                conn_id=spec.notifications.conn_id,
                fields={"version": "{{ ti.xcom_pull(task_ids='register') }}"},
            )
        ],
    )


def build_train_dag(spec: PipelineSpec) -> DAG:
    """The training DAG of one pipeline; only wiring here, the work is in ctloop.training.steps."""
    approval_required = spec.gates.approval == "required"

    @task(task_id="snapshot")
    @ctloop_task(spec)
    def snapshot(run: TaskRun) -> Started:
        from ctloop.monitoring import alerts
        from ctloop.orchestration.run_context import require_reason
        from ctloop.training import steps

        require_reason(run.context)
        if run.ctx.alert_id:  # one training per alert id, whatever the run id it came with
            alerts.claim(run.settings, run.spec.name, run.ctx.alert_id, run.ctx.run_key)
        return steps.start(run.spec, run.settings, run.ctx)

    @task(task_id="validate")
    @ctloop_task(spec)
    def validate(run: TaskRun, started: dict) -> Validated:
        from ctloop.training import steps

        return steps.validate(run.spec, run.settings, run.ctx, started)

    @task(task_id="train")
    @ctloop_task(spec)
    def train(run: TaskRun, started: dict, validation: dict) -> Trained:
        from ctloop.training import steps

        return steps.train(run.spec, run.settings, run.ctx, started)

    @task(task_id="evaluate")
    @ctloop_task(spec)
    def evaluate(run: TaskRun, trained: dict) -> Evaluation:
        from ctloop.training import steps

        return steps.evaluate_models(run.spec, run.settings, run.ctx, trained)

    @task(task_id="register")
    @ctloop_task(spec)
    def register(run: TaskRun, started: dict, trained: dict, validation: dict) -> str:
        from ctloop.training import steps

        return steps.register(run.spec, run.settings, run.ctx, started, trained, validation)

    @task.short_circuit(task_id="approval_needed", ignore_downstream_trigger_rules=False)
    def approval_needed(decision: dict) -> bool:
        """Ask a person only about a candidate the automatic gates would promote."""
        return bool(decision["promote"])

    @task(task_id="promote")
    @ctloop_task(spec)
    def promote(
        run: TaskRun, started: dict, evaluation: dict, decision: dict, version: str, trained: dict
    ) -> PromotionResult:
        from ctloop.training import steps

        approval = approval_answer(run.context) if approval_required else None
        outcome = steps.promote_candidate(
            run.spec, run.settings, run.ctx, started, evaluation, decision, version, approval
        )
        if outcome.turned_down:
            raise AirflowSkipException(f"v{version} not promoted: {outcome.why}")
        return outcome

    @task(task_id="record_outcome", trigger_rule="all_done")
    @ctloop_task(spec, run_params=False)
    def record_outcome(run: TaskRun) -> Finished | None:
        """Close the run's retrain request however the run ended (cooldown and breaker read it),
        record the approval, write the model card and notify.

        It runs after failures too, so it fails itself when the run never reached a decision:
        as the DAG's last task it decides the run's state.
        """
        from ctloop.training import steps

        results = {name: run.context["ti"].xcom_pull(task_ids=name) for name in RESULT_TASKS}
        results[APPROVE_TASK] = approval_answer(run.context)
        closed = steps.finish(run.spec, run.settings, run.ctx, results)
        if results["gate"] is None or (closed is not None and closed.outcome == "failed"):
            raise AirflowFailException("the run failed before a promotion decision; see the failed task")
        return closed

    @dag(
        schedule=cron_or_assets(spec.schedule.train, [retrain_asset(spec.name)]),
        **dag_args(
            spec,
            "train",
            description=f"Train, validate, gate and promote {spec.name}. {spec.description}".strip(),
            params=train_params(),
            doc_md=__doc__,
            # The plugin's Retrain starts this DAG: a paused one would leave that run queued.
            is_paused_upon_creation=False,
        ),
    )
    def train_pipeline() -> None:
        started = snapshot()
        validation = validate(started)
        trained = train(started, validation)
        evaluation = evaluate(trained)
        version = register(started, trained, validation)
        gate = PromotionGateOperator(task_id="gate", spec=spec, evaluation=evaluation, version=version)
        promoted = promote(started, evaluation, gate.output, version, trained)
        if approval_required:
            # Airflow types a task's arguments as its function's parameters, not the XComArg passed.
            gate >> approval_needed(gate.output) >> approval_operator(spec) >> promoted  # type: ignore[arg-type]
        promoted >> record_outcome()

    return train_pipeline()
