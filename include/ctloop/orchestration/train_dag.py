"""``<pipeline>__train``: snapshot → validate → train → evaluate → gate → register → promote."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from airflow.sdk import Param, dag, get_current_context, task
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from ctloop.operators.promotion_gate import PromotionGateOperator
from ctloop.orchestration.assets import retrain_asset
from ctloop.orchestration.context import fail_without_retry, run_context
from ctloop.orchestration.schedules import cron_or_assets

if TYPE_CHECKING:
    from airflow.sdk import DAG

    from ctloop.spec import PipelineSpec

START_DATE = datetime(2026, 1, 1)
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
            "",
            type="string",
            title="Note",
            description="Free text for reviewers, e.g. a ticket or what changed in the data.",
        ),
        "alert_id": Param(
            "",
            type="string",
            title="Alert id",
            description="Set by an external monitoring system (REST API); recorded with the run.",
        ),
    }


def build_train_dag(spec: PipelineSpec) -> DAG:
    """The training DAG of one pipeline; only wiring here, the work is in ctloop.train_steps."""

    @task(task_id="snapshot")
    def snapshot() -> dict:
        from ctloop import train_steps
        from ctloop.settings import load_settings

        with fail_without_retry():
            return train_steps.start(spec, load_settings(), run_context(get_current_context()))

    @task(task_id="validate")
    def validate(started: dict) -> dict:
        from ctloop import train_steps
        from ctloop.settings import load_settings

        with fail_without_retry():
            return train_steps.validate(spec, load_settings(), run_context(get_current_context()), started)

    @task(task_id="train")
    def train(started: dict, validation: dict) -> dict:
        from ctloop import train_steps
        from ctloop.settings import load_settings

        with fail_without_retry():
            return train_steps.train(spec, load_settings(), run_context(get_current_context()), started)

    @task(task_id="evaluate")
    def evaluate(trained: dict) -> dict:
        from ctloop import train_steps
        from ctloop.settings import load_settings

        with fail_without_retry():
            return train_steps.evaluate_models(spec, load_settings(), trained)

    @task(task_id="register")
    def register(started: dict, trained: dict, decision: dict) -> str:
        from ctloop import train_steps
        from ctloop.settings import load_settings

        ctx = run_context(get_current_context())
        with fail_without_retry():
            return train_steps.register(spec, load_settings(), ctx, started, trained, decision)

    @task(task_id="promote")
    def promote(evaluation: dict, decision: dict, version: str, trained: dict) -> dict:
        from ctloop import train_steps
        from ctloop.settings import load_settings

        with fail_without_retry():
            outcome = train_steps.promote_candidate(
                spec, load_settings(), evaluation, decision, version, trained["holdout"]["key"]
            )
        if outcome["action"] in ("not_promoted", "rejected_after_reevaluation"):
            raise AirflowSkipException(f"v{version} not promoted: {outcome.get('why')}")
        return outcome

    @task(task_id="record_outcome", trigger_rule="all_done")
    def record_outcome() -> dict | None:
        """Close the run's retrain request however the run ended, for cooldown and breaker.

        It runs after failures too, so it fails itself when the run never reached a decision:
        as the DAG's last task it decides the run's state.
        """
        from ctloop import train_steps
        from ctloop.settings import load_settings

        closed = train_steps.finish(spec, load_settings(), run_context(get_current_context()))
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
        trained = train(started, validate(started))
        evaluation = evaluate(trained)
        decision = PromotionGateOperator(
            task_id="gate", gates=spec.gates, task_kind=spec.task, evaluation=evaluation
        ).output
        promote(evaluation, decision, register(started, trained, decision), trained) >> record_outcome()

    return train_pipeline()
