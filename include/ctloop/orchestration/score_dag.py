"""``<pipeline>__score``: score each new production batch once with the champion; join late labels.

Each batch is one mapped task instance, so one bad batch fails (and is quarantined) alone while
the others are scored. Label joining runs beside scoring, not after it, so a quarantined batch
still fails the DAG run; a bad label file is set aside, the others are joined, and
``join_labels`` fails naming it (ctloop.scoring.late_labels).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from airflow.sdk import dag, task

from ctloop.orchestration.assets import predictions_asset
from ctloop.orchestration.dag_defaults import dag_args
from ctloop.orchestration.task_wrapper import TaskRun, ctloop_task

if TYPE_CHECKING:
    from airflow.sdk import DAG

    from ctloop.scoring.batches import Batch
    from ctloop.spec.models import PipelineSpec


def build_score_dag(spec: PipelineSpec) -> DAG:
    """The scoring DAG of one pipeline; the work is in ctloop.scoring."""

    @task(task_id="find_batches")
    @ctloop_task(spec)
    def find_batches(run: TaskRun) -> list[Batch]:
        from ctloop.scoring.batches import new_batches

        return new_batches(run.spec, run.settings)

    @task(
        task_id="score_batch",
        outlets=[predictions_asset(spec.name)],
        map_index_template="{{ batch.batch_id }}",
    )
    @ctloop_task(spec)
    def score_batch(run: TaskRun, batch: Batch) -> dict:
        from ctloop.scoring import batches as scoring

        return scoring.score_batch(run.spec, run.settings, batch)

    @task(task_id="join_labels")
    @ctloop_task(spec)
    def join_labels(run: TaskRun) -> dict:
        from ctloop.scoring.late_labels import join_labels as join

        return join(run.spec, run.settings)

    @dag(
        schedule=spec.schedule.score,
        **dag_args(
            spec,
            "score",
            description=f"Score new production batches of {spec.name} with the champion; join late labels.",
            doc_md=__doc__,
        ),
    )
    def score_pipeline() -> None:
        score_batch.expand(batch=find_batches())
        join_labels()

    return score_pipeline()
