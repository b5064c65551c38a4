"""``<pipeline>__rollback``: move ``champion`` back to the previous champion or a named version.

Triggered by a person (the Trigger form asks for the target and a reason) or by the CLI's
``ctloop rollback``; never scheduled. A refusal fails the run with the reason, without retries.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from airflow.sdk import Param, dag, task

from ctloop.orchestration.dag_defaults import dag_args
from ctloop.orchestration.task_wrapper import TaskRun, ctloop_task

if TYPE_CHECKING:
    from airflow.sdk import DAG

    from ctloop.registry.rollback import RollbackOutcome
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
    @ctloop_task(spec)
    def rollback(run: TaskRun) -> RollbackOutcome:
        from ctloop import notifications
        from ctloop.orchestration.notifier import send
        from ctloop.registry.rollback import rollback as move_back

        context = run.context
        params, dag_run = context["params"], context["dag_run"]
        outcome = move_back(
            run.settings,
            spec.name,
            target=str(params["target"]),
            reason=str(params["reason"]),
            force=bool(params["force"]),
            user=getattr(dag_run, "triggering_user_name", None),
            run_key=f"{dag_run.dag_id}/{dag_run.run_id}",
        )
        send(
            notifications.ROLLBACK,
            spec.name,
            spec.notifications.conn_id,
            {
                "from": outcome.from_version,
                "to": outcome.to,
                "action": outcome.action,
                "reason": params["reason"],
            },
            context=context,
        )
        return outcome

    @dag(
        schedule=None,
        **dag_args(
            spec,
            "rollback",
            description=f"Roll the champion of {spec.name} back to the previous or a named version.",
            params=rollback_params(),
            doc_md=__doc__,
            is_paused_upon_creation=False,  # a rollback from the plugin must run at once
        ),
    )
    def rollback_pipeline() -> None:
        rollback()

    return rollback_pipeline()
