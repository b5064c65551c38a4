"""``<pipeline>__score``: score each new production batch once with the champion; join late labels.

Each batch is one mapped task instance, so one bad batch fails (and is quarantined) alone while
the others are scored. Label joining runs beside scoring, not after it, so a quarantined batch
still fails the DAG run.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from airflow.sdk import dag, task

from ctloop.orchestration.assets import predictions_asset
from ctloop.orchestration.run_context import fail_without_retry
from ctloop.orchestration.train_dag import DEFAULT_ARGS, START_DATE

if TYPE_CHECKING:
    from airflow.sdk import DAG

    from ctloop.spec.models import PipelineSpec


def build_score_dag(spec: PipelineSpec) -> DAG:
    """The scoring DAG of one pipeline; the work is in ctloop.scoring."""

    @task(task_id="find_batches")
    def find_batches() -> list[dict]:
        from ctloop.scoring.batches import new_batches
        from ctloop.settings import load_settings

        with fail_without_retry():
            return new_batches(spec, load_settings())

    @task(
        task_id="score_batch",
        outlets=[predictions_asset(spec.name)],
        map_index_template="{{ batch.batch_id }}",
    )
    def score_batch(batch: dict) -> dict:
        from ctloop.scoring import batches as scoring
        from ctloop.settings import load_settings

        with fail_without_retry():
            return scoring.score_batch(spec, load_settings(), batch)

    @task(task_id="join_labels")
    def join_labels() -> dict:
        from ctloop.scoring.late_labels import join_labels as join
        from ctloop.settings import load_settings

        with fail_without_retry():
            return join(spec, load_settings())

    @dag(
        dag_id=f"{spec.name}__score",
        description=f"Score new production batches of {spec.name} with the champion; join late labels.",
        schedule=spec.schedule.score,
        start_date=START_DATE,
        catchup=False,
        max_active_runs=1,
        default_args={**DEFAULT_ARGS, "owner": spec.owner},
        tags=["ctloop", "score", *spec.tags],
        doc_md=__doc__,
    )
    def score_pipeline() -> None:
        score_batch.expand(batch=find_batches())
        join_labels()

    return score_pipeline()
