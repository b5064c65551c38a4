"""``<pipeline>__rollback``: move ``champion`` back to the previous champion or a named version.

Triggered by a person (the Trigger form asks for the target and a reason) or by the CLI's
``ctloop rollback``; never scheduled. A refusal fails the run with the reason, without retries.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from airflow.sdk import Param, dag, get_current_context, task

from ctloop.orchestration.run_context import fail_without_retry
from ctloop.orchestration.train_dag import DEFAULT_ARGS, START_DATE

if TYPE_CHECKING:
    from airflow.sdk import DAG

    from ctloop.spec.models import PipelineSpec


def rollback_params() -> dict[str, Param]:
    """The trigger form of a rollback."""
    return {
        "target": Param(
            "previous",
            type="string",
            pattern=r"^(previous|[0-9]+)$",
            title="Target version",
            description="'previous' (the champion before the current one) or a model version number.",
        ),
        "reason": Param(
            "",
            type="string",
            minLength=1,
            title="Reason",
            description="Why the champion is rolled back; recorded in the promotion ledger.",
        ),
        "force": Param(
            False,
            type="boolean",
            title="Force",
            description="Allow a target that never passed its gates; recorded as an override.",
        ),
    }


def build_rollback_dag(spec: PipelineSpec) -> DAG:
    """The rollback DAG of one pipeline; the work is in ctloop.registry.rollback."""

    @task(task_id="rollback")
    def rollback() -> dict:
        from ctloop.orchestration import notifier as notify
        from ctloop.registry.rollback import rollback as move_back
        from ctloop.settings import load_settings

        context = get_current_context()
        params, dag_run = context["params"], context["dag_run"]
        with fail_without_retry():
            outcome = move_back(
                load_settings(),
                spec.name,
                target=str(params["target"]),
                reason=str(params["reason"]),
                force=bool(params["force"]),
                user=getattr(dag_run, "triggering_user_name", None),
                run_key=f"{dag_run.dag_id}/{dag_run.run_id}",
            )
        notify.send(
            notify.ROLLBACK,
            spec.name,
            spec.notifications.conn_id,
            {
                "from": outcome["from"],
                "to": outcome["to"],
                "action": outcome["action"],
                "reason": params["reason"],
            },
            context=context,
        )
        return outcome

    @dag(
        dag_id=f"{spec.name}__rollback",
        description=f"Roll the champion of {spec.name} back to the previous or a named version.",
        schedule=None,
        start_date=START_DATE,
        catchup=False,
        max_active_runs=1,
        default_args={**DEFAULT_ARGS, "owner": spec.owner},  # a refusal fails at once, no retry
        tags=["ctloop", "rollback", *spec.tags],
        params=rollback_params(),
        doc_md=__doc__,
    )
    def rollback_pipeline() -> None:
        rollback()

    return rollback_pipeline()
