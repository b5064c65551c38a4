"""``<pipeline>__housekeeping``: apply the spec's retention rules (ctloop.housekeeping.retention)
to the pipeline's storage and registered versions, on ``retention.schedule`` or by hand. The task's
result lists every item deleted, with its rule, and every item a rule selected but something still
references; the trigger form's dry run deletes nothing."""

from __future__ import annotations

from typing import TYPE_CHECKING

from airflow.sdk import CronTriggerTimetable, Param, dag, task

from ctloop.orchestration.dag_defaults import dag_args
from ctloop.orchestration.task_wrapper import TaskRun, ctloop_task

if TYPE_CHECKING:
    from airflow.sdk import DAG

    from ctloop.housekeeping.retention import RetentionResult
    from ctloop.spec.models import PipelineSpec


def build_housekeeping_dag(spec: PipelineSpec) -> DAG:
    """The housekeeping DAG of one pipeline."""

    @task(task_id="apply_retention")
    @ctloop_task(spec, run_params=False)
    def apply_retention(run: TaskRun) -> RetentionResult:
        from ctloop.housekeeping.retention import apply_retention as apply

        return apply(run.spec, run.settings, dry_run=bool(run.context["params"]["dry_run"]))

    cron = spec.retention.schedule
    dry_run = Param(
        spec.retention.dry_run,
        type="boolean",
        title="Dry run",
        description="List what the retention rules would delete, and delete nothing.",
    )

    @dag(
        schedule=CronTriggerTimetable(cron, timezone="UTC") if cron else None,
        **dag_args(
            spec,
            "housekeeping",
            description=f"Delete what the retention rules of {spec.name} let go, never what is referenced.",
            params={"dry_run": dry_run},
            doc_md=__doc__,
        ),
    )
    def housekeeping_pipeline() -> None:
        apply_retention()

    return housekeeping_pipeline()
