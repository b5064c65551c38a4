"""``<pipeline>__train``: snapshot → validate → train → evaluate → gate → register → promote."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from airflow.sdk import Param, dag, get_current_context, task
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from ctloop.orchestration.assets import retrain_asset
from ctloop.orchestration.operators.promotion_gate import PromotionGateOperator
from ctloop.orchestration.run_context import fail_without_retry, run_context, spec_for_run
from ctloop.orchestration.schedules import cron_or_assets

if TYPE_CHECKING:
    from airflow.sdk import DAG

    from ctloop.spec.models import PipelineSpec

START_DATE = datetime(2026, 1, 1)
APPROVE_TASK = "approve"
RESULT_TASKS = ("snapshot", "validate", "train", "evaluate", "register", "gate", "promote")
DEFAULT_ARGS = {"retries": 2, "retry_delay": timedelta(seconds=30), "retry_exponential_backoff": True}


def train_params() -> dict[str, Param]:
    """The trigger form: why a person starts a retraining, and a note for the record."""
    return {
        "reason": Param(
            "manual",
            type="string",
            minLength=1,
            title="Reason",
            description="Why this training runs; recorded on the MLflow run and the model version.",
        ),
        "note": Param(
            None,
            type=["null", "string"],  # optional: a "" default makes Airflow's trigger form require it
            title="Note",
            description="Free text for reviewers, e.g. a ticket or what changed in the data.",
        ),
        "alert_id": Param(
            None,
            type=["null", "string"],
            title="Alert id",
            description="Set by an external monitoring system (REST API); recorded with the run.",
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
    from ctloop.orchestration.notifier import APPROVAL_REQUEST, CtloopNotifier
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
                event=APPROVAL_REQUEST,
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
    def snapshot() -> dict:
        from ctloop.settings import load_settings
        from ctloop.training import steps as train_steps

        context = get_current_context()
        with fail_without_retry():
            return train_steps.start(
                spec_for_run(spec, context["params"]), load_settings(), run_context(context)
            )

    @task(task_id="validate")
    def validate(started: dict) -> dict:
        from ctloop.settings import load_settings
        from ctloop.training import steps as train_steps

        with fail_without_retry():
            return train_steps.validate(spec, load_settings(), run_context(get_current_context()), started)

    @task(task_id="train")
    def train(started: dict, validation: dict) -> dict:
        from ctloop.settings import load_settings
        from ctloop.training import steps as train_steps

        with fail_without_retry():
            return train_steps.train(spec, load_settings(), run_context(get_current_context()), started)

    @task(task_id="evaluate")
    def evaluate(trained: dict) -> dict:
        from ctloop.settings import load_settings
        from ctloop.training import steps as train_steps

        with fail_without_retry():
            ctx = run_context(get_current_context())
            return train_steps.evaluate_models(spec, load_settings(), ctx, trained)

    @task(task_id="register")
    def register(started: dict, trained: dict, validation: dict) -> str:
        from ctloop.settings import load_settings
        from ctloop.training import steps as train_steps

        ctx = run_context(get_current_context())
        with fail_without_retry():
            return train_steps.register(spec, load_settings(), ctx, started, trained, validation)

    @task.short_circuit(task_id="approval_needed", ignore_downstream_trigger_rules=False)
    def approval_needed(decision: dict) -> bool:
        """Ask a person only about a candidate the automatic gates would promote."""
        return bool(decision["promote"])

    @task(task_id="promote")
    def promote(started: dict, evaluation: dict, decision: dict, version: str, trained: dict) -> dict:
        from ctloop.settings import load_settings
        from ctloop.training import steps as train_steps

        context = get_current_context()
        approval = approval_answer(context) if approval_required else None
        with fail_without_retry():
            outcome = train_steps.promote_candidate(
                spec, load_settings(), run_context(context), started, evaluation, decision, version, approval
            )
        if outcome["action"] in ("not_promoted", "rejected_after_reevaluation"):
            raise AirflowSkipException(f"v{version} not promoted: {outcome.get('why')}")
        return outcome

    @task(task_id="record_outcome", trigger_rule="all_done")
    def record_outcome() -> dict | None:
        """Close the run's retrain request however the run ended (cooldown and breaker read it),
        record the approval, write the model card and notify.

        It runs after failures too, so it fails itself when the run never reached a decision:
        as the DAG's last task it decides the run's state.
        """
        from ctloop.settings import load_settings
        from ctloop.training import steps as train_steps

        context = get_current_context()
        results = {name: context["ti"].xcom_pull(task_ids=name) for name in RESULT_TASKS}
        results[APPROVE_TASK] = approval_answer(context)
        closed = train_steps.finish(spec, load_settings(), run_context(context), results)
        if closed is not None and closed["outcome"] == "failed":
            raise AirflowFailException("the run failed before a promotion decision; see the failed task")
        return closed

    @dag(
        dag_id=f"{spec.name}__train",
        description=f"Train, validate, gate and promote {spec.name}. {spec.description}".strip(),
        schedule=cron_or_assets(spec.schedule.train, [retrain_asset(spec.name)]),
        start_date=START_DATE,
        catchup=False,
        max_active_runs=1,
        default_args={**DEFAULT_ARGS, "owner": spec.owner},
        tags=["ctloop", "train", *spec.tags],
        params=train_params(),
        doc_md=__doc__,
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
            gate >> approval_needed(gate.output) >> approval_operator(spec) >> promoted
        promoted >> record_outcome()

    return train_pipeline()
